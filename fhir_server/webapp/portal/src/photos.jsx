// Photos: send a skin photo (camera on a phone, a file or drag-and-drop), which starts a
// skin-screening case, and follow each photo's case.
import { useEffect, useRef, useState } from "preact/hooks";
import { when } from "./format.js";
import { useLoad } from "./hooks.js";
import { t } from "./strings.js";

const CASE_SYSTEM = "http://hearth.local/fhir/CodeSystem/workflow-case";
const MAX_SIDE = 2048; // photos are made smaller before sending: the analysis needs far less
const BODY_SITES = ["siteHead", "siteChest", "siteBack", "siteArm", "siteHand", "siteLeg", "siteFoot", "siteOther"];

/** The photo as a JPEG of at most MAX_SIDE pixels a side, base64. */
async function prepare(file) {
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
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function statusOf(caseTask) {
  if (!caseTask) return t("caseReviewing");
  const code = caseTask.businessStatus?.coding?.[0]?.code || "";
  return t(`case_${code}`) === `case_${code}` ? t("caseReviewing") : t(`case_${code}`);
}

function blobUrl(media) {
  const data = media.content?.data;
  if (!data) return null;
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  return URL.createObjectURL(new Blob([bytes], { type: media.content.contentType || "image/jpeg" }));
}

function PhotoList({ api, patient, version }) {
  const P = `Patient/${patient}`;
  const data = useLoad(
    () =>
      Promise.all([
        api.search("Media", { subject: P, _sort: "-created", _count: "20" }),
        api.search("Task", { patient: P, _sort: "-authored-on", _count: "50" }),
      ]),
    [api, P, version],
  );
  const [urls, setUrls] = useState({});
  useEffect(() => {
    if (!data.data) return undefined;
    const made = {};
    for (const m of data.data[0]) made[m.id] = blobUrl(m);
    setUrls(made);
    return () => Object.values(made).forEach((u) => u && URL.revokeObjectURL(u));
  }, [data.data]);
  if (data.error) return <div class="alert" role="alert">{data.error.message}</div>;
  if (!data.data) return <p>{t("loading")}</p>;
  const [media, tasks] = data.data;
  const photos = media.filter((m) => !m.partOf && (m.content?.contentType || "").startsWith("image/"));
  const cases = tasks.filter((x) => !x.partOf && x.code?.coding?.some((c) => c.system === CASE_SYSTEM));
  const caseOf = (m) => cases.find((c) => c.focus?.reference === `Media/${m.id}`);
  if (photos.length === 0) return <p>{t("noPhotos")}</p>;
  return (
    <ul class="cards photos">
      {photos.map((m) => (
        <li class="card" key={m.id} data-media={m.id}>
          {urls[m.id] && <img src={urls[m.id]} alt={t("photoAlt", { site: m.bodySite?.text || "" })} />}
          <p class="meta">{m.bodySite?.text ? `${m.bodySite.text} · ` : ""}{when(m.createdDateTime)}</p>
          <p class="case-status">{statusOf(caseOf(m))}</p>
        </li>
      ))}
    </ul>
  );
}

export function PhotosScreen({ api, patient, say }) {
  const P = `Patient/${patient}`;
  const [file, setFile] = useState(null);
  const [preview, setPreview] = useState(null);
  const [site, setSite] = useState(BODY_SITES[0]);
  const [progress, setProgress] = useState(null);
  const [version, setVersion] = useState(0);
  const [dragging, setDragging] = useState(false);
  const input = useRef(null);
  useEffect(() => {
    if (!file) return undefined;
    const url = URL.createObjectURL(file);
    setPreview(url);
    return () => URL.revokeObjectURL(url);
  }, [file]);
  const pick = (f) => {
    say.clear();
    if (f) setFile(f);
  };
  const send = async (ev) => {
    ev.preventDefault();
    if (!file) return;
    try {
      setProgress(0);
      const data = await prepare(file);
      const media = await api.upload(
        "Media",
        {
          resourceType: "Media",
          status: "completed",
          subject: { reference: P },
          createdDateTime: new Date().toISOString(),
          bodySite: { text: t(site) },
          content: { contentType: "image/jpeg", data, title: t("photoTitle") },
        },
        (fraction) => setProgress(fraction),
      );
      await api.op("Task/$start-case", [
        { name: "caseType", valueCode: "skin-screening" },
        { name: "patient", valueReference: { reference: P } },
        { name: "focus", valueReference: { reference: `Media/${media.id}` } },
      ]);
      say.ok(t("photoSent"));
      setFile(null);
      setPreview(null);
      if (input.current) input.current.value = "";
      setVersion((v) => v + 1);
    } catch (e) {
      say.error(e);
    } finally {
      setProgress(null);
    }
  };
  return (
    <>
      <h1>{t("photos")}</h1>
      <form class="upload" onSubmit={send}>
        <h2>{t("sendPhoto")}</h2>
        <p>{t("sendPhotoIntro")}</p>
        <div
          class={`drop${dragging ? " dragging" : ""}`}
          onDragOver={(e) => {
            e.preventDefault();
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={(e) => {
            e.preventDefault();
            setDragging(false);
            pick(e.dataTransfer.files[0]);
          }}
        >
          <label for="photo">{t("choosePhoto")}</label>
          <input
            id="photo"
            ref={input}
            type="file"
            accept="image/jpeg,image/png"
            capture="environment"
            onChange={(e) => pick(e.currentTarget.files[0])}
          />
          <p class="meta">{t("dropHint")}</p>
        </div>
        {preview && <img class="preview" src={preview} alt={t("previewAlt")} />}
        <label for="site">{t("bodySite")}</label>
        <select id="site" value={site} onChange={(e) => setSite(e.currentTarget.value)}>
          {BODY_SITES.map((s) => (
            <option value={s}>{t(s)}</option>
          ))}
        </select>
        {progress !== null && (
          <p>
            <label for="progress">{t("sending")}</label>
            <progress id="progress" max="1" value={progress} />
          </p>
        )}
        <button class="primary" type="submit" disabled={!file || progress !== null}>{t("sendPhotoButton")}</button>
      </form>
      <section aria-labelledby="photos-h">
        <h2 id="photos-h">{t("yourPhotos")}</h2>
        <PhotoList api={api} patient={patient} version={version} />
      </section>
    </>
  );
}
