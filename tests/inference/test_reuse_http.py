"""One analysis per photo and model version, over HTTP on both databases: a skin photo uploaded
before its screening case starts is analysed once — the case's AI step records the standalone
analysis's Observation and heatmap (the Observation gains the case's order in ``basedOn`` as a new
version) instead of running the model again, whether that analysis had already completed or was
still waiting in the same queue batch."""

from __future__ import annotations

from inference.registry import metadata
from tests.inference.conftest import SKIN_PHOTO, b64, run_worker, skin_photo_media

SKIN = "skin-lesion-classification"


def tasks_for(fhir, focus: str) -> list[dict]:  # type: ignore[no-untyped-def]
    bundle = fhir.get("/Task", params={"focus": focus, "code": f"http://hearth.local/fhir/CodeSystem/ai-analysis|{SKIN}"}).json()  # fmt: skip
    return [e["resource"] for e in bundle.get("entry", [])]


def outputs(task: dict) -> dict[str, str]:
    return {o["type"]["text"]: o["valueReference"]["reference"] for o in task.get("output", [])}


def start_case(fhir, patient_id: str, media_id: str) -> dict:  # type: ignore[no-untyped-def]
    cadre = fhir.post(
        "/Practitioner", json={"resourceType": "Practitioner", "name": [{"family": "Cadre"}]}
    ).json()
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "caseType", "valueCode": "skin-screening"},
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient_id}"}},
            {"name": "focus", "valueReference": {"reference": f"Media/{media_id}"}},
        ],
    }
    headers = {"X-Hearth-Role": "cadre", "X-Hearth-Actor": f"Practitioner/{cadre['id']}"}
    r = fhir.post("/Task/$start-case", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def check_one_analysis(fhir, media_id: str, case: dict) -> None:  # type: ignore[no-untyped-def]
    version = metadata("skin")["version"]
    analyses = tasks_for(fhir, f"Media/{media_id}")
    assert len(analyses) == 2, analyses  # the upload's own, and the case's
    assert all(t["status"] == "completed" for t in analyses), analyses
    assert all(t["owner"]["reference"] == f"Device/{version}" for t in analyses)
    [case_task] = [t for t in analyses if t.get("partOf")]
    [first] = [t for t in analyses if not t.get("partOf")]
    assert outputs(case_task) == outputs(first)  # same Observation, same heatmap
    assert "reused" in case_task["note"][-1]["text"]
    # Exactly one Observation for this Media and model version.
    found = fhir.get("/Observation", params={"derived-from": f"Media/{media_id}"}).json()
    observations = [e["resource"] for e in found.get("entry", [])]
    assert [o["id"] for o in observations] == [outputs(first)["result"].split("/")[1]]
    [obs] = observations
    assert obs["device"]["reference"] == f"Device/{version}"
    assert fhir.get(f"/Observation/ai-{case_task['id']}").status_code == 404
    assert fhir.get(f"/Media/ai-heatmap-{case_task['id']}").status_code == 404
    # The result names the case's order; the case has its AI result.
    assert case["basedOn"] and all(b in obs["basedOn"] for b in case["basedOn"])
    case = fhir.get(f"/Task/{case['id']}").json()
    assert case["businessStatus"]["coding"][0]["code"] == "AI_ANALYZED", case
    steps = fhir.get("/Task", params={"part-of": f"Task/{case['id']}"}).json()["entry"]
    ai_outputs = [
        o.get("valueReference", {}).get("reference")
        for s in steps
        for o in s["resource"].get("output", [])
    ]
    assert f"Observation/{obs['id']}" in ai_outputs


def test_case_reuses_a_completed_upload_analysis(ai_server, fhir, patient_id):
    media = fhir.post("/Media", json=skin_photo_media(patient_id, b64(SKIN_PHOTO))).json()
    assert "ran 1 job(s)" in run_worker(ai_server).stdout  # the upload's own analysis
    [first] = tasks_for(fhir, f"Media/{media['id']}")
    obs_ref = outputs(first)["result"]
    assert fhir.get(f"/{obs_ref}/_history").json()["total"] == 1

    case = start_case(fhir, patient_id, media["id"])
    assert case["businessStatus"]["coding"][0]["code"] == "PENDING_AI"
    assert "ran 1 job(s)" in run_worker(ai_server).stdout  # the case's: no second prediction
    check_one_analysis(fhir, media["id"], case)
    history = fhir.get(f"/{obs_ref}/_history").json()
    assert history["total"] == 2  # version 2 adds the case's order to basedOn
    assert run_worker(ai_server).stdout.count("ran 0 job(s)") == 1


def test_case_started_before_the_worker_runs_shares_one_analysis(ai_server, fhir, patient_id):
    media = fhir.post("/Media", json=skin_photo_media(patient_id, b64(SKIN_PHOTO))).json()
    case = start_case(fhir, patient_id, media["id"])
    assert len(tasks_for(fhir, f"Media/{media['id']}")) == 2  # both waiting
    assert "ran 2 job(s)" in run_worker(ai_server).stdout  # one batch, one prediction
    check_one_analysis(fhir, media["id"], case)


def test_case_waits_for_an_analysis_another_worker_is_running(ai_server, fhir, patient_id):
    from datetime import timedelta

    from fhir_server.runtime.app import build_context
    from fhir_server.runtime.settings import Settings
    from inference.analysis import Analyzer
    from resources.jobs import queue

    media = fhir.post("/Media", json=skin_photo_media(patient_id, b64(SKIN_PHOTO))).json()
    [first] = tasks_for(fhir, f"Media/{media['id']}")
    ctx = build_context(Settings(database_url=ai_server.database_url, ai_triggers=False))
    try:
        # Another worker holds the upload's analysis (claimed, not finished yet).
        [job] = queue.claim(ctx.repo, ["ai-analysis"], "other", lease=timedelta(minutes=5))
        assert job.task_ref == f"Task/{first['id']}"
        case = start_case(fhir, patient_id, media["id"])
        [case_task] = [t for t in tasks_for(fhir, f"Media/{media['id']}") if t.get("partOf")]
        run_worker(ai_server)  # finds the case's analysis waiting on the running one
        [case_job] = queue.for_task(ctx.repo, f"Task/{case_task['id']}")
        assert case_job.state == queue.READY and case_job.attempts == 0  # put back, not failed
        waiting = fhir.get(f"/Task/{case_task['id']}").json()
        assert waiting["businessStatus"]["text"] == f"waiting for Task/{first['id']}"
        assert fhir.get(f"/Observation/ai-{case_task['id']}").status_code == 404
        # The other worker finishes; the case's analysis then takes its result.
        Analyzer(ctx.repo, worker="other", heatmaps=True).run([job])
    finally:
        ctx.repo.engine.dispose()
    assert "ran 1 job(s)" in run_worker(ai_server).stdout
    check_one_analysis(fhir, media["id"], case)
