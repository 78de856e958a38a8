"""Population analytics over HTTP on SQLite and PostgreSQL: the Measures `hearth db upgrade`
stores, and `Measure/[id]/$evaluate-measure` on screening cases walked through the workflow with
known outcomes. Every expected figure (counts, shares, medians, 90th percentiles, the confusion
matrix) is computed here from the Tasks read back over HTTP, not by the code under test; bad
inputs get 400 OperationOutcomes, and a patient-context token learns nothing (403)."""

from __future__ import annotations

import math
import statistics
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from inference.registry import discover
from inference.results import classification_observation
from tests.conftest import BACKENDS
from tests.fhir_server.test_cli import hearth
from tests.security.compartment_helpers import user_token
from tests.servers import database_url, start_server
from tests.workflow.conftest import Fhir, person, photo_media, ref
from tests.workflow.test_cases_http import start, step

SKIN = discover()["skin"]
LABELS = "http://hearth.local/fhir/CodeSystem/ai-model-label/skin"
STAFF = "openid fhirUser user/*.cruds"
TODAY = datetime.now(UTC).date()
START, END = (TODAY - timedelta(days=30)).isoformat(), TODAY.isoformat()


@pytest.fixture(scope="module", params=BACKENDS)
def hearth_db(request, tmp_path_factory, smtp):  # type: ignore[no-untyped-def]
    """A Hearth of its own (so that every case counted is one of this module's) on a database
    upgraded by `hearth db upgrade`, which stores the shipped Measures."""
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(f"an-{request.param}"))
    first = hearth("db", "upgrade", env={"HEARTH_DATABASE_URL": url})
    assert first.returncode == 0, first.stderr
    assert "Hearth's Measures: 6 stored" in first.stdout, first.stdout
    again = hearth("db", "upgrade", env={"HEARTH_DATABASE_URL": url})
    assert "Hearth's Measures: 0 stored" in again.stdout, again.stdout
    running = start_server(
        request.param,
        url,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_ca_file=smtp.ca_file,
        smtp_from="reports@hearth.test",
    )
    yield running
    running.stop()
    cleanup()


@pytest.fixture(scope="module")
def world(hearth_db):  # type: ignore[no-untyped-def]
    fhir = Fhir(hearth_db.fhir, hearth_db.headers)
    yield build(fhir)
    fhir.close()


# -- building the cases -------------------------------------------------------------------------
def staff(fhir: Fhir, family: str, where: dict) -> tuple[str, str]:
    """A cadre working at ``where`` (a PractitionerRole's location or organization)."""
    who = ref(person(fhir, "Practitioner", family))
    fhir.create({"resourceType": "PractitionerRole", "practitioner": {"reference": who}, **where})
    return ("cadre", who)


def as_role(fhir: Fhir, family: str, where: dict) -> tuple[str, str]:
    who = ref(person(fhir, "Practitioner", family))
    role = fhir.create(
        {"resourceType": "PractitionerRole", "practitioner": {"reference": who}, **where}
    )
    return ("cadre", ref(role))


def ai_result(fhir: Fhir, case: dict, focus: str, device: str, label: str | None) -> dict:
    """The AI Observation as the inference module writes it (inference/results.py), deciding
    ``label`` with p = 0.9, or uncertain (top p = 0.4 < the model's threshold) when None."""
    n = len(SKIN.labels)
    if label is None:
        probs = [0.4] + [0.6 / (n - 1)] * (n - 1)
        decided = 0
    else:
        decided = SKIN.labels.index(label)
        probs = [0.1 / (n - 1)] * n
        probs[decided] = 0.9
    body = classification_observation(
        SKIN,
        device.removeprefix("Device/"),
        probs,
        decided,
        task_id=uuid.uuid4().hex,
        subject=case["for"]["reference"],
        derived_from=focus,
        based_on=[case["basedOn"][0]["reference"]],
    )
    body.pop("id")
    body["meta"] = {k: v for k, v in body.get("meta", {}).items() if v}
    return fhir.create({k: v for k, v in body.items() if v not in (None, {}, [])})


