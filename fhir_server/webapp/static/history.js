// The patient's earlier results beside this one (for the doctor): each case's photo, grouped by
// body site and ordered by date, with its AI finding and the lesion's outline; the AI's
// probabilities and the lesion's area over time as small charts (SVG built element by element)
// and as a table.
import { h, when, day, codeOf, textOf } from "./dom.js";
import { blobUrl, entries } from "./fhir.js";
import { isProbability, lesionOf, areaText, outlineOver } from "./lesion.js";

const CASE = "http://hearth.local/fhir/CodeSystem/workflow-case";
const IO = "http://hearth.local/fhir/CodeSystem/task-io";
const SVG = "http://www.w3.org/2000/svg";

const isScreening = (c) => (c.referenceRange || []).length > 0;
const percent = (p) => `${(p * 100).toFixed(1)} %`;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function aiResultOf(caseTask) {
  const input = (caseTask.input || []).find((i) => codeOf(i.type, IO) === "ai-result");
  return input && input.valueReference ? input.valueReference.reference : "";
}

// A small time chart: one point per case with a value, from ``low`` to ``high`` (a dashed line
// at ``threshold`` when there is one).
function timeChart(scored, { id, title, low, high, tick, threshold, cls }) {
  if (scored.length < 2) return null;
  const W = 360, H = 140, L = 56, R = 10, T = 10, B = 24;
  const times = scored.map((p) => p.time);
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const x = (t) => (t1 === t0 ? L + (W - L - R) / 2 : L + ((t - t0) / (t1 - t0)) * (W - L - R));
  const y = (v) => T + (1 - (v - low) / (high - low || 1)) * (H - T - B);
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, class: `trend ${cls || ""}`.trim(), role: "img", "aria-labelledby": id },
    svg("title", { id }, title),
    [low, (low + high) / 2, high].map((v) => [svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: L - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" }, tick(v))]),
    typeof threshold === "number" ? svg("line", { x1: L, x2: W - R, y1: y(threshold), y2: y(threshold), class: "threshold" }) : null,
    svg("polyline", { points: scored.map((p) => `${x(p.time)},${y(p.value)}`).join(" "), class: "series" }),
    scored.map((p) => svg("circle", { cx: x(p.time), cy: y(p.value), r: 4, class: p.current ? "point current" : "point" },
      svg("title", {}, `${day(p.date)}: ${p.text}`))),
    svg("text", { x: L, y: H - 6, class: "axis" }, day(scored[0].date)),
    svg("text", { x: W - R, y: H - 6, class: "axis", "text-anchor": "end" }, day(scored[scored.length - 1].date)));
}

// One point per case with a result: its screening score (or, without one, the probability of
// the class the first result found), against the threshold when there is one.
function chart(points) {
  const scored = points.filter((p) => typeof p.score === "number")
    .map((p) => ({ ...p, value: p.score, text: percent(p.score) }));
  if (scored.length < 2) return null;
  const label = scored[0].label;
  return timeChart(scored, {
    id: "trend-title", low: 0, high: 1, tick: (v) => `${v * 100} %`,
    title: `${label} over time: ${scored.map((p) => `${day(p.date)} ${percent(p.score)}`).join(", ")}`,
    threshold: scored.map((p) => p.threshold).find((v) => typeof v === "number"),
  });
}

// The lesion's area over time, for the cases of one body site whose areas share a unit, and the
// change from the first to the last.
function areaTrend(points) {
  const measured = points.filter((p) => p.lesion && p.lesion.area);
  if (measured.length < 2) return null;
  const unit = measured[measured.length - 1].lesion.area.code;
  const same = measured.filter((p) => p.lesion.area.code === unit)
    .map((p) => ({ ...p, value: p.lesion.area.value, text: areaText(p.lesion.area) }));
  if (same.length < 2) return null;
  const first = same[0], last = same[same.length - 1];
  const change = first.value > 0 ? ((last.value - first.value) / first.value) * 100 : NaN;
  const summary = `Lesion area ${areaText(first.lesion.area)} on ${day(first.date)} → ${areaText(last.lesion.area)} on ${day(last.date)}`
    + (Number.isFinite(change) ? ` (${change >= 0 ? "+" : "−"}${Math.abs(change).toFixed(0)} %)` : "");
  const high = Math.max(...same.map((p) => p.value)) * 1.1;
  return h("div", { class: "area-trend" },
    h("p", { class: "area-change" }, h("strong", {}, summary), unit === "{pixels}"
      ? " — in pixels of each photo: comparable only between photos taken at the same distance and zoom (e.g. the same dermatoscope)." : "."),
    timeChart(same, {
      id: `area-title-${same[0].task.id}`, low: 0, high, cls: "area", tick: (v) => areaText({ ...last.lesion.area, value: Math.round(v) }),
      title: `Lesion area over time: ${same.map((p) => `${day(p.date)} ${p.text}`).join(", ")}`,
    }));
}

