"""AuditEvent search and read over the audit log, over HTTP with real tokens: administrators
only (everyone else 403), the R4 AuditEvent parameters through the search engine, date prefixes,
sort, keyset paging, includes; the search is audited itself, writes are refused, the searchable
rows leave the hash chain intact and ``hearth audit verify`` checks them against it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from resources import audit
from resources.storage.db import create_engine
from resources.storage.schema import resource, resource_version
from tests.audit_log import search_log
from tests.fhir_server.auth.smart import (
    bearer,
    code_of,
    exchange,
    login,
    make_client,
    make_user,
    pkce,
)
from tests.servers import database_url, system_token

HTTP = httpx.Client(timeout=60)  # the shared 2-core test machine can be slow


def _flush(server) -> None:  # type: ignore[no-untyped-def]
    server.server.config.app.state.auth.writer.flush()


def _ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _get(server, params, headers=None) -> httpx.Response:  # type: ignore[no-untyped-def]
    return HTTP.get(
        f"{server.fhir}/AuditEvent", params=params, headers=headers or server.headers, timeout=30
    )


def _user_token(server, user) -> dict:  # type: ignore[no-untyped-def]
    scope = "openid fhirUser user/*.cruds patient/*.rs"
    client_id, _ = make_client(server, "public", scope)
    verifier, challenge = pkce()
    code = code_of(login(server, client_id, user, scope, challenge=challenge))
    body = exchange(server, client_id, code, verifier).json()
    return bearer(body["access_token"])


def _patient_and_observation(server) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A new Patient and an Observation about it (a unique code text), created over HTTP."""
    h, f = server.headers, server.fhir
    pid = HTTP.post(f"{f}/Patient", json={"resourceType": "Patient"}, headers=h).json()["id"]
    obs = HTTP.post(
        f"{f}/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": uuid.uuid4().hex},
            "subject": {"reference": f"Patient/{pid}"},
        },
        headers=h,
    ).json()["id"]
    return pid, obs