def walk(fhir: Fhir, team: dict, cadre, plan: dict) -> str:
    """Start a skin screening as ``cadre`` and take it as far as ``plan`` says."""
    patient = team["patients"].pop()
    media = photo_media(fhir, patient)
    actor = ("patient", patient) if cadre is None else cadre
    resp = start(fhir, actor, "skin-screening", patient, ref(media))
    assert resp.status_code == 201, resp.text
    case = resp.json()
    if "ai" not in plan:
        return case["id"]
    label, high_risk = plan["ai"]
    obs = ai_result(fhir, case, ref(media), team["ai"][1], label)
    done = fhir.op(
        f"/Task/{step(fhir, case['id'], 'ai-analysis')['id']}/$complete",
        team["ai"],
        {
            "result": {"valueReference": {"reference": ref(obs)}},
            "highRisk": {"valueBoolean": high_risk},
            "uncertain": {"valueBoolean": label is None},
        },
    )
    assert done.status_code == 200, done.text
    if "doctor" not in plan:
        return case["id"]
    review = step(fhir, case["id"], "doctor-review")
    assert fhir.op(f"/Task/{review['id']}/$claim", team["doctor"]).status_code == 200
    done = fhir.op(
        f"/Task/{review['id']}/$complete",
        team["doctor"],
        {
            "conclusion": {"valueString": "Reviewed"},
            "conclusionCode": {"valueCodeableConcept": {"coding": [plan["doctor"]]}},
        },
    )
    assert done.status_code == 200, done.text
    if not plan.get("report"):
        return case["id"]
    approval = step(fhir, case["id"], "admin-approval")
    assert fhir.op(f"/Task/{approval['id']}/$claim", team["admin"]).status_code == 200
    assert fhir.op(f"/Task/{approval['id']}/$complete", team["admin"]).status_code == 200
    assert fhir.get(f"/Task/{case['id']}")["businessStatus"]["coding"][0]["code"] == (
        "REPORT_DELIVERED"
    )
    return case["id"]


def label(code: str) -> dict:
    return {"system": LABELS, "code": code}


def build(fhir: Fhir) -> dict:
    tag = uuid.uuid4().hex[:6]
    org = fhir.create({"resourceType": "Organization", "name": f"Clinic {tag}"})
    loc = fhir.create({"resourceType": "Location", "name": f"Outreach {tag}"})
    loc2 = fhir.create({"resourceType": "Location", "name": f"Market day {tag}"})
    team: dict = {
        "cadre_a": staff(fhir, f"Akinyi{tag}", {"organization": {"reference": ref(org)}}),
        "cadre_b": staff(fhir, f"Baraka{tag}", {"location": [{"reference": ref(loc)}]}),
        # a cadre acting as their PractitionerRole (Task.requester = the role) at a second place
        "cadre_c": as_role(fhir, f"Chebet{tag}", {"location": [{"reference": ref(loc2)}]}),
        "doctor": ("doctor", ref(person(fhir, "Practitioner", f"Doctor{tag}"))),
        "admin": ("admin", ref(person(fhir, "Practitioner", f"Admin{tag}"))),
        "ai": ("ai", ref(fhir.create({"resourceType": "Device", "status": "active"}))),
        "patients": [
            ref(person(fhir, "Patient", f"P{n}{tag}", email=f"p{n}-{tag}@example.org"))
            for n in range(14)
        ],
    }
    snomed_bcc = {"system": "http://snomed.info/sct", "code": "254701007"}
    unrelated = {"system": "http://snomed.info/sct", "code": "399912005"}  # pressure ulcer
    a, b = team["cadre_a"], team["cadre_b"]
    ids = {
        # AI melanoma (high risk), the doctor agrees (model label code); report delivered
        "mel": walk(fhir, team, a, {"ai": ("mel", True), "doctor": label("mel"), "report": 1}),
        # AI naevus, the doctor says basal cell carcinoma in SNOMED CT: a disagreement found
        # through the codes of the AI result's components; report delivered
        "nv": walk(fhir, team, a, {"ai": ("nv", False), "doctor": snomed_bcc, "report": 1}),
        # AI uncertain (the doctor review is mandatory), the doctor says naevus
        "unc": walk(fhir, team, b, {"ai": (None, False), "doctor": label("nv")}),
        # AI benign keratosis, the doctor codes something outside the model's classes
        "bkl": walk(fhir, team, b, {"ai": ("bkl", False), "doctor": unrelated}),
        # AI basal cell carcinoma (high risk), no doctor yet
        "bcc": walk(fhir, team, a, {"ai": ("bcc", True)}),
        # started by the patient, waiting for the AI
        "self": walk(fhir, team, None, {}),
        # started 40 days ago: outside the period
        "old": walk(fhir, team, a, {"ai": ("nv", False)}),
        # six more analysed ones, so that a 90th percentile (nearest rank) is not the maximum
        **{f"more{n}": walk(fhir, team, b, {"ai": ("nv", False)}) for n in range(5)},
        "role": walk(fhir, team, team["cadre_c"], {"ai": ("nv", False)}),
    }
    # Two weeks in the period (the bkl case was started 8 days ago) and one case before it:
    # the start moment is Task.authoredOn, which an integration may set (here, a correction).
    for key, days in (("bkl", 8), ("old", 40)):
        task = fhir.get(f"/Task/{ids[key]}")
        moment = datetime.fromisoformat(task["authoredOn"].replace("Z", "+00:00"))
        task["authoredOn"] = (moment - timedelta(days=days)).isoformat().replace("+00:00", "Z")
        resp = fhir.http.put(f"/Task/{ids[key]}", json=task)
        assert resp.status_code == 200, resp.text

    # Appointments: in the period two no-shows, one fulfilled, one booked (outcome unknown),
    # one cancelled; and a no-show before the period.
    patient = team["patients"][0]
    for status, days in (
        ("noshow", 2),
        ("noshow", 9),
        ("fulfilled", 3),
        ("booked", 1),
        ("cancelled", 4),
        ("noshow", 45),
    ):
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days)
        fhir.create(
            {
                "resourceType": "Appointment",
                "status": status,
                "start": at.isoformat().replace("+00:00", "Z"),
                "end": (at + timedelta(minutes=20)).isoformat().replace("+00:00", "Z"),
                "participant": [{"actor": {"reference": patient}, "status": "accepted"}],
            }
        )
    return {"fhir": fhir, "team": team, "ids": ids, "org": org, "loc": loc, "loc2": loc2}


