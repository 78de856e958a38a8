// Prescribing from Hearth's formulary and the warnings it raises (docs/webapp.md, "Medication"):
// the medication picker, a type-ahead over ValueSet/$expand?url=…formulary&filter=… whose choice
// is an RxNorm coding (free text stays possible and is said to be uncoded: it is not checked for
// allergies or interactions), and the DetectedIssues Hearth recorded when a prescription was
// made (workflow/medchecks.py), shown with their severity, what, why and source.
import { h, textOf, time } from "./dom.js";

const RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm";
const FORMULARY = "http://hearth.local/fhir/ValueSet/formulary";
const UNCODED = "Not coded: free text, so Hearth cannot check it for allergies or interactions.";
const HINT = "Type two letters or more to search the formulary (RxNorm); free text is allowed but uncoded.";

// A labelled combobox. Returns { element, concept() }: concept() is the medicationCodeableConcept
// for what is in the box (with the RxNorm coding when a formulary item was chosen), or null.
export function medicationPicker(fhir, id, label) {
  const status = h("p", { id: `${id}-coding`, class: "muted picker-status", "aria-live": "polite" }, HINT);
  const list = h("ul", { id: `${id}-options`, role: "listbox", class: "picker-options", "aria-label": "Formulary matches" });
  list.hidden = true;
  const input = h("input", {
    id, name: id, type: "text", autocomplete: "off", role: "combobox", "aria-autocomplete": "list",
    "aria-controls": `${id}-options`, "aria-expanded": "false", "aria-describedby": `${id}-coding`,
  });
  let chosen = null;
  let timer = null;
  let asked = 0;
  const say = () => {
    const typed = input.value.trim();
    status.className = chosen ? "picker-status coded" : typed ? "picker-status uncoded" : "muted picker-status";
    status.textContent = chosen ? `Coded: ${chosen.display} (RxNorm ${chosen.code}), checked for allergies and interactions when saved.` : typed ? UNCODED : HINT;
  };
  const close = () => {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
  };
  const choose = (item) => {
    chosen = item;
    input.value = item.display;
    close();
    say();
    input.focus();
  };
  const options = () => [...list.querySelectorAll("[role=option]")];
  input.addEventListener("input", () => {
    chosen = null;
    say();
    clearTimeout(timer);
    const text = input.value.trim();
    if (text.length < 2) return close();
    timer = setTimeout(async () => {
      const mine = ++asked;
      let found = [];
      try {
        const vs = await fhir.json("ValueSet/$expand", { params: { url: FORMULARY, filter: text, count: "12" } });
        found = ((vs.expansion || {}).contains || []).filter((c) => c.system === RXNORM);
      } catch {
        found = []; // the picker then offers nothing; free text still works
      }
      if (mine !== asked) return; // a later keystroke asked again
      list.replaceChildren(...found.map((item, n) => h("li", {
        role: "option", id: `${id}-option-${n}`, tabindex: "-1", "data-code": item.code,
        onclick: () => choose(item),
        onkeydown: (event) => {
          const all = options();
          const at = all.indexOf(event.target);
          if (event.key === "Enter" || event.key === " ") { event.preventDefault(); choose(item); }
          else if (event.key === "ArrowDown") { event.preventDefault(); (all[at + 1] || all[0]).focus(); }
          else if (event.key === "ArrowUp") { event.preventDefault(); (at > 0 ? all[at - 1] : input).focus(); }
          else if (event.key === "Escape") { close(); input.focus(); }
        },
      }, item.display, " ", h("span", { class: "muted" }, `RxNorm ${item.code}`))));
      list.hidden = !found.length;
      input.setAttribute("aria-expanded", String(found.length > 0));
    }, 200);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" && !list.hidden && options().length) { event.preventDefault(); options()[0].focus(); }
    if (event.key === "Escape") close();
  });
  return {
    element: [h("label", { for: id }, label), h("div", { class: "picker" }, input, list), status],
    concept: () => {
      const typed = input.value.trim();
      if (!typed) return null;
      if (chosen && typed === chosen.display) return { coding: [{ system: RXNORM, code: chosen.code, display: chosen.display }], text: chosen.display };
      return { text: typed };
    },
  };
}

// -- the warnings -----------------------------------------------------------------------------
const SEVERITY_WORDS = { high: "High", moderate: "Moderate", low: "Low" };
const RANK = { high: 0, moderate: 1, low: 2 };
const ref = (r) => (r && r.reference) || "";

// The issues that name one of ``requests`` (this case's prescriptions) in ``implicated``.
export function issuesFor(issues, requests) {
  const mine = new Set(requests.map((r) => `MedicationRequest/${r.id}`));
  return issues.filter((i) => (i.implicated || []).some((x) => mine.has(ref(x))));
}

function issueItem(issue) {
  const what = textOf(issue.code) || "Detected issue";
  const items = (issue.implicated || []).map((x) => x.display || ref(x)).join(" + ");
  const [why, source] = (issue.detail || "").split(/ Source: /);
  return h("li", { class: `issue ${issue.severity || ""}`, "data-severity": issue.severity || "", "data-issue": issue.id },
    h("p", {}, h("strong", { class: `badge severity ${issue.severity || ""}` }, `${SEVERITY_WORDS[issue.severity] || "Unknown"} severity`),
      " ", h("strong", {}, `${what}: `), items),
    h("p", {}, why),
    source ? h("p", { class: "muted" }, `Source: ${source.replace(/\.$/, "")}`) : null,
    /^https?:\/\//.test(issue.reference || "") ? h("p", { class: "muted" }, "Stated at ", h("a", { href: issue.reference, rel: "noopener noreferrer", target: "_blank" }, issue.reference)) : null,
    issue.identifiedDateTime ? h("p", { class: "muted" }, "Found by Hearth's check when prescribed, ", time(issue.identifiedDateTime)) : null);
}

// The panel: this case's warnings first and prominent; the patient's other ones after them.
export function issuesPanel(issues, requests) {
  const ordered = [...issues].sort((a, b) => (RANK[a.severity] ?? 3) - (RANK[b.severity] ?? 3));
  const here = issuesFor(ordered, requests);
  const others = ordered.filter((i) => !here.includes(i));
  const uncoded = requests.filter((r) => !((r.medicationCodeableConcept || {}).coding || []).some((c) => c.system === RXNORM));
  return h("section", { class: "panel", "aria-labelledby": "issues-heading", id: "issues" },
    h("h2", { id: "issues-heading" }, "Allergy and interaction warnings"),
    here.length ? h("ul", { class: "issues", id: "case-issues" }, here.map(issueItem))
      : h("p", { class: "muted", id: "case-issues" }, requests.length ? "No allergy or interaction found for this case's prescriptions." : "Nothing prescribed in this case yet."),
    uncoded.length ? h("p", { class: "flag", id: "uncoded" }, `Not checked (uncoded, free text): ${uncoded.map((r) => textOf(r.medicationCodeableConcept) || "medication").join(", ")}.`) : null,
    others.length ? [h("h3", {}, "Other warnings on this patient's record"), h("ul", { class: "issues" }, others.map(issueItem))] : null);
}
