// Lesion history: a patient's skin photos grouped by body site, side by side from the oldest,
// each with its date and — once a clinician verified it — the AI result and the doctor's
// conclusion. The cadre sees it per patient (#/patient/<id>/lesions), the patient their own
// (#/lesions). An unverified (preliminary) AI result is never shown, to either.
import { when } from "./format.js";
import { useLoad } from "./hooks.js";
import { caseAbout, caseTasks, useMediaUrls } from "./media.js";
import { t } from "./strings.js";

const IO = "http://hearth.local/fhir/CodeSystem/task-io";
const VERIFIED = ["final", "amended", "corrected"];

const textOf = (concept) => concept?.text || concept?.coding?.find((c) => c.display)?.display || "";

function aiResultOf(caseTask) {
  const input = (caseTask?.input || []).find((i) => i.type?.coding?.some((c) => c.system === IO && c.code === "ai-result"));
  return input?.valueReference?.reference || "";
}

/** Each photo with its site, date, case, verified result and signed conclusion. */
export function lesionEntries([media, tasks, observations, reports]) {
  const cases = caseTasks(tasks);
  return media
    .filter((m) => !m.partOf && (m.content?.contentType || "").startsWith("image/"))
    .map((m) => {
      const c = caseAbout(cases, `Media/${m.id}`);
      const ref = aiResultOf(c);
      const result = observations.find((o) => ref && `Observation/${o.id}` === ref && VERIFIED.includes(o.status));
      const order = c?.basedOn?.[0]?.reference;
      const report = reports.find(
        (r) => order && VERIFIED.includes(r.status) && (r.basedOn || []).some((b) => b.reference === order),
      );
      return {
        media: m,
        site: m.bodySite?.text || t("siteUnknown"),
        date: m.createdDateTime || c?.authoredOn || "",
        result: result ? textOf(result.valueCodeableConcept) || textOf(result.code) : null,
        conclusion: report?.conclusion || null,
      };
    })
    .sort((a, b) => a.date.localeCompare(b.date));
}

export function LesionHistory({ api, patient }) {
  const P = `Patient/${patient}`;
  const data = useLoad(
    () =>
      Promise.all([
        api.search("Media", { subject: P, _sort: "created", _count: "100" }),
        api.search("Task", { patient: P, _count: "100" }),
        api.search("Observation", { patient: P, _count: "100" }),
        api.search("DiagnosticReport", { patient: P, _count: "100" }),
      ]),
    [api, P],
  );
  const urls = useMediaUrls(data.data?.[0]);
  if (data.error) return <div class="alert" role="alert">{data.error.message}</div>;
  if (!data.data) return <p>{t("loading")}</p>;
  const entries = lesionEntries(data.data);
  if (entries.length === 0) return <p>{t("noPhotos")}</p>;
  const sites = [...new Set(entries.map((e) => e.site))].sort();
  return (
    <div class="lesions">
      {sites.map((site) => (
        <section class="site-group" aria-label={site} data-site={site}>
          <h2>{site}</h2>
          <div class="side-by-side">
            {entries
              .filter((e) => e.site === site)
              .map((e) => (
                <figure class="lesion" data-media={e.media.id}>
                  {urls[e.media.id] && <img src={urls[e.media.id]} alt={t("lesionAlt", { site, date: when(e.date) })} />}
                  <figcaption>
                    <strong>{when(e.date)}</strong>
                    <span class="lesion-result">{e.result ? t("lesionResult", { result: e.result }) : t("lesionNotReviewed")}</span>
                    {e.conclusion && <span class="lesion-conclusion">{t("lesionConclusion", { text: e.conclusion })}</span>}
                  </figcaption>
                </figure>
              ))}
          </div>
        </section>
      ))}
      <p class="meta">{t("disclaimer")}</p>
    </div>
  );
}

/** The patient's own lesion history. */
export function LesionsScreen({ api, patient }) {
  return (
    <>
      <h1>{t("lesionHistory")}</h1>
      <p>{t("lesionIntro")}</p>
      <LesionHistory api={api} patient={patient} />
    </>
  );
}
