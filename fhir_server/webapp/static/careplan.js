// Refer and book from the case view (doctors), and a treatment plan's appointment activity.
// One way of referring ($refer makes the same ServiceRequest as a plan's referral activity) and
// one of booking ($book, which a plan's appointment activity also books through), not copies.
import { h, humanName, time, textOf } from "./dom.js";
import { entries } from "./fhir.js";

const ref = (reference) => (reference && reference.reference) || "";
const nowInstant = () => `${new Date().toISOString().slice(0, 19)}Z`;

// The practitioners who have an active Schedule (those one can book), by name.
export async function bookableDoctors(fhir) {
  const bundle = await fhir.search("Schedule", [["active", "true"], ["_include", "Schedule:actor"], ["_count", "50"]]);
  const people = new Map(entries(bundle, "include").filter((r) => r.resourceType === "Practitioner").map((p) => [`Practitioner/${p.id}`, p]));
  const schedules = new Map();
  for (const s of entries(bundle)) {
    for (const a of s.actor || []) {
      if (!people.has(ref(a))) continue;
      schedules.set(ref(a), [...(schedules.get(ref(a)) || []), `Schedule/${s.id}`]);
    }
  }
  return [...schedules.entries()].map(([reference, sched]) => ({ reference, name: humanName(people.get(reference)), schedules: sched }));
}

function doctorSelect(id, label, doctors, required = false) {
  return h("div", { class: "field" }, h("label", { for: id }, label),
    h("select", { id, name: id, required },
      h("option", { value: "" }, required ? "Choose a doctor" : "—"),
      doctors.map((d) => h("option", { value: d.reference }, d.name))));
}

// The plan form's fieldset: a follow-up visit with a doctor in N weeks (their first free Slot).
export function appointmentFieldset(doctors) {
  return h("fieldset", {}, h("legend", {}, "Follow-up visit"),
    doctors.length ? doctorSelect("plan-visit-doctor", "With (empty: none)", doctors) : h("p", { class: "muted" }, "No doctor has a schedule to book."),
    h("div", { class: "field" }, h("label", { for: "plan-visit-weeks" }, "In how many weeks (the first free time from then)"),
      h("input", { id: "plan-visit-weeks", name: "plan-visit-weeks", type: "number", min: "0", max: "520" })));
}

// The plan's appointment activity parts from the form (null when no visit was asked for).
export function appointmentActivity(form) {
  const doctor = form.elements["plan-visit-doctor"];
  if (!doctor || !doctor.value) return null;
  const weeks = Math.max(0, Math.round(Number(form.elements["plan-visit-weeks"].value || 0)));
  return ["activity", { part: [
    { name: "kind", valueCode: "appointment" },
    { name: "description", valueString: weeks ? `Follow-up visit in ${weeks} week(s)` : "Follow-up visit" },
    { name: "dueInDays", valueInteger: weeks * 7 },
    { name: "practitioner", valueReference: { reference: doctor.value } },
  ] }];
}

function referForm(caseId, doctors, act) {
  const form = h("form", { "aria-labelledby": "refer-heading", class: "refer" }, h("h3", { id: "refer-heading" }, "Refer"),
    h("div", { class: "field" }, h("label", { for: "refer-what" }, "Referral (required: what and where)"), h("input", { id: "refer-what", name: "refer-what", type: "text", required: true })),
    doctors.length ? doctorSelect("refer-to", "Refer to", doctors) : null,
    h("div", { class: "field" }, h("label", { for: "refer-days" }, "Refer within how many days"), h("input", { id: "refer-days", name: "refer-days", type: "number", min: "0", max: "3660" })),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Refer")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = (name) => (form.elements[name] ? form.elements[name].value.trim() : "");
    const parts = [["description", { valueString: value("refer-what") }]];
    if (value("refer-to")) parts.push(["performer", { valueReference: { reference: value("refer-to") } }]);
    if (value("refer-days")) parts.push(["dueInDays", { valueInteger: Math.round(Number(value("refer-days"))) }]);
    act(`Task/${caseId}/$refer`, parts, "Referral made: it is on the patient's record, for the finding of this case.");
  });
  return form;
}

