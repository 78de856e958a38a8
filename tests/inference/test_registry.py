"""The model registry: each model is one module of ``inference/models/`` declaring ``MODEL``;
discovery finds it, and the analysis engine, ``$ai-analyze``, the triggers, the workflow wiring
and ``hearth ai`` read it (their behaviour over HTTP is tested in test_analysis_http.py,
test_dicom_case.py, test_reuse_http.py and tests/workflow)."""

from __future__ import annotations

import importlib
import textwrap

import pytest

from fhir_server.runtime import events
from inference import registry
from workflow.definitions import definitions, parse

SKIN, CHEST, PLCO = (
    "skin-lesion-classification",
    "chest-xray-pneumonia",
    "lung-cancer-risk-plcom2012",
)


def test_shipped_models_are_found_by_discovery():
    assert list(registry.SPECS) == ["skin", "pneumonia", "plcom2012"]  # listing order
    assert list(registry.MODELS) == ["skin", "pneumonia"]  # trained, with weights
    assert list(registry.FORMULAS) == ["plcom2012"]
    assert registry.ANALYSES == {
        SKIN: "AI skin lesion classification (7 HAM10000 classes)",
        CHEST: "AI chest X-ray pneumonia classification",
        PLCO: "Six-year lung-cancer risk (PLCOm2012)",
    }
    assert registry.FORMULAS["plcom2012"].version() == "plcom2012-nejm2013"
    assert {"skin-resnet18-w32", "pneumonia-resnet10-w16"} <= set(registry.network_factories())


def test_what_ai_analyze_offers_and_its_defaults_come_from_the_models():
    assert registry.operation_inputs() == {
        "ImagingStudy": {CHEST},
        "Media": {SKIN, CHEST},
        "Patient": {PLCO},
    }
    radiograph = {"modality": {"coding": [{"code": "DX"}]}}
    photo = {"modality": {"coding": [{"code": "XC"}]}}
    assert registry.default_analysis("Media", photo) == SKIN
    assert registry.default_analysis("Media", {}) == SKIN
    assert registry.default_analysis("Media", radiograph) == CHEST
    assert registry.default_analysis("ImagingStudy", {}) == CHEST
    assert registry.default_analysis("Patient", {}) == PLCO
    assert registry.default_analysis("Observation", {}) is None


def test_triggers_are_declared_by_the_models():
    photo = {
        "resourceType": "Media",
        "content": {"contentType": "image/jpeg"},
        "modality": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                 "code": "DMS"}]},
    }  # fmt: skip
    assert [s.name for s in registry.triggered("created", "Media", photo)] == ["skin"]
    assert registry.triggered("created", "Media", {**photo, "modality": {}}) == []
    chest = {"series": [{"modality": {"code": "DX"}, "bodySite": {"code": "51185008"}}]}
    head = {"series": [{"modality": {"code": "CT"}}]}
    assert [s.name for s in registry.triggered("study-complete", "ImagingStudy", chest)] == [
        "pneumonia"
    ]
    assert registry.triggered("study-complete", "ImagingStudy", head) == []


def test_every_case_definition_names_a_registered_model():
    events.check_case_analyses()
    analyses = {c.id: events.case_analysis(c).analysis for c in definitions().values()}
    assert analyses == {"skin-screening": SKIN, "imaging-review": CHEST, "lung-risk": PLCO}
    assert events.study_case(registry.SPECS["pneumonia"]) == "imaging-review"
    assert events.study_case(registry.SPECS["skin"]) is None  # skin-screening: not by the system
    unknown = parse(
        {
            "id": "x",
            "title": "X",
            "focus": ["Patient"],
            "startedBy": ["doctor"],
            "reportCode": {"code": "x"},
            "startStatus": "NEW",
            "analysis": "retina",
            "steps": [{"id": "a", "title": "A", "performer": ["ai"], "doneStatus": "DONE"}],
        }
    )
    with pytest.raises(LookupError, match="'retina', which is not a model"):
        events.case_analysis(unknown)


MODEL_MODULE = """
from inference.spec import Assessment, Formula

MODEL = Formula(
    name="{name}",
    analysis="{analysis}",
    analysis_display="A test score",
    title="Test score",
    order=1,
    operation_inputs=frozenset({{"Patient"}}),
    default_for=lambda res_type, focus: False,
    formula_version="{name}-1",
    citation="none",
    summary="a test formula",
    assess=lambda repo, task, task_id: Assessment([], "", False),
)
"""


def _package(tmp_path, monkeypatch, name: str, modules: dict[str, str]):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for module, text in modules.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


def test_a_model_is_one_module(tmp_path, monkeypatch):
    package = _package(
        tmp_path,
        monkeypatch,
        "one_more_models",
        {"tiny": MODEL_MODULE.format(name="tiny", analysis="tiny-score")},
    )
    found = registry.discover(package)
    assert list(found) == ["tiny"] and found["tiny"].version() == "tiny-1"


@pytest.mark.parametrize(
    "modules, message",
    [
        ({"empty": "X = 1\n"}, "declares no MODEL"),
        (
            {
                "a": MODEL_MODULE.format(name="same", analysis="a-score"),
                "b": MODEL_MODULE.format(name="same", analysis="b-score"),
            },
            "declared twice",
        ),
        (
            {
                "a": MODEL_MODULE.format(name="a", analysis="one-score"),
                "b": MODEL_MODULE.format(name="b", analysis="one-score"),
            },
            "already a's",
        ),
    ],
)
def test_discovery_refuses_ambiguous_models(tmp_path, monkeypatch, modules, message):
    package = _package(tmp_path, monkeypatch, f"bad_models_{abs(hash(message))}", modules)
    with pytest.raises(RuntimeError, match=message):
        registry.discover(package)
