"""Population analytics of the screening programme: the figures of the Measures shipped in
``workflow/data/measures/`` (docs/analytics.md), computed from the stored resources as a FHIR R4
MeasureReport (``$evaluate-measure``, type ``summary``).

Nothing is copied or cached: each evaluation runs FHIR searches through the repository
(``Unit.match`` — the search engine's SQL, owned by ``resources/``) over the case Tasks of the
period (``Task?code=<workflow-case>|skin-screening&authored-on=ge…&authored-on=le…``), their step
Tasks (``part-of``), the AI and doctor Observations the Tasks name, the requesters'
PractitionerRoles (the site) and Appointments (``date``, ``status``), reads the matches in
batches, and counts. A Measure is computed by its canonical ``url``: :data:`FIGURES` maps each
shipped one to its function, so a Measure someone else stores is refused, never guessed at.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from importlib import resources as importlib_resources
from typing import TypeVar

from resources.errors import Invalid
from resources.storage.repository import Unit
from workflow.actors import ROLE_SYSTEM
from workflow.definitions import CASE_SYSTEM, STEP_SYSTEM
from workflow.tasks import code_of, io_values

MEASURE_BASE = "http://hearth.local/fhir/Measure/"
SCREENING_CASE = "skin-screening"
POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
STRATIFIER = "http://hearth.local/fhir/CodeSystem/measure-stratifier"
GROUP = "http://hearth.local/fhir/CodeSystem/measure-group"
LABELS = "http://hearth.local/fhir/CodeSystem/ai-model-label/"  # + the model key
AI_SYSTEM = "http://hearth.local/fhir/CodeSystem/ai-analysis"
UNCERTAIN = "uncertain"
OTHER = "other"
UCUM = "http://unitsofmeasure.org"
BATCH = 200  # ids per search (an OR list of one parameter) and rows per read
ATTENDED = ("fulfilled", "arrived", "checked-in", "noshow")  # outcome known
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


# -- the shipped Measures -------------------------------------------------------------------------
@lru_cache(maxsize=1)
def shipped() -> dict[str, dict]:
    """The Measures of ``workflow/data/measures/``, by id."""
    folder = importlib_resources.files("workflow") / "data" / "measures"
    found = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            measure = json.loads(entry.read_text(encoding="utf-8"))
            found[measure["id"]] = measure
    return found


# -- the period -----------------------------------------------------------------------------------
def check_period(start: str, end: str) -> tuple[date, date]:
    """``periodStart`` / ``periodEnd`` (FHIR ``date``: YYYY, YYYY-MM or YYYY-MM-DD) as the first
    and last day they cover; 400 for a malformed date or an end before the start."""

    def day(name: str, value: str, last: bool) -> date:
        if not _DATE.match(value):
            raise Invalid(
                f"$evaluate-measure: {name} must be a FHIR date (YYYY-MM-DD), not {value!r}"
            )
        parts = [int(p) for p in value.split("-")]
        try:
            if len(parts) == 3:
                return date(*parts)
            if len(parts) == 2:
                if not last:
                    return date(parts[0], parts[1], 1)
                nxt = date(parts[0] + parts[1] // 12, parts[1] % 12 + 1, 1)
                return date.fromordinal(nxt.toordinal() - 1)
            return date(parts[0], 12, 31) if last else date(parts[0], 1, 1)
        except ValueError as exc:
            raise Invalid(f"$evaluate-measure: {name} is not a calendar date: {value!r}") from exc

    first, last = day("periodStart", start, False), day("periodEnd", end, True)
    if last < first:
        raise Invalid(f"$evaluate-measure: periodEnd {end} is before periodStart {start}")
    return first, last


# -- reading ------------------------------------------------------------------------------------
def _batches(items: Sequence[str], size: int = BATCH) -> Iterator[Sequence[str]]:
    for n in range(0, len(items), size):
        yield items[n : n + size]


def _found(u: Unit, res_type: str, query: list[tuple[str, str]]) -> list[dict]:
    pks = u.match(res_type, query)
    out: list[dict] = []
    for n in range(0, len(pks), BATCH * 5):
        out.extend(s.resource for s in u.read_many(pks[n : n + BATCH * 5]))
    return out


def _any_of(u: Unit, res_type: str, param: str, values: Iterable[str]) -> list[dict]:
    """Resources of ``res_type`` whose ``param`` is any of ``values`` (searches of ``BATCH``
    values each: a comma is OR in FHIR search)."""
    wanted = sorted(set(values))
    out: list[dict] = []
    for batch in _batches(wanted):
        out.extend(_found(u, res_type, [(param, ",".join(batch))]))
    return out


def _by_ref(u: Unit, refs: Iterable[str]) -> dict[str, dict]:
    """The resources ``refs`` (``Type/id``) name, by reference (unknown ones left out)."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for ref in set(refs):
        res_type, _, res_id = ref.partition("/")
        if res_type and res_id and "/" not in res_id:
            by_type[res_type].append(res_id)
    out = {}
    for res_type, ids in by_type.items():
        for found in _any_of(u, res_type, "_id", ids):
            out[f"{res_type}/{found['id']}"] = found
    return out


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso_week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _ref(value: object) -> str | None:
    return (
        str(value.get("reference")) if isinstance(value, dict) and value.get("reference") else None
    )


