"""A request is parsed once into a typed value that is passed down (issue 15): a create's body
type is settled once (``ResourceBody``) and validated in one pass; a batch/transaction Bundle's
entries are parsed once (``parse_bundle``) and the same entries are run."""

from __future__ import annotations

import pytest

from resources import validation
from resources.errors import Invalid
from resources.search import SearchEngine
from resources.storage import repository, transaction
from resources.storage.db import create_engine
from resources.storage.repository import Repository
from resources.validation import ResourceBody
from tests.servers import database_url

BASE = "http://once.test/fhir"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):  # type: ignore[no-untyped-def]
    url, cleanup = database_url("sqlite", tmp_path_factory.mktemp("sqlite"))
    found = Repository(create_engine(url), SearchEngine(base_urls=(BASE,)))
    yield found
    found.engine.dispose()
    cleanup()


def _counting(monkeypatch, module, name: str) -> list[int]:  # type: ignore[no-untyped-def]
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


PATIENT = {"resourceType": "Patient", "name": [{"family": "Once"}], "gender": "female"}


def test_a_typed_create_is_not_type_checked_again_and_validated_once(repo, monkeypatch):
    typed = _counting(monkeypatch, repository, "resource_body")
    validated = _counting(monkeypatch, repository, "validate")
    result = repo.run(lambda u: u.create(ResourceBody("Patient", dict(PATIENT))))
    assert result.status == "created"
    assert (len(typed), len(validated)) == (0, 1)


def test_a_plain_dict_create_is_type_checked_once(repo, monkeypatch):
    typed = _counting(monkeypatch, repository, "resource_body")
    validated = _counting(monkeypatch, repository, "validate")
    repo.run(lambda u: u.create(dict(PATIENT)))
    assert (len(typed), len(validated)) == (1, 1)
    with pytest.raises(Invalid, match="Basic2 is not valid FHIR R4: resourceType: 'Basic2'"):
        repo.run(lambda u: u.create({"resourceType": "Basic2"}))


def test_validate_resource_is_the_type_check_then_the_one_pass():
    assert validation.validate_resource(dict(PATIENT)) == validation.validate(
        ResourceBody("Patient", dict(PATIENT))
    )
    (issue,) = validation.validate_resource({"resourceType": "Nope"})
    assert issue.code == "invalid"
    assert validation.resource_body({"resourceType": "Nope"}) == issue


def _bundle(kind: str) -> dict:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {"resource": dict(PATIENT), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient?family=Once"}},
        ],
    }


def _search(unit, res_type, query, base):  # type: ignore[no-untyped-def]
    return {"resourceType": "Bundle", "type": "searchset", "total": 0}


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_a_bundle_is_parsed_once_and_its_entries_run(repo, monkeypatch, kind):
    parsed_entries = _counting(monkeypatch, transaction, "parse_entry")
    parsed = transaction.parse_bundle(_bundle(kind))
    assert parsed is not None and len(parsed_entries) == 2
    out = transaction.process(repo, parsed, base=BASE, search=_search, status_of=lambda exc: 400)
    assert len(parsed_entries) == 2  # not parsed again
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses == ["201 Created", "200 OK"]
    assert parsed.parsed()[0].response["response"]["status"] == "201 Created"


def test_a_batch_entry_that_does_not_parse_is_its_own_response(repo):
    body = _bundle("batch")
    body["entry"].insert(0, {"request": {"method": "FETCH", "url": "Patient"}})
    parsed = transaction.parse_bundle(body)
    assert parsed is not None and isinstance(parsed.entries[0], Invalid)
    out = transaction.process(repo, parsed, base=BASE, search=_search, status_of=lambda exc: 400)
    assert [e["response"]["status"] for e in out["entry"]] == [
        "400 Bad Request",
        "201 Created",
        "200 OK",
    ]


def test_not_a_bundle_is_left_to_the_interaction():
    assert transaction.parse_bundle({"resourceType": "Patient"}) is None
    assert transaction.parse_bundle([1]) is None
    with pytest.raises(Invalid, match="entry 0 has no request"):
        transaction.parse_bundle({"resourceType": "Bundle", "type": "transaction", "entry": [{}]})


def test_validation_has_one_entry_point():
    """Only ``resources.validation`` (and its parts, among themselves) import the
    ``validation_*`` modules (docs/architecture.md, Validation)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    packages = ("fhir_server", "resources", "workflow", "inference", "mappings", "terminology")
    outside = [
        str(path.relative_to(root))
        for package in packages
        for path in (root / package).rglob("*.py")
        if not path.name.startswith("validation")
        and "resources.validation_" in path.read_text(encoding="utf-8")
    ]
    assert outside == []
