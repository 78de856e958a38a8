// Hearth's clinician app: sign in (SMART standalone launch), the role's worklist, one case.
import { beginSignIn, completeSignIn, currentSession, forget, signOut } from "./smart.js";
import { Fhir, takeImages } from "./fhir.js";
import { h, show } from "./dom.js";
import { worklist, worklistCriteria } from "./worklist.js";
import { follow } from "./live.js";
import { caseView } from "./caseview.js";
import { assistantView } from "./assistant.js";

const STAFF = ["doctor", "pharmacist", "cadre", "admin"];
const SCOPE = "openid fhirUser user/*.cruds"; // the server narrows it to the role's ceiling
const clientId = document.querySelector('meta[name="hearth-client-id"]').content;
const redirectUri = new URL(".", window.location.href).toString().split("?")[0];
const fhirBase = new URL("../fhir", redirectUri).toString();

const main = document.getElementById("main");
const errorBox = document.getElementById("error");
const statusLine = document.getElementById("status");
const who = document.getElementById("who");
const signOutButton = document.getElementById("sign-out");
const navWorklist = document.getElementById("nav-worklist");
const navAssistant = document.getElementById("nav-assistant");
const liveLine = document.getElementById("live");
const LIVE_WORDS = {
  connecting: "Connecting for live updates…",
  live: "Live: this list updates by itself.",
  polling: "Live updates unavailable: this list refreshes every minute.",
};

// The worklist follows its searches over the websocket while it is shown (live.js).
let following = null;
let acting = false;

function stopFollowing() {
  if (following) following.stop();
  following = null;
  liveLine.hidden = true;
  liveLine.removeAttribute("data-state");
}

function followWorklist(fhir, session) {
  if (following) return;
  following = follow({
    watch: () => fhir.operation("Subscription/$watch", worklistCriteria(session).map((c) => ["criteria", { valueString: c }])),
    onChange: () => refreshWorklist(fhir, session),
    onState: (state) => {
      liveLine.dataset.state = state;
      liveLine.textContent = LIVE_WORDS[state] || "";
      liveLine.hidden = !LIVE_WORDS[state];
    },
  });
}

function onWorklist() {
  return window.location.hash === "" || window.location.hash === "#/" || window.location.hash === "#";
}

// A refresh that keeps the reader where they are: no focus move, no flash of "Loading".
async function refreshWorklist(fhir, session) {
  if (acting || !onWorklist() || !currentSession()) return;
  try {
    const view = await worklist(fhir, session);
    if (acting || !onWorklist()) return;
    const scroll = window.scrollY;
    show(main, view);
    window.scrollTo(0, scroll);
  } catch (err) {
    if (err.status === 401) {
      stopFollowing();
      signInScreen(err.message);
    }
  }
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

function say(message) {
  statusLine.textContent = message;
}

function signInScreen(note) {
  stopFollowing();
  who.textContent = "";
  signOutButton.hidden = true;
  navWorklist.hidden = true;
  navAssistant.hidden = true;
  show(
    main,
    h("h1", {}, "Hearth for care teams"),
    note ? h("p", {}, note) : null,
    h("p", {}, "Sign in with your Hearth account (password and authenticator code) to see your worklist."),
    h("button", { type: "button", class: "primary", onclick: async (event) => {
      event.target.disabled = true;
      try {
        await beginSignIn({ clientId, fhirBase, redirectUri, scope: SCOPE });
      } catch (err) {
        event.target.disabled = false;
        showError(err.message);
      }
    } }, "Sign in"),
  );
}

async function render() {
  const session = currentSession();
  if (!session) return signInScreen();
  who.textContent = `Signed in as ${session.username} (${session.role || "no role"})`;
  signOutButton.hidden = false;
  navWorklist.hidden = false;
  navAssistant.hidden = false;
  if (session.role === "patient") {
    show(main, h("h1", {}, "Your patient portal"),
      h("p", {}, "This app is for the care team. Your results, reports, appointments and messages are in your patient portal."),
      h("a", { href: "/app/portal/", class: "button" }, "Open your patient portal"));
    return;
  }
  if (!STAFF.includes(session.role)) {
    show(main, h("h1", {}, "Not for this account"),
      h("p", {}, "This app is for doctors, pharmacists, cadres and administrators. Your account has no such role."));
    return;
  }
  const fhir = new Fhir(fhirBase, session.accessToken, () => forget());
  const route = window.location.hash.match(/^#\/task\/([A-Za-z0-9\-.]{1,64})$/);
  const shown = takeImages();
  try {
    const view = route
      ? await caseView(fhir, session, route[1], (path, parts, done) => act(fhir, path, parts, done))
      : window.location.hash === "#/assistant"
        ? assistantView(fhir)
        : await worklist(fhir, session);
    show(main, view);
    main.focus();
    for (const url of shown) URL.revokeObjectURL(url);
    if (!route && window.location.hash !== "#/assistant") followWorklist(fhir, session);
    else stopFollowing();
  } catch (err) {
    if (err.status === 401) return signInScreen(err.message);
    show(main, h("p", {}, "This page could not be shown."), h("p", {}, h("a", { href: "#/" }, "Back to the worklist")));
    showError(err.message);
  }
}

async function act(fhir, path, parts, done) {
  acting = true;
  showError("");
  say("Working…");
  for (const b of main.querySelectorAll("button")) b.disabled = true;
  try {
    const result = await fhir.operation(path, parts);
    // done: the words, or a function of the answer that says what really happened
    say(typeof done === "function" ? await done(result) : done);
  } catch (err) {
    say("");
    showError(err.message);
  }
  acting = false;
  await render();
}

signOutButton.addEventListener("click", async () => {
  stopFollowing();
  await signOut(clientId);
  showError("");
  say("You are signed out.");
  window.location.hash = "";
  signInScreen();
});

window.addEventListener("hashchange", () => {
  showError("");
  say("");
  render();
});

async function start() {
  const params = new URLSearchParams(window.location.search);
  if (params.has("code") || params.has("error")) {
    window.history.replaceState(null, "", redirectUri); // the code is used once; keep it out of history
    try {
      await completeSignIn(params, { clientId, redirectUri });
    } catch (err) {
      showError(err.message);
      return signInScreen();
    }
  }
  await render();
}

start();
