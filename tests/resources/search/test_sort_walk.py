"""Sorted pages read by walking the sort parameter's index (``searching._index_page``): the same
resources in the same order as the general query, on both databases, through the next links.

The walk is checked against an order computed here from the resources (a resource's value is
its latest end for ``-date`` and its earliest start for ``date``; resources without a value
last; creation order breaks ties) and against the general query with the walk switched off.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qsl, urlsplit

import pytest

from resources.search import SearchEngine
from resources.search import engine as searching
from resources.search.engine import SearchRequest, run_search
from resources.storage.db import create_engine
from resources.storage.repository import Repository
from tests.servers import database_url

BASE = "http://walk.test/fhir"

# (effective, code): several resources share an instant, one Period outlasts later instants,
# two have no date at all, one has a date only as a partial year.
DATES = [
    ("2020-03-01T10:00:00Z", "a"),
    ("2021-01-01T00:00:00Z", "b"),
    ({"start": "2019-01-01T00:00:00Z", "end": "2022-06-01T00:00:00Z"}, "a"),
    ("2021-01-01T00:00:00Z", "a"),
    (None, "b"),
    ("2018", "a"),
    ("2021-01-01T00:00:00Z", "b"),
    ({"start": "2023-01-01T00:00:00Z", "end": "2023-01-02T00:00:00Z"}, "a"),
    ("2020-03-01T10:00:00Z", "a"),
    (None, "a"),
    ("2017-05-05", "b"),
    ("2021-01-01T00:00:00Z", "a"),
]
# Each value's (earliest start, latest end) as sortable strings, by hand from the values above.
RANGES = {
    "2020-03-01T10:00:00Z": ("2020-03-01T10:00:00", "2020-03-01T10:00:00"),
    "2021-01-01T00:00:00Z": ("2021-01-01T00:00:00", "2021-01-01T00:00:00"),
    "2018": ("2018-01-01T00:00:00", "2018-12-31T23:59:59"),
    "2017-05-05": ("2017-05-05T00:00:00", "2017-05-05T23:59:59"),
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def loaded(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(request.param))
    repo = Repository(create_engine(url), SearchEngine(base_urls=(BASE,)))
    tag = uuid.uuid4().hex[:8]
    # One per transaction, so primary keys follow the list order.
    for n in range(len(DATES)):
        repo.run(lambda u, n=n: u.create_many([(f"walk-{n:02d}", _body(n, tag))]))
    yield repo, tag
    repo.engine.dispose()
    cleanup()


def _body(n: int, tag: str) -> dict:
    effective, code = DATES[n]
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": f"urn:walk:{tag}", "code": code}]},
    }
    if isinstance(effective, dict):
        obs["effectivePeriod"] = effective
    elif effective is not None:
        obs["effectiveDateTime"] = effective
    return obs


def _expected(desc: bool, code: str | None = None) -> list[str]:
    keyed, missing = [], []
    for n, (effective, c) in enumerate(DATES):
        if code is not None and c != code:
            continue
        rid = f"walk-{n:02d}"
        if effective is None:
            missing.append(rid)
            continue
        if isinstance(effective, dict):
            low, high = effective["start"][:19], effective["end"][:19]
        else:
            low, high = RANGES[effective]
        keyed.append((high if desc else low, n, rid))
    keyed.sort(key=lambda k: (k[0], -k[1]) if desc else (k[0], k[1]), reverse=desc)
    return [rid for _, _, rid in keyed] + missing


def _walk(repo: Repository, query: list[tuple[str, str]]) -> list[str]:
    """Every page, following next links; the ids in order."""
    out: list[str] = []
    q: list[tuple[str, str]] | None = query
    pages = 0
    while q is not None:
        req = SearchRequest(res_type="Observation", query=q, path="Observation")
        bundle = repo.read(lambda u, req=req: run_search(u, req, base=BASE))
        out += [e["resource"]["id"] for e in bundle.get("entry", [])]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        q = parse_qsl(urlsplit(nxt[0]).query) if nxt else None
        pages += 1
        assert pages < 50
    return out


@pytest.fixture
def walks(monkeypatch):  # type: ignore[no-untyped-def]
    """Counts the pages the index walk answered."""
    seen = {"walked": 0}
    real = searching._index_page

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        rows = real(*args, **kw)
        seen["walked"] += rows is not None
        return rows

    monkeypatch.setattr(searching, "_index_page", spy)
    return seen


@pytest.mark.parametrize("sort", ["-date", "date"])
@pytest.mark.parametrize("count", ["1", "3", "5", "20"])
def test_walk_matches_the_expected_order(loaded, walks, monkeypatch, sort, count):  # type: ignore[no-untyped-def]
    repo, tag = loaded
    query = [("code", f"urn:walk:{tag}|a,urn:walk:{tag}|b"), ("_sort", sort), ("_count", count)]
    monkeypatch.setattr(searching, "INDEX_WALK_MIN", 1)
    got = _walk(repo, query)
    assert got == _expected(sort.startswith("-"))
    if int(count) < len(DATES) - 2:
        assert walks["walked"] > 0  # the pages before the undated tail came from the walk


@pytest.mark.parametrize("sort", ["-date", "date"])
def test_walk_with_a_criterion_equals_the_general_query(loaded, monkeypatch, sort):  # type: ignore[no-untyped-def]
    repo, tag = loaded
    query = [("code", f"urn:walk:{tag}|a"), ("_sort", sort), ("_count", "2")]
    monkeypatch.setattr(searching, "INDEX_WALK_MIN", 1)
    walked = _walk(repo, query)
    monkeypatch.setattr(searching, "INDEX_WALK_MIN", 10**9)  # the general query only
    general = _walk(repo, query)
    assert walked == general == _expected(sort.startswith("-"), "a")


def test_without_criteria_the_walk_answers_and_pages(loaded, walks):  # type: ignore[no-untyped-def]
    repo, tag = loaded
    assert _walk(repo, [("_sort", "-date"), ("_count", "2")]) == _expected(True)
    assert walks["walked"] > 0


def test_few_matches_take_the_general_query(loaded, walks):  # type: ignore[no-untyped-def]
    repo, tag = loaded
    got = _walk(repo, [("code", f"urn:walk:{tag}|b"), ("_sort", "-date")])
    assert got == _expected(True, "b")
    assert walks["walked"] == 0  # fewer than INDEX_WALK_MIN matches: sorted after matching


def test_a_deleted_resource_leaves_the_walk(loaded, monkeypatch):  # type: ignore[no-untyped-def]
    repo, tag = loaded
    monkeypatch.setattr(searching, "INDEX_WALK_MIN", 1)
    query = [("code", f"urn:walk:{tag}|a"), ("_sort", "-date"), ("_count", "3")]
    before = _walk(repo, query)
    repo.run(lambda u: u.delete("Observation", before[0]))
    try:
        assert _walk(repo, query) == before[1:]
    finally:
        n = int(before[0][5:])
        repo.run(lambda u: u.update("Observation", before[0], {**_body(n, tag), "id": before[0]}))


# Goals with several target due dates: several index rows per resource; the resource sorts by
# its latest (descending) or earliest (ascending) and appears once.
GOALS = [
    ["2021-05-01", "2019-01-01"],
    ["2020-01-01"],
    ["2018-01-01", "2022-01-01", "2020-06-01"],
    ["2021-05-01"],
    ["2019-06-01", "2019-06-01"],
]


@pytest.mark.parametrize("sort", ["-target-date", "target-date"])
def test_several_values_per_resource(loaded, walks, monkeypatch, sort):  # type: ignore[no-untyped-def]
    repo, tag = loaded
    desc = sort.startswith("-")
    prefix = "goal-desc-" if desc else "goal-asc-"
    for n, dues in enumerate(GOALS):
        goal = {
            "resourceType": "Goal",
            "lifecycleStatus": "active",
            "description": {"text": f"goal {n}"},
            "subject": {"reference": "Patient/walk"},
            "target": [{"dueDate": d} for d in dues],
            "identifier": [{"system": f"urn:walk:{tag}", "value": f"{n}"}],
        }
        rid = f"{prefix}{n}"
        repo.run(lambda u, rid=rid, goal=goal: u.update("Goal", rid, {**goal, "id": rid}))
    keyed = [((max(d) if desc else min(d)), n) for n, d in enumerate(GOALS)]
    keyed.sort(key=lambda k: (k[0], -k[1]) if desc else k, reverse=desc)
    expected = [f"{prefix}{n}" for _, n in keyed]
    monkeypatch.setattr(searching, "INDEX_WALK_MIN", 1)
    query = [("identifier", f"urn:walk:{tag}|"), ("_sort", sort), ("_count", "2")]
    got = []
    q: list[tuple[str, str]] | None = query
    while q is not None:
        req = SearchRequest(res_type="Goal", query=q, path="Goal")
        bundle = repo.read(lambda u, req=req: run_search(u, req, base=BASE))
        got += [e["resource"]["id"] for e in bundle.get("entry", [])]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        q = parse_qsl(urlsplit(nxt[0]).query) if nxt else None
    assert [g for g in got if g.startswith(prefix)] == expected
    assert walks["walked"] > 0
