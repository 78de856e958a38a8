"""Bulk Data import (``$import``, ping and pull of NDJSON) over HTTP with real tokens, on SQLite
and PostgreSQL: the sources are served by a real HTTP server on a loopback socket. Kick-off,
status polling, the result manifest and its error file, refused hosts and scopes, cancel; and
the runner's resume after a failed attempt, and the URL rules, at unit level."""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa

from fhir_server.auth.clients import register
from fhir_server.auth.tokens import operator_token
from fhir_server.runtime.import_runner import url_problem
from fhir_server.runtime.settings import Settings
from resources.auth.store import AuthStore
from resources.errors import Unprocessable
from resources.jobs import bulk_import, queue
from resources.search import SearchEngine
from resources.storage.db import create_engine
from resources.storage.repository import Repository
from resources.subscriptions.tables import subscription_event, subscription_write

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
POLL_LIMIT_S = 60  # a fail-safe against a hung job, not a timing assertion


class Sources:
    """NDJSON files on a real HTTP server on 127.0.0.1; ``slow.ndjson`` sends its first line,
    then waits for ``release`` before the rest."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests: list[str] = []
        self.release = threading.Event()
        sources = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                sources.requests.append(self.path)
                path = sources.folder / self.path.lstrip("/").split("?")[0]
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+ndjson")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if path.name.startswith("slow"):
                    first, _, rest = data.partition(b"\n")
                    self.wfile.write(first + b"\n")
                    self.wfile.flush()
                    sources.release.wait(10)
                    data = rest
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def put(self, name: str, lines: list[object]) -> str:
        (self.folder / name).write_bytes(
            b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines)
        )
        return self.url(name)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Iterator[Sources]:  # type: ignore[no-untyped-def]
    s = Sources(tmp_path_factory.mktemp("ndjson"))
    yield s
    s.release.set()
    s.httpd.shutdown()


def token(server, scope: str, client_id: str | None = None) -> str:  # type: ignore[no-untyped-def]
    engine = create_engine(server.database_url)
    try:
        store = AuthStore(engine)
        if client_id is None or store.client(client_id) is None:
            client_id, _ = register(
                store, f"importer-{uuid.uuid4().hex[:6]}", "confidential-symmetric",
                scope=scope, client_id=client_id,
            )  # fmt: skip
        settings = Settings(database_url=server.database_url, base_url=server.root)
        return operator_token(store, settings, client_id, scope)["access_token"]
    finally:
        engine.dispose()


def parameters(inputs: list[tuple[str, str]], **extra: str) -> dict:
    params: list[dict] = [{"name": "inputFormat", "valueCode": "application/fhir+ndjson"}]
    params += [{"name": k, "valueUri": v} for k, v in extra.items()]
    params.append({"name": "storageDetail", "part": [{"name": "type", "valueCode": "https"}]})
    for res_type, url in inputs:
        params.append(
            {
                "name": "input",
                "part": [{"name": "type", "valueCode": res_type}, {"name": "url", "valueUri": url}],
            }
        )
    return {"resourceType": "Parameters", "parameter": params}


def kickoff(c: httpx.Client, body: dict, headers: dict | None = None) -> httpx.Response:
    return c.post("/$import", json=body, headers={**ASYNC, **(headers or {})})


def poll(c: httpx.Client, url: str) -> dict:
    deadline = time.monotonic() + POLL_LIMIT_S
    while True:
        r = c.get(url)
        if r.status_code == 200:
            assert r.headers["content-type"].startswith("application/json")
            return r.json()
        assert r.status_code == 202, r.text
        assert r.headers["x-progress"] and r.headers["retry-after"]
        assert time.monotonic() < deadline, "the import did not finish"
        time.sleep(0.05)


def patient(pid: str, family: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}]}


def test_import_commits_good_lines_and_reports_bad_ones(server, client, sources) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:8]
    family = f"Imp{tag}"
    assert client.put(f"/Patient/p1-{tag}", json=patient(f"p1-{tag}", "Before")).status_code == 201
    patients = sources.put(
        f"Patient-{tag}.ndjson",
        [
            patient(f"p1-{tag}", family),  # exists: updated
            patient(f"p2-{tag}", family),  # new, id kept
            b"{not json",  # line 3
            {"resourceType": "Patient", "id": f"p4-{tag}", "gender": "sometimes"},  # line 4
            {"resourceType": "Observation", "id": f"o-{tag}"},  # line 5: not this input's type
            b"",  # blank: skipped
            patient(f"p2-{tag}", family),  # line 7: the same again: unchanged
        ],
    )
    observations = sources.put(
        f"Observation-{tag}.ndjson",
        [
            {
                "resourceType": "Observation",
                "id": f"o1-{tag}",
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": f"Patient/p2-{tag}"},
            }
        ],
    )
    watch = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "imported patients",
        "criteria": f"Patient?family={family}",
        "channel": {"type": "websocket", "payload": "application/fhir+json"},
    }
    sub = client.post("/Subscription", json=watch)
    assert sub.status_code == 201, sub.text
    body = parameters(
        [("Patient", patients), ("Observation", observations)], inputSource=f"urn:src:{tag}"
    )
    r = kickoff(client, body)
    assert r.status_code == 202, r.text
    status = r.headers["content-location"]
    assert "/bulkdata-import/" in status
    manifest = poll(client, status)
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"].endswith("/$import")
    assert [(o["inputUrl"], o["count"]) for o in manifest["output"]] == [
        (patients, 3),
        (observations, 1),
    ]
    [error] = manifest["error"]
    assert (error["inputUrl"], error["count"], error["type"]) == (patients, 3, "OperationOutcome")
    counts = manifest["extension"]["http://hearth.local/fhir/import-counts"]
    assert [(c["created"], c["updated"], c["unchanged"]) for c in counts] == [(1, 1, 1), (1, 0, 0)]

    r = client.get(error["url"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+ndjson")
    outcomes = [orjson.loads(x) for x in r.content.splitlines()]
    assert [o["issue"][0]["location"] for o in outcomes] == [["line 3"], ["line 4"], ["line 5"]]
    assert "not JSON" in outcomes[0]["issue"][0]["diagnostics"]
    assert "gender" in outcomes[1]["issue"][0]["diagnostics"]

    # committed with their own ids, through the whole write path: versions, search index, audit
    p1 = client.get(f"/Patient/p1-{tag}").json()
    assert p1["meta"]["versionId"] == "2" and p1["meta"]["source"] == f"urn:src:{tag}"
    found = client.get("/Patient", params={"family": family}).json()
    assert {e["resource"]["id"] for e in found["entry"]} == {f"p1-{tag}", f"p2-{tag}"}
    obs = client.get("/Observation", params={"subject": f"Patient/p2-{tag}"}).json()
    assert [e["resource"]["id"] for e in obs["entry"]] == [f"o1-{tag}"]
    assert client.get(f"/Patient/p4-{tag}").status_code == 404
    # the subscriptions outbox matched the imported patients in their batch's transaction
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            pending = conn.execute(
                sa.select(subscription_write.c.res_id, subscription_write.c.subs)
            ).all()
            spread = conn.execute(
                sa.select(subscription_event.c.res_id).where(
                    subscription_event.c.sub_id == sub.json()["id"]
                )
            ).all()
    finally:
        engine.dispose()
    matched = {r.res_id for r in spread} | {
        r.res_id for r in pending if sub.json()["id"] in (r.subs or [])
    }
    assert matched == {f"p1-{tag}", f"p2-{tag}"}, matched
    written = client.get("/AuditEvent", params={"entity": f"Patient/p2-{tag}"}).json()
    assert any(
        "$import" in e["resource"].get("outcomeDesc", "") for e in written.get("entry", [])
    ), written
    closing = client.get("/AuditEvent", params={"subtype": "urn:hearth:audit|import"}).json()
    assert any(tag in str(e["resource"].get("entity")) for e in closing["entry"])


def test_refused_hosts_are_never_fetched(client, sources) -> None:  # type: ignore[no-untyped-def]
    before = len(sources.requests)
    good = sources.url("Patient-none.ndjson")
    for bad in (
        "http://example.org/Patient.ndjson",
        f"http://localhost:{sources.port}/Patient.ndjson",  # not the allowed host name
        f"http://user:pw@127.0.0.1:{sources.port}/Patient.ndjson",
        "ftp://127.0.0.1/Patient.ndjson",
    ):
        r = kickoff(client, parameters([("Patient", good), ("Patient", bad)]))
        assert r.status_code == 403, r.text
        outcome = r.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert bad in outcome["issue"][0]["diagnostics"]
    # the proposal's plain JSON body is read the same way
    proposal = {
        "inputFormat": "application/fhir+ndjson",
        "inputSource": "https://other-server.example.org",
        "storageDetail": {"type": "https"},
        "input": [{"type": "Patient", "url": good}, {"type": "Patient", "url": bad}],
    }
    r = kickoff(client, proposal)
    assert r.status_code == 403 and bad in r.json()["issue"][0]["diagnostics"], r.text
    assert len(sources.requests) == before  # nothing fetched, not even the allowed input
    r = kickoff(client, parameters([("Patient", good)]), headers={"Prefer": "respond-sync"})
    assert r.status_code == 400


def test_types_outside_the_tokens_scopes_are_refused(server, sources) -> None:  # type: ignore[no-untyped-def]
    url = sources.url("x.ndjson")
    listed = token(server, "system/Patient.cu system/Patient.rs", client_id="import-tester")
    unlisted = token(server, "system/*.cu")
    for bearer, asked, why in (
        (listed, "Observation", "Observation"),  # listed client, type not in its scopes
        (unlisted, "Patient", "HEARTH_IMPORT_CLIENTS"),  # writes Patients, but may not import
    ):
        with httpx.Client(base_url=server.fhir, headers={"Authorization": f"Bearer {bearer}"}) as c:
            r = kickoff(c, parameters([("Patient", url), (asked, url)]))
            assert r.status_code == 403, r.text
            assert why in r.json()["issue"][0]["diagnostics"]


def test_status_polling_and_cancel(server, client, sources) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:8]
    sources.release.clear()  # the slow source holds its second line until released
    url = sources.put(
        f"slow-{tag}.ndjson", [patient(f"s1-{tag}", "Slow"), patient(f"s2-{tag}", "Slow")]
    )
    body = parameters([("Patient", url)])
    body["parameter"][1]["part"].append({"name": "maxBatchResourceCount", "valueInteger": 1})
    r = kickoff(client, body)
    assert r.status_code == 202, r.text
    status = r.headers["content-location"]
    deadline = time.monotonic() + POLL_LIMIT_S
    while client.get(f"/Patient/s1-{tag}").status_code != 200:  # the first batch committed
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = client.get(status)
    assert r.status_code == 202 and "line 1" in r.headers["x-progress"], r.headers
    other = token(server, "system/Patient.rs")  # another client, not an administrator
    with httpx.Client(base_url=server.fhir, headers={"Authorization": f"Bearer {other}"}) as c:
        assert c.get(status).status_code == 403
        assert c.delete(status).status_code == 403
    assert client.delete(status).status_code == 202
    gone = client.get(status)
    assert gone.status_code == 404 and gone.headers["content-type"] == "application/json"
    assert gone.json()["resourceType"] == "OperationOutcome"
    sources.release.set()  # the source sends line 2: its batch finds the job cancelled
    engine = create_engine(server.database_url)
    try:
        repo = Repository(engine, SearchEngine())
        job_id = status.rsplit("/", 1)[1]
        while queue.for_task(repo, f"BulkImport/{job_id}")[0].state != queue.DONE:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        engine.dispose()
    assert client.get(f"/Patient/s2-{tag}").status_code == 404  # rolled back, never written


def test_a_failed_attempt_resumes_after_its_last_batch(server) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:8]
    lines = b"".join(orjson.dumps(patient(f"r{n}-{tag}", "Resume")) + b"\n" for n in range(5))
    fetched: list[int] = []

    def flaky(url: str) -> Iterator[bytes]:
        fetched.append(1)
        head, tail = lines[: lines.index(b"\n", 200) + 1], lines[lines.index(b"\n", 200) + 1 :]
        yield head
        if len(fetched) == 1:
            raise ConnectionError("the source went away")  # transient: the queue retries
        yield tail

    engine = create_engine(server.database_url)
    try:
        repo = Repository(engine, SearchEngine())
        spec = bulk_import.Spec([bulk_import.Input("Patient", "http://127.0.0.1/x")], batch_size=1)
        job = bulk_import.start(repo, "resume-test", {}, "test", spec)
        [entry] = queue.for_task(repo, f"BulkImport/{job.id}")
        qjob = queue.claim_job(repo, entry.id, "test-worker", lease=timedelta(minutes=1))
        assert qjob is not None
        assert bulk_import.run_job(repo, flaky, qjob, "test-worker") == queue.READY
        cursor = bulk_import.get(repo, job.id).cursor
        assert 0 < cursor["line"] < 5 and cursor["counts"][0]["count"] == cursor["line"]
        qjob = queue.claim_job(repo, entry.id, "test-worker", lease=timedelta(minutes=1))
        assert qjob is not None
        assert bulk_import.run_job(repo, flaky, qjob, "test-worker") == bulk_import.COMPLETED
        done = bulk_import.get(repo, job.id)
        assert done.counts()[0] == {
            "count": 5,
            "errors": 0,
            "created": 5,
            "updated": 0,
            "unchanged": 0,
        }
    finally:
        engine.dispose()


def test_url_rules() -> None:
    dev = Settings(import_allowed_hosts="data.example.org, 127.0.0.1:8000", import_allow_http=True)
    prod = Settings(import_allowed_hosts="data.example.org")
    assert url_problem(dev, "http://127.0.0.1:8000/a.ndjson") is None
    assert url_problem(dev, "https://DATA.example.org/a.ndjson") is None
    assert "HEARTH_IMPORT_ALLOWED_HOSTS" in (url_problem(dev, "http://127.0.0.1:8001/a") or "")
    assert "https" in (url_problem(prod, "http://data.example.org/a.ndjson") or "")
    assert "credentials" in (url_problem(prod, "https://u:p@data.example.org/a") or "")
    assert "not enabled" in (url_problem(Settings(), "https://data.example.org/a") or "")
    lines = list(bulk_import.lines_of([b"ab", b"c\n\r\nd", b"x" * 20 + b"\ne"], 10))
    assert lines == [(1, b"abc"), (2, b""), (3, None), (4, b"e")]


def test_a_line_a_write_hook_refuses_is_a_bad_line(server) -> None:  # type: ignore[no-untyped-def]
    """A refusal no item is named for (a write hook's, as HEARTH_ENFORCE_PROFILES raises) sends
    the batch through one write at a time, so only the refused line is bad."""
    tag = uuid.uuid4().hex[:8]
    lines = b"".join(orjson.dumps(patient(f"h{n}-{tag}", "Hook")) + b"\n" for n in range(1, 4))

    def refuse_h2(u, result) -> None:  # type: ignore[no-untyped-def]
        if result.stored.res_id == f"h2-{tag}":
            raise Unprocessable("refused by a write hook")

    engine = create_engine(server.database_url)
    try:
        repo = Repository(engine, SearchEngine())
        repo.write_hooks.append(refuse_h2)
        spec = bulk_import.Spec([bulk_import.Input("Patient", "http://127.0.0.1/h")])
        job = bulk_import.start(repo, "hook-test", {}, "test", spec)
        [entry] = queue.for_task(repo, f"BulkImport/{job.id}")
        qjob = queue.claim_job(repo, entry.id, "test-worker", lease=timedelta(minutes=1))
        assert qjob is not None
        final = bulk_import.run_job(repo, lambda url: iter([lines]), qjob, "test-worker")
        assert final == bulk_import.COMPLETED
        done = bulk_import.get(repo, job.id)
        assert (done.counts()[0]["count"], done.counts()[0]["errors"]) == (2, 1)
        [bad] = [orjson.loads(x) for x in bulk_import.error_lines(repo, done, 0)]
        assert bad["issue"][0]["location"] == ["line 2"]
        assert "write hook" in bad["issue"][0]["diagnostics"]
    finally:
        engine.dispose()


def test_a_job_whose_runner_died_for_good_reads_as_failed(server) -> None:  # type: ignore[no-untyped-def]
    """The queue dead-letters a job whose leases all expired (its runners killed) without its
    runner touching the job row: the status must say failed, not 'running' for ever."""
    engine = create_engine(server.database_url)
    try:
        repo = Repository(engine, SearchEngine())
        spec = bulk_import.Spec([bulk_import.Input("Patient", "http://127.0.0.1/d")])
        job = bulk_import.start(repo, "died-test", {}, "test", spec)
        [entry] = queue.for_task(repo, f"BulkImport/{job.id}")
        qjob = queue.claim_job(repo, entry.id, "test-worker", lease=timedelta(minutes=1))
        assert qjob is not None
        assert bulk_import.get(repo, job.id).state == bulk_import.ACCEPTED
        repo.run(lambda u: queue.fail(u, qjob, "test-worker", "lease expired", retry=False,
                                      backoff=timedelta(0)))  # fmt: skip
        died = bulk_import.get(repo, job.id)
        assert died.state == bulk_import.FAILED and "lease expired" in (died.failure or "")
    finally:
        engine.dispose()


def test_bad_kickoffs_are_400_naming_the_problem(client, sources) -> None:  # type: ignore[no-untyped-def]
    url = sources.url("Patient-none.ndjson")
    good = parameters([("Patient", url)])

    def without(name: str) -> dict:
        return {**good, "parameter": [p for p in good["parameter"] if p["name"] != name]}

    def detail(*parts: dict) -> dict:
        body = without("storageDetail")
        body["parameter"].append({"name": "storageDetail", "part": list(parts)})
        return body

    cases = [
        (without("inputFormat"), "inputFormat"),
        ({**good, "parameter": [*good["parameter"], {"name": "inputFormat", "valueCode": "x"}]},
         "inputFormat"),
        (without("input"), "input"),
        (parameters([("NotAType", url)]), "NotAType"),
        (parameters([("AuditEvent", url)]), "audit log"),
        (detail({"name": "type", "valueCode": "aws-s3"}), "aws-s3"),
        (detail({"name": "credentialHttpBasic", "valueString": "u:p"}), "credentialHttpBasic"),
        (detail({"name": "contentEncoding", "valueString": "gzip"}), "gzip"),
        (detail({"name": "maxBatchResourceCount", "valueInteger": 0}), "maxBatchResourceCount"),
        ({**good, "parameter": [*good["parameter"], {"name": "mode", "valueCode": "x"}]}, "mode"),
        ({**good, "parameter": [*good["parameter"], {"name": "input", "valueString": url}]},
         "input"),
        ({"inputFormat": "application/fhir+ndjson", "input": "Patient"}, "input"),
        ({"inputFormat": "application/fhir+ndjson", "input": [{"type": "Patient"}]}, "url"),
    ]  # fmt: skip
    for body, named in cases:
        r = kickoff(client, body)
        assert r.status_code == 400, (body, r.text)
        assert named in r.json()["issue"][0]["diagnostics"], (named, r.text)


def test_a_queued_job_is_run_by_the_workers_pass(server, client, sources) -> None:  # type: ignore[no-untyped-def]
    """What ``hearth worker`` (and the API's sweep) runs: ``import_runner.run_pending`` takes a
    job left on the queue, fetches under the settings' rules and writes audited batches."""
    from fhir_server.runtime import import_runner

    tag = uuid.uuid4().hex[:8]
    url = sources.put(f"queued-{tag}.ndjson", [patient(f"q1-{tag}", "Queued")])
    settings = Settings(
        database_url=server.database_url, base_url=server.root,
        import_allowed_hosts="127.0.0.1", import_allow_http=True,
    )  # fmt: skip
    engine = create_engine(server.database_url)
    try:
        repo = Repository(engine, SearchEngine())
        spec = bulk_import.Spec([bulk_import.Input("Patient", url)])
        job = bulk_import.start(repo, "worker-test", {"username": None}, "test", spec)
        import_runner.run_pending(repo, settings, "test-worker")  # (or the API's sweep, first)
        deadline = time.monotonic() + POLL_LIMIT_S
        while bulk_import.get(repo, job.id).state != bulk_import.COMPLETED:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        engine.dispose()
    assert client.get(f"/Patient/q1-{tag}").status_code == 200
    events = client.get("/AuditEvent", params={"entity": f"Patient/q1-{tag}"}).json()
    agents = [a for e in events["entry"] for a in e["resource"]["agent"]]
    assert any(a["who"].get("identifier", {}).get("value") == "worker-test" for a in agents)


def test_ping_and_pull_of_a_static_export_manifest(server, sources) -> None:  # type: ignore[no-untyped-def]
    """The ping-and-pull proposal's ``exportUrl`` with ``exportType`` static: the manifest's
    output files are the inputs; a type the token may not write is that file's error."""
    tag = uuid.uuid4().hex[:8]
    patients = sources.put(f"m-Patient-{tag}.ndjson", [patient(f"m1-{tag}", "Manifest")])
    practitioners = sources.put(
        f"m-Practitioner-{tag}.ndjson", [{"resourceType": "Practitioner", "id": f"m2-{tag}"}]
    )
    manifest = {
        "transactionTime": "2026-12-01T00:00:00Z",
        "request": "https://ehr.example.org/fhir/$export",
        "requiresAccessToken": False,
        "output": [
            {"type": "Patient", "url": patients, "count": 1},
            {"type": "Practitioner", "url": practitioners, "count": 1},
        ],
        "error": [],
    }
    (sources.folder / f"manifest-{tag}.json").write_bytes(orjson.dumps(manifest))
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "exportUrl", "valueUrl": sources.url(f"manifest-{tag}.json")},
            {"name": "exportType", "valueCode": "static"},
        ],
    }
    bearer = token(server, "system/Patient.cu system/Patient.rs", client_id="import-tester")
    with httpx.Client(base_url=server.fhir, headers={"Authorization": f"Bearer {bearer}"}) as c:
        r = kickoff(c, body)
        assert r.status_code == 202, r.text
        done = poll(c, r.headers["content-location"])
        assert [(o["inputUrl"], o["count"]) for o in done["output"]] == [
            (patients, 1),
            (practitioners, 0),
        ]
        [error] = done["error"]
        assert error["inputUrl"] == practitioners
        [why] = [orjson.loads(x) for x in c.get(error["url"]).content.splitlines()]
        assert "Practitioner" in why["issue"][0]["diagnostics"]
    dynamic = {"resourceType": "Parameters", "parameter": body["parameter"][:1]}
    with httpx.Client(base_url=server.fhir, headers=server.headers) as c:
        assert c.get(f"/Patient/m1-{tag}").status_code == 200
        assert c.get(f"/Practitioner/m2-{tag}").status_code == 404
        r = kickoff(c, dynamic)  # exportType dynamic (the default): Hearth runs no remote export
        assert r.status_code == 400 and "dynamic" in r.json()["issue"][0]["diagnostics"]


