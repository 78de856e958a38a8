"""Parsing queries: names, modifiers, chains, _has, escapes, prefixes, result parameters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resources.errors import Invalid
from resources.search.parse import (
    HasLink,
    Include,
    Link,
    asks_explain,
    chain_types,
    parse_name,
    parse_query,
    split_escaped,
    split_prefix,
    unescape,
)


def test_names_with_modifiers_chains_and_has() -> None:
    assert parse_name("name:exact") == ((), (Link("name", "exact"),))
    assert parse_name("subject:Patient.name") == (
        (),
        (Link("subject", "Patient"), Link("name")),
    )
    assert parse_name("_has:Observation:patient:_has:AuditEvent:entity:agent") == (
        (HasLink("Observation", "patient"), HasLink("AuditEvent", "entity")),
        (Link("agent"),),
    )
    assert parse_name("_has:Observation:subject:code:text") == (
        (HasLink("Observation", "subject"),),
        (Link("code", "text"),),
    )
    for bad in ("_has:Observation", "_has:Observation:patient", "na me", ".name"):
        with pytest.raises(Invalid):
            parse_name(bad)


def test_commas_or_and_escapes() -> None:
    assert split_escaped("a,b,c", ",") == ["a", "b", "c"]
    assert split_escaped(r"a\,b,c", ",") == [r"a\,b", "c"]
    assert split_escaped(r"sys|co\|de", "|") == ["sys", r"co\|de"]
    assert split_escaped(r"a\\,b", ",") == [r"a\\", "b"]
    assert unescape(r"a\,b\|c\$d\\e") == r"a,b|c$d\e"


@given(st.lists(st.text(alphabet="ab,|$\\x", max_size=6), min_size=1, max_size=5))
def test_escape_round_trip(parts: list[str]) -> None:
    """Joining escaped values with ',' and splitting again gives the values back."""

    def esc(s: str) -> str:
        for ch in "\\,|$":
            s = s.replace(ch, "\\" + ch)
        return s

    joined = ",".join(esc(p) for p in parts)
    assert [unescape(p) for p in split_escaped(joined, ",")] == parts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ge2013-01-01", ("ge", "2013-01-01")),
        ("2013", ("eq", "2013")),
        ("lt-5", ("lt", "-5")),
        ("ap100", ("ap", "100")),
        ("eq", ("eq", "eq")),
        ("gte", ("eq", "gte")),
    ],
)
def test_prefixes(value: str, expected: tuple[str, str]) -> None:
    assert split_prefix(value) == expected


def test_result_parameters_are_not_criteria() -> None:
    parsed = parse_query(
        [
            ("name", "eve"),
            ("_count", "10"),
            ("_sort", "-date,_id"),
            ("_include", "Observation:subject:Patient"),
            ("_include:iterate", "Patient:organization"),
            ("_revinclude", "Provenance:target"),
            ("_total", "accurate"),
            ("_summary", "count"),
            ("_elements", "id,name"),
            ("_contained", "both"),
            ("_containedType", "contained"),
            ("_format", "json"),
            ("_pretty", "true"),
            ("gender", "male,female"),
        ]
    )
    assert [c.name for c in parsed.criteria] == ["name", "gender"]
    assert parsed.criteria[1].values == ("male", "female")
    r = parsed.result
    assert r.count == 10
    assert r.sort == [("date", True), ("_id", False)]
    assert r.include == [
        Include("Observation", "subject", "Patient"),
        Include("Patient", "organization", None, iterate=True),
    ]
    assert r.revinclude == [Include("Provenance", "target")]
    assert (r.total, r.summary, r.contained, r.contained_type) == (
        "accurate",
        "count",
        "both",
        "contained",
    )
    assert r.elements == ["id", "name"]
    assert (r.format, r.pretty) == ("json", "true")
    assert len(r.raw) == 12


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("_count", "-1"),
        ("_count", "ten"),
        ("_total", "all"),
        ("_summary", "maybe"),
        ("_include", "Observation"),
        ("_include:bogus", "Observation:subject"),
        ("_contained", "yes"),
    ],
)
def test_bad_result_parameters(name: str, value: str) -> None:
    with pytest.raises(Invalid):
        parse_query([(name, value)])


def test_type_and_bad_names() -> None:
    parsed = parse_query([("_type", "Patient,Group"), ("bad name", "x")])
    assert parsed.types == ["Patient", "Group"]
    assert [u.name for u in parsed.unsupported] == ["bad name"]


def test_control_parameters_are_parsed_once_and_kept_apart() -> None:
    """``_page`` and ``_explain`` are neither criteria nor result parameters: the parsed query
    carries them (the search runner reads them there), and ``pairs`` is the rest, in order."""
    parsed = parse_query(
        [("name", "x"), ("_page", "abc"), ("_explain", "true"), ("_count", "5"), ("gender", "f")]
    )
    assert [c.name for c in parsed.criteria] == ["name", "gender"]
    assert not parsed.unsupported
    assert parsed.page == "abc"
    assert parsed.explain is True
    assert parsed.control == [("_page", "abc"), ("_explain", "true")]
    assert parsed.pairs == [("name", "x"), ("_count", "5"), ("gender", "f")]
    assert parse_query([("_explain", "false")]).explain is False
    assert parse_query([("name", "x")]).page is None


def test_asks_explain_whatever_the_value() -> None:
    assert asks_explain([("_explain", "false")])
    assert not asks_explain([("name", "_explain")])


@pytest.mark.parametrize(
    ("name", "types"),
    [
        ("name", None),
        ("subject:Patient", None),
        ("subject.name", ()),
        ("subject:Patient.name", ("Patient",)),
        ("subject:Patient.name:exact", ("Patient",)),
        ("subject:Patient.organization:Organization.name", ("Patient", "Organization")),
        ("_has:Observation:patient:code", ("Observation",)),
        ("_has:Observation:patient:_has:AuditEvent:entity:agent", ("Observation", "AuditEvent")),
        ("_has:Observation:subject:has-member.value-quantity", ("Observation",)),
        ("_has:observation:patient:code", ()),
        ("_has:Observation", None),  # not a valid name: never applied
        ("subject.na me", None),
    ],
)
def test_chain_types_as_the_search_parses_them(name: str, types: tuple[str, ...] | None) -> None:
    assert chain_types(name) == types


def test_search_request_parses_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``SearchRequest`` parses its query when built; the compiler takes that parse as it is."""
    from resources.search import SearchEngine, compiler
    from resources.search.engine import SearchRequest

    req = SearchRequest(
        res_type="Patient", query=[("name", "x"), ("_explain", "true"), ("_page", "c")]
    )
    assert req.explain and req.parsed.page == "c"
    assert [c.name for c in req.parsed.criteria] == ["name"]
    with pytest.raises(Invalid):
        SearchRequest(res_type="Patient", query=[("_count", "many")])

    def fail(query: object) -> None:
        raise AssertionError("parsed a second time")

    monkeypatch.setattr(compiler, "parse_query", fail)
    compiled = SearchEngine().compile("Patient", req.parsed)
    assert compiled.criteria == 1 and not compiled.unsupported


@pytest.mark.parametrize("name", ["_page", "_explain"])
def test_conditional_match_refuses_control_parameters(name: str) -> None:
    from resources.search import SearchEngine

    with pytest.raises(Invalid, match=name):
        SearchEngine().match("Patient", [("name", "x"), (name, "true")])
