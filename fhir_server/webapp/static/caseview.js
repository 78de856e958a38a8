// One step of a case, with the whole case in view for every role: the patient, the photo with
// the AI heatmap over it, the AI finding (all probabilities, why the finding may differ from the
// most probable class), flags with their reasons, every step (who, when, what it recorded), the
// proposed appointment, prescriptions and allergies, the report (preview, delivery, retry), and
// Claim / Release / Complete.
import { h, humanName, when, day, time, codeOf, textOf } from "./dom.js";
import { blobUrl, entries, Names } from "./fhir.js";
import { historyPanel } from "./history.js";
import { appointmentActivity, appointmentFieldset, bookableDoctors, referBookPanel } from "./careplan.js";
import { issuesFor, issuesPanel, medicationPicker } from "./medication.js";
import { isProbability, lesionOf, areaText, outlineOver } from "./lesion.js";

const IO = "http://hearth.local/fhir/CodeSystem/task-io";
const STEP = "http://hearth.local/fhir/CodeSystem/workflow-step";
const ROLE = "http://hearth.local/fhir/CodeSystem/care-role";
const CASE_STATUS = "http://hearth.local/fhir/CodeSystem/case-status";
const CASE = "http://hearth.local/fhir/CodeSystem/workflow-case";
const REVIEW = "http://hearth.local/fhir/CodeSystem/ai-review";

function io(task, element, label) {
  return (task[element] || [])
    .filter((e) => codeOf(e.type, IO) === label || (e.type && e.type.text === label))
    .map((e) => e.valueReference || e.valueBoolean || e.valueString)
    .filter((v) => v !== undefined);
}

function ref(reference) {
  return (reference && reference.reference) || "";
}

// The case's businessStatus in words, its code kept beside them.
const CASE_WORDS = {
  PENDING_AI: "waiting for the AI",
  PENDING_INTAKE: "waiting for the intake",
  AI_ANALYZED: "analysed by the AI",
  DOCTOR_REVIEWED: "reviewed by a doctor",
  PHARMACIST_COMPLETED: "done by the pharmacist",
  REPORT_READY: "approved; the report is ready",
  REPORT_DELIVERED: "report delivered",
  REPORT_FAILED: "report delivery failed",
};
function caseStatus(caseTask) {
  const code = codeOf(caseTask.businessStatus, CASE_STATUS) || textOf(caseTask.businessStatus);
  return CASE_WORDS[code] ? `${CASE_WORDS[code]} (${code})` : code || caseTask.status;
}

const percent = (p) => `${(p * 100).toFixed(1)} %`;
const roleOf = (task) => (task.performerType || []).map((c) => codeOf(c, ROLE)).find(Boolean);

async function imageSource(fhir, media) {
  const content = media.content || {};
  if (content.data) return blobUrl(content.data, content.contentType);
  if ((content.url || "").startsWith("Binary/")) return fhir.imageUrl(content.url, content.contentType);
  throw new Error("no image data");
}

// The focus photo (Media) or the first image of an ImagingStudy (DICOMweb rendered).
async function focusImage(fhir, focusRef) {
  if (focusRef.startsWith("Media/")) {
    const media = await fhir.read(focusRef);
    const title = (media.content || {}).title || "Photo";
    const site = textOf(media.bodySite);
    return { src: await imageSource(fhir, media), alt: title, caption: [title, site, when(media.createdDateTime)].filter(Boolean).join(" · ") };
  }
  if (focusRef.startsWith("ImagingStudy/")) {
    const study = await fhir.read(focusRef);
    const uid = ((study.identifier || []).find((i) => i.system === "urn:dicom:uid") || {}).value || "";
    const series = (study.series || [])[0];
    const instance = series && (series.instance || [])[0];
    const label = `${study.description || "Imaging study"} (${(study.modality || []).map((m) => m.code).join(", ")}; ${study.numberOfInstances || 0} ${study.numberOfInstances === 1 ? "image" : "images"})`;
    if (!uid || !instance) return { label };
    const path = `../dicomweb/studies/${uid.replace("urn:oid:", "")}/series/${series.uid}/instances/${instance.uid}/rendered`;
    return { src: await fhir.imageUrl(path, "image/png"), alt: label, caption: label };
  }
  return null; // a case about the record itself (lung-risk: the Patient) has no image
}

// The lesion's outline over the photo (mode "fit": the whole photo; "cover": the centre square),
// with a checkbox to hide it; the caption says its area.
function lesionLayer(img, lesion, mode, n) {
  if (!lesion || !lesion.points) return { layer: null, control: null, caption: lesion && lesion.absent ? ` Lesion outline: ${lesion.absent}.` : "" };
  const layer = outlineOver(img, lesion.points, mode);
  const id = n ? `lesion-outline-${n}` : "lesion-outline";
  const box = h("input", { type: "checkbox", id, checked: true,
    onchange: (event) => layer.classList.toggle("hidden", !event.target.checked) });
  return {
    layer,
    control: h("div", { class: "slider" }, box, h("label", { for: id }, "Show the lesion outline")),
    caption: ` The green line is the lesion's outline found by classical segmentation (not the AI's classifier)${lesion.area ? `; area ${areaText(lesion.area)}` : ""}.`,
  };
}

