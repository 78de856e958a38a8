// Appointments: accept a proposed one, cancel, book a free Slot ($accept, $cancel, $book).
import { useState } from "preact/hooks";
import { freeSlots } from "./data.js";
import { when } from "./format.js";
import { useLoad } from "./hooks.js";
import { t } from "./strings.js";

export function AppointmentList({ appointments, api, say, onChange, onMove }) {
  const [busy, setBusy] = useState(null);
  const act = async (appt, action) => {
    if (action === "$cancel" && !confirm(t("cancelConfirm", { when: when(appt.start) }))) return;
    setBusy(appt.id);
    try {
      const done = await api.op(`Appointment/${appt.id}/${action}`);
      say.ok(action === "$accept" ? t("accepted", { when: when(done.start) }) : t("cancelled"));
      onChange();
    } catch (e) {
      say.error(e);
    } finally {
      setBusy(null);
    }
  };
  if (appointments.length === 0) return <p>{t("noAppointments")}</p>;
  return (
    <ul class="cards">
      {appointments.map((a) => (
        <li class={`card appt-${a.status}`} key={a.id} data-appointment={a.id}>
          <h3>{when(a.start)}</h3>
          <p class="meta">{t(`status_${a.status}`)}</p>
          {a.description && <p>{a.description}</p>}
          <div class="actions">
            {a.status === "proposed" && (
              <button class="primary" type="button" disabled={busy === a.id} onClick={() => act(a, "$accept")}>
                {t("accept")}
              </button>
            )}
            {onMove && a.status === "booked" && (
              <button type="button" disabled={busy === a.id} onClick={() => onMove(a)}>
                {t("move")}
              </button>
            )}
            {["proposed", "pending", "booked"].includes(a.status) && (
              <button type="button" disabled={busy === a.id} onClick={() => act(a, "$cancel")}>
                {t("cancel")}
              </button>
            )}
          </div>
        </li>
      ))}
    </ul>
  );
}

function Book({ api, patient, say, onBooked, moving, onStopMoving }) {
  const slots = useLoad(() => freeSlots(api), [api]);
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const book = async (slot) => {
    setBusy(true);
    try {
      if (moving) {
        const moved = await api.op(`Appointment/${moving.id}/$reschedule`, [
          { name: "slot", valueReference: { reference: `Slot/${slot.id}` } },
        ]);
        say.ok(t("moved", { when: when(moved.start) }));
        onStopMoving();
        slots.reload();
        onBooked();
        return;
      }
      const params = [
        { name: "slot", valueReference: { reference: `Slot/${slot.id}` } },
        { name: "patient", valueReference: { reference: `Patient/${patient}` } },
      ];
      if (reason.trim()) params.push({ name: "reason", valueString: reason.trim() });
      const appt = await api.op("Appointment/$book", params);
      say.ok(t("booked", { when: when(appt.start) }));
      setReason("");
      slots.reload();
      onBooked();
    } catch (e) {
      say.error(e);
      slots.reload();
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="book-h" id="book">
      <h2 id="book-h">{moving ? t("moveTitle", { when: when(moving.start) }) : t("bookTitle")}</h2>
      <p>{t("bookIntro")}</p>
      {moving ? (
        <button type="button" onClick={onStopMoving}>{t("keepTime")}</button>
      ) : (
        <>
          <label for="reason">{t("reason")}</label>
          <input id="reason" type="text" maxLength={500} value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
        </>
      )}
      {slots.error && <div class="alert" role="alert">{slots.error.message}</div>}
      {slots.data && slots.data.length === 0 && <p>{t("noSlots")}</p>}
      {slots.data && (
        <ul class="slots">
          {slots.data.map((s) => (
            <li key={s.id}>
              <button type="button" disabled={busy} data-slot={s.id} onClick={() => book(s)}>
                {t(moving ? "moveTo" : "book", { when: when(s.start) })}
              </button>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

export function AppointmentsScreen({ api, patient, say }) {
  const P = `Patient/${patient}`;
  const list = useLoad(() => api.search("Appointment", { patient: P, _sort: "date", _count: "50" }), [api, P]);
  const [moving, setMoving] = useState(null);
  const move = (appt) => {
    setMoving(appt);
    document.getElementById("book")?.scrollIntoView();
  };
  return (
    <>
      <h1>{t("appointments")}</h1>
      {list.error && <div class="alert" role="alert">{list.error.message}</div>}
      {list.data && (
        <AppointmentList appointments={list.data} api={api} say={say} onChange={list.reload} onMove={move} />
      )}
      <Book
        api={api}
        patient={patient}
        say={say}
        onBooked={list.reload}
        moving={moving}
        onStopMoving={() => setMoving(null)}
      />
    </>
  );
}