def test_a_patient_context_token_can_neither_import_nor_see_an_import(
    server, client, sources
) -> None:  # type: ignore[no-untyped-def]
    """``$import`` is system-level: a patient-context token (even one with write scopes on its
    compartment) is refused before anything is fetched, and a running import's status URL tells
    it nothing (the same 403 as for any non-importer)."""
    from tests.fhir_server.auth.smart import client_token

    tag = uuid.uuid4().hex[:8]
    mine = client.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
    headers = client_token(server, "launch/patient patient/*.cruds", patient=mine)
    url = sources.put(f"pt-{tag}.ndjson", [patient(f"pt1-{tag}", "Patientctx")])
    fetched = len(sources.requests)
    with httpx.Client(base_url=server.fhir, headers=headers) as c:
        r = kickoff(c, parameters([("Patient", url)]))
        assert r.status_code == 403, r.text
        assert r.json()["resourceType"] == "OperationOutcome"
        assert len(sources.requests) == fetched  # nothing fetched for it
        started = kickoff(client, parameters([("Patient", url)]))
        assert started.status_code == 202, started.text
        status = started.headers["content-location"]
        seen = c.get(status)
        assert seen.status_code == 403 and "pt1-" not in seen.text
    poll(client, status)
    assert client.get(f"/Patient/pt1-{tag}").status_code == 200