// The photo with the heatmap stacked over it (both centre-cropped squares, as the model saw
// the photo), the heatmap's opacity set by a slider; without a heatmap, the photo alone. The
// lesion outline, when the result has one, is drawn over either.
function overlayFigure(photo, heatmap, n = 0, lesion = null) {
  if (!heatmap) {
    const img = h("img", { src: photo.src, alt: photo.alt });
    const outline = lesionLayer(img, lesion, "fit", n);
    return h("figure", {}, outline.layer ? h("div", { class: "outlined" }, img, outline.layer) : img,
      h("figcaption", {}, photo.caption, outline.caption), outline.control);
  }
  const base = h("img", { src: photo.src, alt: photo.alt, class: "base" });
  const outline = lesionLayer(base, lesion, "cover", n);
  const heat = h("img", { src: heatmap.src, alt: "AI explanation heatmap over the image", class: "heat" });
  const initial = 60;
  heat.style.opacity = String(initial / 100); // CSSOM, not a style attribute: CSP style-src 'self'
  // The value is said by the slider itself (aria-valuetext); the text beside it is for the eye.
  const id = n ? `heat-opacity-${n}` : "heat-opacity"; // one slider per heatmap
  const value = h("span", { id: `${id}-value`, "aria-hidden": "true" }, `${initial} %`);
  const slider = h("input", {
    type: "range", id, min: 0, max: 100, step: 5, value: initial, "aria-valuetext": `${initial} %`,
    oninput: (event) => {
      heat.style.opacity = String(event.target.value / 100);
      value.textContent = `${event.target.value} %`;
      event.target.setAttribute("aria-valuetext", value.textContent);
    },
  });
  return h("figure", { class: "overlay-figure" },
    h("div", { class: "overlay" }, base, heat, outline.layer),
    h("figcaption", {}, photo.caption, " — with the AI heatmap over it (the centre square the model saw). ", heatmap.caption, outline.caption),
    h("div", { class: "slider" }, h("label", { for: id }, "Heatmap opacity"), slider, value), outline.control);
}

async function imagePanel(fhir, focusRef, heatmaps, results = []) {
  let photo;
  try {
    photo = await focusImage(fhir, focusRef);
  } catch (err) {
    return h("p", { class: "muted" }, `The image could not be shown (${err.message}).`);
  }
  if (!photo) return null;
  if (!photo.src) return h("p", {}, photo.label);
  // The segmentation of the result that analysed this photo (derivedFrom), else of any result.
  const analysed = results.filter((r) => lesionOf(r));
  const own = analysed.find((r) => (r.derivedFrom || []).some((d) => d.reference === focusRef)) || analysed[0];
  const lesion = own ? lesionOf(own) : null;
  const shown = [];
  for (const media of heatmaps) {
    try {
      shown.push({ src: await imageSource(fhir, media), caption: (media.content || {}).title || "Explanation heatmap" });
    } catch {
      // a heatmap that cannot be read is left out; the photo is still shown
    }
  }
  if (!shown.length) return overlayFigure(photo, null, 0, lesion);
  return h("div", { class: "images" }, shown.map((heat, n) => overlayFigure(photo, heat, n, lesion)));
}

// -- the AI result ---------------------------------------------------------------------------
// The screening score (e.g. the probability of malignancy, with its threshold as the
// reference range) is the referral decision, not one more class.
const isScreening = (c) => (c.referenceRange || []).length > 0;
const classes = (result) => (result.component || [])
  .filter((c) => !isScreening(c))
  .filter(isProbability)
  .sort((a, b) => b.valueQuantity.value - a.valueQuantity.value);

function deviceProperty(device, name) {
  const p = ((device && device.property) || []).find((x) => textOf(x.type) === name);
  return p && p.valueQuantity && p.valueQuantity[0] ? p.valueQuantity[0].value : undefined;
}

function screeningLine(result) {
  const score = (result.component || []).find(isScreening);
  if (!score) return null;
  const positive = codeOf((score.interpretation || [])[0]) === "POS";
  return h("p", { class: positive ? "flag" : "" }, h("strong", {}, "Screening: "),
    textOf((score.interpretation || [])[0]), " — ", (score.referenceRange[0] || {}).text || "");
}

// One sentence: why the finding may not be the most probable class, from the result's data.
export function whyFinding(result, device) {
  const ranked = classes(result);
  if (!ranked.length) return "";
  const top = ranked[0];
  const topName = textOf(top.code);
  const topP = percent(top.valueQuantity.value);
  const finding = result.valueCodeableConcept || {};
  const score = (result.component || []).find(isScreening);
  let referral = "";
  if (score) {
    const high = ((score.referenceRange[0] || {}).high || {}).value;
    const positive = codeOf((score.interpretation || [])[0]) === "POS";
    referral = ` The referral is decided apart from both: ${textOf(score.code).toLowerCase() || "the screening score"} ${percent(score.valueQuantity.value)} is ${positive ? "at or above" : "below"} the screening threshold ${typeof high === "number" ? percent(high) : ""}, chosen for sensitivity.`;
  }
  if (codeOf((result.interpretation || [])[0]) === "IND") {
    const threshold = deviceProperty(device, "confidence threshold");
    return `The finding is "uncertain" because the most probable class, ${topName} (${topP}), is below the model's confidence threshold${typeof threshold === "number" ? ` (${percent(threshold)})` : ""}, so a doctor decides; a confident finding is the class the class-balanced decision rule picks, which can differ from the most probable one.${referral}`;
  }
  const same = (finding.coding || []).some((c) => (top.code.coding || []).some((t) => t.code === c.code && t.system === c.system))
    || textOf(finding) === topName;
  const rule = "the model's decision rule is class-balanced (it offsets how common each class was in training, the rule chosen for balanced accuracy), while the probabilities are calibrated to that training mix";
  if (same) return `The finding is also the most probable class (${topName}, ${topP}); it need not be, because ${rule}.${referral}`;
  return `The finding is ${textOf(finding)} although ${topName} has the highest probability (${topP}): ${rule}, so a rarer class can be the finding at a lower probability.${referral}`;
}

// The lesion's measured area (classical segmentation of the photo, stored on the result).
function lesionLine(result) {
  const lesion = lesionOf(result);
  if (!lesion) return null;
  return h("p", { class: "lesion-area" }, h("strong", {}, "Lesion area: "),
    lesion.area ? `${areaText(lesion.area)} (outlined in green on the image; compare visits in the patient's earlier results)` : `not measured — ${lesion.absent || "no outline"}`);
}

