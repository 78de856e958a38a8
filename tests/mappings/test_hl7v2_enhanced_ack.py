"""Enhanced-mode acknowledgment rules (HL7 v2.5.1 2.9.3, table 0155), without a server: which
of the accept and application ACKs answer a message, by MSH-15 / MSH-16 and its outcome."""

from __future__ import annotations

import pytest

from mappings.hl7v2 import parse
from mappings.hl7v2.ack import AckError, enhanced, frames, mode_problem

HEAD = "MSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105081500||ADT^A01|c1|P|2.5.1"


def _answers(accept: str, application: str, code: str, commit: str = "") -> list[str]:
    message = parse(f"{HEAD}|||{accept}|{application}\rPID|1||m^^^H^MR\r")
    err = [AckError("207", "why")]
    return [
        a.split(":")[0]
        for a in frames(
            message, f"app:{code}", code, err, commit=commit,
            accept=lambda c, errors: f"{c}:{len(errors)}",
        )
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("accept", "application", "code", "want"),
    [
        ("AL", "AL", "AA", ["CA", "app"]),
        ("AL", "AL", "AE", ["CA", "app"]),
        ("AL", "AL", "AR", ["CR"]),  # not committed: no application ACK
        ("NE", "NE", "AA", []),
        ("ER", "ER", "AA", []),
        ("ER", "ER", "AE", ["app"]),
        ("ER", "SU", "AR", ["CR"]),
        ("SU", "SU", "AA", ["CA", "app"]),
        ("SU", "SU", "AE", ["CA"]),
        ("", "AL", "AA", ["CA", "app"]),  # enhanced mode: an empty condition is AL
        ("NE", "", "AE", ["app"]),
    ],
)
def test_which_acknowledgments_answer(accept: str, application: str, code: str, want) -> None:  # type: ignore[no-untyped-def]
    assert _answers(accept, application, code) == want


def test_original_mode_and_commit_errors() -> None:
    message = parse(f"{HEAD}\rPID|1||m^^^H^MR\r")
    assert enhanced(message) is None
    assert frames(message, "ack", "AE", [], commit="", accept=lambda c, e: c) == ["ack"]
    assert _answers("AL", "AL", "AE", commit="CE") == ["CE"]
    wrong = mode_problem(parse(f"{HEAD}|||AL|YES\r"))
    assert wrong is not None and (wrong.code, wrong.location) == ("103", "MSH^1^16")
    assert mode_problem(parse(f"{HEAD}|||al|su\r")) is None
