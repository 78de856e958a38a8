// Chest X-ray: send a chest X-ray image (JPEG, PNG or DICOM; the camera on a phone, a file, or
// dropped on the box) with upload progress. `POST Patient/{id}/$upload-xray` checks it (the
// pneumonia model's quality gate: a skin photo is refused with the reason), stores it in the
// patient's own record and starts the chest X-ray case (imaging-review). Each X-ray's case
// follows in plain words; its result shows only once a clinician has verified it.
// Used by the patient (#/xray) and by a community health worker for a patient (#/patient/{id}/xray).
import { useState } from "preact/hooks";
import { when } from "./format.js";
import { useLoad } from "./hooks.js";
import { base64Of, businessCode, caseAbout, caseStatusForPatient, caseTasks } from "./media.js";
import { t } from "./strings.js";
import { FileDrop, Progress } from "./upload.jsx";

const IO_SYSTEM = "http://hearth.local/fhir/CodeSystem/task-io";
const FINAL = ["final", "amended", "corrected"];
const MAX_BYTES = 20 * 1024 * 1024; // fhir_server/rest/operations/patient_upload_xray.py MAX_BYTES

/** The content type Hearth takes for `file` (a DICOM file has "DICM" at byte 128), or null. */
export async function xrayType(file) {
  if (/^image\/(jpeg|png)$/.test(file.type)) return file.type;
  const head = new Uint8Array(await file.slice(0, 132).arrayBuffer());
  const dicm = head.length === 132 && String.fromCharCode(...head.subarray(128)) === "DICM";
  return dicm ? "application/dicom" : null;
}

function XrayInput({ file, onFile }) {
  return (
    <FileDrop
      id="xray"
      label={t("xrayChoose")}
      hint={t("xrayDropHint")}
      accept="image/jpeg,image/png,application/dicom,.dcm"
      testId="xray-drop"
      file={file}
      onFile={onFile}
    >
      {file && <p class="value" data-testid="xray-file">{t("xrayChosen", { name: file.name })}</p>}
    </FileDrop>
  );
}

const ioRefs = (task, label) =>
  (task?.input || [])
    .filter((i) => (i.type?.coding || []).some((c) => c.system === IO_SYSTEM && c.code === label))
    .map((i) => i.valueReference?.reference)
    .filter(Boolean);

function finding(obs) {
  const codings = obs.valueCodeableConcept?.coding || [];
  const known = codings.map((c) => `xrayFinding_${c.code}`).find((k) => t(k) !== k);
  if (known) return t(known);
  return obs.valueCodeableConcept?.text || codings[0]?.display || codings[0]?.code || "";
}