function probabilityTable(result) {
  const rows = classes(result).map((c) => h("tr", {}, h("th", { scope: "row" }, textOf(c.code)), h("td", {}, percent(c.valueQuantity.value))));
  if (!rows.length) return null;
  return h("table", { class: "probabilities" }, h("caption", {}, "Probabilities"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Finding"), h("th", { scope: "col" }, "Probability"))),
    h("tbody", {}, rows));
}

function resultPanel(result, device, names) {
  if (result.resourceType === "RiskAssessment") {
    const p = (result.prediction || [])[0] || {};
    return h("div", {}, h("p", {}, h("strong", {}, "Risk: "), p.probabilityDecimal !== undefined ? `${(p.probabilityDecimal * 100).toFixed(2)} %` : "—", " ", textOf(p.qualitativeRisk)),
      h("p", { class: "muted" }, (result.note || []).map((n) => n.text).join(" ")));
  }
  const why = whyFinding(result, device);
  return h(
    "div",
    { class: "ai-result" },
    h("p", {}, h("strong", {}, "AI finding: "), textOf(result.valueCodeableConcept) || result.valueString || "—",
      result.interpretation ? ` (${textOf(result.interpretation[0])})` : ""),
    why ? h("p", { class: "why" }, why) : null,
    screeningLine(result),
    lesionLine(result),
    probabilityTable(result),
    h("p", { class: "muted" }, [(result.method && result.method.text) || names.of(result.device),
      ((device && device.version) || []).map((v) => `model ${v.value}`).join(", "), result.status].filter(Boolean).join(" · "), " · ",
      time(result.effectiveDateTime || (result.meta || {}).lastUpdated)),
    h("p", { class: "muted" }, (result.note || []).map((n) => n.text).join(" ")),
  );
}

// -- flags -----------------------------------------------------------------------------------
// "Lung cancer within 6 years: 4.20 % (high) by PLCOm2012"
function riskWords(r) {
  const p = (r.prediction || [])[0] || {};
  const qualitative = textOf(p.qualitativeRisk);
  return [`${textOf(p.outcome) || "risk"}: ${typeof p.probabilityDecimal === "number" ? `${(p.probabilityDecimal * 100).toFixed(2)} %` : "—"}`,
    qualitative ? `(${qualitative})` : "", textOf(r.method) ? `by ${textOf(r.method)}` : ""].filter(Boolean).join(" ");
}

function flags(caseTask, step, results, delivery, names) {
  const notes = (caseTask.note || []).map((n) => n.text || "");
  const items = [];
  if (caseTask.priority === "urgent" || step.priority === "urgent") {
    const ai = notes.find((t) => t.startsWith("high-risk AI result"));
    items.push(["Urgent", ai ? `raised by the AI: ${names.inText(ai)}` : `marked urgent when the case was started${caseTask.requester ? ` by ${names.of(caseTask.requester)}` : ""}`]);
  }
  if (io(caseTask, "input", "high-risk").includes(true)) {
    const reasons = results.flatMap((r) => (r.component || []).filter(isScreening)
      .filter((c) => codeOf((c.interpretation || [])[0]) === "POS")
      .map((c) => textOf((c.interpretation || [])[0])));
    const risk = results.filter((r) => r.resourceType === "RiskAssessment").map(riskWords);
    items.push(["High risk", reasons.concat(risk).join("; ") || `the AI finding is a high-risk class (${results.map((r) => textOf(r.valueCodeableConcept)).join(", ")})`]);
  }
  const uncertain = io(caseTask, "input", "uncertain").includes(true) || results.some((r) => codeOf((r.interpretation || [])[0]) === "IND");
  if (uncertain) {
    const why = results.map((r) => (r.valueCodeableConcept || {}).text).filter((t) => t && t.startsWith("uncertain"));
    items.push(["Uncertain — physician review required", why.join("; ") || "the AI result is indeterminate"]);
  }
  if (delivery && delivery.status === "failed") {
    items.push(["Report not delivered", names.inText((delivery.statusReason || {}).text) || "no reason was recorded"]);
  }
  if (!items.length) return h("p", { class: "muted", id: "flags" }, "No flags: routine, not high risk, not uncertain.");
  return h("ul", { class: "flags", id: "flags" }, items.map(([flag, reason]) => h("li", { class: "flag" }, h("strong", {}, flag), `: ${reason}`)));
}

// -- what each step recorded ----------------------------------------------------------------
function medication(resource) {
  return textOf(resource.medicationCodeableConcept) || ref(resource.medicationReference) || "medication";
}

function dosage(resource) {
  return (resource.dosageInstruction || []).map((d) => d.text).filter(Boolean).join("; ");
}

function quantity(q) {
  return q && typeof q.value === "number" ? `${q.value} ${q.unit || ""}`.trim() : "";
}

// A stored resource in one line of words.
function describe(resource, names) {
  if (!resource) return "(not visible to you)";
  switch (resource.resourceType) {
    case "Observation": {
      const value = resource.valueString || textOf(resource.valueCodeableConcept) || quantity(resource.valueQuantity);
      return `${textOf(resource.code) || "Observation"}: ${value || "—"}`;
    }
    case "MedicationRequest":
      return `Prescription: ${medication(resource)}${dosage(resource) ? ` — ${dosage(resource)}` : ""} (${resource.status}, by ${names.of(resource.requester)})`;
    case "MedicationDispense":
      return `Dispensed: ${medication(resource)}${quantity(resource.quantity) ? `, ${quantity(resource.quantity)}` : ""}${dosage(resource) ? ` — ${dosage(resource)}` : ""} (${resource.status})`;
    case "Condition":
      return `Condition: ${textOf(resource.code)}`;
    case "ServiceRequest":
      return `Order: ${textOf(resource.code)} (${resource.status})`;
    case "DiagnosticReport":
      return `Report: ${textOf(resource.code)} (${resource.status})${resource.conclusion ? ` — ${resource.conclusion}` : ""}`;
    case "DocumentReference":
      return `Document: ${resource.description || textOf(resource.type)}`;
    case "Communication":
      return (resource.payload || []).map((p) => p.contentString).filter(Boolean).join("; ") || "Message";
    case "Appointment":
      return `Appointment (${resource.status}): ${when(resource.start)}`;
    case "Media":
      return `Image: ${(resource.content || {}).title || ""}`;
    case "RiskAssessment":
      return `Risk: ${riskWords(resource)}`;
    case "QuestionnaireResponse":
      return `Questionnaire answers (${(resource.item || []).length})`;
    default:
      return `${resource.resourceType}/${resource.id}`;
  }
}

function outputsOf(task, read, names) {
  return (task.output || []).map((o) => {
    const label = codeOf(o.type, IO) || textOf(o.type);
    if (o.valueReference) return describe(read.get(ref(o.valueReference)), names);
    if (o.valueString !== undefined) return label === "conclusion" ? `Conclusion: ${o.valueString}` : `${label}: ${o.valueString}`;
    if (o.valueCodeableConcept) return `${label}: ${textOf(o.valueCodeableConcept)}`;
    return null;
  }).filter(Boolean);
}

function notesOf(resource, names) {
  return (resource.note || []).map((n) => h("li", { class: "note" }, h("span", { class: "muted" }, "Note",
    n.authorReference ? ` by ${names.of(n.authorReference)}` : "", n.time ? [", ", time(n.time)] : "", ": "), names.inText(n.text)));
}

// Steps in the order they happened: done ones by their time, then the open ones.
const RANK = { completed: 0, failed: 0, cancelled: 0, "in-progress": 1, requested: 2, ready: 2, draft: 3 };
function stepTime(t) {
  return (t.executionPeriod || {}).end || (RANK[t.status] === 0 ? t.lastModified : "") || "";
}

function stepsPanel(steps, caseTask, read, names) {
  const ordered = [...steps].sort((a, b) => (RANK[a.status] ?? 4) - (RANK[b.status] ?? 4) || stepTime(a).localeCompare(stepTime(b)));
  // What the case itself recorded (a referral, …), beside the report and appointment shown above.
  const onCase = (caseTask.output || [])
    .filter((o) => !["report", "appointment"].includes(codeOf(o.type, IO)) && o.valueReference)
    .map((o) => describe(read.get(ref(o.valueReference)), names));
  return h("section", { "aria-labelledby": "steps-heading" }, h("h2", { id: "steps-heading" }, "Steps of this case"),
    onCase.length ? h("p", { id: "case-outputs" }, h("strong", {}, "Recorded on the case: "), onCase.join("; ")) : null,
    h("ol", { class: "timeline" }, ordered.map((t) => {
      const recorded = outputsOf(t, read, names);
      const at = (t.executionPeriod || {}).end || (t.executionPeriod || {}).start;
      return h("li", { class: `step ${t.status}`, "data-step": codeOf(t.code, STEP) || "" },
        h("p", {}, h("strong", {}, t.description || textOf(t.code)), ` — ${t.status}`,
          t.owner ? ` · ${names.of(t.owner)}` : ` · for ${/^[aeiou]/.test(roleOf(t) || "") ? "an" : "a"} ${roleOf(t) || "—"}`,
          at ? [" · ", time(at)] : ""),
        t.statusReason ? h("p", { class: t.status === "failed" ? "flag" : "muted" }, `Reason: ${names.inText(textOf(t.statusReason))}`) : null,
        recorded.length || (t.note || []).length
          ? h("ul", {}, recorded.map((line) => h("li", {}, line)), notesOf(t, names))
          : null);
    })));
}

// -- appointment, prescriptions, allergies ---------------------------------------------------
function appointmentPanel(appointment, names) {
  if (!appointment) return null;
  const who = (appointment.participant || []).map((p) => `${names.of(p.actor)} (${p.status})`).join(", ");
  return h("section", { class: "panel", "aria-labelledby": "appointment-heading" }, h("h2", { id: "appointment-heading" }, "Appointment"),
    h("p", { id: "appointment" }, `${appointment.status === "proposed" ? "Proposed" : appointment.status}: `, time(appointment.start),
      appointment.end ? [" – ", time(appointment.end)] : "", who ? ` · ${who}` : ""),
    appointment.description ? h("p", { class: "muted" }, appointment.description) : null);
}

function prescriptionsPanel(requests, dispenses, names) {
  if (!requests.length) return null;
  const dispensedFor = (mr) => dispenses.filter((d) => (d.authorizingPrescription || []).some((a) => ref(a) === `MedicationRequest/${mr.id}`));
  return h("section", { class: "panel", "aria-labelledby": "rx-heading" }, h("h2", { id: "rx-heading" }, "Prescriptions"),
    h("table", { class: "prescriptions" }, h("caption", {}, "Prescriptions of this case"),
      h("thead", {}, h("tr", {}, ["Medication", "Dosage", "Prescribed by", "Status", "Dispensed"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, requests.map((mr) => h("tr", {},
        h("td", {}, medication(mr)), h("td", {}, dosage(mr) || "—"),
        h("td", {}, names.of(mr.requester), mr.authoredOn ? [", ", time(mr.authoredOn)] : ""),
        h("td", {}, mr.status),
        h("td", {}, dispensedFor(mr).map((d) => describe(d, names)).join("; ") || "not yet"))))));
}

function allergiesPanel(allergies) {
  const rows = allergies.map((a) => h("li", {},
    h("strong", {}, textOf(a.code) || "Unnamed substance"),
    ` — ${[textOf(a.clinicalStatus), a.criticality ? `criticality ${a.criticality}` : "", (a.category || []).join(", ")].filter(Boolean).join(", ")}`,
    (a.reaction || []).length ? `; reactions: ${(a.reaction || []).flatMap((r) => (r.manifestation || []).map(textOf)).join(", ")}` : ""));
  return h("section", { class: "panel", "aria-labelledby": "allergy-heading" }, h("h2", { id: "allergy-heading" }, "Allergies and intolerances"),
    rows.length ? h("ul", { id: "allergies" }, rows)
      : h("p", { class: "muted", id: "allergies" }, "None recorded for this patient (this does not mean there are none: ask)."));
}

// -- the report: preview, delivery status, retry ----------------------------------------------
// A PDF (a Binary's base64 data) in a frame of its blob: URL, with a download link.
function pdfButton(frame, label, load, title, file, linkText, linkId) {
  return h("button", { type: "button", onclick: async (event) => {
    event.target.disabled = true;
    frame.replaceChildren(h("p", {}, "Loading the report…"));
    try {
      const binary = await load();
      const url = blobUrl(binary.data, "application/pdf");
      frame.replaceChildren(
        h("iframe", { src: url, title, class: "pdf" }),
        h("p", {}, h("a", { href: url, download: file, id: linkId }, linkText)));
    } catch (err) {
      frame.replaceChildren(h("p", { class: "error" }, `The report could not be shown: ${err.message}`));
    }
    event.target.disabled = false;
  } }, label);
}

function reportPanel(fhir, session, caseTask, delivery, read, names, act) {
  if (!delivery) return null;
  const frame = h("div", { class: "preview" });
  const preview = pdfButton(frame, "Preview the report", () => fhir.json(`Task/${caseTask.id}/$preview-report`),
    "Report preview (PDF, not signed)", `report-preview-${caseTask.id}.pdf`, "Download the preview (PDF)", "preview-download");
  const report = read.get(ref(io(caseTask, "output", "report")[0]));
  const status = {
    draft: "not yet: the report is made when an administrator approves the case",
    requested: "waiting to be delivered",
    "in-progress": "being delivered now",
    completed: "delivered to the patient",
    failed: "failed",
    cancelled: "cancelled",
  }[delivery.status] || delivery.status;
  const lines = [h("p", { id: "delivery-status" }, h("strong", {}, "Delivery: "), status,
    delivery.status === "failed" ? ` — ${names.inText(textOf(delivery.statusReason)) || "no reason recorded"}` : "",
    delivery.status === "completed" && (delivery.executionPeriod || {}).end ? [" · ", time(delivery.executionPeriod.end)] : "")];
  if (report) lines.push(h("p", {}, describe(report, { of: () => "" })));
  // The signed PDF, stored on approval (Binary + DocumentReference) even when its e-mail failed.
  const stored = ((report && report.presentedForm) || []).find((f) => f.contentType === "application/pdf" && (f.url || "").startsWith("Binary/"));
  const signed = stored
    ? pdfButton(frame, "Show the signed report", () => fhir.read(stored.url), "Signed report (PDF)",
      `report-${report.id}.pdf`, "Download the signed report (PDF)", "signed-download")
    : null;
  const retry = delivery.status === "failed" && session.role === "admin"
    ? h("button", { type: "button", class: "primary", onclick: () => act(`Task/${caseTask.id}/$deliver-report`, [], (result) => {
      const part = (name) => ((result.parameter || []).find((p) => p.name === name) || {}).valueString;
      return part("status") === "failed" ? `Delivery failed again: ${names.inText(part("reason"))}` : "Delivered: the signed report was e-mailed to the patient.";
    }) }, "Retry delivery")
    : null;
  return h("section", { class: "panel", "aria-labelledby": "report-heading" }, h("h2", { id: "report-heading" }, "Report"),
    lines, h("div", { class: "actions" }, preview, signed, retry), frame);
}

// -- completing the step ----------------------------------------------------------------------
// The classes the AI result was choosing between (its probability components, each coded with
// the model's label and, where checked, SNOMED CT): the doctor's coded diagnosis is one of them,
// which the AI–doctor agreement figure compares with the AI finding (docs/analytics.md).
function aiClasses(results) {
  return results.filter((r) => r.resourceType === "Observation")
    .flatMap((r) => (r.component || []).filter((c) => !isScreening(c) && isProbability(c)).map((c) => c.code));
}

function diagnosisField(classes) {
  const options = classes.map((code, n) => h("option", { value: String(n) }, textOf(code)));
  return [h("label", { for: "diagnosis" }, "Diagnosis (coded, compared with the AI finding)"),
    h("select", { id: "diagnosis", name: "diagnosis" }, h("option", { value: "" }, "— not coded —"), options,
      h("option", { value: "other" }, "Something else"))];
}

function field(id, label, kind = "textarea", required = false, value = "") {
  const input = kind === "textarea" ? h("textarea", { id, name: id, rows: 3, required }, value)
    : h("input", { id, name: id, type: kind, required, value, step: kind === "number" ? "any" : undefined, min: kind === "number" ? 0 : undefined });
  return [h("label", { for: id }, label), input];
}

// The Parameters of $complete for this role, from the form (see docs/webapp.md).
function completeParts(role, form, requests, session, classes = []) {
  const value = (name) => (form.elements[name] ? form.elements[name].value.trim() : "");
  const parts = [];
  if (role === "doctor") {
    parts.push(["output", { resource: { resourceType: "Observation", status: "final", code: { text: "Doctor's finding" }, valueString: value("finding") } }]);
    const concept = form.medicationConcept ? form.medicationConcept() : value("medication") ? { text: value("medication") } : null;
    if (concept) {
      const request = { resourceType: "MedicationRequest", status: "active", intent: "order", medicationCodeableConcept: concept, authoredOn: new Date().toISOString() };
      if (value("dosage")) request.dosageInstruction = [{ text: value("dosage") }];
      parts.push(["output", { resource: request }]);
    }
    if (value("conclusion")) parts.push(["conclusion", { valueString: value("conclusion") }]);
    const diagnosis = value("diagnosis");
    if (diagnosis === "other") parts.push(["conclusionCode", { valueCodeableConcept: { text: value("conclusion") || "Other diagnosis", coding: [{ system: REVIEW, code: "not-a-model-class", display: "Not one of the model's classes" }] } }]);
    else if (diagnosis && classes[Number(diagnosis)]) parts.push(["conclusionCode", { valueCodeableConcept: classes[Number(diagnosis)] }]);
  }
  if (role === "pharmacist" && value("dispense")) {
    const mr = requests.find((r) => r.id === value("dispense"));
    const dispense = {
      resourceType: "MedicationDispense",
      status: "completed",
      medicationCodeableConcept: mr.medicationCodeableConcept || { text: medication(mr) },
      authorizingPrescription: [{ reference: `MedicationRequest/${mr.id}` }],
      performer: [{ actor: { reference: session.fhirUser } }],
      whenHandedOver: new Date().toISOString(),
    };
    if (value("quantity")) dispense.quantity = { value: Number(value("quantity")), unit: value("unit") || undefined };
    if (value("instructions")) dispense.dosageInstruction = [{ text: value("instructions") }];
    Object.assign(dispense, acknowledged(form, mr, session));
    parts.push(["output", { resource: dispense }]);
  }
  if (value("note")) parts.push(["note", { valueString: value("note") }]);
  return parts;
}

// The pharmacist's acknowledgement of the warnings on the prescription dispensed: required while
// there are any; recorded on the MedicationDispense (R4: detectedIssue, note), see docs/webapp.md.
function acknowledgeFields(select, requests, issues) {
  const box = h("input", { type: "checkbox", id: "acknowledge", name: "acknowledge" });
  const text = h("span", {});
  const sync = () => {
    const mr = requests.find((r) => r.id === select.value);
    const found = mr ? issuesFor(issues, [mr]) : [];
    box.required = found.length > 0;
    box.disabled = !found.length;
    text.textContent = found.length
      ? ` I have reviewed the ${found.length} warning${found.length > 1 ? "s" : ""} on this prescription (shown above) and dispense it.`
      : " No allergy or interaction warning on this prescription.";
  };
  select.addEventListener("change", sync);
  sync();
  return [h("p", {}, box, h("label", { for: "acknowledge" }, text)),
    field("dispense-note", "Dispensing record: how the warnings were handled, advice given", "textarea")];
}

function acknowledged(form, mr, session) {
  const out = {};
  const found = issuesFor(form.issues || [], [mr]);
  if (found.length && form.elements.acknowledge && form.elements.acknowledge.checked) {
    out.detectedIssue = found.map((i) => ({ reference: `DetectedIssue/${i.id}` }));
  }
  const note = form.elements["dispense-note"] ? form.elements["dispense-note"].value.trim() : "";
  if (note) out.note = [{ authorReference: { reference: session.fhirUser }, time: new Date().toISOString(), text: note }];
  return out;
}

function completeForm(role, requests, session, onSubmit, classes = [], fhir = null, issues = []) {
  const fields = [];
  const picker = role === "doctor" && fhir ? medicationPicker(fhir, "medication", "Prescription: medication from the formulary (optional)") : null;
  if (role === "doctor") {
    fields.push(field("finding", "Finding (required)", "textarea", true), field("conclusion", "Conclusion for the report"),
      classes.length ? diagnosisField(classes) : [],
      picker ? picker.element : field("medication", "Prescription: medication (optional)", "text"), field("dosage", "Prescription: dosage instructions", "text"));
  }
  if (role === "pharmacist" && requests.length) {
    const select = h("select", { id: "dispense", name: "dispense" },
      requests.map((mr) => h("option", { value: mr.id }, `${medication(mr)}${dosage(mr) ? ` — ${dosage(mr)}` : ""}`)),
      h("option", { value: "" }, "Nothing dispensed"));
    fields.push(h("fieldset", {}, h("legend", {}, "Dispense"),
      h("label", { for: "dispense" }, "Prescription dispensed"), select,
      field("quantity", "Quantity handed over", "number"), field("unit", "Unit (e.g. tablets, tube)", "text"),
      field("instructions", "Instructions given to the patient", "text", false, dosage(requests[0])),
      acknowledgeFields(select, requests, issues)));
  }
  fields.push(field("note", role === "doctor" ? "Notes" : "Note"));
  const label = role === "admin" ? "Approve and complete" : "Complete step";
  const form = h("form", { "aria-labelledby": "complete-heading" }, h("h2", { id: "complete-heading" }, "Complete this step"), fields,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, label)));
  if (picker) form.medicationConcept = picker.concept;
  form.issues = issues;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onSubmit(completeParts(role, form, requests, session, classes));
  });
  return form;
}

