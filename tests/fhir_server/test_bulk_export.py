"""Bulk Data export (FHIR Bulk Data Access 2.0.0) over HTTP with real tokens, on SQLite and
PostgreSQL: kick-off, status polling, manifest, NDJSON downloads, cancel, and authorization —
each export compared with the same resources found by plain search."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa

from fhir_server.runtime.bulk_runner import ExportRunner
from fhir_server.runtime.settings import Settings
from resources.jobs import bulk_export, queue
from resources.search import SearchEngine
from resources.storage.db import create_engine
from resources.storage.repository import Repository
from tests.servers import system_token
from tests.shared import shared_path

TYPES = ["Patient", "Observation", "DiagnosticReport", "MedicationRequest", "Practitioner", "Task"]
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
POLL_LIMIT_S = 120  # a fail-safe against a hung job, not a timing assertion


@pytest.fixture(scope="module")
def loaded(server) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    """Official R4 examples of a few types, PUT with their own ids; the ids stored per type."""
    stored: dict[str, set[str]] = {}
    with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as c:
        for res_type in TYPES:
            for path in sorted(shared_path("fhir", "r4-examples-by-type", res_type).glob("*.json")):
                body = orjson.loads(path.read_bytes())
                if body.get("resourceType") != res_type or "id" not in body:
                    continue
                r = c.put(f"/{res_type}/{body['id']}", content=orjson.dumps(body))
                if r.status_code in (200, 201):
                    stored.setdefault(res_type, set()).add(body["id"])
    assert sum(len(v) for v in stored.values()) > 100, stored
    return stored


def kickoff(c: httpx.Client, path: str, **kw: object) -> str:
    r = c.request(kw.pop("method", "GET"), path, headers={**ASYNC, **kw.pop("headers", {})}, **kw)  # type: ignore[arg-type]
    assert r.status_code == 202, r.text
    return r.headers["content-location"]


def poll(c: httpx.Client, url: str) -> dict:
    deadline = time.monotonic() + POLL_LIMIT_S
    while True:
        r = c.get(url)
        if r.status_code == 200:
            assert r.headers["content-type"].startswith("application/json")
            return r.json()
        assert r.status_code == 202, r.text
        assert r.headers["x-progress"] and r.headers["retry-after"]
        assert time.monotonic() < deadline, "the export did not finish"
        time.sleep(0.1)


def download(c: httpx.Client, manifest: dict) -> dict[str, list[dict]]:
    assert manifest["requiresAccessToken"] is True
    out: dict[str, list[dict]] = {}
    for item in manifest["output"]:
        r = c.get(item["url"])
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        rows = [orjson.loads(line) for line in r.content.splitlines() if line.strip()]
        assert len(rows) == item["count"]
        assert all(row["resourceType"] == item["type"] for row in rows)
        out.setdefault(item["type"], []).extend(rows)
    return out


def ids(rows: list[dict]) -> set[str]:
    found = [r["id"] for r in rows]
    assert len(found) == len(set(found)), "a resource was exported twice"
    return set(found)


def search(c: httpx.Client, path: str, params: dict | None = None) -> Iterator[dict]:
    r = c.get(path, params={**(params or {}), "_count": "500"})
    while True:
        assert r.status_code == 200, r.text
        bundle = r.json()
        yield from (
            e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"
        )
        nxt = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        if not nxt:
            return
        r = c.get(nxt[0])


def test_capability_statement_names_bulk_data(client: httpx.Client) -> None:
    cs = client.get("/metadata").json()
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in cs["instantiates"]
    assert "export" in {o["name"] for o in cs["rest"][0]["operation"]}
    by_type = {r["type"]: r for r in cs["rest"][0]["resource"]}
    group_ops = {o["name"]: o["definition"] for o in by_type["Group"]["operation"]}
    assert group_ops["export"] == "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"


def test_system_export_matches_search(client: httpx.Client, loaded) -> None:  # type: ignore[no-untyped-def]
    url = kickoff(client, "/$export", params={"_outputFormat": "application/fhir+ndjson"})
    manifest = poll(client, url)
    assert manifest["request"].endswith("/$export?_outputFormat=application%2Ffhir%2Bndjson")
    assert manifest["error"] == []
    exported = download(client, manifest)
    for res_type in TYPES:
        expected = {
            r["id"]
            for r in search(
                client, f"/{res_type}", {"_lastUpdated": f"le{manifest['transactionTime']}"}
            )
        }
        assert ids(exported[res_type]) == expected, res_type
        assert loaded[res_type] <= expected
    assert "AuditEvent" not in exported or client.headers  # an admin token may export it


def test_type_and_since(client: httpx.Client, loaded) -> None:  # type: ignore[no-untyped-def]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Patient"},
            {"name": "_type", "valueString": "Practitioner"},
            {"name": "_outputFormat", "valueString": "ndjson"},
        ],
    }
    first = poll(client, kickoff(client, "/$export", method="POST", json=body))
    exported = download(client, first)
    assert set(exported) == {"Patient", "Practitioner"}
    assert ids(exported["Patient"]) >= loaded["Patient"]

    patient = client.get(f"/Patient/{sorted(loaded['Patient'])[0]}").json()
    patient["active"] = not patient.get("active", False)
    assert client.put(f"/Patient/{patient['id']}", json=patient).status_code == 200
    since = first["transactionTime"]
    second = poll(
        client,
        kickoff(client, "/$export", params={"_type": "Patient,Practitioner", "_since": since}),
    )
    assert download(client, second) == {"Patient": [client.get(f"/Patient/{patient['id']}").json()]}


def test_type_filter(client: httpx.Client, loaded) -> None:  # type: ignore[no-untyped-def]
    manifest = poll(
        client,
        kickoff(
            client,
            "/$export",
            params=[
                ("_type", "Observation,Patient"),
                ("_typeFilter", "Observation?status=final"),
                ("_typeFilter", "Observation?status=amended"),
            ],
        ),
    )
    exported = download(client, manifest)
    wanted = {
        r["id"]
        for r in search(
            client,
            "/Observation",
            {"status": "final,amended", "_lastUpdated": f"le{manifest['transactionTime']}"},
        )
    }
    assert wanted and ids(exported["Observation"]) == wanted
    # the filter left some out (other tests of the module add Observations: count them all)
    every = list(
        search(client, "/Observation", {"_lastUpdated": f"le{manifest['transactionTime']}"})
    )
    assert len(wanted) < len(every)
    assert ids(exported["Patient"]) >= loaded["Patient"]


def _compartment(c: httpx.Client, patients: list[str], res_type: str) -> set[str]:
    return {r["id"] for p in patients for r in search(c, f"/Patient/{p}/{res_type}")}


def test_patient_and_group_export(client: httpx.Client, loaded) -> None:  # type: ignore[no-untyped-def]
    types = "Patient,Observation,DiagnosticReport,MedicationRequest,Practitioner"
    # Patient level: every patient's compartment; Practitioners are outside it: asked for
    # alone, 400 (IG: SHOULD); with types inside, left out and reported in the manifest
    strict = client.get("/Patient/$export", params={"_type": "Practitioner"}, headers=ASYNC)
    assert strict.status_code == 400 and "Practitioner" in strict.text
    manifest = poll(client, kickoff(client, "/Patient/$export", params={"_type": types}))
    exported = download(client, manifest)
    assert "Practitioner" not in exported and manifest["error"][0]["type"] == "OperationOutcome"
    reported = client.get(manifest["error"][0]["url"]).text
    assert "Practitioner is not in the Patient compartment" in reported
    all_patients = sorted(r["id"] for r in search(client, "/Patient"))
    for res_type in ("Observation", "DiagnosticReport"):
        in_compartments = _compartment(client, all_patients, res_type)
        assert ids(exported.get(res_type, [])) == in_compartments, res_type
        everything = {r["id"] for r in search(client, f"/{res_type}")}
        assert in_compartments < everything  # some examples have no patient: left out

    # Group level: the members' compartments only
    members = ["example", "pat2"] if "pat2" in loaded["Patient"] else sorted(loaded["Patient"])[:2]
    group = {
        "resourceType": "Group",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{p}"}} for p in members],
    }
    gid = client.post("/Group", json=group).json()["id"]
    manifest = poll(
        client, kickoff(client, f"/Group/{gid}/$export", params={"_type": "Patient,Observation"})
    )
    exported = download(client, manifest)
    assert ids(exported["Patient"]) == set(members)
    assert ids(exported.get("Observation", [])) == _compartment(client, members, "Observation")
    assert exported.get("Observation")

    # one patient (as HAPI FHIR allows): Patient/[id]/$export
    manifest = poll(
        client, kickoff(client, "/Patient/example/$export", params={"_type": "Patient,Observation"})
    )
    exported = download(client, manifest)
    assert ids(exported["Patient"]) == {"example"}
    assert ids(exported.get("Observation", [])) == _compartment(client, ["example"], "Observation")

    assert client.get("/Group/$export", headers=ASYNC).status_code == 404
    assert client.get("/Group/no-such-group/$export", headers=ASYNC).status_code == 404


def test_cancel_deletes_the_job_and_files(client: httpx.Client, loaded) -> None:  # type: ignore[no-untyped-def]
    url = kickoff(client, "/$export")
    manifest = poll(client, url)
    file_url = manifest["output"][0]["url"]
    assert client.get(file_url).status_code == 200
    r = client.delete(url)
    assert r.status_code == 202 and r.json()["resourceType"] == "OperationOutcome"
    assert client.get(url).status_code == 404
    assert client.get(file_url).status_code == 404
    assert client.delete(url).status_code == 404
    # cancelling one that has only just started
    url = kickoff(client, "/$export")
    assert client.delete(url).status_code == 202
    assert client.get(url).status_code == 404


def test_bad_requests(client: httpx.Client, loaded) -> None:  # type: ignore[no-untyped-def]
    def outcome(r: httpx.Response, status: int, text: str) -> None:
        assert r.status_code == status, r.text
        body = r.json()
        assert body["resourceType"] == "OperationOutcome" and text in r.text, body

    outcome(client.get("/$export"), 400, "respond-async")
    outcome(
        client.get("/$export", params={"_outputFormat": "text/csv"}, headers=ASYNC),
        400,
        "_outputFormat",
    )
    outcome(client.get("/$export", params={"_since": "yesterday"}, headers=ASYNC), 400, "_since")
    outcome(client.get("/$export", params={"_type": "Nonsense"}, headers=ASYNC), 400, "Nonsense")
    outcome(
        client.get("/$export", params={"organizeOutputBy": "Patient"}, headers=ASYNC),
        400,
        "organizeOutputBy",
    )
    outcome(
        client.get(
            "/$export",
            params={"_typeFilter": "Observation?no-such-param=1", "_type": "Observation"},
            headers=ASYNC,
        ),
        400,
        "no-such-param",
    )
    outcome(
        client.post("/$export", json={"resourceType": "Patient"}, headers=ASYNC), 400, "Parameters"
    )
    outcome(client.get("/bulkdata/no-such-job"), 404, "no-such-job")
    # the kick-off answers JSON only (Bulk Data 2.0.0), though the server speaks FHIR XML
    xml_only = {"Prefer": "respond-async", "Accept": "application/fhir+xml"}
    outcome(client.get("/$export", headers=xml_only), 406, "application/fhir+json only")
    # lenient: the unsupported parameter is ignored and reported in the manifest's error list
    lenient = {"Prefer": "respond-async, handling=lenient"}
    manifest = poll(
        client,
        kickoff(
            client,
            "/$export",
            params={"_type": "Patient", "organizeOutputBy": "Patient"},
            headers=lenient,
        ),
    )
    r = client.get(manifest["error"][0]["url"])
    issue = orjson.loads(r.content.splitlines()[0])
    assert (
        issue["resourceType"] == "OperationOutcome"
        and "organizeOutputBy" in issue["issue"][0]["diagnostics"]
    )


def test_scopes_limit_what_is_exported(server, client: httpx.Client, loaded) -> None:  # type: ignore[no-untyped-def]
    def as_client(scope: str) -> httpx.Client:
        token = system_token(server.database_url, server.root, scope=scope)
        return httpx.Client(
            base_url=server.fhir, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    with as_client("system/Patient.rs system/Practitioner.read") as narrow:
        # a _type the scopes do not cover: 403; without _type only the allowed types come out
        r = narrow.get("/$export", params={"_type": "Patient,Observation"}, headers=ASYNC)
        assert r.status_code == 403 and "Observation" in r.text
        manifest = poll(narrow, kickoff(narrow, "/$export"))
        assert {o["type"] for o in manifest["output"]} == {"Patient", "Practitioner"}
        own = manifest["output"][0]["url"]
        assert narrow.get(own).status_code == 200
        # a Group export also needs Group read
        assert narrow.get("/Group/x/$export", headers=ASYNC).status_code == 403

    with as_client("system/Patient.rs") as other:
        # another client can neither poll nor download nor cancel the first client's export
        status_url = own.rsplit("/", 1)[0]
        assert other.get(own).status_code == 403
        assert other.get(status_url).status_code == 403
        assert other.delete(status_url).status_code == 403
    assert client.get(own).status_code == 200  # an administrator may

    with as_client("system/Patient.c") as writer:
        r = writer.get("/$export", headers=ASYNC)
        assert r.status_code == 403, r.text
    assert httpx.get(f"{server.fhir}/bulkdata/x", timeout=10).status_code == 401


def test_kickoff_and_download_are_audited(server, client: httpx.Client, loaded) -> None:  # type: ignore[no-untyped-def]
    url = kickoff(client, "/$export", params={"_type": "Patient"})
    manifest = poll(client, url)
    file_url = manifest["output"][0]["url"]
    assert client.get(file_url).status_code == 200
    job = url.rsplit("/", 1)[1]
    server.server.config.app.state.auth.writer.flush()  # reads are audited by a background writer
    queries = []
    after = None
    while True:
        r = client.get(
            "/$audit-log", params={"_count": "1000", **({"after": after} if after else {})}
        )
        assert r.status_code == 200
        page = r.json()
        for entry in page.get("entry", []):
            event = entry["resource"]
            for entity in event.get("entity", []):
                if "query" in entity:
                    queries.append((event["outcome"], base64.b64decode(entity["query"]).decode()))
        nxt = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
        if not nxt:
            break
        after = httpx.URL(nxt[0]).params.get("after")
    assert ("0", "$export?_type=Patient") in queries
    assert ("0", f"GET bulkdata/{job}") in queries
    assert ("0", f"GET bulkdata/{job}/{file_url.rsplit('/', 1)[1]}") in queries


def test_worker_runs_a_job_in_small_files(server, loaded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A job left in the queue (no API thread) is run by ``hearth worker``'s pass, split into
    files of at most ``file_limit`` resources, read a small page at a time."""
    repo = Repository(
        create_engine(server.database_url), SearchEngine(base_urls=(Settings().fhir_base,))
    )
    try:
        spec = bulk_export.Spec(types=["Observation", "Patient"])
        job = bulk_export.start(repo, "test-client", "test", "system", spec)
        assert (
            bulk_export.run_pending(
                repo, tmp_path, f"test-{uuid.uuid4().hex[:6]}", page_size=7, file_limit=10
            )
            >= 1
        )
        done = bulk_export.get(repo, job.id)
        assert done.state == bulk_export.COMPLETED
        observations = [o for o in done.output if o["type"] == "Observation"]
        assert len(observations) > 1 and all(o["count"] <= 10 for o in observations)
        seen = []
        for o in done.output:
            lines = (tmp_path / "exports" / job.id / o["file"]).read_bytes().splitlines()
            assert len(lines) == o["count"]
            seen += [(o["type"], orjson.loads(x)["id"]) for x in lines]
        assert len(seen) == len(set(seen))
        assert {i for t, i in seen if t == "Patient"} >= loaded["Patient"]
        assert {i for t, i in seen if t == "Observation"} >= loaded["Observation"]
    finally:
        repo.engine.dispose()


