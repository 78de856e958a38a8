"""The one registry of Hearth's AI models: every ``MODEL`` declared in ``inference/models/``
(found with :mod:`pkgutil`, so adding a model is adding a module; docs/extending.md).

The analysis engine, ``$ai-analyze``, the triggers, the workflow wiring (``fhir_server/runtime/events.py``)
and ``hearth ai`` all read it; none of them names a model or an analysis kind.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inference import models as _models
from inference.spec import (
    WEIGHTS_DIR,
    AnalysisSpec,
    ColourMode,
    Formula,
    ImageClassifier,
    Trigger,
)

__all__ = [
    "ANALYSES",
    "BY_ANALYSIS",
    "FORMULAS",
    "MODELS",
    "MODEL_FOR_ANALYSIS",
    "SPECS",
    "WEIGHTS_DIR",
    "AnalysisSpec",
    "ColourMode",
    "Formula",
    "ImageClassifier",
    "Trigger",
]


def discover(package: Any = _models) -> dict[str, AnalysisSpec]:
    """Every ``MODEL`` of the modules in ``package``, by model key, in their listing order.
    A module without ``MODEL``, or two models with the same key or analysis kind, stop the
    import with a message."""
    found: dict[str, AnalysisSpec] = {}
    kinds: dict[str, str] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        spec = getattr(module, "MODEL", None)
        if not isinstance(spec, AnalysisSpec):
            raise RuntimeError(f"{module.__name__} declares no MODEL (an inference.spec model)")
        if spec.name in found:
            raise RuntimeError(f"{module.__name__}: model {spec.name!r} is declared twice")
        if spec.analysis in kinds:
            raise RuntimeError(
                f"{module.__name__}: analysis {spec.analysis!r} is already {kinds[spec.analysis]}'s"
            )
        found[spec.name] = spec
        kinds[spec.analysis] = spec.name
    return dict(sorted(found.items(), key=lambda item: item[1].order))


SPECS: dict[str, AnalysisSpec] = discover()
# The trained image classifiers (weights in inference/weights/) and the published formulas.
MODELS: dict[str, ImageClassifier] = {
    n: s for n, s in SPECS.items() if isinstance(s, ImageClassifier)
}
FORMULAS: dict[str, Formula] = {n: s for n, s in SPECS.items() if isinstance(s, Formula)}
BY_ANALYSIS: dict[str, AnalysisSpec] = {s.analysis: s for s in SPECS.values()}
MODEL_FOR_ANALYSIS: dict[str, ImageClassifier] = {s.analysis: s for s in MODELS.values()}
# What each analysis kind assesses: Observation.code / RiskAssessment.code / Task.code.
ANALYSES: dict[str, str] = {s.analysis: s.analysis_display for s in SPECS.values()}


def metadata(name: str, directory: Path = WEIGHTS_DIR) -> dict:
    """The training metadata of model ``name`` (version, metrics, calibration), without loading
    its weights."""
    return MODELS[name].metadata(directory)


def version_of(name: str) -> str:
    return str(metadata(name)["version"])


def network_factories() -> dict[str, Callable[[], Any]]:
    """Every network a model declares (shipped and sweep variants), by name."""
    return {key: build for spec in MODELS.values() for key, build in spec.networks.items()}


def triggered(event: str, res_type: str, resource: dict) -> list[AnalysisSpec]:
    """The analyses Hearth requests by itself for ``resource`` on ``event``."""
    return [
        spec
        for spec in SPECS.values()
        for t in spec.triggers
        if t.event == event and t.resource_type == res_type and t.applies(resource)
    ]


def operation_inputs() -> dict[str, frozenset[str]]:
    """Resource type -> the analysis kinds ``$ai-analyze`` offers on it."""
    out: dict[str, set[str]] = {}
    for spec in SPECS.values():
        for res_type in spec.operation_inputs:
            out.setdefault(res_type, set()).add(spec.analysis)
    return {k: frozenset(v) for k, v in out.items()}


def default_analysis(res_type: str, focus: dict) -> str | None:
    """The analysis ``$ai-analyze`` runs on ``focus`` when none is named (the first model, in
    listing order, that declares itself the default for it)."""
    for spec in SPECS.values():
        if res_type in spec.operation_inputs and spec.default_for(res_type, focus):
            return spec.analysis
    return None
