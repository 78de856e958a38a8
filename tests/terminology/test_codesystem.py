"""terminology/codesystem.py: concepts, the hierarchy (nesting and parent/child properties),
subsumption, case sensitivity, inactive concepts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resources.errors import Invalid
from terminology import Terminology
from terminology.codesystem import CodeSystem
from tests.terminology.content import CS_URL, code_system


@pytest.fixture(scope="module")
def cs() -> CodeSystem:
    return CodeSystem(code_system())


def test_concepts_by_code(cs: CodeSystem) -> None:
    assert len(cs) == 9
    melanoma = cs.require("melanoma")
    assert melanoma.display == "Malignant melanoma"
    assert melanoma.property_values("region") == ["skin"]
    assert cs.get("Melanoma") is None  # case-sensitive
    with pytest.raises(Invalid, match="not defined"):
        cs.require("nope")


def test_hierarchy_from_nesting_and_parent_properties(cs: CodeSystem) -> None:
    assert cs.has_hierarchy
    assert cs.require("skin").parents == ["finding"]
    assert sorted(cs.require("metastasis").parents) == ["melanoma", "nodule"]
    assert set(cs.descendants("skin")) == {"melanoma", "naevus", "metastasis", "old-skin"}
    assert set(cs.descendants("lung")) == {"nodule", "pneumonia", "metastasis"}
    assert set(cs.ancestors("metastasis")) == {"melanoma", "nodule", "skin", "lung", "finding"}
    assert cs.descendants("pneumonia") == []


def test_child_property_links_too() -> None:
    cs = CodeSystem(
        {
            "resourceType": "CodeSystem",
            "url": "urn:x",
            "content": "complete",
            "concept": [
                {"code": "a", "property": [{"code": "child", "valueCode": "b"}]},
                {"code": "b"},
            ],
        }
    )
    assert cs.ancestors("b") == ["a"]


@pytest.mark.parametrize(
    ("a", "b", "outcome"),
    [
        ("skin", "skin", "equivalent"),
        ("finding", "metastasis", "subsumes"),
        ("metastasis", "lung", "subsumed-by"),
        ("skin", "pneumonia", "not-subsumed"),
        ("naevus", "melanoma", "not-subsumed"),
    ],
)
def test_subsumes(cs: CodeSystem, a: str, b: str, outcome: str) -> None:
    assert cs.subsumes(a, b) == outcome


def test_inactive_and_abstract(cs: CodeSystem) -> None:
    assert cs.require("old-skin").inactive
    assert not cs.require("skin").inactive


def test_case_insensitive_system() -> None:
    cs = CodeSystem(code_system(caseSensitive=False))
    assert cs.require("MELANOMA").code == "melanoma"


def test_builtin_r4_hierarchy() -> None:
    """The shipped R4 IssueType has a three-level hierarchy."""
    cs = Terminology().resolver.require_code_system("http://hl7.org/fhir/issue-type")
    assert cs.subsumes("invalid", "required") == "subsumes"
    assert "too-costly" in cs.descendants("processing")
    assert cs.ancestors("login") == ["security"]
    assert cs.url != CS_URL


@st.composite
def hierarchies(draw: st.DrawFn) -> tuple[dict, list[set[int]]]:
    """A CodeSystem whose concepts each take parents among the earlier ones (a DAG), given by
    ``parent`` properties or, for a first parent, by nesting under it."""
    n = draw(st.integers(1, 12))
    parents = [draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set() for i in range(n)]
    nest = draw(st.booleans())
    concepts: dict[int, dict] = {}
    top: list[dict] = []
    for i in range(n):
        ps = sorted(parents[i])
        c: dict = {"code": f"c{i}"}
        if nest and ps:
            concepts[ps[0]].setdefault("concept", []).append(c)
            ps = ps[1:]
        else:
            top.append(c)
        if ps:
            c["property"] = [{"code": "parent", "valueCode": f"c{p}"} for p in ps]
        concepts[i] = c
    resource = {"resourceType": "CodeSystem", "url": "urn:h", "content": "complete", "concept": top}
    return resource, parents


@settings(max_examples=150, deadline=None)
@given(hierarchies())
def test_hierarchy_properties(drawn: tuple[dict, list[set[int]]]) -> None:
    from terminology.expand import filter_codes

    resource, parents = drawn
    cs = CodeSystem(resource)
    codes = [c.code for c in cs]
    for i in range(len(parents)):  # ancestors = the transitive closure of the drawn parents
        closure, todo = set(), list(parents[i])
        while todo:
            p = todo.pop()
            if p not in closure:
                closure.add(p)
                todo.extend(parents[p])
        assert set(cs.ancestors(f"c{i}")) == {f"c{p}" for p in closure}
    for a in codes:
        below = set(cs.descendants(a))
        assert a not in below
        assert filter_codes(cs, {"property": "concept", "op": "is-a", "value": a}) == below | {a}
        assert filter_codes(cs, {"property": "concept", "op": "is-not-a", "value": a}) == (
            set(codes) - below - {a}
        )
        for b in codes:
            assert (b in below) == (a in cs.ancestors(b))
            outcome = cs.subsumes(a, b)
            if a == b:
                assert outcome == "equivalent"
            elif b in below:
                assert outcome == "subsumes" and cs.subsumes(b, a) == "subsumed-by"
            elif a in cs.descendants(b):
                assert outcome == "subsumed-by"
            else:
                assert outcome == "not-subsumed"
