// Small DOM helpers: elements are built with text nodes, never from HTML strings.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function show(container, ...children) {
  container.replaceChildren(...children.flat(Infinity).filter(Boolean));
}

export function humanName(resource) {
  const name = ((resource && resource.name) || [])[0];
  if (!name) return resource && resource.id ? `${resource.resourceType}/${resource.id}` : "Unknown";
  if (name.text) return name.text;
  return [...(name.prefix || []), ...(name.given || []), name.family].filter(Boolean).join(" ") || "Unnamed";
}

// Dates and times in the user's locale and time zone (the browser's): Intl.DateTimeFormat.
const DATE_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const DATE = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" });
const LOCAL_DATE = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

export function when(instant) {
  if (!instant) return "";
  if (/^\d{4}(-\d{2}(-\d{2})?)?$/.test(instant)) return day(instant); // a date has no time zone
  const date = new Date(instant);
  return Number.isNaN(date.getTime()) ? instant : DATE_TIME.format(date);
}

// A FHIR date (1961-04-12) as that calendar day, whatever the user's time zone.
// The calendar day of a date (as written: a date has no time zone) or of an instant (in the
// user's time zone, as when() shows it: 21:10 UTC is already the next day in Nairobi).
export function day(value) {
  if (!value) return "";
  if (!/^\d{4}-\d{2}-\d{2}/.test(value)) return value;
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(value)) {
    const instant = new Date(value);
    if (!Number.isNaN(instant.getTime())) return LOCAL_DATE.format(instant);
  }
  const date = new Date(`${value.slice(0, 10)}T00:00:00Z`);
  return Number.isNaN(date.getTime()) ? value : DATE.format(date);
}

// <time datetime="…">formatted</time>, so the instant itself stays in the page.
export function time(instant) {
  return instant ? h("time", { datetime: instant }, when(instant)) : "";
}

export function codeOf(concept, system) {
  const coding = ((concept && concept.coding) || []).find((c) => !system || c.system === system);
  return coding ? coding.code : undefined;
}

export function textOf(concept) {
  if (!concept) return "";
  const coding = (concept.coding || [])[0] || {};
  return concept.text || coding.display || coding.code || "";
}