def _flag(task: dict, label: str) -> bool | None:
    values = io_values(task, "input", label)
    return bool(values[-1]) if values else None


def _role(task: dict) -> str | None:
    for concept in task.get("performerType") or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == ROLE_SYSTEM:
                return coding.get("code")
    return None


def _end(task: dict | None) -> datetime | None:
    if task is None or task.get("status") != "completed":
        return None
    return _instant((task.get("executionPeriod") or {}).get("end"))


def _name(resource: dict | None) -> str | None:
    if resource is None:
        return None
    if isinstance(resource.get("name"), str):
        return resource["name"]
    for name in resource.get("name") or []:
        if name.get("text"):
            return str(name["text"])
        words = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family")]
        text = " ".join(str(w) for w in words if w)
        if text:
            return text
    return None


def _place(role: dict) -> str | None:
    """Where a PractitionerRole works: its first location, else its organization."""
    return _ref((role.get("location") or [None])[0]) or _ref(role.get("organization"))


# -- the cases ----------------------------------------------------------------------------------
@dataclass
class Case:
    """What the figures need of one screening case."""

    id: str
    started: datetime
    week: str
    site: tuple[str, str]  # (code, display)
    cadre: tuple[str, str]
    high_risk: bool | None
    uncertain: bool | None
    ai_class: str | None = None
    doctor_class: str | None = None
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds


def _label_of(coding: dict) -> str | None:
    system = str(coding.get("system") or "")
    if system.startswith(LABELS) and coding.get("code"):
        return str(coding["code"])
    return None


def _ai_class(obs: dict) -> tuple[str | None, dict[tuple[str, str], str]]:
    """The AI Observation's finding (a model label, or ``uncertain``) and, from its components
    (one per class, each coded with the label and, where checked, SNOMED CT), which codes stand
    for which label."""
    codes: dict[tuple[str, str], str] = {}
    for component in obs.get("component") or []:
        codings = (component.get("code") or {}).get("coding") or []
        label = next((lbl for c in codings if (lbl := _label_of(c))), None)
        if label:
            for c in codings:
                codes[(str(c.get("system")), str(c.get("code")))] = label
    finding = None
    for coding in (obs.get("valueCodeableConcept") or {}).get("coding") or []:
        if coding.get("system") == AI_SYSTEM and coding.get("code") == UNCERTAIN:
            finding = UNCERTAIN
            break
        finding = finding or _label_of(coding)
    return finding, codes


def _doctor_class(concepts: list[dict], codes: dict[tuple[str, str], str]) -> str | None:
    """The first coded concept the doctor recorded, as a model label (``other`` when none of its
    codes is one of the model's classes); None when the doctor coded nothing."""
    for concept in concepts:
        codings = (concept or {}).get("coding") or []
        if not codings:
            continue
        for coding in codings:
            label = codes.get((str(coding.get("system")), str(coding.get("code"))))
            if label or (label := _label_of(coding)):
                return label
        return OTHER
    return None


