// Lung check: the PLCOm2012 intake questionnaire as a form. Sending it starts a lung-risk case
// ($start-case), then claims and completes its intake step with the QuestionnaireResponse. The
// case's status follows; the six-year risk shows only once a clinician has verified it (Hearth
// hides the AI's preliminary RiskAssessment and the case from a patient token until then).
import { useState } from "preact/hooks";
import { when } from "./format.js";
import { useLoad } from "./hooks.js";
import { businessCode as business, CASE_SYSTEM, caseStatusForPatient } from "./media.js";
import { t } from "./strings.js";

function personName(p) {
  const n = (p?.name || [])[0];
  return n ? n.text || [...(n.given || []), n.family].filter(Boolean).join(" ") : "";
}

const STEP_SYSTEM = "http://hearth.local/fhir/CodeSystem/workflow-step";
const QUESTIONNAIRE = "http://hearth.local/fhir/Questionnaire/plcom2012";
const ANSWERS = "http://hearth.local/fhir/CodeSystem/plcom2012-answers";
const THRESHOLD = 0.0151; // inference/plco.py THRESHOLD: screening advised at or above
const EDUCATION = ["1", "2", "3", "4", "5", "6"];
const RACES = [
  "white",
  "black",
  "hispanic",
  "asian",
  "american-indian-alaska-native",
  "native-hawaiian-pacific-islander",
];
const YES_NO = ["copd", "personal-cancer-history", "family-history-lung-cancer"];
const FINAL = ["final", "amended", "corrected"];

function ageOf(birthDate) {
  if (!birthDate || birthDate.length < 10) return null;
  const [y, m, d] = birthDate.split("-").map(Number);
  const now = new Date();
  return now.getFullYear() - y - (now.getMonth() + 1 < m || (now.getMonth() + 1 === m && now.getDate() < d) ? 1 : 0);
}

/** Problems with the answers, by field id in the form's order (empty: they can be sent). */
export function check(form, age) {
  const errors = {};
  const num = (k) => (form[k] === "" || form[k] == null ? NaN : Number(form[k]));
  if (!form["smoking-status"]) errors["smoking-status"] = t("lungErrChoose");
  else if (form["smoking-status"] === "never") errors["smoking-status"] = t("lungErrNever");
  const smoked = form["smoking-status"] && form["smoking-status"] !== "never";
  if (smoked) {
    const cigs = num("cigarettes-per-day");
    if (!Number.isFinite(cigs)) errors["cigarettes-per-day"] = t("lungErrNumber");
    else if (cigs <= 0 || cigs > 200) errors["cigarettes-per-day"] = t("lungErrCigs");
    const years = num("smoking-duration-years");
    if (!Number.isFinite(years)) errors["smoking-duration-years"] = t("lungErrNumber");
    else if (years <= 0 || (age != null && years > age)) {
      errors["smoking-duration-years"] = t("lungErrYears", { age: age ?? "" });
    }
    if (form["smoking-status"] === "former") {
      const quit = num("years-since-quitting");
      if (!Number.isFinite(quit)) errors["years-since-quitting"] = t("lungErrNumber");
      else if (quit < 0 || (age != null && Number.isFinite(years) && years + quit > age)) {
        errors["years-since-quitting"] = t("lungErrQuit");
      }
    }
  }
  const bmi = num("bmi");
  if (!Number.isFinite(bmi)) errors.bmi = t("lungErrNumber");
  else if (bmi < 12 || bmi > 70) errors.bmi = t("lungErrBmi");
  for (const k of YES_NO) if (!form[k]) errors[k] = t("lungErrYesNo");
  if (!form.education) errors.education = t("lungErrChoose");
  if (!form.race) errors.race = t("lungErrChoose");
  return errors;
}

