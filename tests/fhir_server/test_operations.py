"""Operations are declarations (``fhir_server/rest/operations/spec.py``), found by walking the
package: the router enforces their methods (405 with ``Allow``), ``enforce.py`` their permission,
and one reader (``fhir_server/rest/operations/parameters.py``) parses their inputs once."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import httpx
import pytest

import fhir_server.rest.operations
from fhir_server.rest.operations.registry import operations
from fhir_server.rest.operations.spec import ADMIN, Operation, Permission
from tests.servers import system_token

ACT_AS_DOCTOR = {"X-Hearth-Role": "doctor", "X-Hearth-Actor": "Practitioner/someone"}


def _reply(ctx, req):  # type: ignore[no-untyped-def]
    raise AssertionError("never called")


def _outcome(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"][0]["code"] == code, body
    return body["issue"][0]


# -- the declarations ---------------------------------------------------------------------


def test_every_registered_operation_declares_its_permission_and_methods() -> None:
    ops = operations()
    assert {"validate", "export", "claim", "expand", "reindex", "audit-log"} <= set(ops)
    for name, op in ops.items():
        assert op.name == name
        assert isinstance(op.permission, Permission), name
        assert op.methods and op.methods <= {"GET", "POST"}, name
        # FHIR R4 operations.html#request: GET only for operations without side effects
        assert not (op.affects_state and "GET" in op.methods), name


def test_a_declaration_that_breaks_a_rule_fails_at_import() -> None:
    base = {
        "name": "x",
        "definition": "http://example.org/OperationDefinition/x",
        "levels": frozenset({"type"}),
        "handler": _reply,
    }
    with pytest.raises(TypeError, match="permission"):
        Operation(**base)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="must declare a Permission"):
        Operation(**base, permission="r")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot be invoked with GET"):
        Operation(**base, permission=Permission.on_type("u"), affects_state=True)
    with pytest.raises(ValueError, match="needs type or instance level"):
        Operation(**{**base, "levels": frozenset({"system"})}, permission=Permission.on_type("r"))
    with pytest.raises(ValueError, match="exactly one"):
        Permission()
    with pytest.raises(ValueError, match="exactly one"):
        Permission(type_perm="r", admin=True)
    with pytest.raises(ValueError, match="c r u d s"):
        Permission.on_type("x")
    with pytest.raises(ValueError, match="says where"):
        Permission(self_checked=True)
    ok = Operation(**base, permission=ADMIN, methods=frozenset({"POST"}), affects_state=True)
    assert ok.allow == ("POST",) and ok.handler_for("GET") is None


def test_no_operation_module_imports_the_registry() -> None:
    """The registry finds the operation modules; they import only ``spec`` (no import cycle)."""
    package = Path(fhir_server.rest.operations.__file__).parent
    for path in sorted(package.glob("*.py")):
        if path.name == "registry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "fhir_server.rest.operations.registry", path.name
                assert not (
                    node.module == "fhir_server.rest.operations"
                    and any(a.name == "registry" for a in node.names)
                ), path.name


# -- methods: 405 with Allow --------------------------------------------------------------


def test_a_method_an_operation_does_not_declare_is_405_with_allow(server) -> None:  # type: ignore[no-untyped-def]
    f, h = server.fhir, server.headers
    created = httpx.post(
        f"{f}/Patient", json={"resourceType": "Patient", "birthDate": "1950-01-01"}, headers=h
    )
    pid = created.json()["id"]
    # $ai-analyze changes state (it creates and runs an analysis Task): GET is refused, nothing runs
    resp = httpx.get(f"{f}/Patient/{pid}/$ai-analyze", headers=h)
    issue = _outcome(resp, 405, "not-supported")
    assert resp.headers["allow"] == "POST"
    assert "$ai-analyze" in issue["diagnostics"] and "changes state" in issue["diagnostics"]
    tasks = httpx.get(f"{f}/Task", params={"focus": f"Patient/{pid}"}, headers=h).json()
    assert not tasks.get("entry")
    # a workflow step: the router answers, with the Allow header
    resp = httpx.get(f"{f}/Task/no-such-task/$claim", headers={**h, **ACT_AS_DOCTOR})
    _outcome(resp, 405, "not-supported")
    assert resp.headers["allow"] == "POST"
    # $audit-log is read with GET only
    resp = httpx.post(f"{f}/$audit-log", headers=h)
    _outcome(resp, 405, "not-supported")
    assert resp.headers["allow"] == "GET"
    # $reindex: POST starts a job; GET only reports on jobs (its declared poll)
    resp = httpx.get(f"{f}/$reindex", headers=h)
    assert resp.status_code == 200 and resp.json()["resourceType"] == "Parameters"
    # $hl7v2 is POSTed (its own route); any other method is 405 from its declaration
    resp = httpx.get(f"{f}/$hl7v2", headers=h)
    _outcome(resp, 405, "not-supported")
    assert resp.headers["allow"] == "POST"


def test_the_method_is_checked_after_the_token(server) -> None:  # type: ignore[no-untyped-def]
    resp = httpx.get(f"{server.fhir}/Task/no-such-task/$claim")
    _outcome(resp, 401, "login")


# -- permissions: read from each declaration ----------------------------------------------


def test_every_declared_type_permission_is_enforced(server) -> None:  # type: ignore[no-untyped-def]
    """A token with every permission on the type but the one the operation declares gets 403
    from the enforcement (naming that permission), for every such operation."""
    words = {"c": "creating", "r": "reading", "u": "updating", "d": "deleting", "s": "searching"}
    tokens: dict[str, dict[str, str]] = {}
    checked = 0
    for op in operations().values():
        perm = op.permission.type_perm
        if perm is None:
            continue
        res_type = sorted(op.types)[0] if op.types else "Patient"
        scope = f"system/{res_type}.{''.join(p for p in 'cruds' if p != perm)}"
        if scope not in tokens:
            token = system_token(server.database_url, server.root, scope)
            tokens[scope] = {"Authorization": f"Bearer {token}", **ACT_AS_DOCTOR}
        path = f"{res_type}/x/${op.name}" if "instance" in op.levels else f"{res_type}/${op.name}"
        method = "POST" if "POST" in op.methods else "GET"
        body = {"resourceType": "Parameters"} if method == "POST" else None
        resp = httpx.request(method, f"{server.fhir}/{path}", json=body, headers=tokens[scope])
        issue = _outcome(resp, 403, "forbidden")
        assert f"{words[perm]} {res_type}" in issue["diagnostics"], (op.name, issue)
        checked += 1
    assert checked >= 15


def test_admin_operations_are_for_administrators(server) -> None:  # type: ignore[no-untyped-def]
    token = system_token(server.database_url, server.root, "system/*.rs")
    h = {"Authorization": f"Bearer {token}"}
    for op in operations().values():
        if not op.permission.admin:
            continue
        method = "GET" if "GET" in op.methods else "POST"
        res_type = sorted(op.types)[0] if op.types else "Patient"
        path = (
            f"${op.name}"
            if "system" in op.levels
            else f"{res_type}/${op.name}"
            if "type" in op.levels
            else f"{res_type}/x/${op.name}"
        )
        resp = httpx.request(method, f"{server.fhir}/{path}", headers=h)
        issue = _outcome(resp, 403, "forbidden")
        assert "administrators only" in issue["diagnostics"]


# -- inputs: one reader, clear outcomes ---------------------------------------------------


def test_missing_required_input_is_400_required(server) -> None:  # type: ignore[no-untyped-def]
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "slot", "valueReference": {"reference": "Slot/s1"}}],
    }
    resp = httpx.post(
        f"{server.fhir}/Appointment/$book", json=body, headers={**server.headers, **ACT_AS_DOCTOR}
    )
    issue = _outcome(resp, 400, "required")
    assert "'patient'" in issue["diagnostics"] and "$book" in issue["diagnostics"]


def test_a_wrong_type_names_the_parameter_and_where_it_is(server) -> None:  # type: ignore[no-untyped-def]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": "Patient/p"}},
            {"name": "caseType", "valueString": "lung-risk"},
        ],
    }
    resp = httpx.post(
        f"{server.fhir}/Task/$start-case", json=body, headers={**server.headers, **ACT_AS_DOCTOR}
    )
    issue = _outcome(resp, 400, "invalid")
    assert "'caseType'" in issue["diagnostics"] and "valueCode" in issue["diagnostics"]
    assert issue["expression"] == ["Parameters.parameter[1]"]
    # a query value of the wrong type
    resp = httpx.get(
        f"{server.fhir}/ValueSet/$expand",
        params={"url": "http://hl7.org/fhir/ValueSet/administrative-gender", "activeOnly": "yes"},
        headers=server.headers,
    )
    assert "'activeOnly'" in _outcome(resp, 400, "invalid")["diagnostics"]


def test_a_repeated_single_input_is_400(server) -> None:  # type: ignore[no-untyped-def]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "reason", "valueString": "one"},
            {"name": "reason", "valueString": "two"},
        ],
    }
    resp = httpx.post(
        f"{server.fhir}/Appointment/no-such-appointment/$cancel",
        json=body,
        headers={**server.headers, **ACT_AS_DOCTOR},
    )
    issue = _outcome(resp, 400, "invalid")
    assert "'reason' is given 2 times" in issue["diagnostics"]
    assert issue["expression"] == ["Parameters.parameter[0]", "Parameters.parameter[1]"]


def test_a_malformed_parameter_is_400_before_the_operation_runs(server) -> None:  # type: ignore[no-untyped-def]
    """Every operation's body goes through the reader, also one that takes no inputs."""
    h = {**server.headers, **ACT_AS_DOCTOR}
    f = server.fhir
    nameless = {"resourceType": "Parameters", "parameter": [{"valueString": "x"}]}
    resp = httpx.post(f"{f}/Appointment/no-such-appointment/$cancel", json=nameless, headers=h)
    assert _outcome(resp, 400, "invalid")["expression"] == ["Parameters.parameter[0]"]
    two_values = {
        "resourceType": "Parameters",
        "parameter": [{"name": "note", "valueString": "a", "valueCode": "b"}],
    }
    resp = httpx.post(f"{f}/Task/no-such-task/$claim", json=two_values, headers=h)
    assert "exactly one value[x]" in _outcome(resp, 400, "invalid")["diagnostics"]
    resp = httpx.post(f"{f}/Task/no-such-task/$claim", json={"resourceType": "Patient"}, headers=h)
    assert "takes a Parameters resource" in _outcome(resp, 400, "invalid")["diagnostics"]


def test_validate_takes_the_bare_resource_or_a_resource_part(server) -> None:  # type: ignore[no-untyped-def]
    f, h = server.fhir, server.headers
    patient = {"resourceType": "Patient", "gender": "nonsense-" + uuid.uuid4().hex[:4]}
    bare = httpx.post(f"{f}/Patient/$validate", json=patient, headers=h).json()
    wrapped = httpx.post(
        f"{f}/Patient/$validate",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "resource", "resource": patient}],
        },
        headers=h,
    ).json()
    assert bare == wrapped and bare["issue"][0]["severity"] == "error"
    resp = httpx.post(
        f"{f}/Patient/$validate",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "resource", "valueString": "x"}],
        },
        headers=h,
    )
    assert "'resource'" in _outcome(resp, 400, "invalid")["diagnostics"]
