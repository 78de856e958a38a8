"""Understanding a question and answering it (docs/assistant.md, "How a question is answered").

1. The question is checked (text, at most ``MAX_CHARS`` characters, no control characters).
2. The language's safety rules (regular expressions) are tried in order: an emergency, a prompt-
   like instruction, another person's data, a request for medical advice or a symptom gets its
   fixed, reviewed answer without any matching.
3. Otherwise the question's embedding is compared with every phrasing of every intent and every
   knowledge-base question; the closest decides the intent, unless its cosine similarity is below
   the language's threshold: then the answer is "I don't know".
4. A record intent names the searches to run (``reads``) for the asker's audience; the caller runs
   them with the asker's own token and passes what they found to ``answer``, which words it with
   the intent's renderer and cites each resource used.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from assistant import embedding
from assistant.catalogue import Catalogue, Read, catalogue
from assistant.render import RENDERERS, Asker, Citation

MAX_CHARS = 500
DONT_KNOW = "dont-know"


class BadQuestion(ValueError):
    """The question cannot be read (empty, too long, control characters)."""


@dataclass(frozen=True)
class Understanding:
    intent: str  # an intent of data/intents.json, or "dont-know"
    kind: str  # record, knowledge, safety, refuse, or "dont-know"
    score: float  # the best cosine similarity (1.0 when a rule decided)
    by: str  # "rule" or "meaning"
    article: str | None = None  # the knowledge-base article (kind knowledge)


@dataclass
class Answer:
    intent: str
    kind: str
    text: str
    score: float
    by: str
    language: str
    version: str
    citations: list[Citation] = field(default_factory=list)
    article: str | None = None
    offer: str | None = None  # "message-care-team"


def check_question(raw: object) -> str:
    if not isinstance(raw, str):
        raise BadQuestion("question must be a string")
    text = unicodedata.normalize("NFC", raw)
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t\r" for ch in text):
        raise BadQuestion("question contains control characters")
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        raise BadQuestion("question is empty")
    if len(text) > MAX_CHARS:
        raise BadQuestion(f"question is longer than {MAX_CHARS} characters")
    return text


class Assistant:
    """The assistant in one language: its catalogue and the embeddings of its phrasings."""

    def __init__(
        self, language: str = "en", cache_dir: Path | None = None, *, threads: int = 1
    ) -> None:
        embedding.model(threads)
        self.catalogue: Catalogue = catalogue(language)
        self.phrases = self.catalogue.phrases()
        self.matrix = embedding.cached([p[2] for p in self.phrases], cache_dir)

    def understand(self, question: str) -> Understanding:
        text = check_question(question)
        cat = self.catalogue
        for rule in cat.rules:
            if rule.pattern.search(text):
                return Understanding(rule.intent, cat.intents[rule.intent].kind, 1.0, "rule")
        vector = embedding.encode([text])[0]
        sims = self.matrix @ vector
        best = int(np.argmax(sims))
        score = float(sims[best])
        if score < cat.threshold:
            return Understanding(DONT_KNOW, DONT_KNOW, score, "meaning")
        intent, article, _ = self.phrases[best]
        return Understanding(intent, cat.intents[intent].kind, score, "meaning", article or None)

    def reads(self, understood: Understanding, asker: Asker) -> list[Read] | None:
        """The searches to run for a record intent, placeholders filled from the asker's token;
        None when the intent has none for this audience or the token lacks who to read for."""
        intent = self.catalogue.intents.get(understood.intent)
        if intent is None or intent.kind != "record" or asker.audience not in intent.reads:
            return None
        now = (asker.now or datetime.now(UTC)).isoformat(timespec="seconds")
        values = {
            "{patient}": asker.patient,
            "{user}": asker.user,
            "{role}": asker.role,
            "{now}": now,
        }
        out = []
        for read in intent.reads[asker.audience]:
            query = []
            for k, v in read.query:
                for ph, val in values.items():
                    if ph in v:
                        if not val:
                            return None
                        v = v.replace(ph, val)
                query.append((k, v))
            out.append(Read(read.res_type, tuple(query)))
        return out

    def answer(
        self,
        understood: Understanding,
        asker: Asker,
        found: list[list[dict]] | None = None,
        *,
        emergency: str = "",
    ) -> Answer:
        """The answer to an understood question; ``found``: for a record intent, the resources
        each of ``reads`` found (None when they were not run)."""
        cat = self.catalogue
        intent = cat.intents.get(understood.intent)

        def reply(text: str, citations: list[Citation] | None = None, **kw: object) -> Answer:
            return Answer(
                intent=understood.intent,
                kind=understood.kind,
                text=text.replace("{emergency}", emergency),
                score=round(understood.score, 4),
                by=understood.by,
                language=cat.language,
                version=cat.version,
                citations=citations or [],
                offer=intent.offer if intent else None,
                **kw,  # type: ignore[arg-type]
            )

        if intent is None:
            return reply(cat.answers[DONT_KNOW])
        if intent.kind in ("safety", "refuse"):
            return reply(cat.answers[intent.name])
        if intent.kind == "knowledge":
            article = cat.articles[understood.article or ""]
            return reply(
                article.answer,
                [Citation(f"knowledge/{cat.language}/{article.id}", article.title)],
                article=article.id,
            )
        if asker.audience not in intent.reads:
            key = "staff-only" if "staff" in intent.reads else "patient-only"
            return reply(cat.templates[key])
        if found is None:
            return reply(cat.answers["who-unknown"])
        rendered = RENDERERS[intent.render or ""](cat, found, asker)
        return reply(rendered.text, rendered.citations)
