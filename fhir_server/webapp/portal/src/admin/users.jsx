// Users: every account ($users), a new staff account ($user-create, its one-time secrets shown
// once), deactivate / reactivate, change roles, reset the second factor (docs/webapp.md).
import { useEffect, useState } from "preact/hooks";
import { when } from "../format.js";
import { useLoad } from "../hooks.js";
import { account, parameters, value, values } from "./params.js";
import { at } from "./strings.js";

export const STAFF_ROLES = ["cadre", "doctor", "pharmacist", "admin"];

function RoleBoxes({ idPrefix, chosen, onChange, legend }) {
  return (
    <fieldset class="roles">
      <legend>{legend}</legend>
      {STAFF_ROLES.map((r) => (
        <label class="check" key={r}>
          <input
            id={`${idPrefix}-${r}`}
            type="checkbox"
            checked={chosen.includes(r)}
            onChange={(e) => onChange(e.currentTarget.checked ? [...chosen, r] : chosen.filter((c) => c !== r))}
          />
          {at(`role_${r}`)}
        </label>
      ))}
    </fieldset>
  );
}

/** An SVG Attachment (the server's QR code) as an object URL (the page's CSP allows blob:). */
function useAttachmentUrl(attachment) {
  const [url, setUrl] = useState(null);
  useEffect(() => {
    if (!attachment?.data) return undefined;
    const bytes = Uint8Array.from(atob(attachment.data), (c) => c.charCodeAt(0));
    const made = URL.createObjectURL(new Blob([bytes], { type: attachment.contentType }));
    setUrl(made);
    return () => URL.revokeObjectURL(made);
  }, [attachment?.data]);
  return url;
}

function Secrets({ shown, onDone }) {
  const uri = shown.totpUri;
  const key = uri ? new URL(uri).searchParams.get("secret") : null;
  const qr = useAttachmentUrl(shown.totpQr);
  return (
    <section class="card secrets" aria-labelledby="secrets-h" data-secrets>
      <h2 id="secrets-h">{at("secretsTitle", { name: shown.username })}</h2>
      {shown.password && (
        <p>{at("secretsPassword")}: <code data-password>{shown.password}</code></p>
      )}
      {key && (
        <>
          {qr && <img class="qr" src={qr} alt={at("secretsQr")} data-totp-qr />}
          <p>{at("secretsKey")}: <code data-totp-key>{key}</code></p>
          <p><a href={uri} data-totp-uri>{at("secretsLink")}</a></p>
        </>
      )}
      {shown.codes.length > 0 && (
        <>
          <p>{at("secretsCodes")}:</p>
          <ul class="codes">{shown.codes.map((c) => <li key={c}><code>{c}</code></li>)}</ul>
        </>
      )}
      <button type="button" onClick={onDone}>{at("secretsDone")}</button>
    </section>
  );
}

