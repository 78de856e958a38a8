// A photo from the camera or a file, made ready to send: a JPEG of at most MAX_SIDE pixels a
// side (the analysis needs far less), base64 for a FHIR Media's inline content.
import { base64Of } from "./media.js";
import { t } from "./strings.js";

const MAX_SIDE = 2048; // photos are made smaller before sending: the analysis needs far less
export const BODY_SITES = ["siteHead", "siteChest", "siteBack", "siteArm", "siteHand", "siteLeg", "siteFoot", "siteOther"];

/** The photo as a JPEG of at most MAX_SIDE pixels a side, base64. */
export async function prepare(file) {
  if (!/^image\/(jpeg|png)$/.test(file.type)) throw new Error(t("photoType"));
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error(t("photoType"));
  }
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  const blob = await new Promise((ok) => canvas.toBlob(ok, "image/jpeg", 0.9));
  return base64Of(blob);
}

export { BodySite, PhotoInput, Progress } from "./photoinput.jsx";

/** Post the photo as a Media of `subject` (inline JPEG, body site as text), with progress. */
export async function sendPhoto(api, subject, file, site, onProgress) {
  const data = await prepare(file);
  return api.upload(
    "Media",
    {
      resourceType: "Media",
      status: "completed",
      subject: { reference: subject },
      createdDateTime: new Date().toISOString(),
      bodySite: { text: site },
      content: { contentType: "image/jpeg", data, title: t("photoTitle") },
    },
    onProgress,
  );
}