export async function historyPanel(fhir, patientRef, currentCaseId) {
  // The case Tasks only (a code of the case system; their steps have step codes).
  const bundle = await fhir.search("Task", { patient: patientRef, code: `${CASE}|`, _sort: "authored-on", _count: "50" });
  const cases = entries(bundle).filter((t) => codeOf(t.code, CASE) && !(t.partOf || []).length);
  const shown = await Promise.all(cases.map(async (c) => {
    const focus = (c.focus || {}).reference || "";
    const [media, result] = await Promise.all([
      focus.startsWith("Media/") ? fhir.read(focus).catch(() => null) : null,
      aiResultOf(c) ? fhir.read(aiResultOf(c)).catch(() => null) : null,
    ]);
    let src = null;
    const content = (media && media.content) || {};
    try {
      if (content.data) src = blobUrl(content.data, content.contentType);
      else if ((content.url || "").startsWith("Binary/")) src = await fhir.imageUrl(content.url, content.contentType);
    } catch {
      src = null;
    }
    const date = (media && media.createdDateTime) || c.authoredOn;
    const score = result && (result.component || []).find(isScreening);
    const found = result && (result.component || []).find((x) => !isScreening(x) && isProbability(x) && (x.code.coding || []).some((k) =>
      ((result.valueCodeableConcept || {}).coding || []).some((v) => v.code === k.code)));
    return {
      task: c, media, result, src, date, time: new Date(date).getTime(), current: c.id === currentCaseId,
      lesion: result ? lesionOf(result) : null,
      site: (media && textOf(media.bodySite)) || "body site not recorded",
      score: score ? score.valueQuantity.value : found ? found.valueQuantity.value : undefined,
      threshold: score ? ((score.referenceRange[0] || {}).high || {}).value : undefined,
      // "malignancy probability" (the code), shorter than its display, which lists the classes
      label: score ? (codeOf(score.code) || textOf(score.code)).replace(/-/g, " ") : "probability of the finding",
    };
  }));
  const withPhotos = shown.filter((s) => s.media || s.result).sort((a, b) => a.time - b.time);
  if (withPhotos.length < 2) {
    return h("section", { class: "panel", "aria-labelledby": "history-heading" }, h("h2", { id: "history-heading" }, "Previous results of this patient"),
      h("p", { class: "muted", id: "history" }, "No earlier photo or AI result of this patient."));
  }
  const current = withPhotos.find((s) => s.current);
  const sites = [...new Set(withPhotos.map((s) => s.site))].sort((a, b) => (a === (current || {}).site ? -1 : b === (current || {}).site ? 1 : a.localeCompare(b)));
  // Each photo with the lesion's outline over it (the whole photo is shown: "fit").
  const photo = (s) => {
    if (!s.src) return h("p", { class: "muted" }, "(no photo)");
    const img = h("img", { src: s.src, alt: `${s.site}, ${day(s.date)}` });
    return s.lesion && s.lesion.points ? h("div", { class: "outlined" }, img, outlineOver(img, s.lesion.points, "fit")) : img;
  };
  const groups = sites.map((site) => h("div", { class: "site-group" },
    h("h3", {}, site, current && site === current.site ? " (this photo's site)" : ""),
    h("div", { class: "images" }, withPhotos.filter((s) => s.site === site).map((s) => h("figure", { class: s.current ? "history current" : "history" },
      photo(s),
      h("figcaption", {}, h("strong", {}, when(s.date)), s.current ? " · this case" : "",
        h("br"), `${s.task.description || textOf(s.task.code)} · AI: ${s.result ? textOf(s.result.valueCodeableConcept) || "—" : "no result"}`,
        typeof s.score === "number" ? ` · ${s.label} ${percent(s.score)}` : "",
        s.lesion && s.lesion.area ? ` · lesion area ${areaText(s.lesion.area)}` : "",
        !s.current ? [" · ", h("a", { href: `#/task/${encodeURIComponent(s.task.id)}` }, "Open")] : "")))),
    areaTrend(withPhotos.filter((s) => s.site === site))));
  // All probabilities by date: a row per class, a column per case.
  const results = withPhotos.filter((s) => s.result);
  const labels = [...new Set(results.flatMap((s) => (s.result.component || []).filter(isProbability).map((c) => textOf(c.code))))];
  const table = h("table", { class: "history-table" }, h("caption", {}, "AI probabilities over time"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Class"), results.map((s) => h("th", { scope: "col" }, day(s.date), s.current ? " (this case)" : "")))),
    h("tbody", {}, labels.map((label) => h("tr", {}, h("th", { scope: "row" }, label), results.map((s) => {
      const c = (s.result.component || []).find((x) => isProbability(x) && textOf(x.code) === label);
      return h("td", {}, c ? percent(c.valueQuantity.value) : "—");
    }))),
    results.some((s) => s.lesion && s.lesion.area)
      ? h("tr", { class: "lesion-area" }, h("th", { scope: "row" }, "Lesion area (outline on the photo)"),
        results.map((s) => h("td", {}, s.lesion && s.lesion.area ? areaText(s.lesion.area) : "—")))
      : null));
  return h("section", { class: "panel", "aria-labelledby": "history-heading" }, h("h2", { id: "history-heading" }, "Previous results of this patient"),
    h("div", { id: "history" }, groups, chart(results), table));
}
