// The patient portal: sign-in (SMART, fhirclient), then Home, Appointments and Messages.
import { render } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { makeApi } from "./api.js";
import { AppointmentsScreen } from "./appointments.jsx";
import { AssistantScreen } from "./assistant.jsx";
import { HomeScreen } from "./home.jsx";
import { MessagesScreen } from "./messages.jsx";
import { PhotosScreen } from "./photos.jsx";
import { LesionsScreen } from "./lesions.jsx";
import { LungRiskScreen } from "./lungrisk.jsx";
import { XrayScreen } from "./xray.jsx";
import { PrescriptionsScreen } from "./prescriptions.jsx";
import { CarePlanScreen } from "./careplan.jsx";
import { CadreScreens } from "./cadre.jsx";
import { DashboardScreen } from "./dashboard.jsx";
import { ForumScreen } from "./forum.jsx";
import { DeliveryScreen } from "./delivery.jsx";
import { MailboxScreen } from "./mailbox.jsx";
import { ADMIN_ROUTES } from "./admin/index.jsx";
import { CADRE_SCOPE, resume, session, signIn, signOut } from "./smart.js";
import { t } from "./strings.js";
import "./portal.css";

const ROUTES = {
  "#/": { label: "navHome", Screen: HomeScreen },
  "#/appointments": { label: "navAppointments", Screen: AppointmentsScreen },
  "#/messages": { label: "navMessages", Screen: MessagesScreen },
  "#/photos": { label: "navPhotos", Screen: PhotosScreen },
  "#/xray": { label: "navXray", Screen: XrayScreen },
  "#/lesions": { label: "navLesions", Screen: LesionsScreen },
  "#/lung": { label: "navLung", Screen: LungRiskScreen },
  "#/medicines": { label: "navPrescriptions", Screen: PrescriptionsScreen },
  "#/careplan": { label: "navCarePlan", Screen: CarePlanScreen },
  "#/assistant": { label: "navAssistant", Screen: AssistantScreen },
  "#/forum": { label: "navForum", Screen: ForumScreen },
};
// The staff area: doctors and administrators signed in with user-level scopes.
const STAFF_ROLES = ["doctor", "admin"];
const STAFF_ROUTES = {
  "#/dashboard": { label: "navDashboard", Screen: DashboardScreen },
  "#/delivery": { label: "navDelivery", Screen: DeliveryScreen, roles: ["admin"] },
  "#/mailbox": { label: "navMailbox", Screen: MailboxScreen, roles: ["admin"] },
  ...ADMIN_ROUTES, // Users, Schedules, Audit (src/admin/)
  "#/forum": { label: "navForum", Screen: ForumScreen },
};
const allowed = (route, role) => !route.roles || route.roles.includes(role);

function useRoute(routes = ROUTES) {
  const [hash, setHash] = useState(location.hash in routes ? location.hash : "#/");
  useEffect(() => {
    const on = () => setHash(location.hash in routes ? location.hash : "#/");
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function Notice({ notice }) {
  // One polite live region for confirmations, one alert region for errors.
  return (
    <>
      <p class="status" role="status" aria-live="polite">{notice.ok || ""}</p>
      <div class="alert" role="alert">{notice.error || ""}</div>
    </>
  );
}

function SignIn({ error }) {
  return (
    <main class="signin">
      <h1>{t("appName")}</h1>
      <p>{t("signInIntro")}</p>
      {error && <div class="alert" role="alert">{error}</div>}
      <p><button class="primary" type="button" onClick={() => signIn()}>{t("signIn")}</button></p>
      <p><button type="button" onClick={() => signIn(CADRE_SCOPE)}>{t("signInCadre")}</button></p>
      <p><button type="button" onClick={() => signIn(CADRE_SCOPE)}>{t("signInStaff")}</button></p>
    </main>
  );
}

function Portal({ client, onSignedOut }) {
  const me = useMemo(() => session(client), [client]);
  const [notice, setNotice] = useState({});
  const api = useMemo(() => makeApi(me.token, onSignedOut), [me.token]);
  const staff = STAFF_ROLES.includes(me.role) && me.userScopes;
  const hash = useRoute(staff ? STAFF_ROUTES : ROUTES);
  const say = {
    ok: (text) => setNotice({ ok: text }),
    error: (e) => setNotice({ error: e?.message || String(e) }),
    clear: () => setNotice({}),
  };
  useEffect(() => setNotice({}), [hash]);
  const out = async () => {
    await signOut(client);
    onSignedOut();
  };
  const header = (
    <header>
      <span class="brand">{t(staff ? "appNameStaff" : me.role === "cadre" ? "appNameCadre" : "appName")}</span>
      <button type="button" onClick={out}>{t("signOut")}</button>
    </header>
  );
  if (me.role === "cadre") {
    return (
      <>
        {header}
        <nav aria-label={t("nav")}>
          <a href="#/">{t("navFind")}</a>
          <a href="#/register">{t("navRegister")}</a>
          <a href="#/forum">{t("navForum")}</a>
        </nav>
        <Notice notice={notice} />
        <main>
          {hash === "#/forum" ? <ForumScreen api={api} say={say} /> : <CadreScreens api={api} say={say} user={me.fhirUser} />}
        </main>
      </>
    );
  }
  if (staff) {
    const here = hash in STAFF_ROUTES && allowed(STAFF_ROUTES[hash], me.role) ? hash : "#/dashboard";
    const { Screen } = STAFF_ROUTES[here];
    return (
      <>
        {header}
        <nav aria-label={t("nav")}>
          {Object.entries(STAFF_ROUTES).filter(([, r]) => allowed(r, me.role)).map(([href, r]) => (
            <a href={href} aria-current={href === here ? "page" : undefined}>{t(r.label)}</a>
          ))}
        </nav>
        <Notice notice={notice} />
        <main>
          <Screen api={api} say={say} role={me.role} />
        </main>
      </>
    );
  }
  if (me.role !== "patient" || !me.patient) {
    // Other staff use the clinicians' app; here they have the community (admins moderate it).
    return (
      <>
        {header}
        <nav aria-label={t("nav")}><a href="#/forum">{t("navForum")}</a></nav>
        <Notice notice={notice} />
        <main>
          {hash === "#/forum" ? (
            <ForumScreen api={api} say={say} role={me.role} />
          ) : (
            <>
              <p>{t("notForStaff")}</p>
              <a href="/app/">{t("openStaffApp")}</a>
            </>
          )}
        </main>
      </>
    );
  }
  const { Screen } = ROUTES[hash];
  return (
    <>
      {header}
      <nav aria-label={t("nav")}>
        {Object.entries(ROUTES).map(([href, r]) => (
          <a href={href} aria-current={href === hash ? "page" : undefined}>{t(r.label)}</a>
        ))}
      </nav>
      <Notice notice={notice} />
      <main>
        <Screen api={api} patient={me.patient} say={say} />
      </main>
    </>
  );
}

function App() {
  const [state, setState] = useState({ loading: true });
  useEffect(() => {
    resume().then(
      (client) => setState({ client }),
      (e) => setState({ error: e?.message || String(e) }),
    );
  }, []);
  if (state.loading) return <p class="status" role="status">{t("signingIn")}</p>;
  if (!state.client) return <SignIn error={state.error} />;
  return <Portal client={state.client} onSignedOut={() => setState({})} />;
}

render(<App />, document.getElementById("root"));
