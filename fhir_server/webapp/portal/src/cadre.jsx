// The community health worker's screens: find or register a patient, then take a lesion photo,
// pick the body site and the doctor, and start a skin-screening case; follow the patient's cases.
import { useEffect, useState } from "preact/hooks";
import { CaptureQueue } from "./capturequeue.jsx";
import { when } from "./format.js";
import { useLoad } from "./hooks.js";
import { LesionHistory } from "./lesions.jsx";
import { LungRiskScreen } from "./lungrisk.jsx";
import { caseTasks } from "./media.js";
import { XrayList, XrayUpload } from "./xray.jsx";
import { flush, keep, startOutbox } from "./outbox.js";
import { BODY_SITES, BodySite, PhotoInput, Progress, prepare } from "./photo.js";
import { t } from "./strings.js";

const ROLE_SYSTEM = "http://hearth.local/fhir/CodeSystem/care-role";

export function personName(resource) {
  const n = (resource?.name || [])[0];
  if (!n) return resource ? `${resource.resourceType}/${resource.id}` : "";
  return n.text || [...(n.given || []), n.family].filter(Boolean).join(" ");
}

function useHash() {
  const [hash, setHash] = useState(location.hash || "#/");
  useEffect(() => {
    const on = () => setHash(location.hash || "#/");
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function FindPatient({ api }) {
  const [name, setName] = useState("");
  const [found, setFound] = useState(null);
  const [error, setError] = useState(null);
  const find = async (ev) => {
    ev.preventDefault();
    setError(null);
    try {
      setFound(await api.search("Patient", { name: name.trim(), _count: "20", _sort: "family" }));
    } catch (e) {
      setError(e.message);
    }
  };
  return (
    <section aria-labelledby="find-h">
      <h1 id="find-h">{t("findPatient")}</h1>
      <form class="compose" onSubmit={find} role="search">
        <label for="find">{t("patientName")}</label>
        <input id="find" type="search" required minLength={2} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        <button class="primary" type="submit">{t("find")}</button>
      </form>
      {error && <div class="alert" role="alert">{error}</div>}
      {found && found.length === 0 && <p>{t("noPatientFound")}</p>}
      {found && found.length > 0 && (
        <ul class="cards">
          {found.map((p) => (
            <li class="card" key={p.id}>
              <a href={`#/patient/${p.id}`}>{personName(p)}</a>
              <p class="meta">{when(p.birthDate)}</p>
            </li>
          ))}
        </ul>
      )}
      <p><a class="button" href="#/register">{t("registerPatient")}</a></p>
    </section>
  );
}

function Register({ api, say }) {
  const [f, setF] = useState({ given: "", family: "", birthDate: "", gender: "", phone: "", email: "" });
  const [busy, setBusy] = useState(false);
  const field = (key, type = "text", extra = {}) => (
    <>
      <label for={`reg-${key}`}>{t(`reg_${key}`)}</label>
      <input id={`reg-${key}`} type={type} value={f[key]} onInput={(e) => setF({ ...f, [key]: e.currentTarget.value })} {...extra} />
    </>
  );
  const submit = async (ev) => {
    ev.preventDefault();
    setBusy(true);
    try {
      const telecom = [];
      if (f.phone.trim()) telecom.push({ system: "phone", value: f.phone.trim(), use: "mobile" });
      if (f.email.trim()) telecom.push({ system: "email", value: f.email.trim() });
      const patient = await api.call("Patient", {
        method: "POST",
        body: {
          resourceType: "Patient",
          active: true,
          name: [{ given: [f.given.trim()], family: f.family.trim() }],
          birthDate: f.birthDate,
          gender: f.gender,
          ...(telecom.length ? { telecom } : {}),
        },
      });
      say.ok(t("registered", { name: personName(patient) }));
      location.hash = `#/patient/${patient.id}`;
    } catch (e) {
      say.error(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="compose" onSubmit={submit}>
      <h1>{t("registerPatient")}</h1>
      {field("given", "text", { required: true, maxLength: 100, autocomplete: "off" })}
      {field("family", "text", { required: true, maxLength: 100, autocomplete: "off" })}
      {field("birthDate", "date", { required: true, max: new Date().toISOString().slice(0, 10) })}
      <label for="reg-gender">{t("reg_gender")}</label>
      <select id="reg-gender" required value={f.gender} onChange={(e) => setF({ ...f, gender: e.currentTarget.value })}>
        <option value="">{t("choose")}</option>
        {["female", "male", "other", "unknown"].map((g) => (
          <option value={g}>{t(`gender_${g}`)}</option>
        ))}
      </select>
      {field("phone", "tel", { maxLength: 40 })}
      {field("email", "email", { maxLength: 200 })}
      <button class="primary" type="submit" disabled={busy}>{t("register")}</button>
    </form>
  );
}

function doctors(api) {
  return api
    .call(
      `PractitionerRole?${new URLSearchParams({
        role: `${ROLE_SYSTEM}|doctor`,
        active: "true",
        _include: "PractitionerRole:practitioner",
        _count: "100",
      })}`,
    )
    .then((bundle) =>
      (bundle.entry || []).map((e) => e.resource).filter((r) => r.resourceType === "Practitioner"),
    );
}

function Screening({ api, id, say }) {
  const P = `Patient/${id}`;
  const data = useLoad(
    () =>
      Promise.all([
        api.call(P),
        doctors(api),
        api.search("Task", { patient: P, _sort: "-authored-on", _count: "50" }),
      ]),
    [api, P],
  );
  const [file, setFile] = useState(null);
  const [site, setSite] = useState(BODY_SITES[0]);
  const [doctor, setDoctor] = useState("");
  const [priority, setPriority] = useState("routine");
  const [consent, setConsent] = useState(false);
  const [note, setNote] = useState("");
  const [progress, setProgress] = useState(null);
  if (data.error) return <div class="alert" role="alert">{data.error.message}</div>;
  if (!data.data) return <p>{t("loading")}</p>;
  const [patient, docs, tasks] = data.data;
  const cases = caseTasks(tasks);
  // The capture is kept on this phone first (src/outbox.js), then sent: on a flaky connection
  // it waits and is sent again, never lost and never sent twice.
  const start = async (ev) => {
    ev.preventDefault();
    if (!file) return;
    try {
      setProgress(0);
      const data64 = await prepare(file);
      const params = [
        { name: "priority", valueCode: priority },
        { name: "note", valueString: [t("consentNote"), note.trim()].filter(Boolean).join(" ") },
      ];
      if (doctor) params.push({ name: "referredTo", valueReference: { reference: doctor } });
      const key = await keep({ patient: P, data: data64, site: t(site), params });
      setFile(null);
      setNote("");
      setConsent(false);
      setProgress(0.5);
      const sent = await flush(api);
      if (sent.includes(key)) {
        say.ok(t("caseStarted"));
        data.reload();
      } else {
        say.ok(t("captureKept"));
      }
    } catch (e) {
      say.error(e);
    } finally {
      setProgress(null);
    }
  };
  return (
    <>
      <h1>{personName(patient)}</h1>
      <p class="meta">{[when(patient.birthDate), t(`gender_${patient.gender || "unknown"}`)].join(" · ")}</p>
      <p class="actions">
        <a class="button" href={`#/patient/${id}/lesions`}>{t("lesionHistory")}</a>
        <a class="button" href={`#/patient/${id}/lung`}>{t("lungForPatient")}</a>
        <a class="button" href={`#/patient/${id}/xray`}>{t("xrayForPatient")}</a>
      </p>
      <CaptureQueue api={api} patient={P} onSent={data.reload} />
      <form class="upload" onSubmit={start}>
        <h2>{t("startScreening")}</h2>
        <PhotoInput file={file} onFile={(f) => { say.clear(); setFile(f); }} />
        <BodySite value={site} onChange={setSite} sites={BODY_SITES} label="bodySiteCadre" />
        <label for="doctor">{t("referTo")}</label>
        <select id="doctor" value={doctor} onChange={(e) => setDoctor(e.currentTarget.value)}>
          <option value="">{t("anyDoctor")}</option>
          {docs.map((d) => (
            <option value={`Practitioner/${d.id}`}>{personName(d)}</option>
          ))}
        </select>
        <label for="priority">{t("priority")}</label>
        <select id="priority" value={priority} onChange={(e) => setPriority(e.currentTarget.value)}>
          <option value="routine">{t("routine")}</option>
          <option value="urgent">{t("urgent")}</option>
        </select>
        <label for="note">{t("note")}</label>
        <textarea id="note" rows={2} maxLength={2000} value={note} onInput={(e) => setNote(e.currentTarget.value)} />
        <label class="check">
          <input type="checkbox" required checked={consent} onChange={(e) => setConsent(e.currentTarget.checked)} /> {t("consent")}
        </label>
        <Progress value={progress} />
        <button class="primary" type="submit" disabled={!file || progress !== null}>{t("startCase")}</button>
      </form>
      <section aria-labelledby="cases-h">
        <h2 id="cases-h">{t("casesOf")}</h2>
        {cases.length === 0 ? (
          <p>{t("noCases")}</p>
        ) : (
          <ul class="cards">
            {cases.map((c) => (
              <li class="card" key={c.id} data-case={c.id}>
                <h3>{c.code?.coding?.[0]?.display || c.code?.text}</h3>
                <p class="meta">{when(c.authoredOn)} · {c.priority === "urgent" ? t("urgent") : t("routine")}</p>
                <p class="case-status">{t(`staff_${c.businessStatus?.coding?.[0]?.code}`)}</p>
              </li>
            ))}
          </ul>
        )}
      </section>
    </>
  );
}

function Lesions({ api, id }) {
  const data = useLoad(() => api.call(`Patient/${id}`), [api, id]);
  return (
    <>
      <h1>{t("lesionHistoryOf", { name: data.data ? personName(data.data) : "" })}</h1>
      <p><a href={`#/patient/${id}`}>{t("backToPatient")}</a></p>
      <LesionHistory api={api} patient={id} />
    </>
  );
}

function Xray({ api, id, say }) {
  const data = useLoad(() => api.call(`Patient/${id}`), [api, id]);
  const [version, setVersion] = useState(0);
  return (
    <>
      <h1>{t("xrayTitleOf", { name: data.data ? personName(data.data) : "" })}</h1>
      <p><a href={`#/patient/${id}`}>{t("backToPatient")}</a></p>
      <XrayUpload api={api} patient={id} say={say} onSent={() => setVersion((v) => v + 1)} />
      <section aria-labelledby="xrays-h">
        <h2 id="xrays-h">{t("xrayOfPatient")}</h2>
        <XrayList api={api} patient={id} version={version} staff />
      </section>
    </>
  );
}

export function CadreScreens({ api, say, user }) {
  const hash = useHash();
  useEffect(() => startOutbox(api, user), [api, user]);
  const lesions = hash.match(/^#\/patient\/([A-Za-z0-9\-.]{1,64})\/lesions$/);
  if (lesions) return <Lesions api={api} id={lesions[1]} key={`l${lesions[1]}`} />;
  const lung = hash.match(/^#\/patient\/([A-Za-z0-9\-.]{1,64})\/lung$/);
  if (lung) return <LungRiskScreen api={api} patient={lung[1]} say={say} staff key={`g${lung[1]}`} />;
  const xray = hash.match(/^#\/patient\/([A-Za-z0-9\-.]{1,64})\/xray$/);
  if (xray) return <Xray api={api} id={xray[1]} say={say} key={`x${xray[1]}`} />;
  const m = hash.match(/^#\/patient\/([A-Za-z0-9\-.]{1,64})$/);
  if (m) return <Screening api={api} id={m[1]} say={say} key={m[1]} />;
  if (hash === "#/register") return <Register api={api} say={say} />;
  return (
    <>
      <CaptureQueue api={api} />
      <FindPatient api={api} />
    </>
  );
}
