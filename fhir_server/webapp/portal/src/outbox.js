// Captures waiting to be sent: a cadre's screening photo and its case parameters are kept in
// IndexedDB (in this browser, for the signed-in user) before anything is sent, and sent again when
// the connection is back or on a timer until the server has them. Each capture has a key made
// here: the Media is a conditional create on it (identifier, If-None-Exist) and $start-case is
// keyed the same, so a retry after a lost response finds what the first try made: never lost,
// never sent twice.
import { t } from "./strings.js";

export const CAPTURE_SYSTEM = "urn:hearth:portal-capture";
const DB = "hearth-outbox";
const STORE = "captures";
const RETRY_MS = 20_000;

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "key" });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function store(mode, fn) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = fn(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req?.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

const listeners = new Set();
const sending = new Set(); // keys being sent now
async function changed() {
  const all = await pending();
  listeners.forEach((fn) => fn(all));
}

/** Call `fn` with the pending captures whenever they change; returns the unsubscribe. */
export function watch(fn) {
  listeners.add(fn);
  pending().then(fn, () => fn([]));
  return () => listeners.delete(fn);
}

let owner = null;
/** The captures waiting of the signed-in user, oldest first, each with `sending` while sent. */
export async function pending() {
  const all = (await store("readonly", (s) => s.getAll())) || [];
  return all
    .filter((c) => c.owner === owner)
    .sort((a, b) => a.created.localeCompare(b.created))
    .map((c) => ({ ...c, sending: sending.has(c.key) }));
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** Keep a capture (before sending it): `data` the JPEG as base64, `params` $start-case's extra
 *  parameters (priority, note, referredTo). Returns its key. */
export async function keep({ patient, data, site, params }) {
  const capture = {
    key: newKey(),
    owner,
    patient,
    data,
    site,
    params,
    created: new Date().toISOString(),
    media: null,
    error: null,
  };
  await store("readwrite", (s) => s.put(capture));
  await changed();
  return capture.key;
}

async function sendOne(api, c) {
  if (!c.media) {
    const media = await api.upload(
      "Media",
      {
        resourceType: "Media",
        status: "completed",
        identifier: [{ system: CAPTURE_SYSTEM, value: c.key }],
        subject: { reference: c.patient },
        createdDateTime: c.created,
        bodySite: { text: c.site },
        content: { contentType: "image/jpeg", data: c.data, title: t("photoTitle") },
      },
      () => {},
      { "If-None-Exist": `identifier=${CAPTURE_SYSTEM}|${c.key}` },
    );
    c.media = `Media/${media.id}`;
    await store("readwrite", (s) => s.put({ ...c, error: null }));
  }
  const caseTask = await api.op("Task/$start-case", [
    { name: "caseType", valueCode: "skin-screening" },
    { name: "patient", valueReference: { reference: c.patient } },
    { name: "focus", valueReference: { reference: c.media } },
    { name: "key", valueString: c.key },
    ...c.params,
  ]);
  await store("readwrite", (s) => s.delete(c.key));
  return caseTask;
}

let running = null;
/** Send every pending capture once (one run at a time); the keys of those that reached the
 *  server. A capture that fails stays, with the reason, for the next try. */
export function flush(api) {
  if (running) return running.then(() => flush(api));
  running = (async () => {
    const sent = [];
    for (const c of await pending()) {
      sending.add(c.key);
      await changed();
      try {
        await sendOne(api, c);
        sent.push(c.key);
      } catch (e) {
        if (e.status === 401) break;
        await store("readwrite", (s) => s.put({ ...c, sending: undefined, error: e.message || String(e) }));
      } finally {
        sending.delete(c.key);
      }
    }
    await changed();
    return sent;
  })().finally(() => {
    running = null;
  });
  return running;
}

/** Start sending for `user` (the signed-in fhirUser): now, when back online and on a timer.
 *  Returns the stop. */
export function startOutbox(api, user) {
  owner = user || null;
  const go = () => navigator.onLine !== false && flush(api).catch(() => {});
  addEventListener("online", go);
  const timer = setInterval(go, RETRY_MS);
  go();
  return () => {
    removeEventListener("online", go);
    clearInterval(timer);
  };
}