# -- reading the answers ------------------------------------------------------------------------
def evaluate(server, measure: str, headers: dict | None = None, **params: str):  # type: ignore[no-untyped-def]
    import httpx

    query = {"periodStart": START, "periodEnd": END, **params}
    return httpx.get(
        f"{server.fhir}/Measure/{measure}/$evaluate-measure",
        params=query,
        headers=headers or server.headers,
        timeout=60,
    )


def report(server, measure: str) -> dict:  # type: ignore[no-untyped-def]
    resp = evaluate(server, measure)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["resourceType"] == "MeasureReport"
    assert body["status"] == "complete" and body["type"] == "summary"
    assert body["measure"] == f"http://hearth.local/fhir/Measure/{measure}|1"
    assert body["period"] == {"start": START, "end": END}
    # A MeasureReport any FHIR R4 system can read: the server's own validator finds no error.
    import httpx

    checked = httpx.post(
        f"{server.fhir}/MeasureReport/$validate", json=body, headers=server.headers, timeout=60
    )
    assert checked.status_code == 200, checked.text
    errors = [i for i in checked.json()["issue"] if i["severity"] in ("error", "fatal")]
    assert not errors, errors
    return body


def counts(part: dict) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in part["population"]}


def group(body: dict, code: str) -> dict:
    [found] = [g for g in body["group"] if g["code"]["coding"][0]["code"] == code]
    return found


def strata(part: dict, code: str) -> dict:
    """A stratifier's strata by value code (a tuple of codes for component strata)."""
    [found] = [s for s in part["stratifier"] if s["code"][0]["coding"][0]["code"] == code]
    out = {}
    for s in found["stratum"]:
        if "value" in s:
            key = s["value"]["coding"][0]["code"]
        else:
            key = tuple(c["value"]["coding"][0]["code"] for c in s["component"])
        out[key] = s
    return out


def score(part: dict) -> float | None:
    return part.get("measureScore", {}).get("value")


def week(moment: str) -> str:
    y, w, _ = datetime.fromisoformat(moment.replace("Z", "+00:00")).isocalendar()
    return f"{y}-W{w:02d}"