function NewUser({ api, say, onCreated }) {
  const empty = { username: "", given: "", family: "", practitioner: "", email: "", password: "" };
  const [f, setF] = useState(empty);
  const [roles, setRoles] = useState(["doctor"]);
  const [busy, setBusy] = useState(false);
  const field = (key, type = "text", extra = {}) => (
    <>
      <label for={`nu-${key}`}>{at(`f_${key}`)}</label>
      <input id={`nu-${key}`} type={type} value={f[key]} autocomplete="off"
        onInput={(e) => setF({ ...f, [key]: e.currentTarget.value })} {...extra} />
    </>
  );
  const submit = async (ev) => {
    ev.preventDefault();
    if (!roles.length) return say.error(at("pickOneRole"));
    setBusy(true);
    try {
      const prac = f.practitioner.trim();
      const given = f.given.trim();
      const answer = await api.op("$user-create", parameters([
        ["username", "valueString", f.username.trim()],
        ...roles.map((r) => ["role", "valueCode", r]),
        ["practitioner", "valueReference", prac ? { reference: prac.startsWith("Practitioner/") ? prac : `Practitioner/${prac}` } : null],
        ["family", "valueString", prac ? null : f.family.trim()],
        ["given", "valueString", prac ? null : given],
        ["email", "valueString", f.email.trim()],
        ["password", "valueString", f.password],
      ]));
      const made = account(value(answer, "user"));
      say.ok(at("created", { name: made.username }));
      onCreated({
        username: made.username,
        password: value(answer, "password"),
        totpUri: value(answer, "totpUri"),
        totpQr: value(answer, "totpQr"),
        codes: values(answer, "recoveryCode"),
      });
      setF(empty);
    } catch (e) {
      say.error(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="compose" onSubmit={submit} aria-labelledby="nu-h">
      <h2 id="nu-h">{at("newUser")}</h2>
      {field("username", "text", { required: true, maxLength: 128 })}
      {field("given", "text", { maxLength: 100 })}
      {field("family", "text", { maxLength: 100 })}
      {field("practitioner", "text", { maxLength: 100 })}
      {field("email", "email", { maxLength: 320 })}
      {field("password", "password", { minLength: 10, maxLength: 1024, autocomplete: "new-password" })}
      <RoleBoxes idPrefix="nu-role" chosen={roles} onChange={setRoles} legend={at("f_roles")} />
      <button class="primary" type="submit" disabled={busy}>{at("create")}</button>
    </form>
  );
}

function Row({ u, api, say, reload, onSecrets }) {
  const [editing, setEditing] = useState(false);
  const [roles, setRoles] = useState(u.role.filter((r) => r !== "patient"));
  const label = u.name || u.username;
  const act = async (op, ok, confirmText) => {
    if (confirmText && !confirm(confirmText)) return;
    try {
      const answer = await api.op(op, [{ name: "username", valueString: u.username }]);
      say.ok(at(ok, { name: label }));
      if (op === "$user-reset-totp" && value(answer, "totpUri")) {
        onSecrets({
          username: u.username,
          totpUri: value(answer, "totpUri"),
          totpQr: value(answer, "totpQr"),
          codes: values(answer, "recoveryCode"),
        });
      }
      reload();
    } catch (e) {
      say.error(e);
    }
  };
  const saveRoles = async (ev) => {
    ev.preventDefault();
    if (!roles.length) return say.error(at("pickOneRole"));
    try {
      await api.op("$user-roles", [
        { name: "username", valueString: u.username },
        ...roles.map((r) => ({ name: "role", valueCode: r })),
      ]);
      say.ok(at("rolesChanged", { name: label }));
      setEditing(false);
      reload();
    } catch (e) {
      say.error(e);
    }
  };
  const staff = !u.role.includes("patient");
  return (
    <tr data-user={u.username}>
      <th scope="row">{u.name || "—"}</th>
      <td>{u.username}</td>
      <td>{u.role.map((r) => at(`role_${r}`)).join(", ") || "—"}</td>
      <td>{u.active ? at("active") : <strong>{at("inactive")}</strong>}</td>
      <td>{u.secondFactor ? at("enrolled") : at("notEnrolled")}</td>
      <td>{u.lastSignIn ? when(u.lastSignIn) : at("never")}</td>
      <td>{when(u.created)}</td>
      <td class="actions">
        {u.active ? (
          <button type="button" onClick={() => act("$user-deactivate", "deactivated", at("confirmDeactivate", { name: label }))}
            aria-label={`${at("deactivate")} ${u.username}`}>{at("deactivate")}</button>
        ) : (
          <button type="button" onClick={() => act("$user-reactivate", "reactivated")}
            aria-label={`${at("reactivate")} ${u.username}`}>{at("reactivate")}</button>
        )}
        <button type="button" onClick={() => act("$user-reset-totp", "totpReset", at("confirmReset", { name: label }))}
          aria-label={`${at("resetTotp")} ${u.username}`}>{at("resetTotp")}</button>
        {staff && !editing && (
          <button type="button" onClick={() => setEditing(true)} aria-label={`${at("changeRoles")} ${u.username}`}>
            {at("changeRoles")}
          </button>
        )}
        {editing && (
          <form onSubmit={saveRoles} class="inline">
            <RoleBoxes idPrefix={`roles-${u.username}`} chosen={roles} onChange={setRoles} legend={at("rolesOf", { name: label })} />
            <button class="primary" type="submit">{at("saveRoles")}</button>
            <button type="button" onClick={() => setEditing(false)}>{at("cancel")}</button>
          </form>
        )}
      </td>
    </tr>
  );
}

export function UsersScreen({ api, say }) {
  const list = useLoad(async () => values(await api.call("$users"), "user").map(account), []);
  const [secrets, setSecrets] = useState(null);
  return (
    <section aria-labelledby="users-h">
      <h1 id="users-h">{at("users")}</h1>
      <p class="meta">{at("usersIntro")}</p>
      {secrets && <Secrets shown={secrets} onDone={() => setSecrets(null)} />}
      {list.error && <div class="alert" role="alert">{list.error.message}</div>}
      {list.data && (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                {["colName", "colUser", "colRoles", "colState", "colSecond", "colLastSignIn", "colCreated", "colActions"].map((c) => (
                  <th scope="col" key={c}>{at(c)}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {list.data.map((u) => (
                <Row key={`${u.username}-${u.active}-${u.role.join()}`} u={u} api={api} say={say} reload={list.reload} onSecrets={setSecrets} />
              ))}
            </tbody>
          </table>
        </div>
      )}
      <NewUser api={api} say={say} onCreated={(s) => { setSecrets(s); list.reload(); }} />
    </section>
  );
}
