// The screening programme's dashboard (doctors and administrators): each figure is the
// MeasureReport Hearth computes from the stored cases (`Measure/[id]/$evaluate-measure`,
// docs/analytics.md), drawn with Chart.js on a canvas (no inline style or script: the portal's
// CSP allows neither) with its numbers in a table beside it, and downloadable as FHIR JSON.
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  Tooltip,
} from "chart.js";
import { useEffect, useRef, useState } from "preact/hooks";
import { useLoad } from "./hooks.js";
import { t } from "./strings.js";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

export const MEASURES = [
  "screening-volume",
  "screening-positivity",
  "screening-uncertain",
  "screening-turnaround",
  "ai-doctor-agreement",
  "appointment-no-show",
];
// Colour-blind-safe series colours (Okabe–Ito).
const COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
const STAGES = ["ai", "doctor", "report", "total"];

function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

function defaultPeriod() {
  const end = new Date();
  const start = new Date(end.getTime() - 12 * 7 * 86400 * 1000);
  return { start: isoDay(start), end: isoDay(end) };
}

// -- reading a MeasureReport ------------------------------------------------------------------
const code = (cc) => cc?.coding?.[0]?.code;
const count = (part, name) => (part?.population || []).find((p) => code(p.code) === name)?.count ?? 0;
const score = (part) => part?.measureScore?.value;
const group = (report, name) => (report?.group || []).find((g) => code(g.code) === name);

function strata(part, name) {
  const found = (part?.stratifier || []).find((s) => code(s.code?.[0]) === name);
  return (found?.stratum || []).map((s) => ({
    values: s.value ? [s.value] : (s.component || []).map((c) => c.value),
    stratum: s,
  }));
}

const label = (cc) => cc?.text || code(cc) || "";
const percent = (x) => (x == null ? "—" : `${(100 * x).toFixed(x > 0 && x < 0.1 ? 1 : 0)} %`);

function duration(seconds) {
  if (seconds == null) return "—";
  if (seconds < 90) return t("dashSeconds", { n: Math.round(seconds) });
  if (seconds < 90 * 60) return t("dashMinutes", { n: Math.round(seconds / 60) });
  if (seconds < 48 * 3600) return t("dashHours", { n: (seconds / 3600).toFixed(1) });
  return t("dashDays", { n: (seconds / 86400).toFixed(1) });
}

// -- a chart ----------------------------------------------------------------------------------
function BarChart({ labels, datasets, summary, stacked = false, horizontal = false, max, unit }) {
  const canvas = useRef(null);
  useEffect(() => {
    const chart = new Chart(canvas.current, {
      type: "bar",
      data: {
        labels,
        datasets: datasets.map((d, n) => ({ ...d, backgroundColor: d.colour || COLOURS[n % COLOURS.length] })),
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        indexAxis: horizontal ? "y" : "x",
        plugins: { legend: { display: datasets.length > 1, position: "bottom" } },
        scales: {
          [horizontal ? "y" : "x"]: { stacked },
          [horizontal ? "x" : "y"]: {
            stacked,
            beginAtZero: true,
            max,
            ticks: unit ? { callback: (v) => unit(v) } : { precision: 0 },
          },
        },
      },
    });
    return () => chart.destroy();
  }, [JSON.stringify({ labels, datasets, stacked, horizontal, max })]);
  return (
    <div class="chart">
      <canvas ref={canvas} role="img" aria-label={summary}>
        {summary}
      </canvas>
    </div>
  );
}

function Table({ caption, head, rows }) {
  return (
    <details class="figures">
      <summary>{caption}</summary>
      <table>
        <thead>
          <tr>{head.map((h) => <th scope="col">{h}</th>)}</tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr>{r.map((c, n) => (n === 0 ? <th scope="row">{c}</th> : <td>{c}</td>))}</tr>
          ))}
        </tbody>
      </table>
    </details>
  );
}

