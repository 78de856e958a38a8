// Every word the portal shows, in one place (English). To translate, copy `en` to another
// language and pick it in `lang` below; `t("key", {name})` fills {name} placeholders.
const en = {
  appName: "Hearth — your health record",
  signIn: "Sign in",
  signOut: "Sign out",
  signInIntro:
    "See your results and reports, answer or book appointments and write to your care team.",
  signingIn: "Signing you in…",
  loading: "Loading…",
  signedInAs: "Signed in as {name}",
  notForStaff:
    "This portal is for patients. Care staff use the clinicians' app.",
  openStaffApp: "Open the clinicians' app",
  nav: "Sections",
  navHome: "Home",
  navAppointments: "Appointments",
  navMessages: "Messages",
  attention: "Needs your attention",
  nothingNeedsAttention: "Nothing needs your attention right now.",
  attReport: "Your report “{title}” is ready.",
  attProposed: "An appointment is proposed for {when}: please accept or cancel it.",
  attMessage: "New message from your care team: “{text}”",
  results: "Your results",
  noResults: "No results yet. A result appears here once a clinician has checked it.",
  disclaimer:
    "Results are checked by a clinician before you see them. Computer analysis supports the clinician's decision; it is not a diagnosis on its own. If you are worried, talk to your care team.",
  reports: "Your reports",
  noReports: "No reports yet.",
  downloadPdf: "Download the report (PDF)",
  downloading: "Downloading…",
  appointments: "Your appointments",
  noAppointments: "You have no appointments.",
  accept: "Accept",
  cancel: "Cancel appointment",
  cancelConfirm: "Cancel the appointment of {when}?",
  accepted: "Appointment accepted: {when}.",
  cancelled: "Appointment cancelled.",
  booked: "Appointment booked: {when}.",
  bookTitle: "Book an appointment",
  bookIntro: "Free times of your care team. Choose one to book it.",
  noSlots: "There are no free times at the moment. Please try again later or write to your care team.",
  book: "Book {when}",
  reason: "Reason for the visit (optional)",
  status_proposed: "Proposed — waiting for your answer",
  status_booked: "Booked",
  status_cancelled: "Cancelled",
  status_fulfilled: "Took place",
  status_pending: "Waiting for confirmation",
  status_noshow: "Missed",
  messages: "Messages with your care team",
  noMessages: "No messages yet.",
  fromYou: "You",
  fromTeam: "Care team",
  newMessage: "Your message",
  send: "Send",
  sent: "Message sent.",
  resultFinal: "Checked by a clinician",
  resultPreliminary: "Preliminary",
  when: "When",
  value: "Result",
  name: "Test",
  errForbidden: "You are not allowed to do this: {detail}",
  errNotFound: "This was not found (or is not visible to you).",
  errConflict: "This has changed in the meantime: {detail}",
  errOther: "Something went wrong ({status}): {detail}",
  errNetwork: "The server could not be reached. Check your connection and try again.",
  errSession: "Your session has ended. Please sign in again.",
};

const languages = { en };
const lang = languages[(navigator.language || "en").slice(0, 2)] ? (navigator.language || "en").slice(0, 2) : "en";
const table = languages[lang];

export function t(key, vars = {}) {
  const text = table[key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

export const locale = lang;
