"""`hearth load` is audited like the REST API: an AuditEvent per write (in the write's own
transaction) and one Import event per run with the files and counts, the operator as agent."""

from __future__ import annotations

import getpass
import json

import pytest

from resources import audit
from resources.storage.db import create_engine
from tests.audit_log import search_log
from tests.fhir_server.test_cli import hearth
from tests.servers import database_url


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_load_run_leaves_its_audit_events(backend, tmp_path):
    url, cleanup = database_url(backend, tmp_path)
    data = tmp_path / "data.ndjson"
    data.write_text(
        json.dumps({"resourceType": "Patient", "id": "load-p1"})
        + "\n"
        + json.dumps({"resourceType": "Patient", "gender": "robot"})
        + "\n"
    )
    bundle = tmp_path / "tx.json"
    bundle.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": {"resourceType": "Organization", "name": f"Org {n}"},
                        "request": {"method": "POST", "url": "Organization"},
                    }
                    for n in range(2)
                ],
            }
        )
    )
    out = hearth("load", "--quiet", str(data), str(bundle), env={"HEARTH_DATABASE_URL": url})
    assert out.returncode == 1 and "failed 1" in out.stdout, out.stdout + out.stderr
    engine = create_engine(url)
    try:
        writes = search_log(engine, [("entity", "Patient/load-p1")])
        assert [e["subtype"][0]["code"] for e in writes] == ["update"]
        event = writes[0]
        user = event["agent"][0]
        assert user["altId"] == getpass.getuser() and user["requestor"] is True
        assert event["agent"][1]["who"]["identifier"]["value"] == "hearth load"
        tx = search_log(engine, [("subtype", "transaction"), ("action", "E")])
        assert len(tx) == 1 and len(tx[0]["entity"]) == 2
        runs = search_log(engine, [("subtype", "urn:hearth:audit|load")])
        assert len(runs) == 1
        run = runs[0]
        assert run["type"]["code"] == "110107" and run["outcome"] == "4"
        assert {x["name"] for x in run["entity"]} == {str(data), str(bundle)}
        detail = {d["type"]: d["valueString"] for d in run["entity"][0]["detail"]}
        assert detail["failed"] == "1" and detail["created"] == "3"
        by_operator = search_log(engine, [("altid", getpass.getuser())])
        assert len(by_operator) == 3  # the update, the transaction and the run
        assert audit.verify(engine)[1] is None
    finally:
        engine.dispose()
        cleanup()  # type: ignore[operator]
