// Audit: verify the chain (AuditEvent/$verify) and search the log — who saw which patient, when
// (AuditEvent?patient=&altid=&date=, newest first).
import { useState } from "preact/hooks";
import { personName } from "../cadre.jsx";
import { when } from "../format.js";
import { value } from "./params.js";
import { at } from "./strings.js";

function agentOf(event) {
  const person = (event.agent || []).find((a) => a.requestor) || (event.agent || [])[0] || {};
  return person.altId || person.name || person.who?.display || person.who?.reference || "—";
}

function whatOf(event, names) {
  const sub = (event.subtype || [])[0] || {};
  const action = sub.display || sub.code || event.type?.display || "";
  const targets = (event.entity || [])
    .map((e) => {
      const ref = e.what?.reference;
      if (ref && names[ref]) return `${names[ref]} (${ref})`;
      return ref || e.name || e.what?.identifier?.value;
    })
    .filter(Boolean)
    .slice(0, 3);
  return [action, targets.join(", ")].filter(Boolean).join(": ");
}

function Verify({ api }) {
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async () => {
    setBusy(true);
    try {
      const answer = await api.call("AuditEvent/$verify");
      if (value(answer, "intact")) {
        const counts = { events: value(answer, "events"), checkpoints: value(answer, "checkpoints") };
        setResult({ ok: true, text: at(counts.checkpoints ? "verifyOk" : "verifyOkNoCheckpoint", counts) });
      } else if (value(answer, "badCheckpoint")) {
        setResult({ ok: false, text: at("verifyBadCheckpoint", { detail: value(answer, "badCheckpoint") }) });
      } else {
        setResult({ ok: false, text: at("verifyBroken", { seq: value(answer, "brokenAt"), reason: value(answer, "reason") }) });
      }
    } catch (e) {
      setResult({ ok: false, text: e.message });
    } finally {
      setBusy(false);
    }
  };
  return (
    <div>
      <button class="primary" type="button" onClick={run} disabled={busy}>{at("verify")}</button>
      {result && (
        <p class={result.ok ? "verified" : "alert"} role={result.ok ? "status" : "alert"} data-verify>{result.text}</p>
      )}
    </div>
  );
}

export function AuditScreen({ api }) {
  const [f, setF] = useState({ patient: "", user: "", from: "", to: "" });
  const [found, setFound] = useState(null);
  const [names, setNames] = useState({});
  const [error, setError] = useState(null);
  const field = (key, type) => (
    <>
      <label for={`au-${key}`}>{at(`a_${key}`)}</label>
      <input id={`au-${key}`} type={type} value={f[key]} onInput={(e) => setF({ ...f, [key]: e.currentTarget.value })} />
    </>
  );
  const search = async (ev) => {
    ev.preventDefault();
    setError(null);
    try {
      const q = [["_sort", "-date"], ["_count", "100"]];
      if (f.patient.trim()) {
        const patients = await api.search("Patient", { name: f.patient.trim(), _count: "20" });
        if (!patients.length) {
          setFound([]);
          setError(at("noPatientMatch"));
          return;
        }
        q.push(["patient", patients.map((p) => `Patient/${p.id}`).join(",")]);
        setNames(Object.fromEntries(patients.map((p) => [`Patient/${p.id}`, personName(p)])));
      }
      if (f.user.trim()) q.push(["altid", f.user.trim()]);
      if (f.from) q.push(["date", `ge${f.from}`]);
      if (f.to) q.push(["date", `le${f.to}`]);
      setFound(await api.search("AuditEvent", q));
    } catch (e) {
      setError(e.message);
    }
  };
  return (
    <section aria-labelledby="audit-h">
      <h1 id="audit-h">{at("audit")}</h1>
      <p class="meta">{at("auditIntro")}</p>
      <Verify api={api} />
      <form class="compose" onSubmit={search} role="search" aria-labelledby="au-h">
        <h2 id="au-h">{at("searchLog")}</h2>
        {field("patient", "search")}
        {field("user", "search")}
        {field("from", "date")}
        {field("to", "date")}
        <button class="primary" type="submit">{at("search")}</button>
      </form>
      {error && <div class="alert" role="alert">{error}</div>}
      {found && found.length === 0 && !error && <p>{at("noEvents")}</p>}
      {found && found.length > 0 && (
        <div class="table-wrap">
          <table data-audit-results>
            <thead>
              <tr>
                {["colWhen", "colWho", "colWhat", "colOutcome"].map((c) => <th scope="col" key={c}>{at(c)}</th>)}
              </tr>
            </thead>
            <tbody>
              {found.map((e) => (
                <tr key={e.id} data-event={e.id}>
                  <td>{when(e.recorded)}</td>
                  <td>{agentOf(e)}</td>
                  <td>{whatOf(e, names)}</td>
                  <td>{at(`outcome_${e.outcome}`)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