def in_period(fhir: Fhir, ids: dict) -> dict[str, dict]:
    tasks = {k: fhir.get(f"/Task/{v}") for k, v in ids.items()}
    first, last = date.fromisoformat(START), date.fromisoformat(END)
    return {
        k: t
        for k, t in tasks.items()
        if first <= datetime.fromisoformat(t["authoredOn"].replace("Z", "+00:00")).date() <= last
    }


def flag(task: dict, name: str) -> bool | None:
    found = [
        i["valueBoolean"] for i in task.get("input", []) if i["type"]["coding"][0]["code"] == name
    ]
    return found[-1] if found else None


# -- the figures ------------------------------------------------------------------------------
def test_shipped_measures_are_stored_resources(hearth_db, world):
    fhir = world["fhir"]
    found = {m["id"] for m in fhir.search("Measure", _count=50)}
    assert found == {
        "screening-volume",
        "screening-positivity",
        "screening-uncertain",
        "screening-turnaround",
        "ai-doctor-agreement",
        "appointment-no-show",
    }
    vol = fhir.search("Measure", url="http://hearth.local/fhir/Measure/screening-volume")
    assert vol[0]["status"] == "active" and vol[0]["scoring"]["coding"][0]["code"] == "cohort"


def test_volume_by_week_site_and_cadre(hearth_db, world):
    fhir, ids, team = world["fhir"], world["ids"], world["team"]
    tasks = in_period(fhir, ids)
    assert set(tasks) == {"mel", "nv", "unc", "bkl", "bcc", "self", "role"} | {
        f"more{n}" for n in range(5)
    }
    body = report(hearth_db, "screening-volume")
    screenings = group(body, "screenings")
    assert counts(screenings) == {"initial-population": len(tasks)}
    assert score(screenings) == len(tasks)

    weeks: dict[str, int] = {}
    for t in tasks.values():
        weeks[week(t["authoredOn"])] = weeks.get(week(t["authoredOn"]), 0) + 1
    assert len(weeks) == 2
    assert {
        k: counts(s)["initial-population"] for k, s in strata(screenings, "week").items()
    } == weeks

    site_of = {
        team["cadre_a"][1]: ref(world["org"]),
        team["cadre_b"][1]: ref(world["loc"]),
        team["cadre_c"][1]: ref(world["loc2"]),
    }
    sites: dict[str, int] = {}
    cadres: dict[str, int] = {}
    week_site: dict[tuple, int] = {}
    for t in tasks.values():
        who = t.get("requester", {}).get("reference", "")
        site = site_of.get(who, "unknown")
        cadre = who if who.startswith("Practitioner") else "patient"
        sites[site] = sites.get(site, 0) + 1
        cadres[cadre] = cadres.get(cadre, 0) + 1
        key = (week(t["authoredOn"]), site)
        week_site[key] = week_site.get(key, 0) + 1
    got = strata(screenings, "site")
    assert {k: counts(s)["initial-population"] for k, s in got.items()} == sites
    assert got[ref(world["org"])]["value"]["text"] == world["org"]["name"]
    assert got[ref(world["loc"])]["value"]["text"] == world["loc"]["name"]
    got = strata(screenings, "cadre")
    assert {k: counts(s)["initial-population"] for k, s in got.items()} == cadres
    assert got[team["cadre_a"][1]]["value"]["text"].startswith("Test Akinyi")
    assert got[team["cadre_c"][1]]["value"]["text"].startswith("Test Chebet")  # the role's person
    got = strata(screenings, "week-site")
    assert {k: counts(s)["initial-population"] for k, s in got.items()} == week_site
    assert sum(
        counts(s)["initial-population"] for s in strata(screenings, "week-cadre").values()
    ) == len(tasks)


@pytest.mark.parametrize(
    ("measure", "code", "name"),
    [
        ("screening-positivity", "high-risk", "high-risk"),
        ("screening-uncertain", "uncertain", "uncertain"),
    ],
)
def test_positivity_and_uncertain_share(hearth_db, world, measure, code, name):
    tasks = in_period(world["fhir"], world["ids"])
    flags = [flag(t, name) for t in tasks.values()]
    analysed = [f for f in flags if f is not None]
    body = report(hearth_db, measure)
    share = group(body, code)
    assert counts(share) == {
        "initial-population": len(tasks),
        "denominator": len(analysed),
        "numerator": sum(analysed),
    }
    assert len(analysed) == 11 and sum(analysed) == (2 if name == "high-risk" else 1)
    assert score(share) == pytest.approx(sum(analysed) / len(analysed))
    by_week = strata(share, "week")
    assert sum(counts(s)["denominator"] for s in by_week.values()) == len(analysed)