def test_admins_search_the_log_by_its_parameters(server):
    h = server.headers
    f = server.fhir
    start = datetime.now(UTC) - timedelta(seconds=1)
    pid, obs = _patient_and_observation(server)
    assert HTTP.get(f"{f}/Observation/{obs}", headers=h).status_code == 200
    assert HTTP.get(f"{f}/Observation/does-not-exist", headers=h).status_code == 404
    _flush(server)

    # entity: the create and the read of the Observation (and nothing else)
    by_entity = _get(server, {"entity": f"Observation/{obs}"})
    assert by_entity.status_code == 200, by_entity.text
    events = [e["resource"] for e in by_entity.json()["entry"]]
    assert [e["subtype"][0]["code"] for e in events] == ["create", "read"]
    assert all(e["resourceType"] == "AuditEvent" and e["id"].startswith("audit-") for e in events)
    # an absolute reference and the id alone find the same events
    absolute = _get(server, {"entity": f"{f}/Observation/{obs}"}).json()
    assert _ids(absolute) == [e["id"] for e in events]
    assert _ids(_get(server, {"entity": obs}).json()) == [e["id"] for e in events]
    # action and subtype tokens, with and without system
    reads = _get(server, {"entity": f"Observation/{obs}", "action": "R"}).json()
    assert _ids(reads) == [events[1]["id"]]
    created = _get(
        server,
        {
            "entity": f"Observation/{obs}",
            "subtype": "http://hl7.org/fhir/restful-interaction|create",
        },
    ).json()
    assert _ids(created) == [events[0]["id"]]
    wrong = _get(server, {"entity": f"Observation/{obs}", "subtype": "wrong|create"}).json()
    assert wrong.get("entry", []) == []
    # outcome: the failed read of a missing id
    failed = _get(server, {"outcome": "4", "date": f"ge{start.isoformat()}", "action": "R"})
    assert any(
        "Observation/does-not-exist" in str(e["resource"].get("entity"))
        for e in failed.json()["entry"]
    )
    # type, source, agent:identifier (the client), agent-name, patient
    rest = _get(server, {"type": "rest", "entity": f"Observation/{obs}"}).json()
    assert len(_ids(rest)) == 2
    site = _get(server, {"site": f, "entity": f"Observation/{obs}"}).json()
    assert len(_ids(site)) == 2
    client_id = next(
        a["who"]["identifier"]["value"] for a in events[0]["agent"] if a["who"].get("identifier")
    )
    mine = _get(
        server,
        {"agent:identifier": f"urn:hearth:client|{client_id}", "entity": f"Observation/{obs}"},
    ).json()
    assert len(_ids(mine)) == 2
    assert _get(server, {"agent:identifier": "urn:hearth:client|nobody"}).json().get("entry") in (
        None,
        [],
    )

    # date prefixes on the recorded time
    recorded = events[0]["recorded"]
    for params, expected in (
        ({"date": f"ge{recorded}"}, 2),
        ({"date": f"gt{recorded}"}, 1),
        ({"date": f"le{recorded}"}, 1),
        ({"date": f"lt{recorded}"}, 0),
        ({"date": f"eq{recorded}"}, 1),
        ({"date": f"ge{recorded[:10]}"}, 2),  # the whole day
    ):
        got = _get(server, {**params, "entity": f"Observation/{obs}"}).json()
        assert len(_ids(got)) == expected, (params, got)
    assert _get(server, {"date": "ge2026-13-45"}).status_code == 400

    # _sort and paging with next links
    asc = _ids(_get(server, {"entity": f"Observation/{obs}", "_sort": "date"}).json())
    desc = _ids(_get(server, {"entity": f"Observation/{obs}", "_sort": "-date"}).json())
    assert desc == list(reversed(asc))
    first = _get(server, {"entity": f"Observation/{obs}", "_count": 1, "_sort": "-date"}).json()
    assert _ids(first) == desc[:1]
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = HTTP.get(nxt, headers=h, timeout=30).json()
    assert _ids(second) == desc[1:2]
    assert not any(link["relation"] == "next" for link in second["link"])
    # any AuditEvent parameter the engine sorts by; an unknown one is a 400
    by_action = _get(server, {"entity": f"Observation/{obs}", "_sort": "-action,date"}).json()
    assert _ids(by_action) == desc  # the read (R) before the create (C)
    assert _get(server, {"_sort": "flavour"}).status_code == 400
    total = _get(server, {"entity": f"Observation/{obs}", "_summary": "count"}).json()
    assert total["total"] == 2

    # patient: events naming the patient in any entity
    by_patient = _get(server, {"patient": pid, "action": "C"}).json()
    assert [e["resource"]["entity"][0]["what"]["reference"] for e in by_patient["entry"]] == [
        f"Patient/{pid}"
    ]
    comp = HTTP.get(f"{f}/Patient/{pid}/AuditEvent", headers=h, params={"action": "C"}).json()
    assert _ids(comp) == _ids(by_patient)
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"AuditEvent?patient={pid}&action=C"}}],
    }
    inner = HTTP.post(f, json=batch, headers=h).json()["entry"][0]["resource"]
    assert _ids(inner) == _ids(by_patient)

    # read one event by id; unknown ids are 404
    one = HTTP.get(f"{f}/AuditEvent/{events[0]['id']}", headers=h)
    assert one.status_code == 200 and one.json()["subtype"] == events[0]["subtype"]
    assert HTTP.get(f"{f}/AuditEvent/audit-999999999", headers=h).status_code == 404
    assert HTTP.get(f"{f}/AuditEvent/nope", headers=h).status_code == 404

    # unknown parameters are reported; strict handling refuses them
    lenient = _get(server, {"flavour": "x", "_count": 1}).json()
    assert lenient["entry"][-1]["search"]["mode"] == "outcome"
    strict = HTTP.get(
        f"{f}/AuditEvent",
        params={"flavour": "x"},
        headers={**h, "Prefer": "handling=strict"},
        timeout=30,
    )
    assert strict.status_code == 400