// The treatment plan (CarePlan, $plan-treatment): its activities with their own status, and for
// a doctor a form that makes the plan (a follow-up photo, a referral, a medication).
const ACTIVITY_WORDS = { Task: "Follow-up photo", ServiceRequest: "Referral", MedicationRequest: "Medication", Appointment: "Appointment" };

function planPanel(plan, activities, names) {
  const rows = (plan.activity || []).map((a) => {
    const r = activities.get(ref(a.reference));
    if (!r) return h("li", {}, ref(a.reference));
    const what = r.resourceType === "MedicationRequest" ? `${medication(r)}${dosage(r) ? ` — ${dosage(r)}` : ""}` : (r.description || textOf(r.code));
    const due = (r.restriction && r.restriction.period && r.restriction.period.start) || (r.occurrencePeriod && r.occurrencePeriod.end);
    const visit = r.resourceType === "Appointment" ? [" · ", time(r.start), ` · with ${(r.participant || []).filter((p) => !ref(p.actor).startsWith("Patient/")).map((p) => names.of(p.actor)).join(", ")}`] : "";
    return h("li", { "data-activity": r.resourceType }, h("strong", {}, `${ACTIVITY_WORDS[r.resourceType] || r.resourceType}: `), what,
      due ? [" · due ", day(due)] : "", visit, ` · ${r.status}`);
  });
  return h("div", {}, h("p", {}, h("strong", {}, plan.title || "Treatment plan"), ` · by ${names.of(plan.author)} · `, time(plan.created)), h("ul", { class: "plan" }, rows));
}

