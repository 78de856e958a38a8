// My care plan: the treatment plans (CarePlan) the patient's doctor made, each activity in plain
// words with its status and date. An activity's status is that of the resource carrying it out
// (R4 CarePlan.activity.reference): the follow-up photo Task, the referral ServiceRequest, the
// MedicationRequest, the Appointment — read in one search with _include.
import { concept, when } from "./format.js";
import { useLoad } from "./hooks.js";
import { t } from "./strings.js";

/** The patient's plans (newest first) and the activities' resources by reference. */
export async function loadPlans(api, patient) {
  const q = new URLSearchParams([
    ["subject", `Patient/${patient}`],
    ["_include", "CarePlan:activity-reference"],
    ["_sort", "-date"],
    ["_count", "20"],
  ]);
  const bundle = await api.call(`CarePlan?${q}`);
  const entries = bundle.entry || [];
  const plans = entries.filter((e) => e.search?.mode !== "include").map((e) => e.resource);
  const byRef = new Map(
    entries.filter((e) => e.search?.mode === "include").map((e) => [`${e.resource.resourceType}/${e.resource.id}`, e.resource]),
  );
  return { plans, byRef };
}

const DONE = ["completed", "fulfilled"];
const ENDED = ["cancelled", "stopped", "revoked", "entered-in-error", "noshow", "failed", "rejected"];

/** One activity in words: { what, detail, date, status, state } (state: todo | done | ended). */
export function describe(r) {
  const state = DONE.includes(r.status) ? "done" : ENDED.includes(r.status) ? "ended" : "todo";
  const words = () => {
    const key = `plan_${r.resourceType}_${r.status}`;
    return t(key) === key ? r.status : t(key);
  };
  switch (r.resourceType) {
    case "Task":
      return { what: t("planPhoto"), detail: r.description, date: r.restriction?.period?.start, dateKey: "planBy", status: words(), state };
    case "ServiceRequest":
      return { what: t("planReferral", { what: concept(r.code) }), detail: null, date: r.occurrencePeriod?.end, dateKey: "planBy", status: words(), state };
    case "MedicationRequest":
      return {
        what: t("planMedicine", { what: concept(r.medicationCodeableConcept) || t("yourMedicine") }),
        detail: (r.dosageInstruction || []).map((d) => d.text).filter(Boolean).join("; "),
        date: r.authoredOn, dateKey: "planSince", status: words(), state,
      };
    case "Appointment":
      return { what: t("planVisit"), detail: r.description, date: r.start, dateKey: "planOn", status: t(`status_${r.status}`), state };
    default:
      return { what: r.resourceType, detail: null, date: null, status: r.status, state };
  }
}

function Activity({ resource }) {
  const d = describe(resource);
  return (
    <li class={`activity activity-${d.state}`} data-activity={resource.resourceType}>
      <h3>{d.what}</h3>
      {d.detail && <p>{d.detail}</p>}
      <p class="meta">
        <strong>{d.status}</strong>
        {d.date && ` · ${t(d.dateKey, { when: when(d.dateKey === "planOn" ? d.date : d.date.slice(0, 10)) })}`}
      </p>
    </li>
  );
}

export function CarePlanScreen({ api, patient }) {
  const load = useLoad(() => loadPlans(api, patient), [api, patient]);
  if (load.error) return <div class="alert" role="alert">{load.error.message}</div>;
  if (!load.data) return <p>{t("loading")}</p>;
  const { plans, byRef } = load.data;
  return (
    <>
      <h1>{t("carePlan")}</h1>
      <p>{t("carePlanIntro")}</p>
      {plans.length === 0 ? (
        <p>{t("noCarePlan")}</p>
      ) : (
        plans.map((plan) => {
          const activities = (plan.activity || []).map((a) => byRef.get(a.reference?.reference)).filter(Boolean);
          const done = activities.filter((r) => describe(r).state !== "todo").length;
          return (
            <section class="card careplan" key={plan.id} data-careplan={plan.id} aria-labelledby={`plan-${plan.id}`}>
              <h2 id={`plan-${plan.id}`}>{plan.title || t("carePlan")}</h2>
              <p class="meta">
                {t(plan.status === "completed" ? "planAllDone" : "planProgress", { done, total: activities.length })}
                {plan.created && ` · ${t("planMade", { when: when(plan.created) })}`}
              </p>
              <ul class="activities">{activities.map((r) => <Activity resource={r} key={r.id} />)}</ul>
            </section>
          );
        })
      )}
    </>
  );
}
