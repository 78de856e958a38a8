// A patient's photos and X-rays as the portal shows and sends them, and the case Tasks about
// them: shared by the patient's photos (photos.jsx), the lesion history (lesions.jsx), chest
// X-rays (xray.jsx), the cadre's screens (cadre.jsx) and the lung check (lungrisk.jsx).
import { useEffect, useState } from "preact/hooks";
import { t } from "./strings.js";

export const CASE_SYSTEM = "http://hearth.local/fhir/CodeSystem/workflow-case";

/** A Media's inline content as a `blob:` URL (null when it has none); revoke it when done. */
export function blobUrl(media) {
  const data = media.content?.data;
  if (!data) return null;
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  return URL.createObjectURL(new Blob([bytes], { type: media.content.contentType || "image/jpeg" }));
}

/** `blob:` URLs of `media` (a list of Media; nothing while it is not loaded) by Media id; they
 *  are revoked when the list changes and when the component goes. */
export function useMediaUrls(media) {
  const [urls, setUrls] = useState({});
  useEffect(() => {
    if (!media) return undefined;
    const made = {};
    for (const m of media) made[m.id] = blobUrl(m);
    setUrls(made);
    return () => Object.values(made).forEach((u) => u && URL.revokeObjectURL(u));
  }, [media]);
  return urls;
}

/** The bytes of `blob` (a File or Blob) in base64, for a FHIR attachment's `data`. */
export async function base64Of(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** The case Tasks among `tasks`: not part of another, coded in the workflow-case system. */
export function caseTasks(tasks) {
  return tasks.filter((x) => !x.partOf && (x.code?.coding || []).some((c) => c.system === CASE_SYSTEM));
}

/** The case about `reference` ("Media/…", "ImagingStudy/…") among `cases`, or undefined. */
export function caseAbout(cases, reference) {
  return cases.find((c) => c.focus?.reference === reference);
}

/** A case Task's business status code ("" when it has none). */
export function businessCode(task) {
  return task?.businessStatus?.coding?.[0]?.code || "";
}

/** A case's business status `code` in the patient's words: "Being looked at by your care
 *  team" for a status without words of its own. */
export function caseStatusForPatient(code) {
  return t(`case_${code}`) === `case_${code}` ? t("caseReviewing") : t(`case_${code}`);
}
