"""How each record intent words its answer from the resources the caller's own searches found:
one function per ``render`` name of ``data/intents.json``, registered with ``@renderer``.

Every sentence comes from the language's templates; every fact is copied from the record as it
is written there (a clinician's conclusion, a prescriber's instructions) and the resource it came
from is cited. Nothing here interprets a result: the only text about a result is the conclusion a
clinician wrote."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assistant.catalogue import Catalogue


@dataclass(frozen=True)
class Citation:
    reference: str  # "Appointment/123"
    display: str


@dataclass
class Rendered:
    text: str
    citations: list[Citation] = field(default_factory=list)


@dataclass(frozen=True)
class Asker:
    """Who asks, as their token says: the audience of the answer, their patient and user."""

    audience: str  # patient or staff
    patient: str | None = None  # "Patient/1"
    user: str | None = None  # "Practitioner/7"
    role: str | None = None  # care role
    now: datetime | None = None


Renderer = Callable[["Catalogue", list[list[dict]], Asker], Rendered]
RENDERERS: dict[str, Renderer] = {}


def renderer(name: str) -> Callable[[Renderer], Renderer]:
    def register(fn: Renderer) -> Renderer:
        RENDERERS[name] = fn
        return fn

    return register


def fill(cat: Catalogue, key: str, **values: Any) -> str:
    return cat.templates[key].format(**values)


def when(cat: Catalogue, value: str | None, *, with_time: bool = True) -> str:
    """A FHIR date or dateTime in words, in the time zone it was written in."""
    if not value:
        return "?"
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    c = cat.calendar
    parts = {
        "weekday": c["weekdays"][ts.weekday()],
        "day": ts.day,
        "month": c["months"][ts.month - 1],
        "year": ts.year,
        "time": ts.strftime("%H:%M") + _zone(ts),
    }
    timed = with_time and "T" in value
    return str(c["dateTime" if timed else "date"]).format(**parts)


def _zone(ts: datetime) -> str:
    off = ts.utcoffset()
    if off is None:
        return ""
    if not off:
        return " UTC"
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f" (UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d})"


def ref(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def concept_text(concept: dict | None) -> str:
    if not concept:
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for c in concept.get("coding") or []:
        if c.get("display"):
            return str(c["display"])
    for c in concept.get("coding") or []:
        if c.get("code"):
            return str(c["code"])
    return ""


def listed(items: list[str]) -> str:
    return "; ".join(items)


# --- patients -------------------------------------------------------------------------------


@renderer("next_appointment")
def next_appointment(cat: Catalogue, found: list[list[dict]], asker: Asker) -> Rendered:
    appts = [a for a in found[0] if a.get("start")]
    if not appts:
        return Rendered(fill(cat, "appointment-none"))
    first = appts[0]
    others = [
        p["actor"].get("display") or ""
        for p in first.get("participant") or []
        if (p.get("actor") or {}).get("reference") not in (asker.patient, asker.user)
        and (p.get("actor") or {}).get("display")
    ]
    text = fill(
        cat,
        "appointment-next",
        when=when(cat, first["start"]),
        status=first.get("status", ""),
        **{
            "with": fill(cat, "appointment-with", who=", ".join(others)) if others else "",
            "what": fill(cat, "appointment-what", description=first["description"])
            if first.get("description")
            else "",
        },
    )
    if len(appts) > 1:
        text += " " + fill(
            cat, "appointment-later", list=listed([when(cat, a["start"]) for a in appts[1:]])
        )
    return Rendered(text, [Citation(ref(a), when(cat, a["start"])) for a in appts])


def _report_parts(cat: Catalogue, report: dict) -> dict[str, str]:
    return {
        "title": concept_text(report.get("code")) or "report",
        "date": when(cat, report.get("issued") or report.get("effectiveDateTime"), with_time=False),
        "conclusion": str(report.get("conclusion") or "").strip(),
    }


@renderer("last_report")
def last_report(cat: Catalogue, found: list[list[dict]], asker: Asker) -> Rendered:
    if not found[0]:
        return Rendered(fill(cat, "report-none"))
    report = found[0][0]
    parts = _report_parts(cat, report)
    key = "report-conclusion" if parts["conclusion"] else "report-no-conclusion"
    return Rendered(fill(cat, key, **parts), [Citation(ref(report), parts["title"])])


@renderer("clinician_words")
def clinician_words(cat: Catalogue, found: list[list[dict]], asker: Asker) -> Rendered:
    """A request to interpret a result: never an interpretation, only what a clinician wrote."""
    reports = [r for r in found[0] if str(r.get("conclusion") or "").strip()]
    if not reports:
        return Rendered(fill(cat, "clinician-words-none"))
    parts = _report_parts(cat, reports[0])
    return Rendered(
        fill(cat, "clinician-words", **parts), [Citation(ref(reports[0]), parts["title"])]
    )


def _medicine(cat: Catalogue, req: dict) -> tuple[str, str]:
    name = concept_text(req.get("medicationCodeableConcept")) or str(
        (req.get("medicationReference") or {}).get("display") or "?"
    )
    texts = [str(d["text"]) for d in req.get("dosageInstruction") or [] if d.get("text")]
    return name, "; ".join(texts) or fill(cat, "medicine-no-instructions")


@renderer("medicines")
def medicines(cat: Catalogue, found: list[list[dict]], asker: Asker) -> Rendered:
    if not found[0]:
        return Rendered(fill(cat, "medicines-none"))
    items, cites = [], []
    for req in found[0]:
        name, instructions = _medicine(cat, req)
        items.append(fill(cat, "medicine-item", name=name, instructions=instructions))
        cites.append(Citation(ref(req), name))
    return Rendered(fill(cat, "medicines-list", list=listed(items)), cites)


# Timing.repeat.when codes of the evening and night (R4 valueset event-timing)
EVENING = frozenset({"EVE", "EVE.early", "EVE.late", "NIGHT", "HS", "PCV", "ACV", "CV", "PHS"})
EVENING_WORDS = ("evening", "night", "bedtime", "bed time", "before bed", "at bed")


def _evening(dosage: dict) -> bool | None:
    """Whether a dosage says to take it in the evening or at night (True / False), or None when
    it names no time of day at all."""
    repeat = (dosage.get("timing") or {}).get("repeat") or {}
    whens = set(repeat.get("when") or [])
    times = list(repeat.get("timeOfDay") or [])
    text = str(dosage.get("text") or "").lower()
    said = [w for w in EVENING_WORDS if w in text]
    if whens & EVENING or any(t >= "17:00" for t in times) or said:
        return True
    if whens or times or any(w in text for w in ("morning", "noon", "lunch", "breakfast")):
        return False
    return None


@renderer("medicines_tonight")
def medicines_tonight(cat: Catalogue, found: list[list[dict]], asker: Asker) -> Rendered:
    if not found[0]:
        return Rendered(fill(cat, "medicines-none"))
    tonight, unclear, cites = [], [], []
    for req in found[0]:
        name, instructions = _medicine(cat, req)
        marks = [_evening(d) for d in req.get("dosageInstruction") or []]
        item = fill(cat, "medicine-item", name=name, instructions=instructions)
        if any(m is True for m in marks):
            tonight.append(item)
            cites.append(Citation(ref(req), name))
        elif not marks or all(m is None for m in marks):
            unclear.append(item)
            cites.append(Citation(ref(req), name))
    text = fill(cat, "tonight-list", list=listed(tonight)) if tonight else fill(cat, "tonight-none")
    if unclear:
        text += " " + fill(cat, "tonight-unclear", list=listed(unclear))
    return Rendered(text, cites)


@renderer("scan_status")
def scan_status(cat: Catalogue, found: list[list[dict]], asker: Asker) -> Rendered:
    cases, studies = found[0], found[1] if len(found) > 1 else []
    if cases:
        case = cases[0]
        status = concept_text(case.get("businessStatus"))
        words = cat.case_status.get(status) or cat.case_status.get("", status)
        title = concept_text(case.get("code")) or "case"
        text = fill(
            cat, "scan-case", case=title, date=when(cat, case.get("authoredOn"), with_time=False),
            status=words,
        )  # fmt: skip
        return Rendered(text, [Citation(ref(case), title)])
    if studies:
        study = studies[0]
        modality = ", ".join(
            str(m.get("display") or m.get("code")) for m in study.get("modality") or []
        )
        text = fill(
            cat, "scan-study", date=when(cat, study.get("started"), with_time=False),
            modality=f" ({modality})" if modality else "",
        )  # fmt: skip
        return Rendered(text, [Citation(ref(study), modality or "ImagingStudy")])
    return Rendered(fill(cat, "scan-none"))


@renderer("last_message")
def last_message(cat: Catalogue, found: list[list[dict]], asker: Asker) -> Rendered:
    if not found[0]:
        return Rendered(fill(cat, "message-none"))
    msg = found[0][0]
    texts = [str(p["contentString"]) for p in msg.get("payload") or [] if p.get("contentString")]
    sender = (msg.get("sender") or {}).get("reference")
    who = fill(cat, "message-you" if sender and sender == asker.patient else "message-team")
    text = fill(cat, "message-last", date=when(cat, msg.get("sent")), who=who, text=" ".join(texts))
    return Rendered(text, [Citation(ref(msg), when(cat, msg.get("sent")))])


# --- staff ----------------------------------------------------------------------------------


def _task_item(cat: Catalogue, task: dict, key: str) -> str:
    patient = (task.get("for") or {}).get("display") or fill(cat, "someone")
    return fill(
        cat,
        key,
        title=task.get("description") or concept_text(task.get("code")) or "Task",
        patient=patient,
        priority=task.get("priority", "routine"),
        status=concept_text(task.get("businessStatus")) or task.get("status", ""),
        date=when(cat, task.get("authoredOn"), with_time=False),
    )


def _task_cite(task: dict) -> Citation:
    return Citation(ref(task), task.get("description") or concept_text(task.get("code")) or "Task")


@renderer("work_list")
def work_list(cat: Catalogue, found: list[list[dict]], asker: Asker) -> Rendered:
    mine, open_ = found[0], found[1] if len(found) > 1 else []
    if not mine and not open_:
        return Rendered(fill(cat, "work-none"))
    parts = []
    if mine:
        parts.append(
            fill(cat, "work-mine", list=listed([_task_item(cat, t, "work-item") for t in mine]))
        )
    if open_:
        parts.append(
            fill(
                cat,
                "work-open",
                role=asker.role or "?",
                list=listed([_task_item(cat, t, "work-item") for t in open_]),
            )  # fmt: skip
        )
    return Rendered(" ".join(parts), [_task_cite(t) for t in [*mine, *open_]])


@renderer("urgent_cases")
def urgent_cases(cat: Catalogue, found: list[list[dict]], asker: Asker) -> Rendered:
    cases = found[0]
    if not cases:
        return Rendered(fill(cat, "urgent-none"))
    items = [_task_item(cat, t, "urgent-item") for t in cases]
    return Rendered(
        fill(cat, "urgent-list", count=len(cases), list=listed(items)),
        [_task_cite(t) for t in cases],
    )