def test_a_failed_job_answers_the_error_form(server, client: httpx.Client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """When every attempt fails (here: the export folder cannot be created), the status URL
    answers 500 with an OperationOutcome, the IG's error form."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the exports folder should be")
    repo = Repository(
        create_engine(server.database_url), SearchEngine(base_urls=(Settings().fhir_base,))
    )
    try:
        job = bulk_export.start(
            repo, "test-client", "test", "system", bulk_export.Spec(types=["Patient"])
        )
        worker = f"test-{uuid.uuid4().hex[:6]}"
        entry = queue.for_task(repo, f"BulkExport/{job.id}")[0]
        state = None
        for attempt in range(3):  # claimed again at once, as if each back-off had passed
            claimed = queue.claim_job(repo, entry.id, worker)
            assert claimed is not None, attempt
            state = bulk_export.run_job(repo, blocked, claimed, worker)
        assert state == queue.FAILED
    finally:
        repo.engine.dispose()
    r = client.get(f"/bulkdata/{job.id}")  # an administrator may read another client's job
    assert r.status_code == 500
    body = r.json()
    assert (
        body["resourceType"] == "OperationOutcome"
        and "the export failed" in body["issue"][0]["diagnostics"]
    )


def test_a_job_whose_runner_died_for_good_answers_the_error_form(server, client) -> None:  # type: ignore[no-untyped-def]
    """A runner killed on the job's last attempt never writes the job's row: its lease expires
    with the attempts used up, or the queue dead-letters it. The status URL must then answer
    the IG's error form (5xx, an OperationOutcome in application/json), not 202 for ever."""
    repo = Repository(
        create_engine(server.database_url), SearchEngine(base_urls=(Settings().fhir_base,))
    )
    try:
        spec = bulk_export.Spec(types=["Patient"])
        expired = bulk_export.start(repo, "died-client", "test", "system", spec)
        dead = bulk_export.start(repo, "died-client", "test", "system", spec)
        worker = f"test-{uuid.uuid4().hex[:6]}"
        held = {}
        for job in (expired, dead):  # held by this test: no runner of the API takes it
            [entry] = queue.for_task(repo, f"BulkExport/{job.id}")
            held[job.id] = queue.claim_job(repo, entry.id, worker)
            assert held[job.id] is not None
        assert client.get(f"/bulkdata/{expired.id}").status_code == 202  # its runner may finish
        # ``expired``: its runner died on the last attempt (two earlier ones died before it)
        repo.run(
            lambda u: u.conn.execute(
                sa.update(queue.work_queue)
                .where(queue.work_queue.c.task_ref == f"BulkExport/{expired.id}")
                .values(attempts=3, lease_until=datetime.now(UTC) - timedelta(seconds=1))
            )
        )
        # ``dead``: dead-lettered by the queue (as a claim does once the attempts are used up)
        repo.run(lambda u: queue.fail(u, held[dead.id], worker, "lease expired", retry=False,
                                      backoff=timedelta(0)))  # fmt: skip
    finally:
        repo.engine.dispose()
    for job, why in ((expired, "its lease expired"), (dead, "lease expired")):
        for accept in ("application/fhir+json", "application/fhir+xml"):
            r = client.get(f"/bulkdata/{job.id}", headers={"Accept": accept})
            assert r.status_code == 500, r.text
            assert r.headers["content-type"] == "application/json"
            body = r.json()
            assert body["resourceType"] == "OperationOutcome"
            assert body["issue"][0]["severity"] == "error"
            assert "the export failed" in body["issue"][0]["diagnostics"], body
            assert why in body["issue"][0]["diagnostics"], body
    # its status URL still cancels it (and then answers 404)
    assert client.delete(f"/bulkdata/{dead.id}").status_code == 202
    assert client.get(f"/bulkdata/{dead.id}").status_code == 404


def test_hearth_worker_runs_a_waiting_export(server, client: httpx.Client, loaded) -> None:  # type: ignore[no-untyped-def]
    """A job nobody ran (its API process stopped before claiming it) is run by ``hearth worker
    --once`` and then served by the API like any other."""
    repo = Repository(
        create_engine(server.database_url), SearchEngine(base_urls=(Settings().fhir_base,))
    )
    try:
        spec = bulk_export.Spec(types=["Patient"])
        job = bulk_export.start(repo, "test-client", "test", "system", spec)
    finally:
        repo.engine.dispose()
    assert client.get(f"/bulkdata/{job.id}").status_code == 202
    settings = server.server.config.app.state.context.settings
    done = subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", "worker", "--once", "--no-ai"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={
            **os.environ,
            "HEARTH_DATABASE_URL": server.database_url,
            "HEARTH_DATA_DIR": str(settings.data_dir),
            "HEARTH_BASE_URL": server.root,
        },
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "export(s)" in done.stdout
    manifest = poll(client, f"{server.fhir}/bulkdata/{job.id}")
    assert ids(download(client, manifest)["Patient"]) >= loaded["Patient"]