function Figure({ id, title, headline, report, children }) {
  const download = () => {
    const blob = new Blob([JSON.stringify(report, null, 2)], { type: "application/fhir+json" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `MeasureReport-${id}.json`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  };
  return (
    <section class="figure" aria-labelledby={`fig-${id}`} data-measure={id}>
      <h2 id={`fig-${id}`}>{title}</h2>
      {headline && <p class="headline">{headline}</p>}
      {children}
      <p class="meta">
        {t("dashMeasure", { id })}{" "}
        <button type="button" class="link" onClick={download}>{t("dashDownload")}</button>
      </p>
    </section>
  );
}

// -- the figures ------------------------------------------------------------------------------
/** Weeks × series (site or cadre) from a component stratifier, as a stacked bar chart. */
function weekly(part, name) {
  const rows = strata(part, name);
  const weeks = [...new Set(rows.map((r) => label(r.values[0])))].sort();
  const series = [...new Set(rows.map((r) => label(r.values[1])))].sort();
  const datasets = series.map((s) => ({
    label: s,
    data: weeks.map((w) => {
      const hit = rows.find((r) => label(r.values[0]) === w && label(r.values[1]) === s);
      return hit ? count(hit.stratum, "initial-population") : 0;
    }),
  }));
  return { weeks, series, datasets };
}

function Volume({ report }) {
  const g = group(report, "screenings");
  const bySite = weekly(g, "week-site");
  const byCadre = weekly(g, "week-cadre");
  const total = count(g, "initial-population");
  const rows = (w) => w.weeks.map((week, n) => [week, ...w.datasets.map((d) => d.data[n])]);
  return (
    <Figure id="screening-volume" title={t("dashVolume")} report={report}
      headline={t("dashVolumeTotal", { n: total })}>
      <h3>{t("dashBySite")}</h3>
      <BarChart labels={bySite.weeks} datasets={bySite.datasets} stacked
        summary={t("dashVolumeSummary", { n: total, by: t("dashBySite").toLowerCase() })} />
      <Table caption={t("dashNumbers")} head={[t("dashWeek"), ...bySite.series]} rows={rows(bySite)} />
      <h3>{t("dashByCadre")}</h3>
      <BarChart labels={byCadre.weeks} datasets={byCadre.datasets} stacked
        summary={t("dashVolumeSummary", { n: total, by: t("dashByCadre").toLowerCase() })} />
      <Table caption={t("dashNumbers")} head={[t("dashWeek"), ...byCadre.series]} rows={rows(byCadre)} />
    </Figure>
  );
}

function Share({ id, groupCode, title, report, colour }) {
  const g = group(report, groupCode);
  const weeks = strata(g, "week").sort((a, b) => label(a.values[0]).localeCompare(label(b.values[0])));
  const value = score(g);
  const num = count(g, "numerator");
  const den = count(g, "denominator");
  return (
    <Figure id={id} title={title} report={report}
      headline={t("dashShare", { pct: percent(value), num, den })}>
      <BarChart
        labels={weeks.map((w) => label(w.values[0]))}
        datasets={[{ label: title, colour, data: weeks.map((w) => score(w.stratum) ?? 0) }]}
        max={1}
        unit={(v) => `${Math.round(v * 100)} %`}
        summary={t("dashShareSummary", { title, pct: percent(value), num, den })}
      />
      <Table caption={t("dashNumbers")} head={[t("dashWeek"), t("dashNumerator"), t("dashDenominator"), t("dashRate")]}
        rows={weeks.map((w) => [label(w.values[0]), count(w.stratum, "numerator"), count(w.stratum, "denominator"), percent(score(w.stratum))])} />
    </Figure>
  );
}

function Turnaround({ report }) {
  const med = STAGES.map((s) => score(group(report, `${s}-median`)));
  const p90 = STAGES.map((s) => score(group(report, `${s}-p90`)));
  const n = STAGES.map((s) => count(group(report, `${s}-median`), "measure-population"));
  const names = STAGES.map((s) => t(`dashStage_${s}`));
  // One unit for the axis, the one the slowest stage reads best in.
  const top = Math.max(0, ...p90.filter((v) => v != null));
  const [size, unitKey] = top < 120 ? [1, "dashSeconds"] : top < 7200 ? [60, "dashMinutes"] : top < 172800 ? [3600, "dashHours"] : [86400, "dashDays"];
  const scaled = (v) => (v == null ? 0 : v / size);
  return (
    <Figure id="screening-turnaround" title={t("dashTurnaround")} report={report}
      headline={t("dashTurnaroundTotal", { median: duration(med[3]), p90: duration(p90[3]) })}>
      <BarChart horizontal labels={names}
        datasets={[
          { label: t("dashMedian"), data: med.map(scaled) },
          { label: t("dashP90"), data: p90.map(scaled) },
        ]}
        unit={(v) => t(unitKey, { n: Number(v.toPrecision(3)) })}
        summary={names.map((s, i) => `${s}: ${t("dashMedian")} ${duration(med[i])}, ${t("dashP90")} ${duration(p90[i])}`).join("; ")}
      />
      <Table caption={t("dashNumbers")} head={[t("dashStage"), t("dashCases"), t("dashMedian"), t("dashP90")]}
        rows={names.map((s, i) => [s, n[i], duration(med[i]), duration(p90[i])])} />
    </Figure>
  );
}

function Agreement({ report }) {
  const g = group(report, "agreement");
  const cells = strata(g, "confusion");
  const ai = [...new Set(cells.map((c) => label(c.values[0])))].sort();
  const doctor = [...new Set(cells.map((c) => label(c.values[1])))].sort();
  const cell = (a, d) => {
    const hit = cells.find((c) => label(c.values[0]) === a && label(c.values[1]) === d);
    return hit ? count(hit.stratum, "denominator") : 0;
  };
  const biggest = Math.max(1, ...cells.map((c) => count(c.stratum, "denominator")));
  const perClass = strata(g, "ai-class").filter((s) => score(s.stratum) != null);
  const den = count(g, "denominator") - count(g, "denominator-exclusion");
  return (
    <Figure id="ai-doctor-agreement" title={t("dashAgreement")} report={report}
      headline={t("dashShare", { pct: percent(score(g)), num: count(g, "numerator"), den })}>
      <BarChart labels={perClass.map((s) => label(s.values[0]))}
        datasets={[{ label: t("dashAgreementPerClass"), colour: COLOURS[2], data: perClass.map((s) => score(s.stratum)) }]}
        max={1} unit={(v) => `${Math.round(v * 100)} %`}
        summary={perClass.map((s) => `${label(s.values[0])}: ${percent(score(s.stratum))}`).join("; ") || t("dashNoData")} />
      <table class="confusion">
        <caption>{t("dashConfusion")}</caption>
        <thead>
          <tr>
            <th scope="col">{t("dashAiVsDoctor")}</th>
            {doctor.map((d) => <th scope="col">{d}</th>)}
          </tr>
        </thead>
        <tbody>
          {ai.map((a) => (
            <tr>
              <th scope="row">{a}</th>
              {doctor.map((d) => {
                const n = cell(a, d);
                const level = n === 0 ? 0 : Math.min(4, Math.ceil((4 * n) / biggest));
                return <td class={`heat${level}${a === d ? " diagonal" : ""}`}>{n}</td>;
              })}
            </tr>
          ))}
        </tbody>
      </table>
      <p class="meta">{t("dashConfusionNote")}</p>
    </Figure>
  );
}

// -- the screen -------------------------------------------------------------------------------
export function DashboardScreen({ api }) {
  const [period, setPeriod] = useState(defaultPeriod);
  const [form, setForm] = useState(period);
  const { data, error, loading } = useLoad(async () => {
    const q = new URLSearchParams({ periodStart: period.start, periodEnd: period.end });
    const reports = await Promise.all(MEASURES.map((m) => api.call(`Measure/${m}/$evaluate-measure?${q}`)));
    return Object.fromEntries(MEASURES.map((m, n) => [m, reports[n]]));
  }, [period.start, period.end]);
  const submit = (e) => {
    e.preventDefault();
    setPeriod(form);
  };
  return (
    <>
      <h1>{t("dashTitle")}</h1>
      <p class="meta">{t("dashIntro")}</p>
      <form class="period" onSubmit={submit}>
        <label>{t("dashFrom")}<input type="date" required value={form.start} onInput={(e) => setForm({ ...form, start: e.currentTarget.value })} /></label>
        <label>{t("dashTo")}<input type="date" required value={form.end} onInput={(e) => setForm({ ...form, end: e.currentTarget.value })} /></label>
        <button type="submit" class="primary">{t("dashShow")}</button>
      </form>
      {loading && <p role="status">{t("loading")}</p>}
      {error && <div class="alert" role="alert">{error.message}</div>}
      {data && (
        <div class="dashboard">
          <Volume report={data["screening-volume"]} />
          <Share id="screening-positivity" groupCode="high-risk" title={t("dashPositivity")} report={data["screening-positivity"]} colour={COLOURS[5]} />
          <Turnaround report={data["screening-turnaround"]} />
          <Agreement report={data["ai-doctor-agreement"]} />
          <Share id="screening-uncertain" groupCode="uncertain" title={t("dashUncertain")} report={data["screening-uncertain"]} colour={COLOURS[1]} />
          <Share id="appointment-no-show" groupCode="no-show" title={t("dashNoShow")} report={data["appointment-no-show"]} colour={COLOURS[3]} />
        </div>
      )}
    </>
  );
}