function planForm(caseId, act, fhir = null, doctors = []) {
  const picker = fhir ? medicationPicker(fhir, "plan-medication", "Medication from the formulary") : null;
  const form = h("form", { "aria-labelledby": "plan-form-heading" }, h("h3", { id: "plan-form-heading" }, "Make a treatment plan"),
    field("plan-title", "Plan title (required)", "text", true),
    h("fieldset", {}, h("legend", {}, "Follow-up photo"), field("plan-photo-months", "In how many months (empty: none)", "number")),
    h("fieldset", {}, h("legend", {}, "Referral"), field("plan-referral", "Referral (e.g. excision biopsy, skin clinic)", "text"), field("plan-referral-days", "Within how many days", "number")),
    h("fieldset", {}, h("legend", {}, "Medication"), picker ? picker.element : field("plan-medication", "Medication", "text"), field("plan-dosage", "Dosage instructions", "text")),
    appointmentFieldset(doctors),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Save the plan")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = (name) => form.elements[name].value.trim();
    const activity = (parts) => ["activity", { part: parts.filter(Boolean) }];
    const parts = [["title", { valueString: value("plan-title") }]];
    if (value("plan-photo-months")) {
      const months = Number(value("plan-photo-months"));
      parts.push(activity([{ name: "kind", valueCode: "follow-up-photo" }, { name: "description", valueString: `Follow-up photo of the lesion in ${months} month(s)` }, { name: "dueInDays", valueInteger: Math.round(months * 30) }]));
    }
    if (value("plan-referral")) {
      parts.push(activity([{ name: "kind", valueCode: "referral" }, { name: "description", valueString: value("plan-referral") },
        value("plan-referral-days") ? { name: "dueInDays", valueInteger: Math.round(Number(value("plan-referral-days"))) } : null]));
    }
    if (value("plan-medication")) {
      parts.push(activity([{ name: "kind", valueCode: "medication" }, { name: "description", valueString: "Part of the treatment plan" },
        { name: "medication", valueString: value("plan-medication") }, { name: "dosage", valueString: value("plan-dosage") },
        ...planMedicationCode(picker)]));
    }
    const visit = appointmentActivity(form);
    if (visit) parts.push(visit);
    act(`Task/${caseId}/$plan-treatment`, parts, "Treatment plan saved: its activities are on the patient's record.");
  });
  return form;
}

