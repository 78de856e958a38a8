// The worklist of the signed-in role: the FHIR searches docs/workflow.md names, with the
// patient and the case (its type) of each step included in the same answer.
import { h, humanName, time, textOf } from "./dom.js";
import { entries, Names } from "./fhir.js";

const SORT = "-priority,authored-on";
const INCLUDES = [["_include", "Task:patient"], ["_include", "Task:part-of"]];

function included(bundle) {
  const byRef = new Map();
  for (const r of entries(bundle, "include")) byRef.set(`${r.resourceType}/${r.id}`, r);
  return byRef;
}

// The case type: the title of the case Task the step is part of (or the step's own order).
function caseType(task, byRef) {
  const parent = byRef.get(((task.partOf || [])[0] || {}).reference);
  if (parent) return parent.description || textOf(parent.code);
  return "";
}

function table(caption, bundle, emptyText, fhir) {
  const tasks = entries(bundle);
  if (!tasks.length) return h("section", {}, h("h2", {}, caption), h("p", { class: "muted" }, emptyText));
  const byRef = included(bundle);
  const names = new Names(fhir);
  names.add(entries(bundle, "include"));
  const rows = tasks.map((task) => {
    const urgent = task.priority === "urgent" || task.priority === "stat" || task.priority === "asap";
    const patient = byRef.get((task.for || {}).reference);
    const name = patient ? humanName(patient) : "a patient not visible to you";
    return h(
      "tr",
      { class: urgent ? "urgent" : "", "data-task": task.id },
      h("td", {}, urgent ? h("span", { class: "badge urgent" }, "Urgent") : "Routine"),
      h("td", {}, patient ? humanName(patient) : "—"),
      h("td", { class: "case-type" }, caseType(task, byRef) || "—"),
      h("td", {}, task.description || textOf(task.code),
        task.status === "failed" ? h("span", { class: "reason" }, ` — failed: ${names.inText(textOf(task.statusReason)) || "no reason recorded"}`) : ""),
      h("td", {}, time(task.status === "failed" ? task.lastModified || task.authoredOn : task.authoredOn)),
      h("td", {}, h("a", { href: `#/task/${encodeURIComponent(task.id)}` }, "Open",
        h("span", { class: "sr-only" }, ` case of ${name}`))),
    );
  });
  return h(
    "section",
    {},
    h("h2", {}, caption),
    h(
      "table",
      {},
      h("caption", {}, `${tasks.length} ${tasks.length === 1 ? "step" : "steps"}`),
      h("thead", {}, h("tr", {}, ["Priority", "Patient", "Case", "Step", "Since"].map((t) => h("th", { scope: "col" }, t)), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Action")))),
      h("tbody", {}, rows),
    ),
  );
}

// What the worklist follows live (Subscription/$watch): every step for the role, whatever its
// status (a step claimed by someone else leaves the list too), the steps owned by the user, and
// for administrators the automatic delivery steps.
export function worklistCriteria(session) {
  const criteria = [`Task?performer-type=${encodeURIComponent(session.role)}`];
  if (session.fhirUser) criteria.push(`Task?owner=${encodeURIComponent(session.fhirUser)}`);
  if (session.role === "admin") criteria.push("Task?performer-type=system");
  return criteria;
}

export async function worklist(fhir, session) {
  const [open, mine] = await Promise.all([
    fhir.search("Task", [
      ["performer-type", session.role],
      ["status", "requested"],
      ["_sort", SORT],
      ...INCLUDES,
      ["_count", "50"],
    ]),
    fhir.search("Task", [
      ["owner", session.fhirUser],
      ["status", "in-progress"],
      ["_sort", SORT],
      ...INCLUDES,
      ["_count", "50"],
    ]),
  ]);
  // Administrators also see the reports whose delivery failed (the automatic delivery step,
  // failed with its reason), to open and retry.
  const failed = session.role === "admin"
    ? await fhir.search("Task", [["performer-type", "system"], ["status", "failed"], ["_sort", SORT], ...INCLUDES, ["_count", "50"]])
    : null;
  return [
    h("h1", {}, `Worklist: ${session.role}`),
    table(`Waiting for ${/^[aeiou]/.test(session.role) ? "an" : "a"} ${session.role}`, open, "Nothing is waiting for your role.", fhir),
    table("In progress, claimed by you", mine, "You have no claimed steps.", fhir),
    failed ? table("Reports not delivered", failed, "No report delivery has failed.", fhir) : null,
  ];
}