def test_searching_the_log_is_audited_and_writes_are_refused(server):
    f, h = server.fhir, server.headers
    tag = uuid.uuid4().hex
    assert _get(server, {"agent-name": tag}).status_code == 200
    _flush(server)
    searches = _get(server, {"subtype": "search-type", "_sort": "-date", "_count": 5}).json()
    queries = [
        x.get("query", "")
        for e in searches["entry"]
        for x in e["resource"].get("entity", [])
        if x.get("query")
    ]
    import base64

    assert any(tag in base64.b64decode(q).decode() for q in queries)
    event = {
        "resourceType": "AuditEvent",
        "type": {"code": "rest"},
        "recorded": "2026-01-01T10:00:00Z",
        "agent": [{"requestor": True, "name": f"app-{tag}"}],
        "source": {"observer": {"display": "an external audit source"}},
    }
    posted = HTTP.post(f"{f}/AuditEvent", json=event, headers=h)
    assert posted.status_code == 201, posted.text
    appended = posted.json()
    assert appended["id"].startswith("audit-") and appended["recorded"] == event["recorded"]
    assert posted.headers["location"].endswith(f"/AuditEvent/{appended['id']}/_history/1")
    found = _get(server, {"agent-name": f"app-{tag}"}).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [appended["id"]]
    bad = HTTP.post(f"{f}/AuditEvent", json={"resourceType": "AuditEvent"}, headers=h)
    assert bad.status_code == 400, bad.text
    assert HTTP.put(f"{f}/AuditEvent/audit-1", json=event, headers=h).status_code == 405
    assert HTTP.delete(f"{f}/AuditEvent/audit-1", headers=h).status_code == 405
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": event, "request": {"method": "POST", "url": "AuditEvent"}}],
    }
    assert HTTP.post(f, json=bundle, headers=h).status_code == 405
    engine = create_engine(server.database_url)
    try:
        _flush(server)
        n, broken = audit.verify(engine)
        assert broken is None and n > 0
    finally:
        engine.dispose()


