"""Case definitions: the small JSON format of ``workflow/data/cases/*.json`` (docs/workflow.md),
loaded and checked once when first needed, never at import time.

A definition names the case, what its focus may be, which roles may start it, the analysis its
AI step asks for (a model key of ``inference/models/``, read by ``fhir_server/runtime/events.py``), and
its ordered steps; each step names the roles that perform it, the ``businessStatus`` the case
shows once the step is done, the resource types its performer may record as outputs, an optional
condition (``when``) and effects the engine runs on completion — both words of the registries in
:mod:`workflow.effects`. Unknown keys, roles, conditions or effects, an AI step without an
analysis or an analysis without an AI step stop the load with a message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources as importlib_resources

from resources.errors import NotFound
from workflow.actors import ROLES
from workflow.effects import CONDITIONS, EFFECTS

CASE_SYSTEM = "http://hearth.local/fhir/CodeSystem/workflow-case"
STEP_SYSTEM = "http://hearth.local/fhir/CodeSystem/workflow-step"
_CASE_KEYS = {
    "id",
    "title",
    "description",
    "focus",
    "startedBy",
    "reportCode",
    "startStatus",
    "analysis",
    "steps",
}
_STEP_KEYS = {"id", "title", "performer", "doneStatus", "outputs", "when", "effects"}


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    performer: tuple[str, ...]
    done_status: str
    outputs: tuple[str, ...] = ()
    when: str | None = None
    effects: tuple[str, ...] = ()

    @property
    def automatic(self) -> bool:
        """Performed by Hearth or the inference worker, never claimed by a person."""
        return set(self.performer) <= {"ai", "system"}


@dataclass(frozen=True)
class CaseDefinition:
    id: str
    title: str
    description: str
    focus: tuple[str, ...]
    started_by: tuple[str, ...]
    report_code: dict
    start_status: str
    steps: tuple[Step, ...]
    analysis: str | None = None  # the model key (inference/models/) its AI step runs

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise NotFound(f"case {self.id} has no step {step_id!r}")

    def after(self, step_id: str) -> list[Step]:
        ids = [s.id for s in self.steps]
        return list(self.steps[ids.index(step_id) + 1 :])


class DefinitionError(ValueError):
    """A shipped case definition is malformed."""


def _step(case_id: str, raw: dict) -> Step:
    where = f"case {case_id}, step {raw.get('id')!r}"
    if set(raw) - _STEP_KEYS:
        raise DefinitionError(f"{where}: unknown keys {sorted(set(raw) - _STEP_KEYS)}")
    for key in ("id", "title", "performer", "doneStatus"):
        if key not in raw:
            raise DefinitionError(f"{where}: {key} is required")
    if not set(raw["performer"]) <= set(ROLES):
        raise DefinitionError(f"{where}: unknown roles in {raw['performer']}")
    if raw.get("when") is not None and raw["when"] not in CONDITIONS:
        raise DefinitionError(f"{where}: unknown condition {raw['when']!r}")
    if not set(raw.get("effects", ())) <= set(EFFECTS):
        raise DefinitionError(f"{where}: unknown effects {raw['effects']}")
    return Step(
        id=raw["id"],
        title=raw["title"],
        performer=tuple(raw["performer"]),
        done_status=raw["doneStatus"],
        outputs=tuple(raw.get("outputs", ())),
        when=raw.get("when"),
        effects=tuple(raw.get("effects", ())),
    )


def parse(raw: dict) -> CaseDefinition:
    """Build and check one definition."""
    if set(raw) - _CASE_KEYS:
        raise DefinitionError(
            f"case {raw.get('id')!r}: unknown keys {sorted(set(raw) - _CASE_KEYS)}"
        )
    steps = tuple(_step(raw["id"], s) for s in raw["steps"])
    if len({s.id for s in steps}) != len(steps):
        raise DefinitionError(f"case {raw['id']}: step ids repeat")
    if not steps or steps[0].when is not None:
        raise DefinitionError(f"case {raw['id']}: the first step must be unconditional")
    has_ai_step = any("ai" in s.performer for s in steps)
    if has_ai_step and not raw.get("analysis"):
        raise DefinitionError(f"case {raw['id']}: an AI step needs the case's analysis (a model)")
    if raw.get("analysis") and not has_ai_step:
        raise DefinitionError(f"case {raw['id']}: analysis {raw['analysis']!r} but no AI step")
    return CaseDefinition(
        id=raw["id"],
        title=raw["title"],
        description=raw.get("description", ""),
        focus=tuple(raw["focus"]),
        started_by=tuple(raw["startedBy"]),
        report_code=raw["reportCode"],
        start_status=raw["startStatus"],
        steps=steps,
        analysis=raw.get("analysis"),
    )


@lru_cache(maxsize=1)
def definitions() -> dict[str, CaseDefinition]:
    """Every shipped case definition, by id (loaded once)."""
    folder = importlib_resources.files("workflow") / "data" / "cases"
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            case = parse(json.loads(entry.read_text()))
            out[case.id] = case
    return out


def definition(case_id: str) -> CaseDefinition:
    try:
        return definitions()[case_id]
    except KeyError:
        raise NotFound(
            f"no case definition {case_id!r}; known: {', '.join(sorted(definitions()))}"
        ) from None
