// The development mailbox (administrators; `make run` only: HEARTH_DEV_MAILBOX): every e-mail
// Hearth sent, as the local SMTP sink kept it — reports with their signed PDF, reminders,
// messages — from `/dev/mailbox`. A server without it answers 404, shown as a sentence.
import { useState } from "preact/hooks";
import { useLoad } from "./hooks.js";
import { when } from "./format.js";
import { t } from "./strings.js";

function save(blob, filename) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

export function MailboxScreen({ api, say }) {
  const list = useLoad(() => api.dev("mailbox"), []);
  const [open, setOpen] = useState(null);
  const show = async (id) => {
    try {
      setOpen(await api.dev(`mailbox/${encodeURIComponent(id)}`));
    } catch (e) {
      say.error(e);
    }
  };
  const fetchAttachment = async (id, n, filename) => {
    try {
      save(await api.dev(`mailbox/${encodeURIComponent(id)}/attachments/${n}`, "blob"), filename);
    } catch (e) {
      say.error(e);
    }
  };
  if (list.error) {
    const text = list.error.status === 404 ? t("mailboxOff") : list.error.message;
    return <div class="alert" role="alert">{text}</div>;
  }
  if (!list.data) return <p>{t("loading")}</p>;
  return (
    <section aria-labelledby="mailbox-title">
      <h1 id="mailbox-title">{t("mailboxTitle")}</h1>
      <p>{t("mailboxIntro")}</p>
      <button type="button" onClick={list.reload}>{t("mailboxRefresh")}</button>
      {list.data.length === 0 ? (
        <p class="empty">{t("mailboxEmpty")}</p>
      ) : (
        <ul class="mails">
          {list.data.map((m) => (
            <li data-mail={m.id}>
              <button type="button" class="link" onClick={() => show(m.id)}>
                {m.subject || t("mailboxNoSubject")}
              </button>{" "}
              <span class="muted">{t("mailboxTo", { to: m.to })} · {when(m.date)}</span>
              {m.attachments.length > 0 && <span class="muted"> · 📎 {m.attachments.length}</span>}
            </li>
          ))}
        </ul>
      )}
      {open && (
        <article class="mail" aria-labelledby="mail-subject">
          <h2 id="mail-subject">{open.subject}</h2>
          <p class="muted">
            {t("mailboxFrom", { from: open.from })} · {t("mailboxTo", { to: open.to })} · {when(open.date)}
          </p>
          <pre class="mail-text">{open.text}</pre>
          {open.attachments.map((a, n) => (
            <p>
              <button type="button" onClick={() => fetchAttachment(open.id, n, a.filename)}>
                {t("mailboxDownload", { name: a.filename, kb: Math.ceil(a.size / 1024) })}
              </button>
            </p>
          ))}
        </article>
      )}
    </section>
  );
}