def test_only_administrators_search_or_read_the_log(server):
    f = server.fhir
    narrow = bearer(system_token(server.database_url, server.root, "system/*.rs"))
    own = bearer(system_token(server.database_url, server.root, "system/AuditEvent.rs"))
    pid = HTTP.post(f"{f}/Patient", json={"resourceType": "Patient"}, headers=server.headers)
    patient = _user_token(server, make_user(server, "patient", f"Patient/{pid.json()['id']}"))
    for headers in (narrow, own, patient):
        assert _get(server, {}, headers).status_code == 403
        assert HTTP.get(f"{f}/AuditEvent/audit-1", headers=headers).status_code == 403
        assert _get(server, {"patient": pid.json()["id"]}, headers).status_code == 403
        compartment = f"{f}/Patient/{pid.json()['id']}/AuditEvent"
        assert HTTP.get(compartment, headers=headers).status_code == 403
    assert HTTP.get(f"{f}/AuditEvent", timeout=30).status_code == 401
    # an administrator user (the admin flag of the account) may
    admin_user = make_user(server, "admin", f"Practitioner/{uuid.uuid4().hex[:12]}")
    admin = _user_token(server, admin_user)
    assert _get(server, {"_count": 1}, admin).status_code == 200
    _flush(server)
    # what that user did, by login name (altid) and by fhirUser (agent)
    theirs = _get(server, {"altid": admin_user.username}).json()
    kinds = {e["resource"]["subtype"][0]["code"] for e in theirs["entry"]}
    assert {"110122", "search-type"} <= kinds  # the login and the search
    by_agent = _get(server, {"agent": admin_user.fhir_user, "subtype": "search-type"}).json()
    assert len(_ids(by_agent)) == 1
    by_name = _get(server, {"agent-name": admin_user.username[:8]}).json()
    assert len(_ids(by_name)) >= 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_shows_existing_events_as_resources_without_touching_the_chain(backend, tmp_path):
    """Events recorded before migration 0009 become searchable ``AuditEvent/audit-SEQ`` rows;
    the chain and ``hearth audit verify`` are unchanged; an AuditEvent the resource table held
    outside the log is moved into it; the new rows are append-only."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from resources.storage.migrate import alembic_config

    url, cleanup = database_url(backend, tmp_path)
    cfg = alembic_config(url)
    script = next(
        s
        for s in ScriptDirectory.from_config(cfg).walk_revisions()
        if s.path.endswith("0009_audit_search.py")
    )
    command.downgrade(cfg, script.down_revision)
    engine = create_engine(url)
    try:
        prev = audit.GENESIS
        with engine.begin() as conn:  # the chain as the code before 0009 wrote it
            for n in range(3):
                recorded = datetime(2026, 11, 1 + n, tzinfo=UTC)
                event = {
                    "resourceType": "AuditEvent",
                    "action": "R",
                    "entity": [{"what": {"reference": f"Patient/p{n}"}}],
                    "recorded": recorded.isoformat(),
                }
                h = audit.chain_hash(prev, recorded, event)
                conn.execute(
                    sa.insert(audit.audit_event).values(
                        recorded=recorded, event=event, prev_hash=prev, hash=h
                    )
                )
                prev = h
            legacy = {
                "resourceType": "AuditEvent",
                "id": "legacy-1",
                "meta": {"versionId": "1", "lastUpdated": "2026-10-01T00:00:00Z"},
                "action": "C",
                "recorded": "2026-10-01T00:00:00Z",
                "entity": [{"what": {"reference": "Patient/legacy"}}],
            }
            row = {
                "res_type": "AuditEvent",
                "res_id": "legacy-1",
                "version": 1,
                "last_updated": datetime(2026, 10, 1, tzinfo=UTC),
                "deleted": False,
                "content": legacy,
            }
            pk = conn.execute(sa.insert(resource).values(**row).returning(resource.c.pk)).scalar()
            conn.execute(sa.insert(resource_version).values(**row, res_pk=pk, method="POST"))
        hashes_before = _hashes(engine)
        command.upgrade(cfg, "head")
        assert _hashes(engine)[:3] == hashes_before
        assert audit.verify(engine) == (4, None)
        found = search_log(engine, [("patient", "p1")])
        assert [e["entity"][0]["what"]["reference"] for e in found] == ["Patient/p1"]
        assert found[0]["id"] == "audit-2" and found[0]["meta"]["versionId"] == "1"
        found = search_log(engine, [("date", "ge2026-11-02"), ("_sort", "-date")])
        assert [e["id"] for e in found] == ["audit-3", "audit-2"]
        moved = search_log(engine, [("entity", "Patient/legacy")])
        assert [(e["id"], e["recorded"], e["action"]) for e in moved] == [
            ("audit-4", "2026-10-01T00:00:00Z", "C")
        ]
        with engine.connect() as conn:
            ids = conn.execute(
                sa.select(resource.c.res_id).where(resource.c.res_type == "AuditEvent")
            ).scalars()
            assert sorted(ids) == ["audit-1", "audit-2", "audit-3", "audit-4"]
            assert not conn.execute(
                sa.select(resource_version).where(resource_version.c.res_type == "AuditEvent")
            ).first()
        for stmt in (
            sa.update(resource).where(resource.c.res_id == "audit-1").values(version=2),
            sa.delete(resource).where(resource.c.res_id == "audit-1"),
        ):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                with engine.begin() as conn:
                    conn.execute(stmt)
    finally:
        engine.dispose()
        cleanup()  # type: ignore[operator]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("attack", ["edit", "remove", "add"])
def test_verify_detects_a_changed_searchable_copy(backend, attack, tmp_path):
    """Someone who gets past the triggers and edits, removes or adds an AuditEvent resource row
    (what searches show) is caught by ``hearth audit verify`` as surely as one who edits the
    chain."""
    url, cleanup = database_url(backend, tmp_path)
    engine = create_engine(url)
    try:
        for n in range(3):
            audit.append_alone(engine, {"resourceType": "AuditEvent", "action": "R", "n": n})
        assert audit.verify(engine) == (3, None)
        assert [e["n"] for e in search_log(engine, [("action", "R")])] == [0, 1, 2]
        with engine.begin() as conn:
            _without_guard(conn)
            if attack == "edit":
                content = conn.execute(
                    sa.select(resource.c.content).where(resource.c.res_id == "audit-2")
                ).scalar_one()
                conn.execute(
                    sa.update(resource)
                    .where(resource.c.res_id == "audit-2")
                    .values(content={**content, "action": "C"})
                )
            elif attack == "remove":
                conn.execute(sa.delete(resource).where(resource.c.res_id == "audit-2"))
            else:
                conn.execute(
                    sa.insert(resource).values(
                        res_type="AuditEvent",
                        res_id="forged",
                        version=1,
                        last_updated=datetime.now(UTC),
                        deleted=False,
                        content={"resourceType": "AuditEvent", "id": "forged", "action": "R"},
                    )
                )
        _, broken = audit.verify(engine)
        assert broken is not None
        if attack == "add":
            assert "AuditEvent/forged" in broken.reason
        else:
            assert broken.seq == 2 and "AuditEvent/audit-2" in broken.reason
    finally:
        engine.dispose()
        cleanup()  # type: ignore[operator]


def _without_guard(conn: sa.Connection) -> None:
    """Drop migration 0009's triggers inside ``conn``'s transaction (an attacker with DDL)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("DROP TRIGGER audit_resource_append_only ON resource")
    else:
        conn.exec_driver_sql("DROP TRIGGER audit_resource_no_update")
        conn.exec_driver_sql("DROP TRIGGER audit_resource_no_delete")