// The plan's medication as $plan-treatment's medicationCode, when one was picked from the formulary.
function planMedicationCode(picker) {
  const coding = picker && ((picker.concept() || {}).coding || [])[0];
  return coding ? [{ name: "medicationCode", valueCoding: coding }] : [];
}

// What really happened after $complete, in words: the case as it is now (a failed delivery is
// said as failed, with its reason).
async function afterComplete(fhir, caseId, role) {
  if (!caseId) return "Completed.";
  const [caseTask, steps] = await Promise.all([
    fhir.read(`Task/${caseId}`),
    fhir.search("Task", { "part-of": `Task/${caseId}`, _count: "50" }).then((b) => entries(b).filter((t) => codeOf(t.code, STEP))),
  ]);
  const status = codeOf(caseTask.businessStatus, CASE_STATUS) || codeOf(caseTask.businessStatus);
  const delivery = steps.find((t) => roleOf(t) === "system");
  if (status === "REPORT_FAILED") {
    const names = new Names(fhir);
    await names.load([ref(caseTask.for)]);
    return `Approved, but the report was not delivered: ${names.inText(textOf((delivery || {}).statusReason)) || "no reason recorded"}. Retry from the Report section.`;
  }
  if (status === "REPORT_DELIVERED") return "Approved: the signed report was delivered to the patient.";
  const next = steps.find((t) => t.status === "requested");
  const said = caseStatus(caseTask);
  const then = caseTask.status === "completed" ? "; the case is complete" : next ? `; next: ${next.description || textOf(next.code)}` : "";
  return `Completed${role === "admin" ? " (approved)" : ""}: the case is now ${said}${then}.`;
}

