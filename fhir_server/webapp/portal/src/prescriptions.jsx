// Medicines: the patient's active prescriptions (MedicationRequest) with their dosage text, the
// reminder times Hearth sends for them and the next reminder. Both come from the server
// (`GET MedicationRequest/{id}/$next-reminder`), which computes them with the rule the worker
// reminds by (workflow/reminders.py): the portal keeps no copy of that rule.
import { format, parseISO, isValid } from "date-fns";
import { concept, when } from "./format.js";
import { useLoad } from "./hooks.js";
import { t } from "./strings.js";

const UNITS = ["min", "h", "d", "wk"];

/** The $next-reminder answer as { reminded, timezone, times: ["08:00"], next }. */
function reminderOf(params) {
  const out = { reminded: false, timezone: "", times: [], next: null };
  for (const p of params?.parameter || []) {
    if (p.name === "reminded") out.reminded = p.valueBoolean === true;
    if (p.name === "timezone") out.timezone = p.valueCode;
    if (p.name === "time") out.times.push(p.valueTime.slice(0, 5));
    if (p.name === "next") out.next = p.valueDateTime;
  }
  return out;
}

/** The schedule in words: the times of day Hearth gave, else each dosage's frequency. */
function schedule(mr, reminder) {
  if (!reminder.reminded) return t("noReminders");
  if (reminder.times.length) return t("remindDaily", { times: reminder.times.join(", ") });
  return (mr.dosageInstruction || [])
    .map((d) => d.timing?.repeat)
    .filter((r) => r?.frequency && r.period && UNITS.includes(r.periodUnit))
    .map((r) => t("remindEvery", { n: r.frequency, period: r.period, unit: t(`unit_${r.periodUnit}`) }))
    .join("; ");
}

/** The next reminder as the patient's own wall-clock time (the server writes it in their zone). */
function nextText(iso) {
  const d = parseISO(iso.slice(0, 19));
  return isValid(d) ? format(d, "EEEE d MMMM yyyy 'at' HH:mm") : iso;
}

function until(mr) {
  const ends = (mr.dosageInstruction || [])
    .map((d) => d.timing?.repeat?.boundsPeriod?.end)
    .concat(mr.dispenseRequest?.validityPeriod?.end)
    .filter(Boolean)
    .sort();
  return ends[0] || null;
}

export function PrescriptionsScreen({ api, patient }) {
  const list = useLoad(async () => {
    const found = await api.search("MedicationRequest", { patient: `Patient/${patient}`, status: "active", _count: "50" });
    const reminders = await Promise.all(found.map((mr) => api.call(`MedicationRequest/${mr.id}/$next-reminder`)));
    return found.map((mr, i) => [mr, reminderOf(reminders[i])]);
  }, [api, patient]);
  if (list.error) return <div class="alert" role="alert">{list.error.message}</div>;
  if (!list.data) return <p>{t("loading")}</p>;
  return (
    <>
      <h1>{t("prescriptions")}</h1>
      <p>{t("prescriptionsIntro")}</p>
      {list.data.length === 0 ? (
        <p>{t("noPrescriptions")}</p>
      ) : (
        <ul class="cards">
          {list.data.map(([mr, reminder]) => {
            const dosages = mr.dosageInstruction || [];
            const end = until(mr);
            return (
              <li class="card prescription" key={mr.id} data-prescription={mr.id}>
                <h2>{concept(mr.medicationCodeableConcept) || mr.medicationReference?.display || t("yourMedicine")}</h2>
                {dosages.filter((d) => d.text).map((d) => <p class="value">{d.text}</p>)}
                <p class="reminders">{schedule(mr, reminder)}</p>
                {reminder.next && (
                  <p class="next-reminder">
                    <strong>{t("nextReminder")}</strong>{" "}
                    <time datetime={reminder.next}>{nextText(reminder.next)}</time>
                    {reminder.timezone && <span class="meta"> ({t("reminderZone", { zone: reminder.timezone })})</span>}
                  </p>
                )}
                {end && <p class="meta">{t("prescribedUntil", { when: when(end) })}</p>}
                {mr.authoredOn && <p class="meta">{t("prescribedOn", { when: when(mr.authoredOn) })}</p>}
              </li>
            );
          })}
        </ul>
      )}
    </>
  );
}
