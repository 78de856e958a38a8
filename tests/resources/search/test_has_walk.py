"""Pages of a reverse chain (``_has``) read by walking the searched type in primary-key order
(``searching._pk_page``): the same resources in the same order as the general query, on both
databases, through the next links -- with other criteria, nested ``_has``, deleted resources on
either side, security filters, and a walk that gives up on sparse matches.

The expected patients are computed here from how the data was made.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from resources.search import SearchEngine
from resources.search import engine as searching
from resources.search.engine import SearchRequest, Security, run_search
from resources.storage.db import create_engine
from resources.storage.repository import Repository
from tests.servers import database_url

BASE = "http://walk.test/fhir"
N = 30
SYS = "urn:has-walk"


def _pid(i: int) -> str:
    return f"hw-p{i:02d}"


def _has_c(i: int) -> bool:  # patients with an Observation of code c (one of them has two)
    return i % 3 != 0


def _has_rare(i: int) -> bool:
    return i in (5, 17)


def _has_report(i: int) -> bool:  # a DiagnosticReport (code dr) names their code-c Observation
    return _has_c(i) and i % 4 == 1


DELETED_PATIENT = 4  # matches code c, deleted
DELETED_OBS = 8  # its only code-c Observation is deleted: no longer matches
DELETED_REPORT = 13  # its report is deleted: no longer matches the nested _has


def _obs(i: int, code: str, n: int = 0) -> tuple[str, dict]:
    return (
        f"hw-o{i:02d}-{code}-{n}",
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": SYS, "code": code}]},
            "subject": {"reference": f"Patient/{_pid(i)}"},
        },
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def repo(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(request.param))
    repo = Repository(create_engine(url), SearchEngine(base_urls=(BASE,)))
    for i in range(N):  # one per transaction: primary keys follow i
        patient = {"resourceType": "Patient", "gender": "female" if i % 2 else "male"}
        repo.run(lambda u, i=i, p=patient: u.create_many([(_pid(i), p)]))
    for i in range(N):
        items = [_obs(i, "other")]
        if _has_c(i):
            items += [_obs(i, "c")] + ([_obs(i, "c", 1)] if i == 1 else [])
        if _has_rare(i):
            items.append(_obs(i, "rare"))
        if _has_report(i):
            items.append(
                (
                    f"hw-r{i:02d}",
                    {
                        "resourceType": "DiagnosticReport",
                        "status": "final",
                        "code": {"coding": [{"system": SYS, "code": "dr"}]},
                        "result": [{"reference": f"Observation/{_obs(i, 'c')[0]}"}],
                    },
                )
            )
        repo.run(lambda u, items=items: u.create_many(items))
    repo.run(lambda u: u.delete("Patient", _pid(DELETED_PATIENT)))
    repo.run(lambda u: u.delete("Observation", _obs(DELETED_OBS, "c")[0]))
    repo.run(lambda u: u.delete("DiagnosticReport", f"hw-r{DELETED_REPORT:02d}"))
    yield repo
    repo.engine.dispose()
    cleanup()


def _expected(pred) -> list[str]:  # type: ignore[no-untyped-def]
    return [_pid(i) for i in range(N) if pred(i) and i != DELETED_PATIENT]


def c_matches(i: int) -> bool:
    return _has_c(i) and i != DELETED_OBS


def _force(monkeypatch, mode: str) -> None:  # type: ignore[no-untyped-def]
    """Any number of referring resources walks: testing rows by probes, or by the join."""
    monkeypatch.setattr(searching, "HAS_JOIN_MIN", 1)
    monkeypatch.setattr(searching, "HAS_WALK_MIN", 1 if mode == "probe" else 10**9)


def _general(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(searching, "HAS_JOIN_MIN", 10**9)
    monkeypatch.setattr(searching, "HAS_WALK_MIN", 10**9)


@pytest.fixture(params=["probe", "join"])
def walked(request, monkeypatch):  # type: ignore[no-untyped-def]
    """Forces the walk in each of its two ways and counts the pages it answered."""
    seen = {"pages": 0}
    real = searching._pk_page

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        rows = real(*args, **kw)
        seen["pages"] += rows is not None
        return rows

    monkeypatch.setattr(searching, "_pk_page", spy)
    _force(monkeypatch, request.param)
    return seen


def _pages(
    repo: Repository,
    query: list[tuple[str, str]],
    security: Security | None = None,
    res_type: str = "Patient",
) -> list[list[str]]:
    """The ids of every page, following next links."""
    out: list[list[str]] = []
    q: list[tuple[str, str]] | None = query
    while q is not None:
        req = SearchRequest(res_type=res_type, query=q, path=res_type, security=security)
        bundle = repo.read(lambda u, req=req: run_search(u, req, base=BASE))
        out.append(
            [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
        )
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        q = parse_qsl(urlsplit(nxt[0]).query) if nxt else None
        assert len(out) < 60
    return out


def _flat(pages: list[list[str]]) -> list[str]:
    return [rid for page in pages for rid in page]


HAS_C = ("_has:Observation:subject:code", f"{SYS}|c")


@pytest.mark.parametrize("count", ["1", "3", "7", "100"])
def test_walk_pages_every_match_once_in_order(repo, walked, count):  # type: ignore[no-untyped-def]
    pages = _pages(repo, [HAS_C, ("_count", count)])
    assert _flat(pages) == _expected(c_matches)
    assert all(len(p) == int(count) for p in pages[:-1])
    assert walked["pages"] == len(pages)


@pytest.mark.parametrize("mode", ["probe", "join"])
def test_walk_equals_the_general_query(repo, monkeypatch, mode):  # type: ignore[no-untyped-def]
    queries = [
        [HAS_C, ("_count", "4")],
        [HAS_C, ("gender", "female"), ("_count", "2")],
        [("gender", "female"), HAS_C, ("_count", "2"), ("_total", "accurate")],
        [("_has:Observation:subject:_has:DiagnosticReport:result:code", f"{SYS}|dr")],
        [HAS_C, ("_has:Observation:subject:code", f"{SYS}|rare"), ("_count", "1")],
        [HAS_C, ("_id", f"{_pid(1)},{_pid(3)},{_pid(7)},{_pid(8)}"), ("_count", "1")],
    ]
    for query in queries:
        _force(monkeypatch, mode)
        walk = _pages(repo, query)
        _general(monkeypatch)
        assert walk == _pages(repo, query), query


def test_combined_criteria(repo, walked):  # type: ignore[no-untyped-def]
    got = _flat(_pages(repo, [HAS_C, ("gender", "female"), ("_count", "2")]))
    assert got == _expected(lambda i: c_matches(i) and i % 2 == 1)
    got = _flat(_pages(repo, [HAS_C, ("_id", f"{_pid(1)},{_pid(3)},{_pid(7)},{_pid(8)}")]))
    assert got == [_pid(1), _pid(7)]
    assert walked["pages"] > 0


def test_nested_has(repo, walked):  # type: ignore[no-untyped-def]
    query = [("_has:Observation:subject:_has:DiagnosticReport:result:code", f"{SYS}|dr")]
    got = _flat(_pages(repo, [*query, ("_count", "2")]))
    assert got == _expected(lambda i: _has_report(i) and i != DELETED_REPORT)
    assert walked["pages"] > 0


def test_sparse_matches_leave_the_walk_to_the_general_query(repo, walked, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(searching, "PK_WALK_MAX", 8)  # gives up after reading 8 rows
    query = [("_has:Observation:subject:code", f"{SYS}|rare"), ("_count", "1")]
    assert _flat(_pages(repo, query)) == _expected(_has_rare)
    assert walked["pages"] == 0


def test_few_referring_resources_take_the_general_query(repo, monkeypatch):  # type: ignore[no-untyped-def]
    calls = {"walked": 0}
    real = searching._pk_page

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        rows = real(*args, **kw)
        calls["walked"] += rows is not None
        return rows

    monkeypatch.setattr(searching, "_pk_page", spy)
    query = [HAS_C, ("_count", "3")]
    monkeypatch.setattr(searching, "HAS_JOIN_MIN", 21)  # 20 live code-c Observations: too few
    assert _flat(_pages(repo, query)) == _expected(c_matches)
    assert calls["walked"] == 0
    monkeypatch.setattr(searching, "HAS_JOIN_MIN", 20)  # enough for the join
    pages = _pages(repo, query)
    assert _flat(pages) == _expected(c_matches)
    assert calls["walked"] == len(pages)
    monkeypatch.setattr(searching, "HAS_WALK_MIN", 20)  # enough for the probes
    assert _flat(_pages(repo, query)) == _expected(c_matches)
    assert calls["walked"] == 2 * len(pages)


def test_pages_mix_the_walk_and_the_general_query(repo, monkeypatch):  # type: ignore[no-untyped-def]
    """A cursor from either reader continues in the other."""
    got: list[str] = []
    q: list[tuple[str, str]] | None = [HAS_C, ("_count", "2")]
    modes = ["general", "join", "general", "probe", "join", "probe"]
    n = 0
    while q is not None:
        mode = modes[n % len(modes)]
        if mode == "general":
            _general(monkeypatch)
        else:
            _force(monkeypatch, mode)
        req = SearchRequest(res_type="Patient", query=q, path="Patient")
        bundle = repo.read(lambda u, req=req: run_search(u, req, base=BASE))
        got += [e["resource"]["id"] for e in bundle.get("entry", [])]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        q = parse_qsl(urlsplit(nxt[0]).query) if nxt else None
        n += 1
    assert got == _expected(c_matches)
    assert n > len(modes)


def test_security_filters(repo, walked):  # type: ignore[no-untyped-def]
    every = _expected(c_matches)
    readable = Security(types=frozenset({"Patient", "Observation"}))
    assert _flat(_pages(repo, [HAS_C, ("_count", "4")], readable)) == every
    assert walked["pages"] > 0
    hidden = Security(types=frozenset({"Observation"}))
    assert _flat(_pages(repo, [HAS_C, ("_count", "4")], hidden)) == []
    # A patient-context caller: only its own patient, whichever reader answers.
    own = Security(
        types=frozenset({"Patient", "Observation"}),
        compartment=("Patient", _pid(7)),
        free_types=frozenset(),
    )
    assert _flat(_pages(repo, [HAS_C, ("_count", "4")], own)) == [_pid(7)]
    other = Security(
        types=frozenset({"Patient", "Observation"}),
        compartment=("Patient", _pid(6)),  # no code-c Observation
        free_types=frozenset(),
    )
    assert _flat(_pages(repo, [HAS_C], other)) == []