export async function caseView(fhir, session, stepId, act) {
  const step = await fhir.read(`Task/${stepId}`);
  // A step names its case; a case opened itself (from the patient's earlier results) is both.
  const caseRef = ref((step.partOf || [])[0]) || (codeOf(step.code, CASE) ? `Task/${step.id}` : "");
  const names = new Names(fhir);
  const [caseTask, patient, related] = await Promise.all([
    caseRef && caseRef !== `Task/${step.id}` ? fhir.read(caseRef) : step,
    fhir.read(ref(step.for)),
    caseRef ? fhir.search("Task", [["part-of", caseRef], ["_include", "Task:owner"], ["_count", "50"]]).then((b) => {
      names.add(entries(b, "include"));
      return entries(b);
    }) : [],
  ]);
  names.add([patient]);
  const steps = related.filter((t) => codeOf(t.code, STEP));
  const analyses = related.filter((t) => !codeOf(t.code, STEP));
  const delivery = steps.find((t) => roleOf(t) === "system");

  // Everything the case and its steps name, read once.
  const resultRefs = io(caseTask, "input", "ai-result").map(ref);
  const outputRefs = [...steps, caseTask].flatMap((t) => (t.output || []).map((o) => ref(o.valueReference))).filter(Boolean);
  const heatmapRefs = analyses.flatMap((t) => (t.output || []).map((o) => ref(o.valueReference))).filter((r) => r.startsWith("Media/"));
  const [read, allergies, issues] = await Promise.all([
    fhir.readAll([...resultRefs, ...outputRefs, ...heatmapRefs]),
    fhir.search("AllergyIntolerance", { patient: ref(step.for), _count: "50" }).then((b) => entries(b)).catch(() => []),
    fhir.search("DetectedIssue", { patient: ref(step.for), _count: "100" }).then((b) => entries(b)).catch(() => []),
  ]);
  const results = resultRefs.map((r) => read.get(r)).filter(Boolean);
  const devices = await fhir.readAll(results.map((r) => ref(r.device)));
  const all = [...read.values()].filter(Boolean);
  const requests = all.filter((r) => r.resourceType === "MedicationRequest");
  const dispenses = all.filter((r) => r.resourceType === "MedicationDispense");
  const appointment = read.get(ref(io(caseTask, "output", "appointment")[0]));
  const plans = io(caseTask, "output", "CarePlan").map((v) => read.get(ref(v))).filter(Boolean);
  const planActivities = await fhir.readAll(plans.flatMap((p) => (p.activity || []).map((a) => ref(a.reference))));
  if (appointment) names.add([appointment]);
  await names.load([
    ref(step.owner), ref(caseTask.requester), ...steps.map((t) => ref(t.owner)),
    ...[caseTask, ...steps].flatMap((t) => (t.note || []).map((n) => ref(n.authorReference))),
    ...all.flatMap((r) => [ref(r.requester), ...(r.performer || []).map((p) => ref(p.actor || p)), ref(r.device)]),
    ...((appointment && appointment.participant) || []).map((p) => ref(p.actor)),
    ...results.map((r) => ref(r.device)),
    ...plans.map((p) => ref(p.author)),
    ...[...planActivities.values()].flatMap((r) => ((r && r.participant) || []).map((p) => ref(p.actor))),
  ]);
  names.add([...devices.values()].filter(Boolean));

  const mine = ref(step.owner) === session.fhirUser;
  const forMyRole = (step.performerType || []).some((c) => codeOf(c, ROLE) === session.role);
  const actions = [];
  if (step.status === "requested" && forMyRole) {
    actions.push(h("button", { type: "button", class: "primary", onclick: () => act(`Task/${step.id}/$claim`, [], "Claimed: the step is now in progress and yours.") }, "Claim"));
  }
  if (step.status === "in-progress" && mine) {
    actions.push(h("button", { type: "button", onclick: () => act(`Task/${step.id}/$release`, [], "Released: the step is back on the worklist.") }, "Release"));
  }
  const urgent = step.priority === "urgent" || caseTask.priority === "urgent";
  const caseId = caseRef.replace("Task/", "");
  const heatmaps = heatmapRefs.map((r) => read.get(r)).filter(Boolean);
  const ident = (patient.identifier || []).map((i) => i.value).filter(Boolean).join(", ");
  const image = await imagePanel(fhir, ref(caseTask.focus) || ref(step.focus), heatmaps, results);
  const showMedicines = session.role === "pharmacist" || session.role === "doctor" || requests.length > 0;
  return [
    h("h1", {}, humanName(patient), urgent ? h("span", { class: "badge urgent" }, "Urgent") : null),
    h("p", { class: "case-line" }, h("strong", { class: "case-type" }, caseTask.description || textOf(caseTask.code)), ` · ${step.description || textOf(step.code)} · `,
      h("strong", { id: "step-status" }, `Step status: ${step.status}`),
      step.owner ? ` · owner ${names.of(step.owner)}` : "",
      ` · case: ${caseStatus(caseTask)} · since `, time(step.authoredOn)),
    h("p", {}, `Born ${day(patient.birthDate) || "—"} · ${patient.gender || ""}${ident ? ` · ${ident}` : ""}`),
    h("section", { class: "panel", "aria-labelledby": "flags-heading" }, h("h2", { id: "flags-heading" }, "Flags"), flags(caseTask, step, results, delivery, names)),
    image ? h("section", { class: "panel", "aria-labelledby": "image-heading" }, h("h2", { id: "image-heading" }, "Image"), image) : null,
    h("section", { class: "panel", "aria-labelledby": "ai-heading" }, h("h2", { id: "ai-heading" }, "AI analysis"),
      results.length ? results.map((r) => resultPanel(r, devices.get(ref(r.device)), names)) : h("p", { class: "muted" }, "No AI result yet.")),
    session.role === "doctor" ? await historyPanel(fhir, ref(step.for), caseId).catch((err) => h("p", { class: "muted" }, `Earlier results could not be shown (${err.message}).`)) : null,
    appointmentPanel(appointment, names),
    plans.length || session.role === "doctor"
      ? h("section", { class: "panel", "aria-labelledby": "plan-heading" }, h("h2", { id: "plan-heading" }, "Treatment plan"),
        plans.length ? plans.map((p) => planPanel(p, planActivities, names)) : h("p", { class: "muted" }, "No treatment plan yet."),
        session.role === "doctor" && caseId ? planForm(caseId, act, fhir, await bookableDoctors(fhir).catch(() => [])) : null)
      : null,
    caseId ? await referBookPanel(fhir, session, caseTask, names, act) : null,
    showMedicines ? issuesPanel(issues, requests) : null,
    showMedicines ? prescriptionsPanel(requests, dispenses, names) : null,
    showMedicines ? allergiesPanel(allergies) : null,
    (caseTask.note || []).length ? h("section", { class: "panel" }, h("h2", {}, "Notes on the case"), h("ul", {}, notesOf(caseTask, names))) : null,
    actions.length ? h("div", { class: "actions" }, actions) : null,
    step.status === "in-progress" && mine
      ? h("div", { class: "panel" }, completeForm(session.role, requests, session, (parts) => act(`Task/${step.id}/$complete`, parts, () => afterComplete(fhir, caseId, session.role).catch(() => "Completed.")), session.role === "doctor" ? aiClasses(results) : [], fhir, issues))
      : null,
    steps.length ? h("div", { class: "panel" }, stepsPanel(steps, caseTask, read, names)) : null,
    reportPanel(fhir, session, caseTask, delivery, read, names, act),
  ];
}
