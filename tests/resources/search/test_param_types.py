"""The table of search-parameter types (``resources/search/param_types.py``): one entry per R4
type, each consistent with its index table; the indexer and the compiler dispatch through it."""

from __future__ import annotations

import pytest

from resources.search.clauses import PkSet, Target
from resources.search.definitions import PARAM_TYPES, SearchParameterRegistry
from resources.search.param_types import SEARCH_TYPES
from resources.search.tables import COLUMNS, INDEX_TABLES


def test_one_entry_per_r4_type() -> None:
    assert set(SEARCH_TYPES) == PARAM_TYPES
    assert all(name == t.name for name, t in SEARCH_TYPES.items())


def test_every_index_table_belongs_to_one_type() -> None:
    tables = [t.table for t in SEARCH_TYPES.values() if t.table is not None]
    assert len(tables) == len(set(tables))
    assert set(tables) <= set(INDEX_TABLES)


@pytest.mark.parametrize("name", sorted(SEARCH_TYPES))
def test_entry_is_consistent(name: str) -> None:
    stype = SEARCH_TYPES[name]
    assert "missing" in stype.modifiers
    assert (stype.table is None) == (stype.index is None)
    if stype.sort is not None:
        assert stype.table is not None
        assert all(col in COLUMNS[stype.table] for col in stype.sort)
    if stype.sort_walk:
        assert stype.table is not None and stype.sort == ("low", "high")


@pytest.mark.parametrize("name", ["string", "token", "date", "number", "quantity", "uri"])
def test_index_fills_its_own_table(registry: SearchParameterRegistry, name: str) -> None:
    """Each type's index function writes rows of its table only (checked with one parameter of
    the type on a real example's values)."""
    from resources.search.indexer import Indexer

    indexer = Indexer(registry)
    samples = {
        "string": {"resourceType": "Patient", "name": [{"family": "Müller"}]},
        "token": {"resourceType": "Patient", "gender": "female"},
        "date": {"resourceType": "Patient", "birthDate": "1970-01-01"},
        "number": {"resourceType": "RiskAssessment", "prediction": [{"probabilityDecimal": 0.5}]},
        "quantity": {
            "resourceType": "Observation",
            "valueQuantity": {"value": 5, "system": "http://unitsofmeasure.org", "code": "mg"},
        },
        "uri": {"resourceType": "ValueSet", "url": "http://example.org/vs"},
    }
    resource = samples[name]
    wanted = SEARCH_TYPES[name].table
    entries = [e for e in indexer.plan(resource["resourceType"]) if e.param.type == name]
    assert entries
    rows: list = []
    for e in entries:
        values = e.plan(resource)
        if values:
            e.index(e.ident, values, resource, rows)
    assert rows
    assert {table for table, _ in rows} == {wanted}


def test_compiler_dispatches_through_the_table(
    registry: SearchParameterRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A criterion on a parameter compiles with its type's ``clause``: replacing the entry
    replaces the behaviour (one entry is all a type needs)."""
    import dataclasses

    import sqlalchemy as sa

    from resources.search.compiler import Compiler
    from resources.storage.schema import resource

    seen: list[tuple[str, str | None, tuple[str, ...]]] = []

    def clause(target: Target, modifier: str | None, values, ctx) -> PkSet:  # type: ignore[no-untyped-def]
        seen.append((target.code, modifier, tuple(values)))
        return PkSet(sa.select(resource.c.pk))

    patched = dataclasses.replace(
        SEARCH_TYPES["string"], clause=clause, modifiers=frozenset({"missing", "shout"})
    )
    monkeypatch.setitem(SEARCH_TYPES, "string", patched)
    compiled = Compiler(registry).compile("Patient", [("family:shout", "x,y")])
    assert not compiled.unsupported
    assert seen == [("family", "shout", ("x", "y"))]
