// Home: what needs attention, then results, reports (PDF download) and appointments.
import { useState } from "preact/hooks";
import { attention, loadRecord, messageText, pdfOf } from "./data.js";
import { concept, value, when } from "./format.js";
import { LiveNote, useLive, useLoad } from "./hooks.js";
import { t } from "./strings.js";
import { AppointmentList } from "./appointments.jsx";

function AttentionItem({ item }) {
  const r = item.resource;
  if (item.kind === "report") {
    return <li><a href="#reports">{t("attReport", { title: concept(r.code) })}</a></li>;
  }
  if (item.kind === "careplan") {
    return <li><a href="#/careplan">{t("attCarePlan", { title: r.title || t("carePlan") })}</a></li>;
  }
  if (item.kind === "proposed") {
    return <li><a href="#/appointments">{t("attProposed", { when: when(r.start) })}</a></li>;
  }
  return <li><a href="#/messages">{t("attMessage", { text: messageText(r).slice(0, 80) })}</a></li>;
}

function Results({ results }) {
  return (
    <section aria-labelledby="results-h">
      <h2 id="results-h">{t("results")}</h2>
      <p class="disclaimer">{t("disclaimer")}</p>
      {results.length === 0 ? (
        <p>{t("noResults")}</p>
      ) : (
        <ul class="cards">
          {results.map((o) => (
            <li class="card" key={o.id}>
              <h3>{concept(o.code)}</h3>
              <p class="value">{value(o)}</p>
              <p class="meta">
                {when(o.effectiveDateTime || o.issued)} ·{" "}
                {["final", "amended", "corrected"].includes(o.status)
                  ? t("resultFinal")
                  : t("resultPreliminary")}
              </p>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function Reports({ reports, api, say }) {
  const [busy, setBusy] = useState(null);
  const download = async (report) => {
    const form = pdfOf(report);
    setBusy(report.id);
    try {
      const blob = await api.call(form.url, { accept: "application/pdf" });
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = `${concept(report.code) || "report"}.pdf`.replace(/[^\w. -]+/g, "_");
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (e) {
      say.error(e);
    } finally {
      setBusy(null);
    }
  };
  return (
    <section aria-labelledby="reports-h" id="reports">
      <h2 id="reports-h">{t("reports")}</h2>
      {reports.length === 0 ? (
        <p>{t("noReports")}</p>
      ) : (
        <ul class="cards">
          {reports.map((r) => (
            <li class="card" key={r.id}>
              <h3>{concept(r.code)}</h3>
              <p class="meta">{when(r.issued || r.effectiveDateTime)}</p>
              {r.conclusion && <p>{r.conclusion}</p>}
              {pdfOf(r) && (
                <button type="button" disabled={busy === r.id} onClick={() => download(r)}>
                  {busy === r.id ? t("downloading") : t("downloadPdf")}
                </button>
              )}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

// What Home follows live: a case moving on, a report, an appointment, a verified result.
export function homeCriteria(patient) {
  const P = `Patient/${patient}`;
  return ["Task", "DiagnosticReport", "Appointment", "Observation"].map((type) => `${type}?patient=${P}`);
}

export function HomeScreen({ api, patient, say }) {
  const record = useLoad(() => loadRecord(api, patient), [api, patient]);
  const live = useLive(api, homeCriteria(patient), record.reload);
  if (record.error) return <div class="alert" role="alert">{record.error.message}</div>;
  if (!record.data) return <p>{t("loading")}</p>;
  const items = attention(record.data, patient);
  return (
    <>
      <LiveNote state={live} />
      <section aria-labelledby="attention-h" class="attention">
        <h1 id="attention-h">{t("attention")}</h1>
        {items.length === 0 ? (
          <p>{t("nothingNeedsAttention")}</p>
        ) : (
          <ul>{items.map((i) => <AttentionItem item={i} key={`${i.kind}-${i.resource.id}`} />)}</ul>
        )}
      </section>
      <Results results={record.data.results} />
      <Reports reports={record.data.reports} api={api} say={say} />
      <section aria-labelledby="appts-h">
        <h2 id="appts-h">{t("appointments")}</h2>
        <AppointmentList
          appointments={record.data.appointments}
          api={api}
          say={say}
          onChange={record.reload}
        />
      </section>
    </>
  );
}
