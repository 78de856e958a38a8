// One step of a case: the patient, the focus image, the AI result (probabilities, the
// "uncertain" flag, the heatmap), the case's steps, and Claim / Release / Complete.
import { h, humanName, when, codeOf, textOf } from "./dom.js";
import { blobUrl, entries } from "./fhir.js";

const IO = "http://hearth.local/fhir/CodeSystem/task-io";
const STEP = "http://hearth.local/fhir/CodeSystem/workflow-step";
const ROLE = "http://hearth.local/fhir/CodeSystem/care-role";
const REVIEW = "http://hearth.local/fhir/CodeSystem/ai-review";

function io(task, element, label) {
  return (task[element] || [])
    .filter((e) => codeOf(e.type, IO) === label)
    .map((e) => e.valueReference || e.valueBoolean || e.valueString)
    .filter((v) => v !== undefined);
}

function ref(reference) {
  return (reference && reference.reference) || "";
}

async function image(fhir, loader, alt, caption) {
  try {
    const src = await loader();
    return h("figure", {}, h("img", { src, alt }), h("figcaption", {}, caption));
  } catch (err) {
    return h("p", { class: "muted" }, `${caption}: the image could not be shown (${err.message})`);
  }
}

async function focusPanel(fhir, focusRef) {
  if (focusRef.startsWith("Media/")) {
    const media = await fhir.read(focusRef);
    const content = media.content || {};
    const title = content.title || "Photo";
    if (content.data) return image(fhir, async () => blobUrl(content.data, content.contentType), title, title);
    if ((content.url || "").startsWith("Binary/")) return image(fhir, () => fhir.imageUrl(content.url, content.contentType), title, title);
    return h("p", {}, `${title} (no image data)`);
  }
  if (focusRef.startsWith("ImagingStudy/")) {
    const study = await fhir.read(focusRef);
    const uid = ((study.identifier || []).find((i) => i.system === "urn:dicom:uid") || {}).value || "";
    const series = (study.series || [])[0];
    const instance = series && (series.instance || [])[0];
    const label = `${study.description || "Imaging study"} (${(study.modality || []).map((m) => m.code).join(", ")}; ${study.numberOfInstances || 0} ${study.numberOfInstances === 1 ? "image" : "images"})`;
    if (!uid || !instance) return h("p", {}, label);
    const path = `../dicomweb/studies/${uid.replace("urn:oid:", "")}/series/${series.uid}/instances/${instance.uid}/rendered`;
    return image(fhir, () => fhir.imageUrl(path, "image/png"), label, label);
  }
  return h("p", {}, `Focus: ${focusRef}`);
}

// The screening score (e.g. the probability of malignancy, with its threshold as the
// reference range) is shown as the referral decision, not as one more class.
const isScreening = (c) => (c.referenceRange || []).length > 0;

function screeningLine(result) {
  const score = (result.component || []).find(isScreening);
  if (!score) return null;
  const positive = codeOf((score.interpretation || [])[0]) === "POS";
  return h("p", { class: positive ? "flag" : "" }, h("strong", {}, "Screening: "),
    textOf((score.interpretation || [])[0]), " — ", (score.referenceRange[0] || {}).text || "");
}