/** The patient's chest X-rays (Media with a DX/CR modality, ImagingStudies) with their cases. */
export function XrayList({ api, patient, version, staff = false }) {
  const P = `Patient/${patient}`;
  const data = useLoad(
    () =>
      Promise.all([
        api.search("Media", { subject: P, _sort: "-created", _count: "50" }),
        api.search("ImagingStudy", { subject: P, _count: "50" }),
        api.search("Task", { patient: P, _sort: "-authored-on", _count: "100" }),
        api.search("Observation", { subject: P, _count: "100" }),
      ]),
    [api, P, version],
  );
  if (data.error) return <div class="alert" role="alert">{data.error.message}</div>;
  if (!data.data) return <p>{t("loading")}</p>;
  const [media, studies, tasks, observations] = data.data;
  const radiograph = (m) => !m.partOf && (m.modality?.coding || []).some((c) => ["DX", "CR"].includes(c.code));
  const items = [
    ...media.filter(radiograph).map((m) => ({ ref: `Media/${m.id}`, at: m.createdDateTime || m.meta?.lastUpdated, kind: t("xrayImage") })),
    ...studies.map((s) => ({ ref: `ImagingStudy/${s.id}`, at: s.meta?.lastUpdated, taken: s.started, kind: t("xrayDicom") })),
  ].sort((a, b) => String(b.at).localeCompare(String(a.at)));
  const cases = caseTasks(tasks);
  const failedAnalysis = (c) =>
    tasks.find((x) => x.status === "failed" && (x.partOf || []).some((p) => p.reference === `Task/${c.id}`) && x.statusReason);
  const byId = Object.fromEntries(observations.map((o) => [`Observation/${o.id}`, o]));
  if (items.length === 0) return <p>{t("xrayNone")}</p>;
  return (
    <ul class="cards xrays">
      {items.map((item) => {
        const c = caseAbout(cases, item.ref);
        const failed = c && failedAnalysis(c);
        const code = businessCode(c);
        let status;
        if (failed) status = t("xrayRefused", { reason: failed.statusReason.text || failed.statusReason.coding?.[0]?.display || "" });
        else if (!c) status = staff ? t("staff_undefined") : t("caseReviewing");
        else status = staff ? t(`staff_${code}`) : caseStatusForPatient(code);
        const results = (c ? ioRefs(c, "ai-result") : []).map((r) => byId[r]).filter((o) => o && FINAL.includes(o.status));
        return (
          <li class="card" key={item.ref} data-xray={item.ref}>
            <h3>{item.kind}</h3>
            <p class="meta">
              {t("xraySentOn", { when: when(item.at) })}
              {item.taken ? ` · ${t("xrayTakenOn", { when: when(item.taken) })}` : ""}
            </p>
            <p class="case-status">{status}</p>
            {results.map((o) => (
              <p class="value xray-result">{t("xrayResult", { finding: finding(o) })}</p>
            ))}
            {results.length === 0 && c && !failed && <p class="meta">{t("xrayResultLater")}</p>}
            {results.length > 0 && <p class="disclaimer">{t("disclaimer")}</p>}
          </li>
        );
      })}
    </ul>
  );
}

/** The form: choose or drop the file, send it with progress, start its case. */
export function XrayUpload({ api, patient, say, onSent }) {
  const [file, setFile] = useState(null);
  const [progress, setProgress] = useState(null);
  const send = async (ev) => {
    ev.preventDefault();
    say.clear();
    if (!file) return;
    const kind = await xrayType(file);
    if (!kind) {
      say.error(t("xrayType"));
      return;
    }
    if (file.size === 0) {
      say.error(t("xrayEmpty"));
      return;
    }
    if (file.size > MAX_BYTES) {
      say.error(t("xrayTooLarge", { mb: MAX_BYTES / (1024 * 1024) }));
      return;
    }
    try {
      setProgress(0);
      const data = await base64Of(file);
      await api.upload(
        `Patient/${patient}/$upload-xray`,
        { resourceType: "Parameters", parameter: [{ name: "image", valueAttachment: { contentType: kind, data } }] },
        setProgress,
      );
      say.ok(t("xraySent"));
      setFile(null);
      onSent();
    } catch (e) {
      say.error(e);
    } finally {
      setProgress(null);
    }
  };
  return (
    <form class="upload" onSubmit={send}>
      <h2>{t("xraySend")}</h2>
      <p>{t("xraySendIntro")}</p>
      <XrayInput
        file={file}
        onFile={(f) => {
          say.clear();
          setFile(f);
        }}
      />
      <Progress value={progress} label="xraySending" />
      <button class="primary" type="submit" disabled={!file || progress !== null}>{t("xraySendButton")}</button>
    </form>
  );
}

export function XrayScreen({ api, patient, say }) {
  const [version, setVersion] = useState(0);
  return (
    <>
      <h1>{t("xrayTitle")}</h1>
      <XrayUpload api={api} patient={patient} say={say} onSent={() => setVersion((v) => v + 1)} />
      <section aria-labelledby="xrays-h">
        <h2 id="xrays-h">{t("xrayYours")}</h2>
        <XrayList api={api} patient={patient} version={version} />
      </section>
    </>
  );
}
