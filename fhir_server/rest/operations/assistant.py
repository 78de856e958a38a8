"""$assistant — ``POST [base]/$assistant``: Hearth's assistant answers one question of the caller
about their own record, or about how Hearth works, from the curated knowledge base
(docs/assistant.md; OperationDefinition ``http://hearth.local/fhir/OperationDefinition/assistant``).

Inputs: ``question`` (valueString, required, at most 500 characters), ``language`` (valueCode, one
of the languages shipped in ``assistant/data``; default ``en``). Output: a ``Parameters`` with
``answer`` (string), ``intent`` and ``kind`` (code), ``score`` (decimal: the cosine similarity of
the best match, 1 when a safety rule decided), ``matchedBy`` (``rule`` | ``meaning``),
``language``, ``version`` (the data's versions), ``offer`` (``message-care-team`` when the answer
suggests writing to the care team) and one ``citation`` per source: ``resource`` (valueReference,
with a display) for a record, or ``knowledge`` (valueString ``<lang>/<article>@<version>``) and
``title`` for a knowledge-base article.

The record is read by the caller: each search an intent declares runs through the same search
path as ``GET [type]?…`` with the caller's ``Access`` — its scopes (``s`` on the type, else the
answer says the access does not allow it), the patient-compartment filter of a patient-context
token and the "verified results only" rule of a patient — and the patient it reads for is always
the token's own patient in context, never anything named in the question. So the answer can never
contain more than the caller may read. Every exchange is audited: the request's AuditEvent names
the resources cited and, in ``outcomeDesc``, the intent, kind and score.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from assistant.catalogue import CatalogueError, languages
from assistant.embedding import ModelMissing
from assistant.engine import Answer, Assistant, BadQuestion
from assistant.render import Asker
from fhir_server.auth.enforce import CARE_ROLES, require
from fhir_server.rest.context import Access, Context, FhirRequest, Reply
from fhir_server.rest.interactions.search import search_bundle
from fhir_server.rest.operations.spec import Operation, Permission
from resources.errors import Forbidden, Invalid, Issue, NotSupported

DEFINITION = "http://hearth.local/fhir/OperationDefinition/assistant"
KNOWN = frozenset({"question", "language"})
_lock = threading.Lock()


def assistant_for(ctx: Context, language: str) -> Assistant:
    """The process's assistant in ``language``, built on first use (the model is loaded and the
    knowledge base's embeddings computed once, then cached under ``data_dir/assistant``)."""
    key = f"assistant.{language}"
    found = ctx.services.get(key)
    if found is None:
        with _lock:
            found = ctx.services.get(key)
            if found is None:
                found = Assistant(
                    language,
                    ctx.settings.data_dir / "assistant",
                    threads=ctx.settings.assistant_threads,
                )
                ctx.services[key] = found
    return found


def asker_of(access: Access | None) -> Asker:
    """The answer's audience from the token: a patient-context token not held by a member of the
    care team asks as the patient; everyone else as staff (their fhirUser and role)."""
    now = datetime.now(UTC).replace(microsecond=0)
    if access is None:
        return Asker("staff", now=now)
    if access.patient is not None and access.role not in CARE_ROLES:
        return Asker("patient", patient=f"Patient/{access.patient}", user=access.fhir_user, now=now)
    return Asker("staff", user=access.fhir_user, role=access.role, now=now)


def _question(req: FhirRequest) -> tuple[str, str]:
    unknown = sorted({i.name for i in req.params.inputs} - KNOWN)
    if unknown:
        raise Invalid(
            f"$assistant: unknown parameters {unknown}",
            [Issue("not-supported", f"parameter {n!r} is not supported") for n in unknown],
        )
    question = req.params.text("question", fhir_type="string", required=True)
    language = req.params.text("language", fhir_type="code") or "en"
    if language not in languages():
        raise Invalid(f"$assistant: language must be one of {languages()}, not {language!r}")
    assert question is not None
    return question, language


def run(ctx: Context, req: FhirRequest) -> Reply:
    question, language = _question(req)
    try:
        bot = assistant_for(ctx, language)
        understood = bot.understand(question)
    except BadQuestion as exc:
        raise Invalid(f"$assistant: {exc}", expression=["question"]) from exc
    except ModelMissing as exc:
        raise NotSupported(f"$assistant is not installed on this server: {exc}") from exc
    except CatalogueError as exc:  # the shipped data is broken: a server fault, said plainly
        raise RuntimeError(f"assistant data: {exc}") from exc
    asker = asker_of(ctx.access)
    emergency = ctx.settings.assistant_emergency_numbers
    reads = bot.reads(understood, asker)
    found = None
    if reads is not None:
        try:
            if ctx.access is not None:
                for read in reads:
                    require(ctx.access, read.res_type, "s")
        except Forbidden:
            denied = sorted({r.res_type for r in reads})
            answer = bot.answer(understood, asker, None, emergency=emergency)
            answer.text = bot.catalogue.answers["no-access"].format(what=", ".join(denied))
            return _reply(answer)

        def search(unit):  # type: ignore[no-untyped-def]
            out = []
            for read in reads:
                bundle = search_bundle(ctx, unit, read.res_type, list(read.query))
                out.append(
                    [
                        e["resource"]
                        for e in bundle.get("entry", [])
                        if (e.get("search") or {}).get("mode", "match") == "match"
                    ]
                )
            return out

        found = ctx.repo.read(search)
    return _reply(bot.answer(understood, asker, found, emergency=emergency))


def _reply(answer: Answer) -> Reply:
    params: list[dict] = [
        {"name": "answer", "valueString": answer.text},
        {"name": "intent", "valueCode": answer.intent},
        {"name": "kind", "valueCode": answer.kind},
        {"name": "score", "valueDecimal": answer.score},
        {"name": "matchedBy", "valueCode": answer.by},
        {"name": "language", "valueCode": answer.language},
        {"name": "version", "valueString": answer.version},
    ]
    if answer.offer:
        params.append({"name": "offer", "valueCode": answer.offer})
    cited = []
    for c in answer.citations:
        if c.reference.startswith("knowledge/"):
            _, lang, article = c.reference.split("/", 2)
            version = answer.version.rsplit("/", 1)[-1]
            part: list[dict] = [
                {"name": "knowledge", "valueString": f"{lang}/{article}@{version}"},
                {"name": "title", "valueString": c.display},
            ]
        else:
            cited.append(c.reference)
            part = [
                {
                    "name": "resource",
                    "valueReference": {"reference": c.reference, "display": c.display},
                }
            ]
        params.append({"name": "citation", "part": part})
    detail = f"assistant: intent={answer.intent} kind={answer.kind} score={answer.score}"
    if answer.article:
        detail += f" article={answer.article}"
    return Reply(
        200,
        {"resourceType": "Parameters", "parameter": params},
        audit_what=tuple(cited),
        audit_detail=detail,
    )


OPERATION = Operation(
    name="assistant",
    definition=DEFINITION,
    levels=frozenset({"system"}),
    methods=frozenset({"POST"}),  # a question may hold personal details: never in a URL
    permission=Permission(
        self_checked=True,
        reason="any signed-in caller may ask; each search an answer needs is checked against "
        "the caller's scopes and compartment like a FHIR search (operations/assistant.py)",
    ),
    handler=run,
)
