"""Hearth's formulary as knowledge for the medication checks: what a medication code is made of
(its RxNorm ingredients), which drug classes it belongs to, which classes an allergy extends to,
and which ingredient / class pairs interact.

The knowledge is data, read here and never written in code: the RxNorm fragment, the drug-class
CodeSystem and the formulary ValueSet in ``data/formulary.json`` (served like every shipped
CodeSystem, so ``$expand`` / ``$lookup`` show the same properties the checks use) and the
interaction table ``data/interactions.json``. Both are described, with their sources, in
``data/README.md``. The table is checked when loaded: a side naming an ingredient or class the
formulary does not know, a severity other than high / moderate / low, or an entry without a source
stops with a message."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from terminology.builtin import Builtin
from terminology.builtin import default as default_builtin

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
DRUG_CLASS = "http://hearth.local/fhir/CodeSystem/drug-class"
FORMULARY_VALUE_SET = "http://hearth.local/fhir/ValueSet/formulary"
INTERACTIONS = Path(__file__).parent / "data" / "interactions.json"
SEVERITIES = ("high", "moderate", "low")


class FormularyError(ValueError):
    """The shipped formulary data is not usable (a programming error, found at load)."""


@dataclass(frozen=True)
class Drug:
    code: str  # an RxNorm code
    display: str
    ingredients: frozenset[str]  # RxNorm IN codes
    classes: frozenset[str]  # drug-class codes


@dataclass(frozen=True)
class Side:
    ingredient: str | None = None
    drug_class: str | None = None

    def matches(self, drug: Drug) -> bool:
        if self.ingredient is not None:
            return self.ingredient in drug.ingredients
        return self.drug_class in drug.classes

    def words(self, formulary: Formulary) -> str:
        if self.ingredient is not None:
            return formulary.display(self.ingredient)
        return formulary.class_display(self.drug_class or "")


@dataclass(frozen=True)
class Interaction:
    id: str
    a: Side
    b: Side
    severity: str
    summary: str
    detail: str
    source: str
    url: str | None = None  # a public page stating it (DetectedIssue.reference)

    def between(self, one: Drug, other: Drug) -> bool:
        return (self.a.matches(one) and self.b.matches(other)) or (
            self.a.matches(other) and self.b.matches(one)
        )


class Formulary:
    def __init__(self, builtin: Builtin | None = None, interactions: Path = INTERACTIONS) -> None:
        self._builtin = builtin
        self._path = interactions
        self._lock = threading.Lock()
        self._loaded: tuple[dict[str, Drug], dict[str, dict], list[Interaction]] | None = None

    def _load(self) -> tuple[dict[str, Drug], dict[str, dict], list[Interaction]]:
        with self._lock:
            if self._loaded is None:
                builtin = self._builtin if self._builtin is not None else default_builtin()
                rx = builtin.get("CodeSystem", RXNORM)
                classes_cs = builtin.get("CodeSystem", DRUG_CLASS)
                if rx is None or classes_cs is None:
                    raise FormularyError("the formulary CodeSystems are not shipped")
                classes = {c["code"]: c for c in classes_cs.get("concept") or ()}
                drugs = {}
                for c in rx.get("concept") or ():
                    props = c.get("property") or ()
                    drug_classes = frozenset(
                        p["valueCoding"]["code"] for p in props if p.get("code") == "drug-class"
                    )
                    unknown = drug_classes - classes.keys()
                    if unknown:
                        raise FormularyError(f"RxNorm {c['code']}: unknown drug class {unknown}")
                    drugs[c["code"]] = Drug(
                        code=c["code"],
                        display=c.get("display") or c["code"],
                        ingredients=frozenset(
                            p["valueCode"] for p in props if p.get("code") == "ingredient"
                        ),
                        classes=drug_classes,
                    )
                table = json.loads(self._path.read_text(encoding="utf-8"))
                found = [self._interaction(e, drugs, classes) for e in table["interactions"]]
                self._loaded = (drugs, classes, found)
            return self._loaded

    @staticmethod
    def _interaction(e: dict, drugs: dict[str, Drug], classes: dict[str, dict]) -> Interaction:
        where = f"interaction {e.get('id')!r}"

        def side(given: dict) -> Side:
            if set(given) == {"ingredient"} and given["ingredient"] in drugs:
                return Side(ingredient=given["ingredient"])
            if set(given) == {"class"} and given["class"] in classes:
                return Side(drug_class=given["class"])
            raise FormularyError(f"{where}: {given} is not a formulary ingredient or class")

        if e.get("severity") not in SEVERITIES:
            raise FormularyError(f"{where}: severity is one of {', '.join(SEVERITIES)}")
        for key in ("id", "summary", "detail", "source"):
            if not isinstance(e.get(key), str) or not e[key].strip():
                raise FormularyError(f"{where}: {key} is required")
        url = e.get("url")
        if url is not None and not (
            isinstance(url, str) and url.startswith(("http://", "https://"))
        ):
            raise FormularyError(f"{where}: url is an http(s) address")
        return Interaction(
            e["id"],
            side(e["a"]),
            side(e["b"]),
            e["severity"],
            e["summary"],
            e["detail"],
            e["source"],
            url,
        )

    # -- questions ------------------------------------------------------------------------------
    def drug(self, code: str) -> Drug | None:
        return self._load()[0].get(code)

    def display(self, code: str) -> str:
        found = self.drug(code)
        return found.display if found else f"RxNorm {code}"

    def class_display(self, code: str) -> str:
        return (self._load()[1].get(code) or {}).get("display") or code

    def cross_reactive(self, drug_class: str) -> bool:
        concept = self._load()[1].get(drug_class) or {}
        return any(
            p.get("code") == "allergy-cross-reactive" and p.get("valueBoolean") is True
            for p in concept.get("property") or ()
        )

    def interactions(self, one: Drug, other: Drug) -> list[Interaction]:
        return [i for i in self._load()[2] if i.between(one, other)]

    def all_interactions(self) -> list[Interaction]:
        return list(self._load()[2])


_DEFAULT: Formulary | None = None


def default() -> Formulary:
    """The process-wide formulary over the shipped files."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Formulary()
    return _DEFAULT
