// The assistant: ask a question in words; the answer comes from POST /fhir/$assistant, which reads
// the record with this portal's own token (docs/assistant.md). Each answer shows where it came
// from (links into the portal's screens) and, where it suggests it, a way to write to the care team.
import { useState } from "preact/hooks";
import { t } from "./strings.js";

// Where the portal shows each cited resource type.
const SCREEN = {
  Appointment: "#/appointments",
  Communication: "#/messages",
  Media: "#/photos",
  DiagnosticReport: "#/",
  Observation: "#/",
  MedicationRequest: "#/",
  Task: "#/",
  ImagingStudy: "#/",
};
const SUGGESTIONS = ["askNextAppointment", "askLastReport", "askTonight", "askScan", "askPhoto"];

function parse(body) {
  const out = { citations: [] };
  for (const p of body.parameter || []) {
    if (p.name === "citation") {
      const part = Object.fromEntries((p.part || []).map((q) => [q.name, q]));
      if (part.resource) {
        const ref = part.resource.valueReference;
        out.citations.push({ ref: ref.reference, display: ref.display, href: SCREEN[ref.reference.split("/")[0]] });
      } else if (part.knowledge) {
        out.citations.push({ knowledge: part.knowledge.valueString, display: part.title?.valueString });
      }
    } else {
      const key = Object.keys(p).find((k) => k.startsWith("value"));
      out[p.name] = p[key];
    }
  }
  return out;
}

function Exchange({ item }) {
  const a = item.answer;
  return (
    <li class="exchange" data-intent={a?.intent}>
      <p class="asked"><span class="meta">{t("youAsked")}</span> {item.question}</p>
      {item.error && <div class="alert" role="alert">{item.error}</div>}
      {!a && !item.error && <p class="meta">{t("thinking")}</p>}
      {a && (
        <div class={`answer answer-${a.kind}`}>
          <p class="text">{a.answer}</p>
          {a.citations.length > 0 && (
            <div class="sources">
              <p class="meta">{t("sources")}</p>
              <ul>
                {a.citations.map((c) => (
                  <li key={c.ref || c.knowledge} data-cites={c.ref || c.knowledge}>
                    {c.href ? <a href={c.href}>{c.display || c.ref}</a> : <span>{t("fromGuide", { title: c.display })}</span>}
                  </li>
                ))}
              </ul>
            </div>
          )}
          {a.offer === "message-care-team" && (
            <p><a class="button" href="#/messages">{t("messageCareTeam")}</a></p>
          )}
        </div>
      )}
    </li>
  );
}

export function AssistantScreen({ api }) {
  const [question, setQuestion] = useState("");
  const [history, setHistory] = useState([]);
  const [busy, setBusy] = useState(false);

  const ask = async (text) => {
    const q = text.trim();
    if (!q || busy) return;
    setBusy(true);
    const id = Date.now() + Math.random();
    setHistory((h) => [{ id, question: q }, ...h]);
    const done = (patch) => setHistory((h) => h.map((x) => (x.id === id ? { ...x, ...patch } : x)));
    try {
      const body = await api.op("$assistant", [
        { name: "question", valueString: q },
        { name: "language", valueCode: t("assistantLanguage") },
      ]);
      done({ answer: parse(body) });
      setQuestion("");
    } catch (e) {
      done({ error: e?.message || String(e) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <h1>{t("assistant")}</h1>
      <p class="disclaimer">{t("assistantIntro")}</p>
      <form class="compose" onSubmit={(ev) => { ev.preventDefault(); ask(question); }}>
        <label for="question">{t("yourQuestion")}</label>
        <input id="question" type="text" maxLength={500} autocomplete="off" value={question} onInput={(e) => setQuestion(e.currentTarget.value)} />
        <button class="primary" type="submit" disabled={busy}>{t("ask")}</button>
      </form>
      <div class="actions" aria-label={t("suggestions")} role="group">
        {SUGGESTIONS.map((key) => (
          <button type="button" key={key} disabled={busy} onClick={() => ask(t(key))}>{t(key)}</button>
        ))}
      </div>
      <ol class="exchanges" aria-live="polite">
        {history.map((item) => <Exchange key={item.id} item={item} />)}
      </ol>
    </>
  );
}