def nearest_rank_p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * 9 / 10) - 1)]


def test_turnaround_median_and_p90(hearth_db, world):
    fhir = world["fhir"]
    tasks = in_period(fhir, world["ids"])

    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    stages: dict[str, list[float]] = {"ai": [], "doctor": [], "report": [], "total": []}
    for case in tasks.values():
        steps = {
            s["code"]["coding"][0]["code"]: s
            for s in fhir.search("Task", **{"part-of": f"Task/{case['id']}"})
            if "workflow-step" in s["code"]["coding"][0]["system"]
        }

        ends = {
            code: when(s.get("executionPeriod", {}).get("end"))
            if s["status"] == "completed"
            else None
            for code, s in steps.items()
        }
        moments = {
            "start": when(case["authoredOn"]),
            "ai": ends["ai-analysis"],
            "doctor": ends["doctor-review"],
            "report": ends["report-delivery"],
        }
        for stage, (a, b) in {
            "ai": ("start", "ai"),
            "doctor": ("ai", "doctor"),
            "report": ("doctor", "report"),
            "total": ("start", "report"),
        }.items():
            if moments[a] and moments[b]:
                stages[stage].append((moments[b] - moments[a]).total_seconds())
    assert [len(stages[s]) for s in ("ai", "doctor", "report", "total")] == [11, 4, 2, 2]
    body = report(hearth_db, "screening-turnaround")
    for stage, values in stages.items():
        for name, expected in (
            ("median", statistics.median(values)),
            ("p90", nearest_rank_p90(values)),
        ):
            got = group(body, f"{stage}-{name}")
            assert counts(got) == {
                "initial-population": len(tasks),
                "measure-population": len(values),
            }
            assert got["measureScore"]["unit"] == "s"
            assert got["measureScore"]["value"] == pytest.approx(expected, abs=1e-3), (stage, name)
    # The bkl case started 8 days before its AI result: the slowest photo → AI, above the 90th
    # percentile of eleven (the 10th value).
    assert max(stages["ai"]) > 8 * 86400 - 60
    assert group(body, "ai-p90")["measureScore"]["value"] < max(stages["ai"]) - 86400


def test_ai_doctor_agreement_confusion_matrix(hearth_db, world):
    body = report(hearth_db, "ai-doctor-agreement")
    agreement = group(body, "agreement")
    # Compared: mel/mel, nv/bcc, uncertain/nv, bkl/other (bcc has no doctor, self no AI).
    cells = {("mel", "mel"): 1, ("nv", "bcc"): 1, ("uncertain", "nv"): 1, ("bkl", "other"): 1}
    compared = sum(cells.values())
    agree = sum(n for (a, d), n in cells.items() if a == d)
    excluded = sum(n for (a, _), n in cells.items() if a == "uncertain")
    assert counts(agreement) == {
        "initial-population": 12,
        "denominator": compared,
        "denominator-exclusion": excluded,
        "numerator": agree,
    }
    assert score(agreement) == pytest.approx(agree / (compared - excluded))
    confusion = strata(agreement, "confusion")
    assert {k: counts(s)["denominator"] for k, s in confusion.items()} == cells
    assert {k: counts(s)["numerator"] for k, s in confusion.items()} == {
        k: (n if k[0] == k[1] else 0) for k, n in cells.items()
    }
    per_ai = strata(agreement, "ai-class")
    assert {k: counts(s)["denominator"] for k, s in per_ai.items()} == {
        "mel": 1,
        "nv": 1,
        "uncertain": 1,
        "bkl": 1,
    }
    assert score(per_ai["mel"]) == 1 and score(per_ai["nv"]) == 0
    assert "measureScore" not in per_ai["uncertain"]  # excluded: no class to agree with
    per_doctor = strata(agreement, "doctor-class")
    assert set(per_doctor) == {"mel", "bcc", "nv", "other"}


