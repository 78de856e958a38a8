"""Logs carry identifiers, never record content.

A log line names the request (its id, method and path), the resource type and id, a message's
control id, a status or an issue code. It never carries what a client sent: not a resource's
values, not an HL7 segment, not an outcome's diagnostics (which quote values). Exception messages
are the sneaky path: a database error quotes the failing row (PostgreSQL's DETAIL and CONTEXT),
SQLAlchemy appends the statement's parameters, a parser quotes the text it choked on. So every
record Hearth's processes log with a traceback (``log.exception``, ``exc_info``, uvicorn's
"Exception in ASGI application") has it rewritten when the record is made: the frames stay (file,
line, function, source line), each exception is reduced to its type and what identifies it
without content (a SQLSTATE, an errno, a FHIR issue code). Engines also hide SQL parameters
(``resources/storage/db.py``, ``hide_parameters``).
"""

from __future__ import annotations

import logging
import traceback

_installed = False


def describe(exc: BaseException) -> str:
    """The exception's type and content-free details: ``psycopg.errors.CheckViolation``,
    ``[SQLSTATE 23514]``, ``[errno 13 Permission denied]``, ``[issue invalid]``."""
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    extra = []
    orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
    for err in (exc, orig):
        code = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if isinstance(code, str):
            extra.append(f"SQLSTATE {code}")
            break
    if orig is not None:
        name += f" ({type(orig).__module__}.{type(orig).__qualname__})"
    if isinstance(exc, OSError) and exc.errno is not None:
        extra.append(f"errno {exc.errno} {exc.strerror}")
    code = getattr(exc, "issue_code", None)  # resources.errors.FhirError
    if isinstance(code, str):
        extra.append(f"issue {code}")
    text = name + "".join(f" [{e}]" for e in extra)
    return text + " (message not logged: it may quote record content)"


def redacted_traceback(exc: BaseException) -> str:
    """``traceback.format_exception`` with every exception message replaced by ``describe``."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    parts: list[str] = []
    for i, e in enumerate(reversed(chain)):
        if i:
            parts.append("\nThe above exception led to the one below\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_list(traceback.extract_tb(e.__traceback__)))
        parts.append(describe(e) + "\n")
    return "".join(parts).rstrip("\n")


class _NoQuery(logging.Filter):
    """uvicorn's access log line without the query string (search values: names, ids)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
        return True


def install() -> None:
    """Make every log record of this process carry a redacted traceback instead of its
    exception (idempotent; keeps any record factory already installed)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):  # type: ignore[no-untyped-def]
        record = previous(*args, **kwargs)
        info = record.exc_info
        if info and info[1] is not None:
            record.exc_text = redacted_traceback(info[1])
            record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)
    logging.getLogger("uvicorn.access").addFilter(_NoQuery())
    _installed = True