function probabilityTable(result) {
  const rows = (result.component || [])
    .filter((c) => !isScreening(c))
    .filter((c) => c.valueQuantity && typeof c.valueQuantity.value === "number")
    .sort((a, b) => b.valueQuantity.value - a.valueQuantity.value)
    .map((c) => h("tr", {}, h("th", { scope: "row" }, textOf(c.code)), h("td", {}, `${(c.valueQuantity.value * 100).toFixed(1)} %`)));
  if (!rows.length) return null;
  return h("table", { class: "probabilities" }, h("caption", {}, "Probabilities"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Finding"), h("th", { scope: "col" }, "Probability"))),
    h("tbody", {}, rows));
}

function resultPanel(result, uncertain) {
  if (result.resourceType === "RiskAssessment") {
    const p = (result.prediction || [])[0] || {};
    return h("div", {}, h("p", {}, h("strong", {}, "Risk: "), p.probabilityDecimal !== undefined ? `${(p.probabilityDecimal * 100).toFixed(2)} %` : "—", " ", textOf(p.qualitativeRisk)),
      h("p", { class: "muted" }, (result.note || []).map((n) => n.text).join(" ")));
  }
  const flagged = uncertain || codeOf((result.interpretation || [])[0]) === "IND";
  return h(
    "div",
    { class: "ai-result" },
    flagged ? h("p", { class: "flag" }, "Uncertain — physician review required") : null,
    h("p", {}, h("strong", {}, "AI finding: "), textOf(result.valueCodeableConcept) || result.valueString || "—",
      result.interpretation ? ` (${textOf(result.interpretation[0])})` : ""),
    screeningLine(result),
    probabilityTable(result),
    h("p", { class: "muted" }, `${(result.method && result.method.text) || ""} ${(result.note || []).map((n) => n.text).join(" ")}`),
  );
}

async function aiPanel(fhir, caseTask, related) {
  const results = io(caseTask, "input", "ai-result").map(ref);
  if (!results.length) return h("section", {}, h("h2", {}, "AI analysis"), h("p", { class: "muted" }, "No AI result yet."));
  const uncertain = io(caseTask, "input", "uncertain").includes(true);
  const highRisk = io(caseTask, "input", "high-risk").includes(true);
  const shown = await Promise.all(results.map((r) => fhir.read(r)));
  // The analysis Tasks (partOf the case, no step code) name their explanation heatmaps.
  const heatmaps = related
    .filter((t) => !codeOf(t.code, STEP))
    .flatMap((t) => (t.output || []).map((o) => ref(o.valueReference)))
    .filter((r) => r.startsWith("Media/"));
  const figures = await Promise.all(heatmaps.map(async (r) => {
    const media = await fhir.read(r);
    const content = media.content || {};
    return image(fhir, () => (content.data ? blobUrl(content.data, content.contentType) : fhir.imageUrl(content.url, content.contentType)),
      "AI explanation heatmap over the image", content.title || "Explanation heatmap");
  }));
  return h("section", { "aria-labelledby": "ai-heading" }, h("h2", { id: "ai-heading" }, "AI analysis"),
    highRisk ? h("p", { class: "flag" }, "High risk according to the AI") : null,
    shown.map((r) => resultPanel(r, uncertain)),
    figures.length ? h("div", { class: "images" }, figures) : null);
}

function stepsPanel(steps) {
  const rows = steps
    .filter((t) => codeOf(t.code, STEP))
    .map((t) => h("tr", {}, h("td", {}, t.description || textOf(t.code)), h("td", {}, t.status),
      h("td", {}, ref(t.owner) || "—")));
  return h("section", {}, h("h2", {}, "Steps of this case"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Step", "Status", "Owner"].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows)));
}

// The classes the AI result was choosing between (its probability components, each coded with
// the model's label and, where checked, SNOMED CT): the doctor's coded diagnosis is one of them,
// which the AI–doctor agreement figure compares with the AI finding (docs/analytics.md).
async function aiClasses(fhir, caseTask) {
  const results = io(caseTask, "input", "ai-result").map(ref).filter((r) => r.startsWith("Observation/"));
  const shown = await Promise.all(results.map((r) => fhir.read(r)));
  return shown.flatMap((r) => (r.component || []).filter((c) => !isScreening(c) && c.valueQuantity).map((c) => c.code));
}

function diagnosisField(classes) {
  const options = classes.map((code, n) => h("option", { value: String(n) }, textOf(code)));
  return [h("label", { for: "diagnosis" }, "Diagnosis (coded, compared with the AI finding)"),
    h("select", { id: "diagnosis", name: "diagnosis" }, h("option", { value: "" }, "— not coded —"), options,
      h("option", { value: "other" }, "Something else"))];
}

function field(id, label, kind = "textarea", required = false) {
  const input = kind === "textarea" ? h("textarea", { id, name: id, rows: 3, required }) : h("input", { id, name: id, type: "text", required });
  return [h("label", { for: id }, label), input];
}

// The Parameters of $complete for this role, from the form (see docs/webapp.md).
function completeParts(role, form, classes = []) {
  const value = (name) => (form.elements[name] ? form.elements[name].value.trim() : "");
  const parts = [];
  if (role === "doctor") {
    parts.push(["output", { resource: { resourceType: "Observation", status: "final", code: { text: "Doctor's finding" }, valueString: value("finding") } }]);
    if (value("medication")) {
      const request = { resourceType: "MedicationRequest", status: "active", intent: "order", medicationCodeableConcept: { text: value("medication") } };
      if (value("dosage")) request.dosageInstruction = [{ text: value("dosage") }];
      parts.push(["output", { resource: request }]);
    }
    if (value("conclusion")) parts.push(["conclusion", { valueString: value("conclusion") }]);
    const diagnosis = value("diagnosis");
    if (diagnosis === "other") parts.push(["conclusionCode", { valueCodeableConcept: { text: value("conclusion") || "Other diagnosis", coding: [{ system: REVIEW, code: "not-a-model-class", display: "Not one of the model's classes" }] } }]);
    else if (diagnosis && classes[Number(diagnosis)]) parts.push(["conclusionCode", { valueCodeableConcept: classes[Number(diagnosis)] }]);
  }
  if (value("note")) parts.push(["note", { valueString: value("note") }]);
  return parts;
}

function completeForm(role, onSubmit, classes = []) {
  const fields = [];
  if (role === "doctor") {
    fields.push(field("finding", "Finding (required)", "textarea", true), field("conclusion", "Conclusion for the report"),
      classes.length ? diagnosisField(classes) : [],
      field("medication", "Prescription: medication (optional)", "text"), field("dosage", "Prescription: dosage instructions", "text"));
  }
  fields.push(field("note", role === "doctor" ? "Notes" : "Note"));
  const label = role === "admin" ? "Approve and complete" : "Complete step";
  const form = h("form", { "aria-labelledby": "complete-heading" }, h("h2", { id: "complete-heading" }, "Complete this step"), fields,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, label)));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onSubmit(completeParts(role, form, classes));
  });
  return form;
}