def cases(u: Unit, first: date, last: date) -> list[Case]:
    """The skin-screening cases started between ``first`` and ``last`` (whole days, UTC)."""
    tasks = _found(
        u,
        "Task",
        [
            ("code", f"{CASE_SYSTEM}|{SCREENING_CASE}"),
            ("authored-on", f"ge{first.isoformat()}"),
            ("authored-on", f"le{last.isoformat()}"),
        ],
    )
    tasks = [t for t in tasks if not t.get("partOf") and _instant(t.get("authoredOn"))]
    steps: dict[str, list[dict]] = defaultdict(list)
    for step in _any_of(u, "Task", "part-of", (f"Task/{t['id']}" for t in tasks)):
        if code_of(step, STEP_SYSTEM) is None:
            continue  # not a step (the analysis Task that carries out the AI step)
        for parent in step.get("partOf") or []:
            steps[str(parent.get("reference", "")).removeprefix("Task/")].append(step)

    # Who started each case, and where they work: the requester's PractitionerRole (when the
    # requester is one), else the Practitioner's active PractitionerRoles (the first by id with
    # a place); the place is the role's first location, else its organization.
    requesters = {r for t in tasks if (r := _ref(t.get("requester")))}
    practitioners = sorted(r for r in requesters if r.startswith("Practitioner/"))
    site_of: dict[str, str] = {}
    roles = _any_of(u, "PractitionerRole", "practitioner", practitioners)
    for role in sorted(roles, key=lambda r: str(r.get("id"))):
        who, where = _ref(role.get("practitioner")), _place(role)
        if who and where and role.get("active") is not False:
            site_of.setdefault(who, where)
    as_roles = _by_ref(u, (r for r in requesters if r.startswith("PractitionerRole/")))
    for who, role in as_roles.items():
        if where := _place(role):
            site_of[who] = where

    # The AI results (case input ai-result) and what the doctor step recorded.
    doctor_steps = {
        case_id: [s for s in found if _role(s) == "doctor"] for case_id, found in steps.items()
    }
    wanted = {
        ref
        for t in tasks
        for v in io_values(t, "input", "ai-result")
        if (ref := _ref(v)) and ref.startswith("Observation/")
    }
    wanted |= {
        ref
        for found in doctor_steps.values()
        for s in found
        for v in io_values(s, "output", "Observation")
        if (ref := _ref(v))
    }
    role_people = [r for role in as_roles.values() if (r := _ref(role.get("practitioner")))]
    linked = _by_ref(u, [*wanted, *requesters, *role_people, *site_of.values()])

    out = []
    for task in tasks:
        started = _instant(task["authoredOn"])
        assert started is not None
        requester = _ref(task.get("requester"))
        if requester is None or requester.startswith("Patient/"):
            cadre = ("patient", "The patient (self)")
        else:
            person: dict = as_roles.get(requester, {}).get("practitioner") or {}
            name = (
                _name(linked.get(requester))
                or person.get("display")
                or _name(linked.get(str(person.get("reference", ""))))
            )
            cadre = (requester, name or requester)
        site_ref = site_of.get(requester or "")
        site = (
            (site_ref, _name(linked.get(site_ref)) or site_ref)
            if site_ref
            else ("unknown", "Unknown site")
        )
        case = Case(
            id=task["id"],
            started=started,
            week=iso_week(started),
            site=site,
            cadre=cadre,
            high_risk=_flag(task, "high-risk"),
            uncertain=_flag(task, "uncertain"),
        )
        codes: dict[tuple[str, str], str] = {}
        for v in io_values(task, "input", "ai-result"):
            obs = linked.get(_ref(v) or "")
            if obs is not None and obs.get("valueCodeableConcept"):
                case.ai_class, codes = _ai_class(obs)
                break
        concepts: list[dict] = []
        for s in doctor_steps.get(task["id"], []):
            concepts += [
                c for c in io_values(s, "output", "conclusion-code") if isinstance(c, dict)
            ]
            for v in io_values(s, "output", "Observation"):
                obs = linked.get(_ref(v) or "")
                if obs is not None and obs.get("valueCodeableConcept"):
                    concepts.append(obs["valueCodeableConcept"])
        case.doctor_class = _doctor_class(concepts, codes)
        by_role: dict[str | None, dict] = {}
        for s in steps.get(task["id"], []):
            by_role.setdefault(_role(s), s)
        moments = {
            "start": started,
            "ai": _end(by_role.get("ai")),
            "doctor": _end(by_role.get("doctor")),
            "report": _end(by_role.get("system")),
        }
        for stage, (a, b) in STAGES.items():
            t0, t1 = moments[a], moments[b]
            if t0 is not None and t1 is not None:
                case.stages[stage] = (t1 - t0).total_seconds()
        out.append(case)
    return out