/** The answers as a QuestionnaireResponse to Hearth's PLCOm2012 intake Questionnaire. */
export function response(form, patientRef) {
  const coding = (code, display) => ({ valueCoding: { system: ANSWERS, code, display } });
  const item = (linkId, answer) => ({ linkId, answer: [answer] });
  const items = [
    item("education", coding(form.education, t(`lungEdu${form.education}`))),
    item("bmi", { valueDecimal: Number(form.bmi) }),
    ...YES_NO.map((k) => item(k, { valueBoolean: form[k] === "yes" })),
    item("smoking-status", coding(form["smoking-status"], t(`lungSmoke_${form["smoking-status"]}`))),
    item("cigarettes-per-day", { valueDecimal: Number(form["cigarettes-per-day"]) }),
    item("smoking-duration-years", { valueDecimal: Number(form["smoking-duration-years"]) }),
  ];
  if (form["smoking-status"] === "former") {
    items.push(item("years-since-quitting", { valueDecimal: Number(form["years-since-quitting"]) }));
  }
  items.push(item("race", coding(form.race, t(`lungRace_${form.race}`))));
  return {
    resourceType: "QuestionnaireResponse",
    questionnaire: QUESTIONNAIRE,
    status: "completed",
    subject: { reference: patientRef },
    authored: new Date().toISOString(),
    item: items,
  };
}

async function send(api, patientRef, qr, cases) {
  // Resume a case still waiting for its answers, else start one.
  let open = cases.find((c) => c.status !== "completed" && c.status !== "cancelled" && business(c) === "PENDING_INTAKE");
  if (!open) {
    open = await api.op("Task/$start-case", [
      { name: "caseType", valueCode: "lung-risk" },
      { name: "patient", valueReference: { reference: patientRef } },
    ]);
  }
  const [intake] = await api.search("Task", { "part-of": `Task/${open.id}`, code: `${STEP_SYSTEM}|intake` });
  if (!intake) throw new Error(t("lungErrNoStep"));
  if (intake.status === "requested") await api.op(`Task/${intake.id}/$claim`);
  await api.op(`Task/${intake.id}/$complete`, [{ name: "output", resource: qr }]);
}

const isPlco = (r) =>
  (r.method?.coding || []).some((c) => c.code === "plcom2012") || /PLCOm2012/.test(r.method?.text || "");

function Field({ id, label, hint, error, children }) {
  return (
    <div class={`field${error ? " invalid" : ""}`}>
      <label for={id}>{label}</label>
      {hint && <p class="meta" id={`${id}-hint`}>{hint}</p>}
      {children}
      {error && <p class="field-error" id={`${id}-error`}>{error}</p>}
    </div>
  );
}

function described(id, hint, error) {
  return [hint && `${id}-hint`, error && `${id}-error`].filter(Boolean).join(" ") || undefined;
}

function Choice({ id, label, options, form, errors, set, hint }) {
  return (
    <Field id={`lung-${id}`} label={label} hint={hint} error={errors[id]}>
      <select
        id={`lung-${id}`}
        value={form[id] || ""}
        aria-invalid={errors[id] ? "true" : undefined}
        aria-describedby={described(`lung-${id}`, hint, errors[id])}
        onChange={(e) => set(id, e.currentTarget.value)}
      >
        <option value="">{t("lungPick")}</option>
        {options.map(([value, text]) => <option value={value}>{text}</option>)}
      </select>
    </Field>
  );
}

function NumberField({ id, label, hint, form, errors, set }) {
  return (
    <Field id={`lung-${id}`} label={label} hint={hint} error={errors[id]}>
      <input
        id={`lung-${id}`}
        type="text"
        inputMode="decimal"
        value={form[id] || ""}
        aria-invalid={errors[id] ? "true" : undefined}
        aria-describedby={described(`lung-${id}`, hint, errors[id])}
        onInput={(e) => set(id, e.currentTarget.value.replace(",", "."))}
      />
    </Field>
  );
}

