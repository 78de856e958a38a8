// Photos: send a skin photo (camera on a phone, a file or drag-and-drop), which starts a
// skin-screening case, and follow each photo's case.
import { useState } from "preact/hooks";
import { when } from "./format.js";
import { LiveNote, useLive, useLoad } from "./hooks.js";
import { businessCode, caseAbout, caseStatusForPatient, caseTasks, useMediaUrls } from "./media.js";
import { BODY_SITES, BodySite, PhotoInput, Progress, sendPhoto } from "./photo.js";
import { t } from "./strings.js";

function statusOf(caseTask) {
  return caseTask ? caseStatusForPatient(businessCode(caseTask)) : t("caseReviewing");
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
  // Each case's status follows its Tasks live (the same Subscription as Home's Task criteria).
  const live = useLive(api, [`Task?patient=${P}`], data.reload);
  const urls = useMediaUrls(data.data?.[0]);
  if (data.error) return <div class="alert" role="alert">{data.error.message}</div>;
  if (!data.data) return <p>{t("loading")}</p>;
  const [media, tasks] = data.data;
  const photos = media.filter((m) => !m.partOf && (m.content?.contentType || "").startsWith("image/"));
  const cases = caseTasks(tasks);
  const caseOf = (m) => caseAbout(cases, `Media/${m.id}`);
  if (photos.length === 0) return <><LiveNote state={live} /><p>{t("noPhotos")}</p></>;
  return (
    <>
    <LiveNote state={live} />
    <ul class="cards photos">
      {photos.map((m) => (
        <li class="card" key={m.id} data-media={m.id}>
          {urls[m.id] && <img src={urls[m.id]} alt={t("photoAlt", { site: m.bodySite?.text || "" })} />}
          <p class="meta">{m.bodySite?.text ? `${m.bodySite.text} · ` : ""}{when(m.createdDateTime)}</p>
          <p class="case-status">{statusOf(caseOf(m))}</p>
        </li>
      ))}
    </ul>
    </>
  );
}

export function PhotosScreen({ api, patient, say }) {
  const P = `Patient/${patient}`;
  const [file, setFile] = useState(null);
  const [site, setSite] = useState(BODY_SITES[0]);
  const [progress, setProgress] = useState(null);
  const [version, setVersion] = useState(0);
  const send = async (ev) => {
    ev.preventDefault();
    if (!file) return;
    try {
      setProgress(0);
      const media = await sendPhoto(api, P, file, t(site), setProgress);
      await api.op("Task/$start-case", [
        { name: "caseType", valueCode: "skin-screening" },
        { name: "patient", valueReference: { reference: P } },
        { name: "focus", valueReference: { reference: `Media/${media.id}` } },
      ]);
      say.ok(t("photoSent"));
      setFile(null);
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
        <PhotoInput
          file={file}
          onFile={(f) => {
            say.clear();
            setFile(f);
          }}
        />
        <BodySite value={site} onChange={setSite} sites={BODY_SITES} />
        <Progress value={progress} />
        <button class="primary" type="submit" disabled={!file || progress !== null}>{t("sendPhotoButton")}</button>
      </form>
      <section aria-labelledby="photos-h">
        <h2 id="photos-h">{t("yourPhotos")}</h2>
        <PhotoList api={api} patient={patient} version={version} />
      </section>
    </>
  );
}
