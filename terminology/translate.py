"""ConceptMap $translate (FHIR R4 conceptmap-operations.html#translate, conceptmap.html).

A code in a source system is looked up in each ``group`` whose ``source`` is that system (and
whose ``target`` is the requested target system, if any); every ``element.target`` of a matching
element is a match with its ``equivalence``. With no element, the group's ``unmapped`` applies:
``provided`` (the same code in the target system, ``equal``), ``fixed`` (the given code,
``equivalent``) or ``other-map`` (the named ConceptMap, resolved by the caller). ``reverse``
translates from the target side back to the source. The result is true when some match's
equivalence is neither ``unmatched`` nor ``disjoint``.
``dependsOn`` / ``product`` conditions are reported with the match but not evaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

NEGATIVE = frozenset({"unmatched", "disjoint"})
MAX_DEPTH = 8  # other-map chains


@dataclass
class Match:
    equivalence: str
    system: str | None
    code: str | None
    display: str | None
    source: str | None  # the ConceptMap's url
    product: list[dict] = field(default_factory=list)

    def to_parameter(self) -> dict:
        coding = {
            k: v
            for k, v in (("system", self.system), ("code", self.code), ("display", self.display))
            if v
        }
        parts: list[dict] = [{"name": "equivalence", "valueCode": self.equivalence}]
        if coding:
            parts.append({"name": "concept", "valueCoding": coding})
        for p in self.product:
            parts.append(
                {
                    "name": "product",
                    "part": [
                        {"name": "element", "valueUri": p.get("property")},
                        {
                            "name": "concept",
                            "valueCoding": {k: p[k] for k in ("system", "display") if p.get(k)}
                            | ({"code": p["value"]} if p.get("value") else {}),
                        },
                    ],
                }
            )
        if self.source:
            parts.append({"name": "source", "valueUri": self.source})
        return {"name": "match", "part": parts}


def translate(
    concept_map: dict,
    system: str | None,
    code: str,
    *,
    target_system: str | None = None,
    reverse: bool = False,
    other_map: Callable[[str], dict | None] | None = None,
    _depth: int = 0,
) -> list[Match]:
    """The matches of ``system|code`` in ``concept_map``."""
    source_url = concept_map.get("url")
    out: list[Match] = []
    for group in concept_map.get("group") or ():
        src, tgt = group.get("source"), group.get("target")
        if reverse:
            src, tgt = tgt, src
        if system is not None and src is not None and src != system:
            continue
        if target_system is not None and tgt is not None and tgt != target_system:
            continue
        found = False
        for element in group.get("element") or ():
            if reverse:
                for target in element.get("target") or ():
                    if target.get("code") == code:
                        found = True
                        out.append(
                            Match(
                                _reverse(target.get("equivalence") or "equivalent"),
                                tgt,
                                element.get("code"),
                                element.get("display"),
                                source_url,
                            )
                        )
            elif element.get("code") == code:
                found = True
                for target in element.get("target") or ():
                    out.append(
                        Match(
                            target.get("equivalence") or "equivalent",
                            tgt if target.get("code") else None,
                            target.get("code"),
                            target.get("display"),
                            source_url,
                            list(target.get("product") or ()),
                        )
                    )
        if not found and not reverse:
            out.extend(_unmapped(group, tgt, code, source_url, other_map, _depth, target_system))
    return out


def _unmapped(group, tgt, code, source_url, other_map, depth, target_system) -> list[Match]:  # type: ignore[no-untyped-def]
    unmapped = group.get("unmapped")
    if not isinstance(unmapped, dict):
        return []
    mode = unmapped.get("mode")
    if mode == "provided":
        return [Match("equal", tgt, code, None, source_url)]
    if mode == "fixed" and unmapped.get("code"):
        return [Match("equivalent", tgt, unmapped["code"], unmapped.get("display"), source_url)]
    if mode == "other-map" and unmapped.get("url") and other_map and depth < MAX_DEPTH:
        other = other_map(unmapped["url"])
        if other is not None:
            return translate(
                other,
                group.get("source"),
                code,
                target_system=target_system,
                other_map=other_map,
                _depth=depth + 1,
            )
    return []


# Read backwards, "the source is wider than the target" becomes "narrower".
_REVERSED = {"wider": "narrower", "narrower": "wider", "subsumes": "specializes"}
_REVERSED["specializes"] = "subsumes"


def _reverse(equivalence: str) -> str:
    return _REVERSED.get(equivalence, equivalence)


def result(matches: list[Match]) -> bool:
    return any(m.equivalence not in NEGATIVE for m in matches)
