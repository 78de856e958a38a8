"""The words a case definition may use for what happens when a step completes (``effects``) and
whether a step applies at all (``when``): two registries, filled by the decorators below.

An effect is ``fn(done: StepDone) -> None``: it may create resources through ``done.u``, replace
``done.case`` (the case Task's content being written) and set ``done.deliver`` (a report now
waits for delivery). A condition is ``fn(steps) -> bool`` over the case's step Tasks; a step
whose condition is false is cancelled with ``statusReason`` "not applicable: <unmet>".
``workflow/definitions.py`` refuses a definition that names a word not registered here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from resources.storage.repository import Unit
from workflow import reports
from workflow.actors import Actor
from workflow.tasks import add_io, io_values, now

if TYPE_CHECKING:
    from workflow.definitions import CaseDefinition


@dataclass
class StepDone:
    """What an effect works with: the unit, the case (content so far), its definition, the
    contents of its step Tasks, who completed the step."""

    u: Unit
    case: dict
    definition: CaseDefinition
    steps: list[dict]
    actor: Actor
    deliver: bool = False


@dataclass(frozen=True)
class Condition:
    test: Callable[[Iterable[dict]], bool]
    unmet: str  # why a step that does not apply was cancelled


Effect = Callable[[StepDone], None]
EFFECTS: dict[str, Effect] = {}
CONDITIONS: dict[str, Condition] = {}


def effect(name: str) -> Callable[[Effect], Effect]:
    """Register ``fn`` as the effect ``name`` of a case definition step."""

    def register(fn: Effect) -> Effect:
        if name in EFFECTS:
            raise ValueError(f"effect {name!r} is registered twice")
        EFFECTS[name] = fn
        return fn

    return register


def condition(
    name: str, *, unmet: str
) -> Callable[[Callable[[Iterable[dict]], bool]], Callable[[Iterable[dict]], bool]]:
    """Register ``fn`` as the condition ``name`` (a step's ``when``); ``unmet`` says why a step
    was cancelled when it is false."""

    def register(fn: Callable[[Iterable[dict]], bool]) -> Callable[[Iterable[dict]], bool]:
        if name in CONDITIONS:
            raise ValueError(f"condition {name!r} is registered twice")
        CONDITIONS[name] = Condition(fn, unmet)
        return fn

    return register


# -- effects ------------------------------------------------------------------------------------
@effect("final-report")
def final_report(done: StepDone) -> None:
    """The case's final DiagnosticReport; the report then waits for delivery."""
    report = reports.create_final_report(done.u, done.case, done.steps, done.definition)
    done.case = add_io(done.case, "output", "report", "valueReference", {"reference": report})
    done.deliver = True


@effect("referral-if-high-risk")
def referral_if_high_risk(done: StepDone) -> None:
    """Referral to low-dose CT lung screening when the AI step reported high risk (a PLCOm2012
    risk at or above the threshold)."""
    case = done.case
    if True not in io_values(case, "input", "high-risk"):
        return
    body = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": case.get("priority", "routine"),
        "code": {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "16334891000119106",
                    "display": "Low dose computed tomography of thorax",
                }
            ],
            "text": "Lung cancer screening (low-dose CT)",
        },
        "subject": case["for"],
        "requester": {"reference": done.actor.reference},
        "basedOn": case["basedOn"],
        "authoredOn": now(),
        "reasonReference": io_values(case, "input", "ai-result"),
    }
    ref = done.u.create(body).stored.ref
    done.case = add_io(case, "output", "referral", "valueReference", {"reference": ref})


# -- conditions ---------------------------------------------------------------------------------
@condition("medication-prescribed", unmet="no medication was prescribed")
def medication_prescribed(steps: Iterable[dict]) -> bool:
    """A step recorded a MedicationRequest."""
    return any(
        ref.get("reference", "").startswith("MedicationRequest/")
        for s in steps
        for ref in io_values(s, "output", "MedicationRequest")
    )