# Turnaround stages: (from, to) moments of a case.
STAGES = {
    "ai": ("start", "ai"),
    "doctor": ("ai", "doctor"),
    "report": ("doctor", "report"),
    "total": ("start", "report"),
}


# -- statistics ---------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def p90(values: Sequence[float]) -> float:
    """The 90th percentile by the nearest-rank method: the ⌈0.9·n⌉-th smallest value."""
    ordered = sorted(values)
    return float(ordered[math.ceil(0.9 * len(ordered)) - 1])


# -- MeasureReport pieces -----------------------------------------------------------------------
def _concept(system: str, code: str, text: str | None = None) -> dict:
    out: dict = {"coding": [{"system": system, "code": code}]}
    if text:
        out["text"] = text
    return out


def _populations(counts: dict[str, int]) -> list[dict]:
    return [{"code": _concept(POPULATION, code), "count": n} for code, n in counts.items()]


def _score(value: float | None, unit: str | None = None) -> dict:
    if value is None:
        return {}
    quantity: dict = {"value": round(value, 6)}
    if unit:
        quantity.update({"unit": unit, "system": UCUM, "code": unit})
    return {"measureScore": quantity}


Value = tuple[str, str]  # (code, display) of a stratum value
T = TypeVar("T")


def _proportion(counts: dict[str, int]) -> float | None:
    den = counts.get("denominator", 0) - counts.get("denominator-exclusion", 0)
    return counts.get("numerator", 0) / den if den > 0 else None


def _stratifier(
    code: str,
    items: Sequence[T],
    keys: Sequence[tuple[str, Callable[[T], Value | None]]],
    count: Callable[[Sequence[T]], dict[str, int]],
    score: Callable[[dict[str, int]], float | None],
) -> dict:
    """One stratifier: items grouped by their value(s) of ``keys`` (one key: ``value``; several:
    ``component``s), each stratum with its population counts and score."""
    groups: dict[tuple[Value, ...], list[T]] = defaultdict(list)
    for item in items:
        found = [k(item) for _, k in keys]
        values = tuple(v for v in found if v is not None)
        if len(values) == len(keys):
            groups[values].append(item)
    strata = []
    for values in sorted(groups):
        counts = count(groups[values])
        stratum: dict = {}
        if len(keys) == 1:
            stratum["value"] = {"coding": [{"code": values[0][0]}], "text": values[0][1]}
        else:
            stratum["component"] = [
                {
                    "code": _concept(STRATIFIER, name, name),
                    "value": {"coding": [{"code": v[0]}], "text": v[1]},
                }
                for (name, _), v in zip(keys, values, strict=True)
            ]
        stratum["population"] = _populations(counts)
        stratum.update(_score(score(counts)))
        strata.append(stratum)
    return {"code": [_concept(STRATIFIER, code, code)], "stratum": strata}


def _group(code: str, counts: dict[str, int], score: dict, stratifiers: list[dict]) -> dict:
    out: dict = {"code": _concept(GROUP, code), "population": _populations(counts), **score}
    if stratifiers:
        out["stratifier"] = stratifiers
    return out


CASE_KEYS: dict[str, Callable[[Case], Value | None]] = {
    "week": lambda c: (c.week, c.week),
    "site": lambda c: c.site,
    "cadre": lambda c: c.cadre,
}


def _keys(*names: str) -> list[tuple[str, Callable[[Case], Value | None]]]:
    return [(n, CASE_KEYS[n]) for n in names]


# -- the figures ----------------------------------------------------------------------------------
def volume(u: Unit, first: date, last: date) -> list[dict]:
    found = cases(u, first, last)

    def count(items: Sequence[Case]) -> dict[str, int]:
        return {"initial-population": len(items)}

    def score(c: dict[str, int]) -> float:
        return float(c["initial-population"])

    stratifiers = [
        _stratifier(name, found, _keys(*name.split("-")), count, score)
        for name in ("week", "site", "cadre", "week-site", "week-cadre")
    ]
    return [_group("screenings", count(found), _score(len(found)), stratifiers)]


def _flag_share(flag: str, group: str) -> Callable[[Unit, date, date], list[dict]]:
    def figure(u: Unit, first: date, last: date) -> list[dict]:
        found = cases(u, first, last)

        def count(items: Sequence[Case]) -> dict[str, int]:
            values = [getattr(c, flag) for c in items]
            return {
                "initial-population": len(values),
                "denominator": sum(v is not None for v in values),
                "numerator": sum(v is True for v in values),
            }

        stratifiers = [
            _stratifier(n, found, _keys(n), count, _proportion) for n in ("week", "site")
        ]
        counts = count(found)
        return [_group(group, counts, _score(_proportion(counts)), stratifiers)]

    return figure


