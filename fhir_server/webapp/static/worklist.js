// The worklist of the signed-in role: the FHIR searches docs/workflow.md names.
import { h, humanName, when, textOf } from "./dom.js";
import { entries } from "./fhir.js";

const SORT = "-priority,authored-on";

function patientsOf(bundle) {
  const byRef = new Map();
  for (const p of entries(bundle, "include")) byRef.set(`${p.resourceType}/${p.id}`, p);
  return byRef;
}

function table(caption, bundle, emptyText) {
  const tasks = entries(bundle);
  if (!tasks.length) return h("section", {}, h("h2", {}, caption), h("p", { class: "muted" }, emptyText));
  const patients = patientsOf(bundle);
  const rows = tasks.map((task) => {
    const urgent = task.priority === "urgent" || task.priority === "stat" || task.priority === "asap";
    const patient = patients.get((task.for || {}).reference);
    return h(
      "tr",
      { class: urgent ? "urgent" : "", "data-task": task.id },
      h("td", {}, urgent ? h("span", { class: "badge urgent" }, "Urgent") : "Routine"),
      h("td", {}, patient ? humanName(patient) : (task.for || {}).reference || ""),
      h("td", {}, task.description || textOf(task.code)),
      h("td", {}, when(task.authoredOn)),
      h("td", {}, h("a", { href: `#/task/${encodeURIComponent(task.id)}` }, "Open",
        h("span", { class: "sr-only" }, ` case of ${patient ? humanName(patient) : "patient"}`))),
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
      h("thead", {}, h("tr", {}, ["Priority", "Patient", "Step", "Since"].map((t) => h("th", { scope: "col" }, t)), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Action")))),
      h("tbody", {}, rows),
    ),
  );
}

export async function worklist(fhir, session) {
  const [open, mine] = await Promise.all([
    fhir.search("Task", {
      "performer-type": session.role,
      status: "requested",
      _sort: SORT,
      _include: "Task:patient",
      _count: "50",
    }),
    fhir.search("Task", {
      owner: session.fhirUser,
      status: "in-progress",
      _sort: SORT,
      _include: "Task:patient",
      _count: "50",
    }),
  ]);
  return [
    h("h1", {}, `Worklist: ${session.role}`),
    table("Waiting for a " + session.role, open, "Nothing is waiting for your role."),
    table("In progress, claimed by you", mine, "You have no claimed steps."),
  ];
}
