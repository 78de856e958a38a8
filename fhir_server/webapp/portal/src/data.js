// What each screen reads, as FHIR searches in the patient's own compartment.
export function loadRecord(api, patient) {
  const P = `Patient/${patient}`;
  return Promise.all([
    api.search("Observation", { patient: P, _sort: "-date", _count: "50" }),
    api.search("DiagnosticReport", { patient: P, _sort: "-issued", _count: "50" }),
    api.search("Appointment", { patient: P, _sort: "date", _count: "50" }),
    api.search("Communication", { subject: P, _sort: "-sent", _count: "50" }),
    api.search("CarePlan", { subject: P, status: "active", _count: "20" }),
  ]).then(([results, reports, appointments, messages, carePlans]) => ({
    results,
    reports,
    appointments,
    messages,
    carePlans,
  }));
}

export function freeSlots(api) {
  return api.search("Slot", {
    status: "free",
    start: `ge${new Date().toISOString().slice(0, 19)}Z`,
    _sort: "start",
    _count: "20",
  });
}

export function pdfOf(report) {
  return (report.presentedForm || []).find(
    (f) => f.contentType === "application/pdf" && (f.url || "").startsWith("Binary/"),
  );
}

export function fromPatient(message, patient) {
  return message.sender?.reference === `Patient/${patient}`;
}

export function messageText(message) {
  return (message.payload || []).map((p) => p.contentString).filter(Boolean).join("\n");
}

const RECENT_MS = 30 * 24 * 3600 * 1000;

/** What needs the patient's attention: recent reports, proposed appointments, recent messages,
 *  active care plans. */
export function attention(record, patient) {
  const now = Date.now();
  const recent = (iso) => iso && now - Date.parse(iso) < RECENT_MS;
  const items = [];
  for (const r of record.reports) {
    if (["final", "amended", "corrected"].includes(r.status) && pdfOf(r) && recent(r.issued)) {
      items.push({ kind: "report", resource: r });
    }
  }
  for (const a of record.appointments) {
    if (a.status === "proposed") items.push({ kind: "proposed", resource: a });
  }
  for (const p of record.carePlans || []) items.push({ kind: "careplan", resource: p });
  for (const m of record.messages) {
    if (!fromPatient(m, patient) && recent(m.sent)) items.push({ kind: "message", resource: m });
  }
  return items;
}
