// The lesion's outline and area stored on an AI result (components "lesion-outline": SVG
// polygon points in fractions of the photo's width and height; "lesion-area": a quantity in
// pixels, or mm² when the photo's scale is known), drawn over the photo as SVG.
import { textOf } from "./dom.js";

const AI = "http://hearth.local/fhir/CodeSystem/ai-analysis";
const SVG = "http://www.w3.org/2000/svg";

const component = (result, code) => ((result && result.component) || [])
  .find((c) => ((c.code || {}).coding || []).some((k) => k.system === AI && k.code === code));

// A probability component (UCUM "1"), as opposed to a lesion measurement.
export const isProbability = (c) => Boolean(c.valueQuantity) && typeof c.valueQuantity.value === "number"
  && (c.valueQuantity.code || "1") === "1";

// { points: [[x, y], …] or null, area: Quantity or null, absent: text or "" } — or null when the
// result carries no segmentation.
export function lesionOf(result) {
  const outline = component(result, "lesion-outline");
  const area = component(result, "lesion-area");
  if (!outline && !area) return null;
  let points = null;
  if (outline && typeof outline.valueString === "string") {
    points = outline.valueString.trim().split(/\s+/).map((pair) => pair.split(",").map(Number))
      .filter((p) => p.length === 2 && p.every((v) => Number.isFinite(v) && v >= 0 && v <= 1));
    if (points.length < 3) points = null;
  }
  return {
    points,
    area: area && area.valueQuantity && typeof area.valueQuantity.value === "number" ? area.valueQuantity : null,
    absent: area && area.dataAbsentReason ? textOf(area.dataAbsentReason) : "",
  };
}

export function areaText(quantity) {
  if (!quantity) return "";
  const unit = quantity.code === "mm2" ? "mm²" : quantity.unit || quantity.code || "";
  const digits = quantity.code === "mm2" ? 1 : 0;
  return `${quantity.value.toLocaleString(undefined, { maximumFractionDigits: digits })} ${unit}`.trim();
}

// An SVG laid over ``img`` (its container must be position: relative) outlining the lesion.
// "fit": the photo is shown whole; "cover": the photo fills a square, centre-cropped (as
// object-fit: cover does), so the SVG crops the same way once the photo's size is known.
export function outlineOver(img, points, mode = "fit") {
  const el = document.createElementNS(SVG, "svg");
  el.setAttribute("class", "lesion-outline");
  el.setAttribute("aria-hidden", "true");
  el.setAttribute("viewBox", "0 0 1 1");
  el.setAttribute("preserveAspectRatio", mode === "cover" ? "xMidYMid slice" : "none");
  const polygon = document.createElementNS(SVG, "polygon");
  polygon.setAttribute("points", points.map(([x, y]) => `${x},${y}`).join(" "));
  el.append(polygon);
  if (mode === "cover") {
    const size = () => {
      const W = img.naturalWidth, H = img.naturalHeight;
      if (!W || !H) return;
      el.setAttribute("viewBox", `0 0 ${W} ${H}`);
      polygon.setAttribute("points", points.map(([x, y]) => `${x * W},${y * H}`).join(" "));
    };
    if (img.complete) size();
    img.addEventListener("load", size);
  }
  return el;
}