def test_no_show_rate(hearth_db, world):
    body = report(hearth_db, "appointment-no-show")
    rate = group(body, "no-show")
    # In the period: noshow ×2, fulfilled, booked, cancelled; the 45-day-old no-show is not.
    assert counts(rate) == {"initial-population": 5, "denominator": 3, "numerator": 2}
    assert score(rate) == pytest.approx(2 / 3)
    assert sum(counts(s)["initial-population"] for s in strata(rate, "week").values()) == 5


def test_post_with_parameters_and_a_narrower_period(hearth_db, world):
    import httpx

    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "periodStart", "valueDate": TODAY.isoformat()},
            {"name": "periodEnd", "valueDate": TODAY.isoformat()},
            {"name": "reportType", "valueCode": "population"},
        ],
    }
    resp = httpx.post(
        f"{hearth_db.fhir}/Measure/screening-volume/$evaluate-measure",
        json=body,
        headers=hearth_db.headers,
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    tasks = in_period(world["fhir"], world["ids"])
    today = [t for t in tasks.values() if t["authoredOn"][:10] == TODAY.isoformat()]
    assert counts(group(resp.json(), "screenings")) == {"initial-population": len(today)}


# -- who may ask, and bad inputs ------------------------------------------------------------------
def test_staff_yes_patient_context_never(hearth_db, world):
    team = world["team"]
    doctor = user_token(hearth_db, "doctor", team["doctor"][1], STAFF, None)
    resp = evaluate(hearth_db, "screening-positivity", doctor)
    assert resp.status_code == 200, resp.text
    admin = user_token(hearth_db, "admin", team["admin"][1], STAFF, None)
    assert evaluate(hearth_db, "screening-volume", admin).status_code == 200

    patient = team["patients"][0]
    for scope in ("openid fhirUser patient/*.cruds", "openid fhirUser patient/*.read user/*.read"):
        token = user_token(hearth_db, "patient", patient, scope, patient.removeprefix("Patient/"))
        for measure in ("screening-volume", "ai-doctor-agreement", "appointment-no-show"):
            resp = evaluate(hearth_db, measure, token)
            assert resp.status_code == 403, (scope, resp.text)
            assert resp.json()["resourceType"] == "OperationOutcome"
            assert "MeasureReport" not in resp.text and '"count"' not in resp.text
    # A staff token that may read Measures but not the cases is refused too.
    narrow = user_token(
        hearth_db, "doctor", team["doctor"][1], "openid fhirUser user/Measure.read", None
    )
    assert evaluate(hearth_db, "screening-volume", narrow).status_code == 403


@pytest.mark.parametrize(
    ("params", "issue"),
    [
        ({"periodStart": None}, "required"),
        ({"periodEnd": None}, "required"),
        ({"periodStart": "2026-13-01"}, "invalid"),
        ({"periodStart": "yesterday"}, "invalid"),
        ({"periodStart": "2026-02-30"}, "invalid"),
        ({"periodStart": "2030-01-01", "periodEnd": "2029-12-31"}, "invalid"),
        ({"reportType": "subject"}, "not-supported"),
        ({"reportType": "subject-list"}, "not-supported"),
        ({"reportType": "everything"}, "invalid"),
        ({"subject": "Patient/1"}, "not-supported"),
        ({"practitioner": "Practitioner/1"}, "not-supported"),
        ({"colour": "blue"}, "invalid"),
    ],
)
def test_bad_inputs_are_400(hearth_db, params, issue):
    import httpx

    query = {"periodStart": START, "periodEnd": END, **params}
    query = {k: v for k, v in query.items() if v is not None}
    resp = httpx.get(
        f"{hearth_db.fhir}/Measure/screening-volume/$evaluate-measure",
        params=query,
        headers=hearth_db.headers,
        timeout=60,
    )
    assert resp.status_code == 400, resp.text
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == issue


def test_unknown_and_foreign_measures(hearth_db, world):
    assert evaluate(hearth_db, "no-such-measure").status_code == 404
    mine = world["fhir"].create(
        {"resourceType": "Measure", "status": "draft", "url": "http://example.org/Measure/x"}
    )
    resp = evaluate(hearth_db, mine["id"])
    assert resp.status_code == 400 and "not one Hearth computes" in resp.text