function YesNo({ id, form, errors, set }) {
  return (
    <fieldset class={`yesno${errors[id] ? " invalid" : ""}`} aria-describedby={errors[id] ? `lung-${id}-error` : undefined}>
      <legend>{t(`lungQ_${id}`)}</legend>
      {["yes", "no"].map((v) => (
        <label class="check">
          <input type="radio" name={`lung-${id}`} value={v} checked={form[id] === v} onChange={() => set(id, v)} />
          {t(v === "yes" ? "lungYes" : "lungNo")}
        </label>
      ))}
      {errors[id] && <p class="field-error" id={`lung-${id}-error`}>{errors[id]}</p>}
    </fieldset>
  );
}

function LungForm({ api, patientRef, age, cases, say, onSent, staff }) {
  const [form, setForm] = useState({});
  const [errors, setErrors] = useState({});
  const [busy, setBusy] = useState(false);
  const set = (k, v) => {
    setForm((f) => ({ ...f, [k]: v }));
    setErrors((e) => ({ ...e, [k]: undefined }));
  };
  const submit = async (ev) => {
    ev.preventDefault();
    say.clear();
    const found = check(form, age);
    setErrors(found);
    if (Object.keys(found).length) {
      say.error(t("lungErrSummary", { n: Object.keys(found).length }));
      const first = ev.currentTarget.querySelector(`[id="lung-${Object.keys(found)[0]}"], [name="lung-${Object.keys(found)[0]}"]`);
      first?.focus();
      return;
    }
    setBusy(true);
    try {
      await send(api, patientRef, response(form, patientRef), cases);
      say.ok(t(staff ? "lungSentCadre" : "lungSent"));
      setForm({});
      onSent();
    } catch (e) {
      say.error(e);
    } finally {
      setBusy(false);
    }
  };
  const smoked = form["smoking-status"] && form["smoking-status"] !== "never";
  const common = { form, errors, set };
  return (
    <form class="lung-form" onSubmit={submit} noValidate>
      <h2>{t("lungFormTitle")}</h2>
      <p>{t("lungFormIntro")}</p>
      <Choice id="smoking-status" label={t("lungQ_smoking-status")} {...common}
        options={["current", "former", "never"].map((c) => [c, t(`lungSmoke_${c}`)])} />
      {smoked && (
        <>
          <NumberField id="cigarettes-per-day" label={t("lungQ_cigarettes-per-day")} hint={t("lungH_cigarettes-per-day")} {...common} />
          <NumberField id="smoking-duration-years" label={t("lungQ_smoking-duration-years")} hint={t("lungH_smoking-duration-years")} {...common} />
          {form["smoking-status"] === "former" && (
            <NumberField id="years-since-quitting" label={t("lungQ_years-since-quitting")} {...common} />
          )}
        </>
      )}
      <NumberField id="bmi" label={t("lungQ_bmi")} hint={t("lungH_bmi")} {...common} />
      {YES_NO.map((k) => <YesNo id={k} {...common} />)}
      <Choice id="education" label={t("lungQ_education")} {...common}
        options={EDUCATION.map((c) => [c, t(`lungEdu${c}`)])} />
      <Choice id="race" label={t("lungQ_race")} hint={t("lungH_race")} {...common}
        options={RACES.map((c) => [c, t(`lungRace_${c}`)])} />
      <p><button class="primary" type="submit" disabled={busy}>{busy ? t("lungSending") : t("lungSend")}</button></p>
    </form>
  );
}

function Result({ risk }) {
  const p = risk.prediction?.[0]?.probabilityDecimal;
  const pct = (p * 100).toFixed(1);
  const high = p >= THRESHOLD;
  return (
    <article class="card lung-result" aria-labelledby="lung-result-h">
      <h3 id="lung-result-h">{t("lungResultTitle")}</h3>
      <p class="value">{t("lungRisk", { pct, n: Math.round(p * 1000) })}</p>
      <p>{high ? t("lungHigh") : t("lungLow")}</p>
      <p class="meta">{t("lungChecked", { when: when(risk.meta?.lastUpdated) })}</p>
      <p class="disclaimer">{t("disclaimer")}</p>
    </article>
  );
}

