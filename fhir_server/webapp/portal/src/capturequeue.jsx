// The cadre's captures waiting to be sent (src/outbox.js), in plain language: how many, whether
// they are being sent now or wait for the connection, and a button to try at once.
import { useEffect, useState } from "preact/hooks";
import { flush, watch } from "./outbox.js";
import { t } from "./strings.js";

/** `patient` (a reference) narrows the list to one patient's captures. */
export function CaptureQueue({ api, patient, onSent }) {
  const [items, setItems] = useState([]);
  useEffect(() => watch(setItems), []);
  const mine = patient ? items.filter((c) => c.patient === patient) : items;
  const before = useState({ n: 0 })[0];
  useEffect(() => {
    if (mine.length < before.n && onSent) onSent();
    before.n = mine.length;
  }, [mine.length]);
  if (mine.length === 0) return null;
  const busy = mine.some((c) => c.sending);
  const error = mine.find((c) => c.error)?.error;
  return (
    <section class="alert queue" aria-live="polite" data-pending={mine.length}>
      <p>
        <strong>{t(mine.length === 1 ? "queueOne" : "queueMany", { n: mine.length })}</strong>{" "}
        {busy ? t("queueSending") : navigator.onLine === false ? t("queueOffline") : t("queueWaiting")}
      </p>
      {!busy && error && <p class="meta">{t("queueLastError", { error })}</p>}
      <button type="button" disabled={busy} onClick={() => flush(api).catch(() => {})}>
        {t("queueRetry")}
      </button>
    </section>
  );
}