def _hashes(engine) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return [
            (r[0], r[1])
            for r in conn.execute(
                sa.select(audit.audit_event.c.seq, audit.audit_event.c.hash).order_by(
                    audit.audit_event.c.seq
                )
            )
        ]


def test_bad_search_input_is_a_400_outcome_never_a_500(server):
    for params in (
        {"date": "ge"},
        {"date": "2026-02-30"},
        {"date:missing": "maybe"},
        {"entity:missing": "true,false"},
        {"_count": "-1"},
        {"_count": "many"},
        {"_page": "999999999"},
        {"_page": "x"},
        {"_sort": "-flavour"},
        {"_total": "maybe"},
        {"subtype": "a|b|c"},
    ):
        resp = _get(server, params)
        assert resp.status_code == 400, (params, resp.status_code, resp.text[:200])
        assert resp.json()["resourceType"] == "OperationOutcome"
    # The search engine's features work on AuditEvent as on every type: chains, token :text,
    # reference :identifier, any sort parameter; a modifier a type does not take is reported.
    for params in (
        {"agent:Patient.name": "x"},
        {"type:text": "rest"},
        {"patient:identifier": "x|y"},
        {"_sort": "-outcome"},
        {"entity": "http://"},
    ):
        resp = _get(server, params)
        assert resp.status_code == 200, (params, resp.status_code, resp.text[:200])
    ignored = _get(server, {"agent-name:below": "x"}).json()
    assert ignored["entry"][-1]["search"]["mode"] == "outcome"
    strict = HTTP.get(
        f"{server.fhir}/AuditEvent",
        params={"agent-name:below": "x"},
        headers={**server.headers, "Prefer": "handling=strict"},
        timeout=30,
    )
    assert strict.status_code == 400
    # LIKE wildcards and quotes are plain characters
    for value in ("%", "_", "' OR 1=1 --", "\\"):
        resp = _get(server, {"agent-name": value, "_count": 5})
        assert resp.status_code == 200 and not resp.json().get("entry", [])


