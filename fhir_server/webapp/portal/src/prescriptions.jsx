// Medicines: the patient's active prescriptions (MedicationRequest) with their dosage text and
// the reminder times Hearth sends for them, read the way workflow/reminders.py reads the timing.
import { concept, when } from "./format.js";
import { useLoad } from "./hooks.js";
import { t } from "./strings.js";

// workflow/reminders.py WHEN_TIMES: the fixed local times of Timing.repeat.when codes.
const WHEN_TIMES = {
  WAKE: "07:00", MORN: "08:00", "MORN.early": "07:00", "MORN.late": "10:00", NOON: "12:00",
  AFT: "15:00", "AFT.early": "14:00", "AFT.late": "16:00", EVE: "18:00", "EVE.early": "17:00",
  "EVE.late": "20:00", NIGHT: "21:00", HS: "22:00", C: "07:30", CM: "07:30", CD: "12:30", CV: "18:30",
};
// Timings Hearth does not read: such a prescription gets no reminder (rather than a wrong one).
const UNSUPPORTED = ["dayOfWeek", "count", "countMax", "offset", "periodMax", "frequencyMax", "durationMax"];
const UNITS = ["min", "h", "d", "wk"];

/** The reminder schedule of one dosage in words, or null when Hearth sends no reminder for it. */
export function schedule(dosage) {
  const repeat = dosage.timing?.repeat;
  if (!repeat || UNSUPPORTED.some((k) => k in repeat)) return null;
  const times = [
    ...(repeat.timeOfDay || []).map((x) => x.slice(0, 5)),
    ...(repeat.when || []).filter((w) => w in WHEN_TIMES).map((w) => WHEN_TIMES[w]),
  ];
  if (times.length) return t("remindDaily", { times: [...new Set(times)].sort().join(", ") });
  if (repeat.frequency && repeat.period && UNITS.includes(repeat.periodUnit)) {
    return t("remindEvery", {
      n: repeat.frequency,
      period: repeat.period,
      unit: t(`unit_${repeat.periodUnit}`),
    });
  }
  return null;
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
  const list = useLoad(
    () => api.search("MedicationRequest", { patient: `Patient/${patient}`, status: "active", _count: "50" }),
    [api, patient],
  );
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
          {list.data.map((mr) => {
            const dosages = mr.dosageInstruction || [];
            const reminders = dosages.map(schedule).filter(Boolean);
            const end = until(mr);
            return (
              <li class="card prescription" key={mr.id} data-prescription={mr.id}>
                <h2>{concept(mr.medicationCodeableConcept) || mr.medicationReference?.display || t("yourMedicine")}</h2>
                {dosages.filter((d) => d.text).map((d) => <p class="value">{d.text}</p>)}
                <p class="reminders">
                  {reminders.length ? reminders.join("; ") : t("noReminders")}
                </p>
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
