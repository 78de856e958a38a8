// Calls to Hearth's FHIR API with the signed-in user's token; an OperationOutcome becomes an
// error message in plain words.
import { humanName, textOf, when } from "./dom.js";

const PLAIN = {
  400: "The server could not accept this",
  401: "Your sign-in has ended; please sign in again",
  403: "You are not allowed to do this",
  404: "This was not found (or is not visible to you)",
  409: "This has changed in the meantime",
  410: "This has been deleted",
  412: "This has changed in the meantime; reload and try again",
  422: "The server could not accept this",
};

export class FhirError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// "Not allowed: the step belongs to Practitioner/2." from an OperationOutcome and a status.
export function plainWords(status, outcome) {
  const details = ((outcome && outcome.issue) || [])
    .map((i) => i.diagnostics || (i.details && i.details.text) || "")
    .filter(Boolean);
  const lead = PLAIN[status] || `The server answered with an error (${status})`;
  return details.length ? `${lead}: ${details.join("; ")}.` : `${lead}.`;
}

export class Fhir {
  constructor(base, token, onUnauthorized) {
    this.base = base;
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async request(path, { method = "GET", params, body, accept = "application/fhir+json" } = {}) {
    const url = new URL(`${this.base}/${path}`);
    if (params) url.search = new URLSearchParams(params).toString();
    const headers = { Authorization: `Bearer ${this.token}`, Accept: accept };
    if (body !== undefined) headers["Content-Type"] = "application/fhir+json";
    let resp;
    try {
      resp = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new FhirError(0, "The server could not be reached. Check the connection and try again.");
    }
    if (!resp.ok) {
      const outcome = await resp.json().catch(() => null);
      if (resp.status === 401 && this.onUnauthorized) this.onUnauthorized();
      throw new FhirError(resp.status, plainWords(resp.status, outcome));
    }
    return resp;
  }

  async json(path, options) {
    return (await this.request(path, options)).json();
  }

  read(reference) {
    return this.json(reference);
  }

  // params: an object, or [name, value] pairs when a name repeats (_include).
  search(type, params) {
    return this.json(type, { params });
  }

  // Each reference read once (in parallel); an unreadable one is null, not an error.
  async readAll(references) {
    const unique = [...new Set(references.filter((r) => /^[A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/.test(r)))];
    const read = await Promise.all(unique.map((r) => this.read(r).catch(() => null)));
    return new Map(unique.map((r, n) => [r, read[n]]));
  }

  // POST an operation with a Parameters body built from [name, {valueX: …} | {resource: …}].
  operation(path, parts = []) {
    const parameter = parts.map(([name, value]) => ({ name, ...value }));
    return this.json(path, { method: "POST", body: { resourceType: "Parameters", parameter } });
  }

  // An image as a blob: URL (the token cannot ride on an <img src>). A Binary comes as FHIR
  // JSON with base64 data; other URLs (DICOMweb rendered) as the image itself.
  async imageUrl(pathOrReference, contentType) {
    if (pathOrReference.startsWith("Binary/")) {
      const binary = await this.read(pathOrReference);
      return blobUrl(binary.data || "", binary.contentType || contentType);
    }
    const resp = await this.request(pathOrReference, { accept: contentType || "image/png" });
    const url = URL.createObjectURL(await resp.blob());
    images.push(url);
    return url;
  }
}

let images = []; // blob: URLs of the images on screen, released when the view changes

export function blobUrl(base64, contentType) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const url = URL.createObjectURL(new Blob([bytes], { type: contentType || "application/octet-stream" }));
  images.push(url);
  return url;
}

// The blob: URLs made so far; the caller revokes them once their view is replaced.
export function takeImages() {
  const taken = images;
  images = [];
  return taken;
}

// Who a reference names, in words: "Dr Amina Otieno", not "Practitioner/demo-doctor". People
// (Practitioner, PractitionerRole → its Practitioner, Patient, RelatedPerson), Organizations and
// Devices are read once each; a reference that cannot be read stays as it is.
const PEOPLE = /^(Practitioner|PractitionerRole|Patient|RelatedPerson|Organization|Device)\//;
const HEARTH_DEVICES = { "Device/hearth-workflow": "Hearth (automatic)", "Device/hearth-inference": "Hearth AI" };

export class Names {
  constructor(fhir) {
    this.fhir = fhir;
    this.known = new Map();
  }

  add(resources) {
    for (const r of resources) if (r && r.resourceType && r.id) this.known.set(`${r.resourceType}/${r.id}`, r);
  }

  async load(references) {
    const wanted = references.filter((r) => r && PEOPLE.test(r) && !this.known.has(r) && !HEARTH_DEVICES[r]);
    const read = await this.fhir.readAll(wanted);
    for (const [r, resource] of read) this.known.set(r, resource);
    const practitioners = [...read.values()]
      .filter((r) => r && r.resourceType === "PractitionerRole")
      .map((r) => (r.practitioner || {}).reference);
    if (practitioners.length) await this.load(practitioners);
  }

  // Free text the server wrote ("Patient/1a2b has no e-mail address") with the references it
  // names that are known here written as names.
  inText(text) {
    return String(text || "").replace(/\b(Practitioner|PractitionerRole|Patient|RelatedPerson|Organization|Device|Appointment)\/[A-Za-z0-9\-.]{1,64}/g,
      (r) => (this.known.get(r) || HEARTH_DEVICES[r] ? this.of(r) : r));
  }

  of(reference) {
    const r = typeof reference === "string" ? reference : (reference && reference.reference) || "";
    if (!r) return (reference && reference.display) || "—";
    if (HEARTH_DEVICES[r]) return HEARTH_DEVICES[r];
    const resource = this.known.get(r);
    if (!resource) return (reference && reference.display) || r;
    switch (resource.resourceType) {
      case "PractitionerRole": {
        const person = this.of((resource.practitioner || {}).reference || "");
        const role = (resource.code || []).map(textOf).filter(Boolean).join(", ");
        return role ? `${person} (${role})` : person;
      }
      case "Organization":
        return resource.name || r;
      case "Appointment":
        return resource.start ? `an appointment on ${when(resource.start)}` : "an appointment";
      case "Device":
        return ((resource.deviceName || [])[0] || {}).name || textOf(resource.type) || r;
      default:
        return humanName(resource);
    }
  }
}

// The resources of a search Bundle, by mode ("match" or "include").
export function entries(bundle, mode = "match") {
  return (bundle.entry || [])
    .filter((e) => ((e.search && e.search.mode) || "match") === mode)
    .map((e) => e.resource);
}
