// Schedules: pick a doctor, create their Schedule, add free Slots from a weekly template
// (Schedule/$generate-slots), and see one day: each Slot with the patient booked in it.
import { useState } from "preact/hooks";
import { format, parseISO } from "date-fns";
import { personName } from "../cadre.jsx";
import { useLoad } from "../hooks.js";
import { value } from "./params.js";
import { at } from "./strings.js";

const ROLE_SYSTEM = "http://hearth.local/fhir/CodeSystem/care-role";
const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const localZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const isoDay = (d) => format(d, "yyyy-MM-dd");

function Template({ api, say, schedule, onDone }) {
  const [f, setF] = useState({
    start: isoDay(new Date()),
    weeks: "1",
    from: "09:00",
    to: "17:00",
    minutes: "30",
    zone: localZone(),
  });
  const [days, setDays] = useState(["mon", "tue", "wed", "thu", "fri"]);
  const [busy, setBusy] = useState(false);
  const field = (key, type, extra = {}) => (
    <>
      <label for={`tp-${key}`}>{at(`t_${key}`)}</label>
      <input id={`tp-${key}`} type={type} value={f[key]} required
        onInput={(e) => setF({ ...f, [key]: e.currentTarget.value })} {...extra} />
    </>
  );
  const submit = async (ev) => {
    ev.preventDefault();
    setBusy(true);
    try {
      const answer = await api.op(`Schedule/${schedule.id}/$generate-slots`, [
        { name: "start", valueDate: f.start },
        { name: "weeks", valueInteger: Number(f.weeks) },
        ...days.map((d) => ({ name: "dayOfWeek", valueCode: d })),
        { name: "startTime", valueTime: `${f.from}:00` },
        { name: "endTime", valueTime: `${f.to}:00` },
        { name: "slotMinutes", valueInteger: Number(f.minutes) },
        { name: "timeZone", valueString: f.zone },
      ]);
      say.ok(at("generated", { created: value(answer, "created"), existing: value(answer, "existing") }));
      onDone(f.start);
    } catch (e) {
      say.error(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="compose" onSubmit={submit} aria-labelledby="tp-h">
      <h2 id="tp-h">{at("template")}</h2>
      {field("start", "date")}
      {field("weeks", "number", { min: 1, max: 52 })}
      <fieldset class="roles">
        <legend>{at("t_days")}</legend>
        {DAYS.map((d) => (
          <label class="check" key={d}>
            <input type="checkbox" checked={days.includes(d)}
              onChange={(e) => setDays(e.currentTarget.checked ? [...days, d] : days.filter((x) => x !== d))} />
            {at(`day_${d}`)}
          </label>
        ))}
      </fieldset>
      {field("from", "time")}
      {field("to", "time")}
      {field("minutes", "number", { min: 5, max: 1440 })}
      {field("zone", "text", { maxLength: 64 })}
      <button class="primary" type="submit" disabled={busy || !days.length}>{at("generate")}</button>
    </form>
  );
}

function DayView({ api, schedule, practitioner, day, setDay }) {
  const view = useLoad(async () => {
    const start = new Date(`${day}T00:00:00`);
    const end = new Date(start.getTime() + 24 * 3600 * 1000);
    const slots = await api.search("Slot", [
      ["schedule", `Schedule/${schedule.id}`],
      ["start", `ge${start.toISOString()}`],
      ["start", `lt${end.toISOString()}`],
      ["_sort", "start"],
      ["_count", "200"],
    ]);
    const bundle = await api.call(`Appointment?${new URLSearchParams([
      ["actor", `Practitioner/${practitioner}`],
      ["date", `ge${start.toISOString()}`],
      ["date", `lt${end.toISOString()}`],
      ["_include", "Appointment:patient"],
      ["_count", "200"],
    ])}`);
    const all = (bundle.entry || []).map((e) => e.resource);
    const patients = Object.fromEntries(all.filter((r) => r.resourceType === "Patient").map((p) => [`Patient/${p.id}`, p]));
    const bySlot = {};
    for (const a of all.filter((r) => r.resourceType === "Appointment" && r.status !== "cancelled")) {
      const who = (a.participant || []).map((p) => p.actor?.reference).find((r) => r?.startsWith("Patient/"));
      for (const s of a.slot || []) bySlot[s.reference] = { appointment: a, patient: patients[who] };
    }
    return { slots, bySlot };
  }, [schedule.id, day]);
  return (
    <section aria-labelledby="day-h">
      <h2 id="day-h">{at("dayView")}</h2>
      <label for="day-pick">{at("day")}</label>
      <input id="day-pick" type="date" value={day} onInput={(e) => e.currentTarget.value && setDay(e.currentTarget.value)} />
      {view.error && <div class="alert" role="alert">{view.error.message}</div>}
      {view.data && view.data.slots.length === 0 && <p>{at("noSlots")}</p>}
      {view.data && view.data.slots.length > 0 && (
        <ol class="slots day" aria-label={at("dayView")}>
          {view.data.slots.map((s) => {
            const booked = view.data.bySlot[`Slot/${s.id}`];
            return (
              <li key={s.id} class={`card slot-${s.status}`} data-slot={s.id}>
                <strong>{format(parseISO(s.start), "HH:mm")}–{format(parseISO(s.end), "HH:mm")}</strong>{" "}
                {at(`slot_${s.status}`)}
                {booked?.patient && <> — {personName(booked.patient)}</>}
              </li>
            );
          })}
        </ol>
      )}
    </section>
  );
}

export function SchedulesScreen({ api, say }) {
  const [doctor, setDoctor] = useState("");
  const [day, setDay] = useState(isoDay(new Date()));
  const doctors = useLoad(async () => {
    const bundle = await api.call(`PractitionerRole?${new URLSearchParams([
      ["role", `${ROLE_SYSTEM}|doctor`],
      ["active", "true"],
      ["_include", "PractitionerRole:practitioner"],
      ["_count", "200"],
    ])}`);
    const out = (bundle.entry || []).map((e) => e.resource).filter((r) => r.resourceType === "Practitioner");
    return out.sort((a, b) => personName(a).localeCompare(personName(b)));
  }, []);
  const schedules = useLoad(
    async () => (doctor ? api.search("Schedule", { actor: `Practitioner/${doctor}` }) : []),
    [doctor],
  );
  const createSchedule = async () => {
    try {
      await api.call("Schedule", {
        method: "POST",
        body: { resourceType: "Schedule", active: true, actor: [{ reference: `Practitioner/${doctor}` }] },
      });
      say.ok(at("scheduleCreated"));
      schedules.reload();
    } catch (e) {
      say.error(e);
    }
  };
  const schedule = (schedules.data || [])[0];
  return (
    <section aria-labelledby="sched-h">
      <h1 id="sched-h">{at("schedules")}</h1>
      <p class="meta">{at("schedulesIntro")}</p>
      {doctors.error && <div class="alert" role="alert">{doctors.error.message}</div>}
      <label for="doctor-pick">{at("doctor")}</label>
      <select id="doctor-pick" value={doctor} onChange={(e) => setDoctor(e.currentTarget.value)}>
        <option value="">{at("choose")}</option>
        {(doctors.data || []).map((p) => <option value={p.id} key={p.id}>{personName(p)}</option>)}
      </select>
      {doctor && schedules.data && !schedule && (
        <>
          <p>{at("noSchedule")}</p>
          <button class="primary" type="button" onClick={createSchedule}>{at("createSchedule")}</button>
        </>
      )}
      {schedule && (
        <>
          <Template api={api} say={say} schedule={schedule} onDone={(first) => { setDay(first); schedules.reload(); }} />
          <DayView api={api} schedule={schedule} practitioner={doctor} day={day} setDay={setDay} key={`${schedule.id}-${day}-${schedules.loading}`} />
        </>
      )}
    </section>
  );
}
