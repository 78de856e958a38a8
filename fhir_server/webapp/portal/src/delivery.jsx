// Delivery problems (administrators; docs/webapp.md): everything Hearth could not deliver —
// failed reports, e-mails the mail server refused, dead-lettered HL7 v2 messages, DICOM pushes of
// AI results — from `GET /fhir/$delivery-problems`, each with its reason and, where it applies,
// a Retry button (`POST /fhir/$retry-delivery`).
import { useState } from "preact/hooks";
import { useLoad } from "./hooks.js";
import { when } from "./format.js";
import { t } from "./strings.js";

function parts(problem) {
  const out = {};
  for (const p of problem.part || []) {
    const key = Object.keys(p).find((k) => k.startsWith("value"));
    out[p.name] = p[key];
  }
  return out;
}

export function DeliveryScreen({ api, say }) {
  const list = useLoad(() => api.call("$delivery-problems"), []);
  const [busy, setBusy] = useState(null);
  const retry = async (target) => {
    setBusy(target);
    try {
      const res = await api.op("$retry-delivery", [{ name: "target", valueReference: { reference: target } }]);
      const got = Object.fromEntries((res.parameter || []).map((p) => [p.name, p.valueString]));
      if (got.status === "failed") say.error(new Error(t("deliveryRetryFailed", { reason: got.reason || "" })));
      else say.ok(t(got.status === "delivered" ? "deliveryDelivered" : "deliveryQueued"));
      list.reload();
    } catch (e) {
      say.error(e);
    } finally {
      setBusy(null);
    }
  };
  if (list.error) return <div class="alert" role="alert">{list.error.message}</div>;
  if (!list.data) return <p>{t("loading")}</p>;
  const problems = (list.data.parameter || []).map(parts);
  return (
    <section aria-labelledby="delivery-title">
      <h1 id="delivery-title">{t("deliveryTitle")}</h1>
      <p>{t("deliveryIntro")}</p>
      {problems.length === 0 ? (
        <p class="empty">{t("deliveryNone")}</p>
      ) : (
        <table class="problems">
          <thead>
            <tr>
              <th scope="col">{t("deliveryKind")}</th>
              <th scope="col">{t("deliveryWhat")}</th>
              <th scope="col">{t("deliveryReason")}</th>
              <th scope="col">{t("deliveryWhen")}</th>
              <th scope="col"><span class="visually-hidden">{t("deliveryRetry")}</span></th>
            </tr>
          </thead>
          <tbody>
            {problems.map((p) => {
              const target = p.target?.reference || "";
              return (
                <tr data-target={target}>
                  <td>{t(`deliveryKind_${p.kind}`)}</td>
                  <td>
                    {target}
                    {p.subject?.reference && <div class="muted">{p.subject.reference}</div>}
                  </td>
                  <td>
                    {p.reason}
                    {p.attempts != null && <div class="muted">{t("deliveryAttempts", { n: p.attempts })}</div>}
                  </td>
                  <td>{when(p.when)}</td>
                  <td>
                    {p.retry ? (
                      <button type="button" disabled={busy === target} onClick={() => retry(target)}>
                        {t("deliveryRetry")}
                      </button>
                    ) : (
                      <span class="muted">{t("deliveryAuto")}</span>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}