// `staff`: a community health worker fills it in for the patient (cadre.jsx, #/patient/{id}/lung):
// the heading names the patient and the case's state is in the care team's words.
export function LungRiskScreen({ api, patient, say, staff = false }) {
  const P = `Patient/${patient}`;
  const [version, setVersion] = useState(0);
  const data = useLoad(
    () =>
      Promise.all([
        api.call(`Patient/${patient}`),
        api.search("Task", { patient: P, code: `${CASE_SYSTEM}|lung-risk`, _count: "20" }),
        api.search("QuestionnaireResponse", { subject: P, _count: "50" }),
        api.search("RiskAssessment", { subject: P, _count: "50" }),
      ]),
    [api, P, version],
  );
  if (data.error) return <div class="alert" role="alert">{data.error.message}</div>;
  if (!data.data) return <p>{t("loading")}</p>;
  const [me, cases, responses, risks] = data.data;
  const age = ageOf(me.birthDate);
  const newest = (xs, at) => [...xs].sort((a, b) => String(at(b)).localeCompare(String(at(a))))[0];
  const answered = newest(
    responses.filter((r) => r.status === "completed" && (r.questionnaire || "").split("|")[0] === QUESTIONNAIRE),
    (r) => r.authored || r.meta?.lastUpdated,
  );
  const verified = newest(
    risks.filter((r) => FINAL.includes(r.status) && isPlco(r) && r.prediction?.[0]?.probabilityDecimal != null),
    (r) => r.meta?.lastUpdated,
  );
  const latestCase = newest(cases, (c) => c.authoredOn || c.meta?.lastUpdated);
  let status = null;
  let underway = false; // answers sent, the result not verified yet: no second questionnaire
  if (latestCase && !["completed", "cancelled"].includes(latestCase.status)) {
    const code = business(latestCase);
    underway = code !== "PENDING_INTAKE";
    status = staff
      ? t(`staff_${code}`)
      : code === "PENDING_INTAKE" ? t("lungWaiting") : caseStatusForPatient(code);
  } else if (answered && (!verified || Date.parse(answered.authored) > Date.parse(verified.meta?.lastUpdated))) {
    // The answers are in but no case shows: the AI result awaits a clinician, who sees it first.
    underway = true;
    status = t("caseReviewing");
  } else if (latestCase) {
    status = t(`${staff ? "staff" : "case"}_${business(latestCase)}`);
  }
  const canAnswer = age != null && !underway;
  return (
    <>
      <h1>{staff ? t("lungTitleOf", { name: personName(me) }) : t("lungTitle")}</h1>
      {staff && <p><a href={`#/patient/${patient}`}>{t("backToPatient")}</a></p>}
      <p>{staff ? t("lungIntroCadre") : t("lungIntro")}</p>
      <section aria-labelledby="lung-status-h" class="lung-status">
        <h2 id="lung-status-h">{t(staff ? "lungStatusTitleCadre" : "lungStatusTitle")}</h2>
        {status ? (
          <p class="case-status">{status}{answered ? ` · ${t("lungAnswered", { when: when(answered.authored) })}` : ""}</p>
        ) : (
          <p>{t(staff ? "lungNoneCadre" : "lungNone")}</p>
        )}
        {verified ? <Result risk={verified} /> : answered && <p class="meta">{t(staff ? "lungResultLaterCadre" : "lungResultLater")}</p>}
      </section>
      {age == null ? (
        <p class="alert" role="alert">{t("lungNoBirthDate")}</p>
      ) : canAnswer ? (
        <LungForm api={api} patientRef={P} age={age} cases={cases} say={say} staff={staff} onSent={() => setVersion((v) => v + 1)} />
      ) : null}
    </>
  );
}
