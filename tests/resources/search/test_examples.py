"""Every R4 example is found by its own ``_id`` and by each of its own values, for every token,
reference, string, date, uri, number and quantity parameter of its type, on SQLite and
PostgreSQL. The values come from fhirpathpy evaluating the definitions (``oracle.py``), not from
the indexer; the queries are written from them the way a client would.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa

from resources.search import SearchEngine
from resources.search.definitions import SearchParameterRegistry
from tests.resources.search import oracle
from tests.resources.search.conftest import BASE, Loaded

Query = tuple[str, str, str]  # (type, name, value)


def esc(text: str) -> str:
    for ch in "\\,|$":
        text = text.replace(ch, "\\" + ch)
    return text


def _s(v: object) -> str | None:
    return v if isinstance(v, str) and v else None


def token_queries(typ: str | None, value: object) -> list[tuple[str, str]]:
    """(modifier, value) pairs a client would use to find ``value``."""
    out: list[tuple[str, str]] = []

    def coding(c: dict) -> None:
        code, system = _s(c.get("code")), _s(c.get("system"))
        if code:
            out.append(("", esc(code)))
            out.append(("", f"{esc(system or '')}|{esc(code)}"))
        if system:
            out.append(("", f"{esc(system)}|"))

    if isinstance(value, bool):
        out.append(("", "true" if value else "false"))
    elif isinstance(value, str):
        out.append(("", esc(value)))
    elif isinstance(value, dict):
        if typ == "CodeableConcept":
            for c in value.get("coding") or ():
                coding(c)
            if _s(value.get("text")):
                out.append((":text", esc(value["text"])))
        elif typ == "Coding":
            coding(value)
        elif typ in ("Identifier", "ContactPoint"):
            v, system = _s(value.get("value")), _s(value.get("system"))
            if v:
                out.append(("", esc(v)))
                if typ == "Identifier":
                    out.append(("", f"{esc(system or '')}|{esc(v)}"))
    return out


def string_queries(typ: str | None, value: object) -> list[tuple[str, str]]:
    strings: list[str] = []
    if isinstance(value, str):
        strings.append(value)
    elif isinstance(value, dict) and typ in ("HumanName", "Address"):
        for k in ("family", "given", "prefix", "suffix", "text", "line", "city", "district"):
            v = value.get(k)
            strings.extend(
                [v] if isinstance(v, str) else [x for x in v or () if isinstance(x, str)]
            )
        for k in ("state", "postalCode", "country"):
            if isinstance(value.get(k), str):
                strings.append(value[k])
    out = []
    for s in strings:
        if s.strip():
            out.append(("", esc(s)))
            out.append((":exact", esc(s)))
            out.append((":contains", esc(s.strip()[1:30])))
    return out


def reference_queries(typ: str | None, value: object) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(value, str):  # canonical / uri (a "#id" canonical is contained: not indexed)
        if value.startswith("#"):
            return out
        out.append(("", esc(value)))
        if "|" in value and typ == "canonical":
            out.append(("", esc(value.split("|", 1)[0])))
        return out
    if not isinstance(value, dict) or "resourceType" in value:
        return out
    ref = _s(value.get("reference"))
    if ref and not ref.startswith("#"):
        if ref.startswith(BASE + "/"):
            ref = ref[len(BASE) + 1 :]
        if "://" in ref or ref.startswith("urn:"):
            out.append(("", esc(ref.split("/_history/")[0])))
        else:
            parts = ref.split("/")
            out.append(("", esc("/".join(parts[:2]))))
            out.append(("", esc(parts[1])))
            out.append((":" + parts[0], esc(parts[1])))
    ident = value.get("identifier")
    if isinstance(ident, dict) and _s(ident.get("value")):
        system = ident.get("system") or ""
        out.append((":identifier", f"{esc(system)}|{esc(ident['value'])}"))
    return out


def date_queries(typ: str | None, value: object) -> list[tuple[str, str]]:
    if isinstance(value, str) and typ in ("date", "dateTime", "instant"):
        return [("", value), ("", "eq" + value), ("", "ap" + value)]
    if isinstance(value, dict) and typ == "Period":
        out = []
        if _s(value.get("start")):
            out.append(("", "ge" + value["start"]))
        if _s(value.get("end")):
            out.append(("", "le" + value["end"]))
        return out
    return []


def uri_queries(typ: str | None, value: object) -> list[tuple[str, str]]:
    if isinstance(value, str) and value:
        return [("", esc(value)), (":below", esc(value)), (":above", esc(value))]
    return []


def number_queries(typ: str | None, value: object) -> list[tuple[str, str]]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [("", repr(value)), ("", f"ge{value!r}"), ("", f"le{value!r}")]
    return []


def quantity_queries(typ: str | None, value: object) -> list[tuple[str, str]]:
    if not isinstance(value, dict) or typ not in ("Quantity", "Age", "Duration", "Money"):
        return []
    v = value.get("value")
    if not isinstance(v, int | float) or value.get("comparator"):
        return []
    out = [("", repr(v))]
    code = value.get("currency") if typ == "Money" else value.get("code")
    system = "urn:iso:std:iso:4217" if typ == "Money" else value.get("system")
    if code:
        out.append(("", f"{v!r}||{esc(code)}"))
        if system:
            out.append(("", f"{v!r}|{esc(system)}|{esc(code)}"))
    return out


QUERIES = {
    "token": token_queries,
    "string": string_queries,
    "reference": reference_queries,
    "date": date_queries,
    "uri": uri_queries,
    "number": number_queries,
    "quantity": quantity_queries,
}
SKIPPED = {"_id", "_lastUpdated"}


def expected_matches(
    registry: SearchParameterRegistry, examples: list[dict], db: Loaded
) -> dict[Query, set[int]]:
    wanted: dict[Query, set[int]] = defaultdict(set)
    for res in examples:
        res_type = res["resourceType"]
        pk = db.pks[(res_type, res["id"])]
        wanted[(res_type, "_id", esc(res["id"]))].add(pk)
        for code, param in registry.for_type(res_type).items():
            make = QUERIES.get(param.type)
            if make is None or not param.expression or code in SKIPPED:
                continue
            for typ, value in oracle.evaluate(param.expression, res):
                for modifier, text in make(typ, value):
                    wanted[(res_type, code + modifier, text)].add(pk)
    return wanted


def test_each_example_is_found_by_its_own_values(
    registry: SearchParameterRegistry,
    search: SearchEngine,
    examples: list[dict],
    example_db: Loaded,
) -> None:
    wanted = expected_matches(registry, examples, example_db)
    by_type: dict[str, set[str]] = defaultdict(set)
    for res_type, name, _value in wanted:
        by_type[res_type].add(name.split(":")[0])
    failures = []
    with example_db.engine.connect() as conn:
        for (res_type, name, value), pks in wanted.items():
            compiled = search.compile(res_type, [(name, value)])
            assert not compiled.unsupported, (res_type, name, compiled.unsupported)
            found = {r[0] for r in conn.execute(compiled.select)}
            if not pks <= found:
                failures.append((res_type, name, value))
    assert not failures, f"{len(failures)} of {len(wanted)} queries missed: {failures[:10]}"
    # The check is broad: thousands of distinct queries over nearly every resource type.
    assert len(wanted) > 8000
    assert len(by_type) > 140


def test_searches_do_not_match_everything(search: SearchEngine, example_db: Loaded) -> None:
    """A few negative controls on the same data."""
    checks = [
        ("Patient", [("name", "zzzz-nobody")], 0),
        ("Patient", [("_id", "example"), ("gender", "female")], 0),
        ("Observation", [("code", "http://loinc.org|29463-7")], 1),
        ("Observation", [("code", "http://snomed.info/sct|29463-7")], 0),
        ("Patient", [("birthdate", "1974-12-25"), ("gender", "male")], 2),
    ]
    with example_db.engine.connect() as conn:
        for res_type, query, count in checks:
            compiled = search.compile(res_type, query)
            n = conn.execute(sa.select(sa.func.count()).select_from(compiled.select.subquery()))
            assert n.scalar_one() == count, query
