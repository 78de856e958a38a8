// Dates in the reader's words (date-fns), and plain-language views of FHIR values.
import { format, parseISO, isValid } from "date-fns";

export function when(iso) {
  if (!iso) return "";
  const d = parseISO(iso);
  if (!isValid(d)) return iso;
  return iso.length > 10 ? format(d, "EEE d MMM yyyy, HH:mm") : format(d, "d MMM yyyy");
}

export function concept(cc) {
  if (!cc) return "";
  return cc.text || (cc.coding || []).map((c) => c.display || c.code).filter(Boolean).join(", ");
}

export function value(obs) {
  if (obs.valueQuantity) {
    const q = obs.valueQuantity;
    return `${q.value ?? ""} ${q.unit || q.code || ""}`.trim();
  }
  if (obs.valueCodeableConcept) return concept(obs.valueCodeableConcept);
  if (obs.valueString != null) return obs.valueString;
  if (obs.valueBoolean != null) return obs.valueBoolean ? "yes" : "no";
  if (obs.interpretation) return obs.interpretation.map(concept).join(", ");
  return "";
}
