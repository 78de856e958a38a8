"""The engine called directly (no HTTP), as the inference module and the worker call it: the
Actor is explicit, record_ai_result is idempotent, doctors reassign, roles are checked."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from fhir_server.runtime.app import build_context
from fhir_server.runtime.settings import Settings
from resources.errors import Conflict, Forbidden, Invalid
from tests.conftest import BACKENDS
from tests.servers import database_url
from workflow import cases, delivery, triggers
from workflow.actors import Actor
from workflow.definitions import STEP_SYSTEM
from workflow.tasks import business_code, code_of


@pytest.fixture(scope="module", params=BACKENDS)
def repo(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp("engine"))
    ctx = build_context(Settings(database_url=url))
    yield ctx.repo
    ctx.repo.engine.dispose()
    cleanup()


def _create(repo, body: dict) -> str:
    return repo.run(lambda u: u.create(body)).stored.ref


def _steps(repo, case_id: str) -> dict[str, dict]:
    return {
        code_of(s.content, STEP_SYSTEM): s.content
        for s in repo.read(lambda u: cases.steps_of(u, case_id))
    }


def test_actor_checks_its_own_shape():
    with pytest.raises(Invalid):
        Actor("surgeon", "Practitioner/1")
    with pytest.raises(Invalid):
        Actor("patient", "Practitioner/1")
    Actor("doctor", "PractitionerRole/1")


def test_ai_result_recorded_once_and_reassignment(repo):
    patient = _create(repo, {"resourceType": "Patient", "name": [{"family": "Engine"}]})
    doc1 = Actor("doctor", _create(repo, {"resourceType": "Practitioner"}))
    doc2 = Actor("doctor", _create(repo, {"resourceType": "Practitioner"}))
    nurse = Actor("cadre", _create(repo, {"resourceType": "Practitioner"}))
    study = _create(
        repo,
        {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": patient}},
    )
    case = cases.start_case(repo, doc1, "imaging-review", patient, focus=study).case
    risk = _create(
        repo,
        {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": patient},
            "basedOn": {"reference": f"Task/{case['id']}"},
        },
    )
    first = cases.record_ai_result(repo, case["id"], [risk], high_risk=False, uncertain=False)
    assert business_code(first.case) == "AI_ANALYZED"
    again = cases.record_ai_result(repo, case["id"], [risk], high_risk=False, uncertain=False)
    assert again.task["meta"]["versionId"] == first.task["meta"]["versionId"]
    other = _create(
        repo,
        {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": patient},
            "basedOn": {"reference": f"Task/{case['id']}"},
        },
    )
    with pytest.raises(Conflict):
        cases.record_ai_result(repo, case["id"], [other], high_risk=False, uncertain=False)

    review = _steps(repo, case["id"])["doctor-verification"]
    with pytest.raises(Forbidden):
        cases.claim(repo, nurse, review["id"])
    cases.claim(repo, doc1, review["id"])
    with pytest.raises(Forbidden):
        cases.release(repo, nurse, review["id"], reassign_to=doc2.reference)
    handed = cases.release(repo, doc1, review["id"], reassign_to=doc2.reference).task
    assert handed["status"] == "requested" and handed["owner"] == {"reference": doc2.reference}
    with pytest.raises(Forbidden):
        cases.claim(repo, doc1, review["id"])
    assert cases.claim(repo, doc2, review["id"]).task["owner"] == {"reference": doc2.reference}
    # Completing someone else's step, or a step not yet reachable, is refused.
    with pytest.raises(Forbidden):
        cases.complete(repo, doc1, review["id"])
    pharm = _steps(repo, case["id"])["pharmacist-completion"]
    with pytest.raises(Conflict):
        cases.claim(repo, Actor("pharmacist", doc1.reference), pharm["id"])
    cases.complete(repo, doc2, review["id"], conclusion="No acute findings")
    assert _steps(repo, case["id"])["pharmacist-completion"]["status"] == "requested"


def test_a_study_starts_its_imaging_case_once_even_concurrently(repo):
    patient = _create(repo, {"resourceType": "Patient"})
    study = _create(
        repo,
        {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": patient}},
    )
    study_id = study.removeprefix("ImagingStudy/")
    with ThreadPoolExecutor(6) as pool:
        outcomes = list(
            pool.map(lambda _: triggers.imaging_study_available(repo, study_id), range(6))
        )
    assert len({o.case["id"] for o in outcomes}) == 1
    case = outcomes[0].case
    assert case["focus"] == {"reference": study} and "requester" not in case
    tasks = repo.read(lambda u: u.match("Task", [("focus", study)]))
    # the case and its five steps, once, and the one AI analysis Task its AI step asked for
    assert len(tasks) == 1 + 5 + 1
    nobody = _create(
        repo,
        {
            "resourceType": "ImagingStudy",
            "status": "available",
            "subject": {"reference": "Group/x"},
        },
    )
    with pytest.raises(Invalid):
        triggers.imaging_study_available(repo, nobody.removeprefix("ImagingStudy/"))


def test_an_interrupted_delivery_becomes_failed_and_retryable(repo):
    patient = _create(repo, {"resourceType": "Patient"})
    study = _create(
        repo,
        {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": patient}},
    )
    case = triggers.imaging_study_available(repo, study.removeprefix("ImagingStudy/")).case
    step = _steps(repo, case["id"])["report-delivery"]
    stuck = {**step, "status": "in-progress", "lastModified": "2026-01-01T00:00:00Z"}
    repo.run(lambda u: u.update("Task", step["id"], stuck))
    assert case["id"] in delivery.reset_stale(repo)
    failed = _steps(repo, case["id"])["report-delivery"]
    assert failed["status"] == "failed" and "interrupted" in failed["statusReason"]["text"]
    assert delivery.reset_stale(repo) == []


def test_worker_delivers_a_report_waiting_for_delivery(repo, smtp, tmp_path):
    import uuid

    from tests.workflow.test_cases_http import pdf_of, wait_for_mail
    from workflow import signing, worker
    from workflow.mail import SmtpConfig

    address = f"engine-worker-{uuid.uuid4().hex[:8]}@example.org"
    patient = _create(
        repo,
        {
            "resourceType": "Patient",
            "telecom": [{"system": "email", "value": address}],
            "name": [{"family": "Worker"}],
        },
    )
    study = _create(
        repo,
        {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": patient}},
    )
    case = triggers.imaging_study_available(repo, study.removeprefix("ImagingStudy/")).case
    obs = _create(
        repo,
        {
            "resourceType": "Observation",
            "status": "preliminary",
            "code": {"text": "AI"},
            "basedOn": case["basedOn"],
            "valueString": "normal",
        },
    )
    cases.record_ai_result(repo, case["id"], [obs], high_risk=False, uncertain=False)
    people = {
        role: Actor(
            role, _create(repo, {"resourceType": "Practitioner", "name": [{"family": role}]})
        )
        for role in ("doctor", "pharmacist", "admin")
    }
    for code, role in (
        ("doctor-verification", "doctor"),
        ("pharmacist-completion", "pharmacist"),
        ("admin-approval", "admin"),
    ):
        task = _steps(repo, case["id"])[code]
        cases.claim(repo, people[role], task["id"])
        out = cases.complete(repo, people[role], task["id"], conclusion="Normal study")
    assert out.deliver and _steps(repo, case["id"])["report-delivery"]["status"] == "requested"
    config = SmtpConfig(host="127.0.0.1", port=smtp.port, ca_file=smtp.ca_file)
    # A signing certificate that is not the key's: the delivery fails visibly, never unsigned.
    other = signing.load_or_create(tmp_path / "other", "Other")
    good = signing.load_or_create(tmp_path / "good", "Engine Hospital")
    mismatched = lambda: signing.SigningMaterial(good.key_pem, other.cert_pem)  # noqa: E731
    done = worker.run_once(repo, config, signing_material=mismatched)
    assert done.reports == {case["id"]: "failed"}
    failed = _steps(repo, case["id"])["report-delivery"]
    assert failed["status"] == "failed" and "signing" in failed["statusReason"]["text"]
    assert smtp.inbox.to(address) == []
    retried = delivery.deliver(repo, config, case["id"], signing_material=lambda: good)
    assert retried.status == "delivered"
    [message] = wait_for_mail(smtp, address)
    assert pdf_of(message).startswith(b"%PDF-")
    assert worker.run_once(repo, config, signing_material=lambda: good).reports == {}
    final = repo.read(lambda u: u.read("Task", case["id"])).content
    assert final["status"] == "completed" and business_code(final) == "REPORT_DELIVERED"