function bookForm(fhir, patient, order, doctors, act) {
  const slotList = h("div", { id: "book-slots", "aria-live": "polite" });
  const select = doctorSelect("book-doctor", "Book with", doctors, true);
  const form = h("form", { "aria-labelledby": "book-heading", class: "book" }, h("h3", { id: "book-heading" }, "Book an appointment"),
    select,
    h("div", { class: "field" }, h("label", { for: "book-reason" }, "Reason for the appointment"), h("input", { id: "book-reason", name: "book-reason", type: "text" })),
    slotList,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Book")));
  select.querySelector("select").addEventListener("change", async (event) => {
    const doctor = doctors.find((d) => d.reference === event.target.value);
    slotList.replaceChildren();
    if (!doctor) return;
    slotList.append(h("p", { class: "muted" }, "Looking for free times…"));
    const bundle = await fhir.search("Slot", { schedule: doctor.schedules.join(","), status: "free", start: `ge${nowInstant()}`, _sort: "start", _count: "10" }).catch(() => null);
    const slots = bundle ? entries(bundle) : [];
    slotList.replaceChildren(slots.length
      ? h("fieldset", {}, h("legend", {}, `Free times of ${doctor.name}`),
        slots.map((s, n) => h("label", { class: "slot" }, h("input", { type: "radio", name: "book-slot", value: `Slot/${s.id}`, required: true, checked: n === 0 }), " ", time(s.start))))
      : h("p", {}, `${doctor.name} has no free time.`));
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const slot = form.querySelector("input[name=book-slot]:checked");
    if (!slot) return;
    const reason = form.elements["book-reason"].value.trim();
    const parts = [
      ["slot", { valueReference: { reference: slot.value } }],
      ["patient", { valueReference: { reference: patient } }],
      ["basedOn", { valueReference: { reference: order } }],
    ];
    if (reason) parts.push(["reason", { valueString: reason }]);
    act("Appointment/$book", parts, "Booked: the appointment is on the patient's record.");
  });
  return form;
}

function statusWords(status) {
  return { active: "open", booked: "booked", fulfilled: "done", completed: "done", cancelled: "cancelled", proposed: "proposed" }[status] || status;
}

// The case's referrals and appointments (those based on its order), and for a doctor the Refer
// and Book forms.
export async function referBookPanel(fhir, session, caseTask, names, act) {
  const order = ref((caseTask.basedOn || [])[0]);
  if (!order) return null;
  const [referrals, appointments, doctors] = await Promise.all([
    fhir.search("ServiceRequest", { "based-on": order, _count: "50" }).then((b) => entries(b)).catch(() => []),
    fhir.search("Appointment", { "based-on": order, _count: "50" }).then((b) => entries(b)).catch(() => []),
    session.role === "doctor" ? bookableDoctors(fhir).catch(() => []) : [],
  ]);
  await names.load([
    ...referrals.flatMap((r) => (r.performer || []).map(ref)),
    ...appointments.flatMap((a) => (a.participant || []).map((p) => ref(p.actor))),
  ]);
  const doctor = session.role === "doctor";
  if (!referrals.length && !appointments.length && !doctor) return null;
  const rows = [
    ...referrals.map((r) => h("li", { "data-referral": r.id }, h("strong", {}, "Referral: "), textOf(r.code),
      (r.performer || []).length ? ` · to ${(r.performer || []).map((p) => names.of(p)).join(", ")}` : "",
      r.occurrencePeriod && r.occurrencePeriod.end ? [" · by ", time(r.occurrencePeriod.end)] : "", ` · ${statusWords(r.status)}`)),
    ...appointments.map((a) => h("li", { "data-appointment": a.id }, h("strong", {}, "Appointment: "), time(a.start),
      ` · with ${(a.participant || []).filter((p) => !ref(p.actor).startsWith("Patient/")).map((p) => names.of(p.actor)).join(", ") || "—"}`,
      a.description ? ` · ${a.description}` : "", ` · ${statusWords(a.status)}`)),
  ];
  const caseId = caseTask.id;
  return h("section", { class: "panel", "aria-labelledby": "refer-book-heading" }, h("h2", { id: "refer-book-heading" }, "Referrals and appointments"),
    rows.length ? h("ul", { class: "refer-book" }, rows) : h("p", { class: "muted" }, "No referral or appointment for this case yet."),
    doctor ? referForm(caseId, doctors, act) : null,
    doctor && doctors.length ? bookForm(fhir, ref(caseTask.for), order, doctors, act) : null);
}
