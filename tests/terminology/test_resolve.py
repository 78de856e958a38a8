"""terminology/resolve.py and builtin.py: canonical resolution, stored content first, versions,
compiled once per stored version."""

from __future__ import annotations

import pytest

from terminology.builtin import DATA, Builtin
from terminology.errors import UnknownCanonical
from terminology.resolve import Resolver, split_canonical
from tests.terminology.content import Stored, code_system

GENDER_CS = "http://hl7.org/fhir/administrative-gender"


def test_split_canonical() -> None:
    assert split_canonical("http://x/cs|2") == ("http://x/cs", "2")
    assert split_canonical("http://x/cs") == ("http://x/cs", None)
    assert split_canonical("http://x/cs|2", "3") == ("http://x/cs", "3")


def test_builtin_content_counts() -> None:
    r4 = Builtin(DATA)  # the R4 definitions alone
    assert len(r4.all("CodeSystem")) == 496
    assert len(r4.all("ValueSet")) == 673
    b = Builtin()  # and Hearth's formulary: the RxNorm fragment, the drug classes, the ValueSet
    assert len(b.all("CodeSystem")) == 498
    assert len(b.all("ValueSet")) == 674
    assert b.get("ValueSet", "http://hearth.local/fhir/ValueSet/formulary") is not None
    assert b.get("CodeSystem", GENDER_CS, "4.0.1")["name"] == "AdministrativeGender"
    assert b.get("CodeSystem", GENDER_CS, "3.0.0") is None


def test_stored_wins_over_builtin_and_versions_resolve() -> None:
    mine = {
        "resourceType": "CodeSystem",
        "url": GENDER_CS,
        "version": "local-1",
        "status": "active",
        "content": "complete",
        "concept": [{"code": "x"}],
        "meta": {"versionId": "1", "lastUpdated": "2026-01-01T00:00:00Z"},
    }
    r = Resolver(Stored(mine))
    assert r.require_code_system(GENDER_CS).get("x") is not None
    assert r.require_code_system(f"{GENDER_CS}|4.0.1").get("male") is not None
    assert r.require_code_system(GENDER_CS, "local-1").get("male") is None
    with pytest.raises(UnknownCanonical, match=r"\|9"):
        r.require("CodeSystem", f"{GENDER_CS}|9")


def test_newest_of_several_stored_with_one_url() -> None:
    old = code_system(meta={"versionId": "1", "lastUpdated": "2026-01-01T00:00:00Z"}, id="a")
    new = code_system(
        meta={"versionId": "1", "lastUpdated": "2026-02-01T00:00:00Z"},
        id="b",
        concept=[{"code": "only-new"}],
    )
    r = Resolver(Stored(old, new))
    assert list(r.require_code_system(old["url"]).concepts) == ["only-new"]


def test_compiled_once_per_stored_version() -> None:
    stored = code_system(id="c", meta={"versionId": "1", "lastUpdated": "2026-01-01T00:00:00Z"})
    r = Resolver(Stored(stored))
    first = r.require_code_system(stored["url"])
    assert r.require_code_system(stored["url"]) is first
    stored["meta"] = {"versionId": "2", "lastUpdated": "2026-01-02T00:00:00Z"}
    stored["concept"] = [{"code": "changed"}]
    second = r.require_code_system(stored["url"])
    assert second is not first and list(second.concepts) == ["changed"]
    assert r.require_code_system(GENDER_CS) is r.require_code_system(GENDER_CS)


def test_unknown() -> None:
    with pytest.raises(UnknownCanonical, match="no ValueSet"):
        Resolver().require("ValueSet", "http://example.org/none")


def test_probe_fetches_content_only_for_a_new_version() -> None:
    stored = code_system(id="p", meta={"versionId": "1", "lastUpdated": "2026-01-01T00:00:00Z"})
    find = Stored(stored)
    fetched: list[tuple] = []

    def counting_find(res_type, query):  # type: ignore[no-untyped-def]
        fetched.append(tuple(query))
        return find(res_type, query)

    def probe(res_type, query):  # type: ignore[no-untyped-def]
        m = stored["meta"]
        return [(r["id"], m["versionId"], m["lastUpdated"]) for r in find(res_type, query)]

    r = Resolver(counting_find, probe=probe)
    first = r.require_code_system(stored["url"])
    assert r.require_code_system(stored["url"]) is first
    assert fetched == [(("_id", "p"),)]  # the url lookups went to the probe
    stored["meta"] = {"versionId": "2", "lastUpdated": "2026-01-02T00:00:00Z"}
    stored["concept"] = [{"code": "v2"}]
    assert list(r.require_code_system(stored["url"]).concepts) == ["v2"]
    assert len(fetched) == 2