def test_patient_parameter_narrows_a_patient_export(client: httpx.Client, loaded) -> None:  # type: ignore[no-untyped-def]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Patient,Observation"},
            {"name": "patient", "valueReference": {"reference": "Patient/example"}},
        ],
    }
    manifest = poll(client, kickoff(client, "/Patient/$export", method="POST", json=body))
    exported = download(client, manifest)
    assert ids(exported["Patient"]) == {"example"}
    assert ids(exported.get("Observation", [])) == _compartment(client, ["example"], "Observation")
    body["parameter"][1] = {"name": "patient", "valueReference": {"reference": "Group/x"}}
    r = client.post("/Patient/$export", json=body, headers=ASYNC)
    assert r.status_code == 400 and "patient" in r.text


def test_the_api_sweeper_finishes_a_job_nobody_runs(server, loaded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The API process's ExportRunner picks up a queued job that no kick-off thread runs (as
    after a restart), with no ``hearth worker`` about."""
    settings = Settings(database_url=server.database_url, data_dir=tmp_path)
    repo = Repository(
        create_engine(server.database_url), SearchEngine(base_urls=(settings.fhir_base,))
    )
    runner = ExportRunner(repo, settings)
    try:
        job = bulk_export.start(
            repo, "test-client", "test", "system", bulk_export.Spec(types=["Patient"])
        )
        runner.start_sweeper(interval=0.05)
        deadline = time.monotonic() + POLL_LIMIT_S
        while (done := bulk_export.get(repo, job.id)).state != bulk_export.COMPLETED:
            assert time.monotonic() < deadline, done
            time.sleep(0.05)
        assert sum(o["count"] for o in done.output) >= len(loaded["Patient"])
    finally:
        runner.stop()
        repo.engine.dispose()
