"""FHIR Task mechanics shared by every case: the status state machine (R4 task.html#statemachine,
the subset Hearth's steps use) and small helpers to read and write Task elements."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from resources.errors import Conflict

# Allowed status changes. draft: a later step not yet reachable; requested: on a worklist;
# in-progress: claimed (owner set); failed: an automatic step that can be retried.
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"requested", "cancelled"}),
    "requested": frozenset({"in-progress", "cancelled", "completed", "failed"}),
    "in-progress": frozenset({"requested", "completed", "failed", "on-hold"}),
    "on-hold": frozenset({"in-progress", "cancelled"}),
    "failed": frozenset({"requested", "in-progress"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_transition(task: dict, new_status: str, what: str) -> None:
    """409 unless ``task`` may move to ``new_status``."""
    have = task.get("status")
    if new_status not in TRANSITIONS.get(have or "", frozenset()):
        owner = (task.get("owner") or {}).get("reference")
        extra = f" (owned by {owner})" if owner and have == "in-progress" else ""
        raise Conflict(
            f"cannot {what} Task/{task.get('id')}: its status is {have}{extra}, and a Task may "
            f"not go from {have} to {new_status}"
        )


def with_status(task: dict, status: str, **changes: object) -> dict:
    out = {**task, "status": status, "lastModified": now()}
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def code_of(task: dict, system: str) -> str | None:
    for c in (task.get("code") or {}).get("coding") or []:
        if c.get("system") == system:
            return c.get("code")
    return None


def business_status(code: str) -> dict:
    return {
        "coding": [{"system": "http://hearth.local/fhir/CodeSystem/case-status", "code": code}],
        "text": code,
    }


def business_code(task: dict) -> str | None:
    codings = (task.get("businessStatus") or {}).get("coding") or []
    return codings[0].get("code") if codings else None


def typed(label: str) -> dict:
    return {"coding": [{"system": "http://hearth.local/fhir/CodeSystem/task-io", "code": label}]}


def io_values(task: dict, element: str, label: str) -> list:
    """Values of Task.input / Task.output entries of type ``label``."""
    out: list[Any] = []
    for entry in task.get(element) or []:
        codes = [c.get("code") for c in (entry.get("type") or {}).get("coding") or []]
        if label in codes:
            out.extend(v for k, v in entry.items() if k.startswith("value"))
    return out


def add_io(task: dict, element: str, label: str, value_key: str, value: object) -> dict:
    entry = {"type": typed(label), value_key: value}
    return {**task, element: [*(task.get(element) or []), entry]}


def note(task: dict, text: str, author: str | None = None) -> dict:
    ann: dict = {"text": text, "time": now()}
    if author:
        ann["authorReference"] = {"reference": author}
    return {**task, "note": [*(task.get("note") or []), ann]}
