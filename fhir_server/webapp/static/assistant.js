// The assistant for the care team: a question in words, answered by POST /fhir/$assistant with
// this app's own token (docs/assistant.md): "What is waiting for me?", "Which urgent cases are
// open?", how-to questions. Cited Tasks link to their case screen.
import { h } from "./dom.js";

const SUGGESTIONS = ["What is waiting for me?", "Which urgent cases are open?", "When is my next appointment?"];

function parse(body) {
  const out = { citations: [] };
  for (const p of body.parameter || []) {
    if (p.name === "citation") {
      const part = Object.fromEntries((p.part || []).map((q) => [q.name, q]));
      if (part.resource) out.citations.push(part.resource.valueReference);
      else if (part.knowledge) out.citations.push({ display: `Hearth's guide: ${part.title ? part.title.valueString : part.knowledge.valueString}` });
    } else {
      const key = Object.keys(p).find((k) => k.startsWith("value"));
      out[p.name] = p[key];
    }
  }
  return out;
}

function source(c) {
  const [type, id] = (c.reference || "").split("/");
  const label = c.display || c.reference;
  return h("li", { "data-cites": c.reference || label },
    type === "Task" && id ? h("a", { href: `#/task/${id}` }, label) : label);
}

export function assistantView(fhir) {
  const input = h("input", { id: "question", type: "text", maxlength: 500, autocomplete: "off" });
  const list = h("ol", { class: "exchanges", "aria-live": "polite" });
  const buttons = [];

  async function ask(text) {
    const question = text.trim();
    if (!question) return;
    for (const b of buttons) b.disabled = true;
    const item = h("li", { class: "panel exchange" }, h("p", {}, h("strong", {}, "You asked: "), question));
    const waiting = h("p", { class: "muted" }, "Looking it up…");
    item.append(waiting);
    list.prepend(item);
    try {
      const a = parse(await fhir.operation("$assistant", [["question", { valueString: question }]]));
      item.dataset.intent = a.intent;
      waiting.replaceWith(
        h("div", { class: a.kind === "safety" ? "answer flag" : "answer" },
          h("p", {}, a.answer),
          a.citations.length ? [h("p", { class: "muted" }, "Where this comes from:"), h("ul", {}, a.citations.map(source))] : null),
      );
      input.value = "";
    } catch (err) {
      waiting.replaceWith(h("p", { class: "error", role: "alert" }, err.message));
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  }

  const submit = h("button", { type: "submit", class: "primary" }, "Ask");
  buttons.push(submit, ...SUGGESTIONS.map((q) => h("button", { type: "button", onclick: () => ask(q) }, q)));
  const form = h("form", { onsubmit: (ev) => { ev.preventDefault(); ask(input.value); } },
    h("label", { for: "question" }, "Your question"), input, h("div", { class: "actions" }, submit));
  return h("section", { "aria-labelledby": "assistant-title" },
    h("h1", { id: "assistant-title" }, "Assistant"),
    h("p", { class: "muted" }, "Ask about your worklist, urgent cases, your appointments or how Hearth works. It reads only what your account may read, and never gives clinical advice."),
    form,
    h("div", { class: "actions", role: "group", "aria-label": "Questions you can ask" }, buttons.slice(1)),
    list);
}
