// FHIR Parameters <-> plain objects, for the admin operations' answers.

/** The values of the parameters named `name` (value[x], or the parts of a part parameter). */
export function values(params, name) {
  return (params?.parameter || [])
    .filter((p) => p.name === name)
    .map((p) => (p.part ? p.part : Object.entries(p).find(([k]) => k.startsWith("value"))?.[1]));
}

export function value(params, name) {
  return values(params, name)[0];
}

/** An account of `$users` / `$user-*` as an object: `role` a list, `fhirUser` a reference string. */
export function account(parts) {
  const out = { role: [] };
  for (const p of parts) {
    const [, v] = Object.entries(p).find(([k]) => k.startsWith("value")) || [];
    if (p.name === "role") out.role.push(v);
    else if (p.name === "fhirUser") out.fhirUser = v?.reference;
    else out[p.name] = v;
  }
  return out;
}

/** Parameters from [name, value[x] key, value] triples (null / empty values left out). */
export function parameters(items) {
  return items
    .filter(([, , v]) => v !== null && v !== undefined && v !== "")
    .map(([name, key, v]) => ({ name, [key]: v }));
}
