"""The assistant's data, loaded and checked once per language: the intents, their phrasings, the
fixed answers and templates, and the knowledge base (formats: docs/assistant.md). A malformed file
stops with a message naming what is wrong."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
KINDS = frozenset({"record", "knowledge", "safety", "refuse"})
AUDIENCES = frozenset({"patient", "staff"})
PLACEHOLDERS = frozenset({"{patient}", "{user}", "{role}", "{now}"})
SAFETY_ANSWERS = ("dont-know", "emergency", "symptom", "medical-advice", "other-person")


class CatalogueError(ValueError):
    """The assistant's data files are malformed."""


@dataclass(frozen=True)
class Read:
    """One FHIR search an intent runs with the caller's token."""

    res_type: str
    query: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Intent:
    name: str
    kind: str  # record, knowledge, safety, refuse
    render: str | None = None
    offer: str | None = None
    reads: dict[str, tuple[Read, ...]] = field(default_factory=dict)  # audience -> searches


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    questions: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class Rule:
    intent: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class Catalogue:
    """Everything the assistant knows in one language."""

    language: str
    version: str  # "<intents version>/<phrases version>/<knowledge version>"
    knowledge_version: str
    threshold: float
    intents: dict[str, Intent]
    rules: tuple[Rule, ...]
    examples: dict[str, tuple[str, ...]]
    articles: dict[str, Article]
    answers: dict[str, str]
    templates: dict[str, str]
    case_status: dict[str, str]
    calendar: dict

    def phrases(self) -> list[tuple[str, str, str]]:
        """Every phrasing the questions are matched against: (intent, article id or "", text)."""
        out = [(name, "", text) for name, texts in self.examples.items() for text in texts]
        out += [("knowledge", a.id, q) for a in self.articles.values() for q in a.questions]
        return out


def languages() -> list[str]:
    """The languages shipped: each folder of ``assistant/data`` with a phrases file."""
    return sorted(p.parent.name for p in DATA.glob("*/phrases.json"))


def _load(path: Path) -> dict:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogueError(f"{path.name}: {exc}") from exc
    if not isinstance(body, dict):
        raise CatalogueError(f"{path.name}: not a JSON object")
    return body


def _intents(body: dict) -> dict[str, Intent]:
    from assistant.render import RENDERERS

    out: dict[str, Intent] = {}
    for raw in body.get("intents", []):
        name = raw.get("name")
        where = f"intents.json: intent {name!r}"
        unknown = set(raw) - {"name", "kind", "render", "offer", "reads"}
        if unknown:
            raise CatalogueError(f"{where}: unknown keys {sorted(unknown)}")
        if not name or name in out:
            raise CatalogueError(f"{where}: a name is required and must be unique")
        if raw.get("kind") not in KINDS:
            raise CatalogueError(f"{where}: kind must be one of {sorted(KINDS)}")
        render = raw.get("render")
        if (raw["kind"] == "record") != (render is not None):
            raise CatalogueError(f"{where}: a record intent and only a record intent has render")
        if render is not None and render not in RENDERERS:
            raise CatalogueError(f"{where}: no renderer {render!r} in assistant/render.py")
        if raw.get("offer") not in (None, "message-care-team"):
            raise CatalogueError(f"{where}: offer must be 'message-care-team'")
        reads: dict[str, tuple[Read, ...]] = {}
        for audience, searches in (raw.get("reads") or {}).items():
            if audience not in AUDIENCES:
                raise CatalogueError(f"{where}: reads for unknown audience {audience!r}")
            found = []
            for s in searches:
                query = tuple((str(k), str(v)) for k, v in s["query"])
                for _, v in query:
                    for ph in re.findall(r"\{[a-z]+\}", v):
                        if ph not in PLACEHOLDERS:
                            raise CatalogueError(f"{where}: unknown placeholder {ph}")
                found.append(Read(str(s["type"]), query))
            reads[audience] = tuple(found)
        if raw["kind"] == "record" and not reads:
            raise CatalogueError(f"{where}: a record intent reads something")
        out[name] = Intent(name, raw["kind"], render, raw.get("offer"), reads)
    if "knowledge" not in out:
        raise CatalogueError("intents.json: the 'knowledge' intent is required")
    return out


@cache
def catalogue(language: str) -> Catalogue:
    """The checked data of ``language`` (one of ``languages()``)."""
    if language not in languages():
        raise CatalogueError(f"no assistant data for language {language!r}")
    intents_body = _load(DATA / "intents.json")
    intents = _intents(intents_body)
    phrases = _load(DATA / language / "phrases.json")
    knowledge = _load(DATA / language / "knowledge.json")
    where = f"{language}/phrases.json"
    examples = {k: tuple(v) for k, v in (phrases.get("examples") or {}).items()}
    for name in examples:
        if name not in intents:
            raise CatalogueError(f"{where}: examples for unknown intent {name!r}")
    for name, intent in intents.items():
        if intent.kind != "knowledge" and not examples.get(name):
            raise CatalogueError(f"{where}: intent {name!r} has no examples")
    rules = []
    for r in phrases.get("rules") or []:
        if r.get("intent") not in intents or intents[r["intent"]].kind not in ("safety", "refuse"):
            raise CatalogueError(f"{where}: a rule names {r.get('intent')!r}, no safety intent")
        try:
            rules.append(Rule(r["intent"], re.compile(r["pattern"], re.IGNORECASE)))
        except re.error as exc:
            raise CatalogueError(f"{where}: rule for {r['intent']!r}: {exc}") from exc
    answers = dict(phrases.get("answers") or {})
    needed = {*SAFETY_ANSWERS, *(n for n, i in intents.items() if i.kind in ("safety", "refuse"))}
    missing = sorted(needed - set(answers))
    if missing:
        raise CatalogueError(f"{where}: answers missing for {missing}")
    calendar = phrases.get("calendar") or {}
    if len(calendar.get("weekdays", [])) != 7 or len(calendar.get("months", [])) != 12:
        raise CatalogueError(f"{where}: calendar needs 7 weekdays and 12 months")
    threshold = phrases.get("threshold")
    if not isinstance(threshold, int | float) or not 0 < threshold < 1:
        raise CatalogueError(f"{where}: threshold must be a number between 0 and 1")
    articles: dict[str, Article] = {}
    for a in knowledge.get("articles") or []:
        if not a.get("id") or a["id"] in articles or not a.get("questions") or not a.get("answer"):
            raise CatalogueError(
                f"{language}/knowledge.json: article {a.get('id')!r} needs a unique id, "
                "questions and an answer"
            )
        articles[a["id"]] = Article(
            a["id"], a.get("title", a["id"]), tuple(a["questions"]), a["answer"]
        )
    kv = str(knowledge.get("version", ""))
    if not kv:
        raise CatalogueError(f"{language}/knowledge.json: a version is required")
    return Catalogue(
        language=language,
        version=f"{intents_body.get('version', '')}/{phrases.get('version', '')}/{kv}",
        knowledge_version=kv,
        threshold=float(threshold),
        intents=intents,
        rules=tuple(rules),
        examples=examples,
        articles=articles,
        answers=answers,
        templates=dict(phrases.get("templates") or {}),
        case_status=dict(phrases.get("caseStatus") or {}),
        calendar=dict(phrases.get("calendar") or {}),
    )