def turnaround(u: Unit, first: date, last: date) -> list[dict]:
    found = cases(u, first, last)
    groups = []
    for stage in STAGES:
        seconds = [c.stages[stage] for c in found if stage in c.stages]
        counts = {"initial-population": len(found), "measure-population": len(seconds)}
        for name, fn in (("median", median), ("p90", p90)):
            value = fn(seconds) if seconds else None
            groups.append(_group(f"{stage}-{name}", counts, _score(value, "s"), []))
    return groups


def agreement(u: Unit, first: date, last: date) -> list[dict]:
    found = cases(u, first, last)
    compared = [c for c in found if c.ai_class is not None and c.doctor_class is not None]

    def count(items: Sequence[Case]) -> dict[str, int]:
        return {
            "initial-population": len(items),
            "denominator": len(items),
            "denominator-exclusion": sum(c.ai_class == UNCERTAIN for c in items),
            "numerator": sum(c.ai_class == c.doctor_class for c in items),
        }

    def ai(c: Case) -> Value | None:
        return (c.ai_class, c.ai_class) if c.ai_class else None

    def doctor(c: Case) -> Value | None:
        return (c.doctor_class, c.doctor_class) if c.doctor_class else None

    stratifiers = [
        _stratifier("ai-class", compared, [("ai-class", ai)], count, _proportion),
        _stratifier("doctor-class", compared, [("doctor-class", doctor)], count, _proportion),
        _stratifier(
            "confusion", compared, [("ai-class", ai), ("doctor-class", doctor)], count, _proportion
        ),
    ]
    counts = count(compared)
    counts["initial-population"] = len(found)
    return [_group("agreement", counts, _score(_proportion(counts)), stratifiers)]


def no_show(u: Unit, first: date, last: date) -> list[dict]:
    found = _found(
        u, "Appointment", [("date", f"ge{first.isoformat()}"), ("date", f"le{last.isoformat()}")]
    )

    def count(items: Sequence[dict]) -> dict[str, int]:
        statuses = Counter(a.get("status") for a in items)
        return {
            "initial-population": len(items),
            "denominator": sum(statuses[s] for s in ATTENDED),
            "numerator": statuses["noshow"],
        }

    def week(a: dict) -> Value | None:
        moment = _instant(a.get("start"))
        return (iso_week(moment), iso_week(moment)) if moment else None

    counts = count(found)
    stratifiers = [_stratifier("week", found, [("week", week)], count, _proportion)]
    return [_group("no-show", counts, _score(_proportion(counts)), stratifiers)]


FIGURES: dict[str, Callable[[Unit, date, date], list[dict]]] = {
    f"{MEASURE_BASE}screening-volume": volume,
    f"{MEASURE_BASE}screening-positivity": _flag_share("high_risk", "high-risk"),
    f"{MEASURE_BASE}screening-uncertain": _flag_share("uncertain", "uncertain"),
    f"{MEASURE_BASE}screening-turnaround": turnaround,
    f"{MEASURE_BASE}ai-doctor-agreement": agreement,
    f"{MEASURE_BASE}appointment-no-show": no_show,
}


def evaluate(u: Unit, measure: dict, period_start: str, period_end: str, now: str) -> dict:
    """The summary MeasureReport of ``measure`` (a Measure Hearth ships, by its ``url``) over the
    period; 400 (Invalid) for a Measure Hearth does not compute or a bad period."""
    url = str(measure.get("url") or "")
    figure = FIGURES.get(url)
    if figure is None:
        raise Invalid(
            f"$evaluate-measure: Measure/{measure.get('id')} ({url or 'no url'}) is not one Hearth "
            f"computes; Hearth evaluates its own Measures: {', '.join(sorted(FIGURES))}"
        )
    first, last = check_period(period_start, period_end)
    report: dict = {
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": "summary",
        "measure": f"{url}|{measure['version']}" if measure.get("version") else url,
        "date": now,
        "period": {"start": period_start, "end": period_end},
    }
    if measure.get("improvementNotation"):
        report["improvementNotation"] = measure["improvementNotation"]
    report["group"] = figure(u, first, last)
    return report
