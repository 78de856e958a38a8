// Messages with the care team: plain Communications in the patient's compartment.
import { useState } from "preact/hooks";
import { fromPatient, messageText } from "./data.js";
import { when } from "./format.js";
import { useLoad } from "./hooks.js";
import { t } from "./strings.js";

export function MessagesScreen({ api, patient, say }) {
  const P = `Patient/${patient}`;
  const list = useLoad(() => api.search("Communication", { subject: P, _sort: "-sent", _count: "50" }), [api, P]);
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const send = async (ev) => {
    ev.preventDefault();
    if (!text.trim()) return;
    setBusy(true);
    try {
      await api.call("Communication", {
        method: "POST",
        body: {
          resourceType: "Communication",
          status: "completed",
          subject: { reference: P },
          sender: { reference: P },
          sent: new Date().toISOString(),
          payload: [{ contentString: text.trim() }],
        },
      });
      setText("");
      say.ok(t("sent"));
      list.reload();
    } catch (e) {
      say.error(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <h1>{t("messages")}</h1>
      <form onSubmit={send} class="compose">
        <label for="message">{t("newMessage")}</label>
        <textarea id="message" required maxLength={4000} rows={3} value={text} onInput={(e) => setText(e.currentTarget.value)} />
        <button class="primary" type="submit" disabled={busy}>{t("send")}</button>
      </form>
      {list.error && <div class="alert" role="alert">{list.error.message}</div>}
      {list.data && list.data.length === 0 && <p>{t("noMessages")}</p>}
      {list.data && (
        <ul class="messages">
          {list.data.map((m) => (
            <li key={m.id} class={fromPatient(m, patient) ? "mine" : "theirs"}>
              <p class="meta">{fromPatient(m, patient) ? t("fromYou") : t("fromTeam")} · {when(m.sent)}</p>
              <p class="text">{messageText(m)}</p>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}