def test_include_and_missing(server):
    h = server.headers
    f = server.fhir
    pid, obs = _patient_and_observation(server)
    _flush(server)

    def included(bundle: dict) -> list[str]:
        return [
            f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", [])
            if e["search"]["mode"] == "include"
        ]

    # The Observation's create event, with the Observation itself included once.
    resp = _get(server, {"entity": f"Observation/{obs}", "_include": "AuditEvent:entity"})
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    assert len(_ids(bundle)) == 1
    assert included(bundle) == [f"Observation/{obs}"]
    entry = next(e for e in bundle["entry"] if e["search"]["mode"] == "include")
    assert entry["resource"]["subject"] == {"reference": f"Patient/{pid}"}
    assert entry["fullUrl"] == f"{f}/Observation/{obs}"
    assert "_include=AuditEvent%3Aentity" in bundle["link"][0]["url"]
    # A target type narrows the include; the agent include brings the token's client's Device
    # or Practitioner only when it is a resource here, so only the type filter is asserted.
    narrowed = _get(
        server,
        {"entity": f"Observation/{obs}", "_include": "AuditEvent:entity:Patient"},
    ).json()
    assert _ids(narrowed) == _ids(bundle) and included(narrowed) == []
    by_patient = _get(
        server, {"entity": f"Patient/{pid}", "_include": "AuditEvent:entity:Patient"}
    ).json()
    assert included(by_patient) == [f"Patient/{pid}"]

    # :missing on an indexed parameter and on date (every event has its recorded time).
    event = _ids(bundle)[0]
    assert _ids(_get(server, {"_id": event, "entity:missing": "false"}).json()) == [event]
    assert _ids(_get(server, {"_id": event, "entity:missing": "true"}).json()) == []
    assert _ids(_get(server, {"_id": event, "date:missing": "false"}).json()) == [event]
    assert _ids(_get(server, {"_id": event, "date:missing": "true"}).json()) == []
    # The HTTP request's event names the caller's address (agent.network.address).
    assert _ids(_get(server, {"_id": event, "address:missing": "false"}).json()) == [event]
    assert _ids(_get(server, {"_id": event, "address:missing": "true"}).json()) == []

    # A deleted resource is not included (its events stay).
    assert HTTP.delete(f"{f}/Observation/{obs}", headers=h).status_code in (200, 204)
    _flush(server)
    after = _get(
        server, {"entity": f"Observation/{obs}", "_include": "AuditEvent:entity", "_count": 50}
    ).json()
    assert len(_ids(after)) >= 2 and included(after) == []


def test_no_one_else_reaches_audit_events_by_another_route(server):
    """AuditEvents are ordinary resource rows now: system search, _revinclude, _has and chains
    must not show them to anyone but an administrator, who finds them by those routes too."""
    f = server.fhir
    pid, obs = _patient_and_observation(server)
    assert HTTP.get(f"{f}/Observation/{obs}", headers=server.headers).status_code == 200
    _flush(server)
    revinclude = {"_id": pid, "_revinclude": "AuditEvent:patient"}
    admin = HTTP.get(f"{f}/Patient", params=revinclude, headers=server.headers).json()
    assert {e["resource"]["resourceType"] for e in admin["entry"]} == {"Patient", "AuditEvent"}
    has = {"_id": obs, "_has:AuditEvent:entity:action": "R"}
    assert _ids(HTTP.get(f"{f}/Observation", params=has, headers=server.headers).json()) == [obs]
    system = HTTP.get(
        f, params={"_type": "AuditEvent", "entity": f"Observation/{obs}"}, headers=server.headers
    ).json()
    assert len(_ids(system)) == 2  # the create and the read

    narrow = bearer(system_token(server.database_url, server.root, "system/*.rs"))
    patient = _user_token(server, make_user(server, "patient", f"Patient/{pid}"))
    for headers in (narrow, patient):
        got = HTTP.get(f"{f}/Patient", params=revinclude, headers=headers)
        assert got.status_code == 200, got.text
        assert {e["resource"]["resourceType"] for e in got.json().get("entry", [])} <= {
            "Patient",
            "OperationOutcome",
        }
        for url, params in (
            (f, {"_type": "AuditEvent"}),
            (f"{f}/Observation", has),
            (f"{f}/Patient", {"_has:AuditEvent:patient:action": "C"}),
        ):
            resp = HTTP.get(url, params=params, headers=headers)
            assert resp.status_code == 403, (params, resp.status_code, resp.text[:200])
        everything = HTTP.get(f, params={"_type": "Patient,Observation"}, headers=headers)
        assert everything.status_code == 200
        assert "AuditEvent" not in everything.text