export async function caseView(fhir, session, stepId, act) {
  const step = await fhir.read(`Task/${stepId}`);
  const caseRef = ref((step.partOf || [])[0]);
  const [caseTask, patient, related] = await Promise.all([
    caseRef ? fhir.read(caseRef) : step,
    fhir.read(ref(step.for)),
    caseRef ? fhir.search("Task", { "part-of": caseRef, _count: "50" }).then((b) => entries(b)) : [],
  ]);
  const mine = ref(step.owner) === session.fhirUser;
  const forMyRole = (step.performerType || []).some((c) => codeOf(c, ROLE) === session.role);
  const actions = [];
  if (step.status === "requested" && forMyRole) {
    actions.push(h("button", { type: "button", class: "primary", onclick: () => act(`Task/${step.id}/$claim`, [], "Claimed: the step is now in progress and yours.") }, "Claim"));
  }
  if (step.status === "in-progress" && mine) {
    actions.push(h("button", { type: "button", onclick: () => act(`Task/${step.id}/$release`, [], "Released: the step is back on the worklist.") }, "Release"));
  }
  const urgent = step.priority === "urgent";
  const classes = session.role === "doctor" && step.status === "in-progress" && mine ? await aiClasses(fhir, caseTask) : [];
  return [
    h("h1", {}, humanName(patient), urgent ? h("span", { class: "badge urgent" }, "Urgent") : null),
    h("p", {}, `${caseTask.description || textOf(caseTask.code)} · ${step.description || textOf(step.code)} · `,
      h("strong", { id: "step-status" }, `Step status: ${step.status}`),
      ref(step.owner) ? ` · owner ${ref(step.owner)}` : "",
      ` · case status ${textOf(caseTask.businessStatus)} · since ${when(step.authoredOn)}`),
    h("p", {}, `Born ${patient.birthDate || "—"} · ${patient.gender || ""}`),
    h("section", { class: "panel" }, h("h2", {}, "Image"), await focusPanel(fhir, ref(caseTask.focus) || ref(step.focus))),
    h("div", { class: "panel" }, await aiPanel(fhir, caseTask, related)),
    actions.length ? h("div", { class: "actions" }, actions) : null,
    step.status === "in-progress" && mine ? h("div", { class: "panel" }, completeForm(session.role, (parts) => act(`Task/${step.id}/$complete`, parts, "Completed: the case moves to its next step."), classes)) : null,
    related.length ? h("div", { class: "panel" }, stepsPanel(related)) : null,
  ];
}
