"""The screening decision: the skin model's "refer" rule on the probability of malignancy
(melanoma + bcc + akiec) at the operating point chosen on validation, written on the Observation,
and the escalation it drives — an uncertain result that leans malignant makes its case urgent,
over HTTP on both databases."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from inference import quality, results
from inference.predict import ModelIntegrityError, load_model, load_operating_point
from inference.registry import MODELS
from inference.training.operating_point import choose_threshold, rates
from tests.inference.conftest import run_worker, skin_photo_media
from tests.inference.test_reuse_http import start_case
from tests.shared import shared_path

SKIN = MODELS["skin"]
LABELS = SKIN.labels
# Validation lesion 236 (a melanoma): the shipped model (skin-2e4bc117d10c) is uncertain (top
# class melanoma, p ≈ 0.56 < 0.75) and the probability of malignancy is far above the operating
# point.
UNCERTAIN_MELANOMA = 236


def probs(**by_label: float) -> list[float]:
    rest = (1.0 - sum(by_label.values())) / (len(LABELS) - len(by_label))
    return [by_label.get(label, rest) for label in LABELS]


def point(threshold: float) -> dict:
    return {"threshold": threshold, "target_sensitivity": 0.9, "version": "skin-test"}


def test_threshold_keeps_the_target_sensitivity():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.5, 0.02])
    positive = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    t = choose_threshold(scores, positive, 0.9)
    assert t == 0.1  # 9 of 10 positives at or above it; the next lower one would keep all 10
    found = rates(scores, positive, t)
    assert found["sensitivity"] == 0.9 and found["specificity"] == 0.5
    assert choose_threshold(scores, positive, 1.0) == 0.05


def test_decision_sums_the_malignant_classes():
    p = probs(mel=0.08, bcc=0.05, akiec=0.04, nv=0.7)
    decision = results.screening_decision(SKIN, point(0.15), p)
    assert decision is not None
    assert decision.probability == pytest.approx(0.17)
    assert decision.positive  # no single malignant class is near the top, their sum is
    assert not results.screening_decision(SKIN, point(0.18), p).positive  # type: ignore[union-attr]
    assert results.screening_decision(MODELS["pneumonia"], None, [0.4, 0.6]) is None


def test_uncertain_melanoma_is_high_risk_and_uncertain():
    p = probs(mel=0.64, nv=0.2)
    decided = LABELS.index("mel")
    assert results.is_uncertain(SKIN, p)
    assert not results.is_high_risk(SKIN, p, decided)  # the class finding alone: not urgent
    screen = results.screening_decision(SKIN, point(0.15), p)
    assert results.is_high_risk(SKIN, p, decided, screen)  # escalated by the screen
    benign = probs(nv=0.9, mel=0.01, bcc=0.01, akiec=0.01)
    quiet = results.screening_decision(SKIN, point(0.15), benign)
    assert not results.is_high_risk(SKIN, benign, LABELS.index("nv"), quiet)


def test_observation_carries_the_decision():
    p = probs(mel=0.64, nv=0.2)
    screen = results.screening_decision(SKIN, point(0.147716), p)
    obs = results.classification_observation(
        SKIN, "skin-test", p, LABELS.index("mel"), task_id="t1", subject="Patient/p",
        derived_from="Media/m", screening=screen,
    )  # fmt: skip
    codes = [c["coding"][0]["code"] for c in obs["interpretation"]]
    assert codes == ["IND", "POS"]
    assert obs["interpretation"][1]["text"].startswith("refer (high risk)")
    [component] = [
        c for c in obs["component"] if c["code"]["coding"][0]["code"] == "malignancy-probability"
    ]
    assert component["valueQuantity"]["value"] == pytest.approx(
        sum(p[LABELS.index(x)] for x in ("mel", "bcc", "akiec")), abs=1e-4
    )
    assert component["referenceRange"][0]["high"]["value"] == 0.147716
    assert "skin-test" in component["referenceRange"][0]["text"]
    assert component["interpretation"][0]["coding"][0]["code"] == "POS"


def test_the_device_names_the_operating_point():
    meta = SKIN.metadata()
    shipped = load_operating_point(SKIN, meta)
    assert shipped is not None
    device = results.model_device(SKIN, meta, shipped)
    props = {p["type"]["text"]: p["valueQuantity"][0]["value"] for p in device["property"]}
    assert props["malignancy screening threshold"] == round(shipped["threshold"], 4)
    assert props["validation malignancy sensitivity at the threshold"] >= 0.9
    plain = results.model_device(MODELS["pneumonia"], MODELS["pneumonia"].metadata(), None)
    assert not any("screening" in p["type"]["text"] for p in plain["property"])


def test_a_stale_operating_point_is_refused(tmp_path):
    meta = SKIN.metadata()
    shipped = json.loads(SKIN.operating_point_path().read_text())
    assert shipped["weights_sha256"] == meta["weights_sha256"]
    assert load_operating_point(SKIN, meta)["threshold"] == shipped["threshold"]
    stale = {**shipped, "weights_sha256": "0" * 64, "version": "skin-000000000000"}
    SKIN.operating_point_path(tmp_path).write_text(json.dumps(stale))
    with pytest.raises(ModelIntegrityError, match="other weights"):
        load_operating_point(SKIN, meta, tmp_path)
    SKIN.operating_point_path(tmp_path).unlink()
    with pytest.raises(ModelIntegrityError, match="missing"):
        load_operating_point(SKIN, meta, tmp_path)


# -- over HTTP -----------------------------------------------------------------------------------
def _val_png(index: int) -> str:
    with np.load(shared_path("data", "ml", "ham10000_onelesion_64_trainval.npz")) as data:
        pixels = data["val_images"][index]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_the_lesion_is_what_the_test_says():
    model = load_model("skin")
    data = base64.b64decode(_val_png(UNCERTAIN_MELANOMA))
    p = model.predict(Image.open(io.BytesIO(data))).probabilities[0]
    screen = results.screening_decision(SKIN, model.operating_point, p)
    assert results.is_uncertain(SKIN, p) and LABELS[int(np.argmax(p))] == "mel"
    assert screen is not None and screen.positive
    quality.check(SKIN, Image.open(io.BytesIO(data)))  # and the image passes the quality gate


@pytest.mark.parametrize("upload_analysed", [False, True], ids=["case-runs-model", "reused"])
def test_uncertain_but_malignant_case_is_urgent(ai_server, fhir, patient_id, upload_analysed):
    media = skin_photo_media(patient_id, _val_png(UNCERTAIN_MELANOMA), "image/png")
    if not upload_analysed:  # no photographic modality: no analysis of its own; the case runs it
        media.pop("modality")
    media = fhir.post("/Media", json=media).json()
    case = start_case(fhir, patient_id, media["id"])
    run_worker(ai_server)
    case = fhir.get(f"/Task/{case['id']}").json()
    assert case["priority"] == "urgent", case
    found = fhir.get("/Observation", params={"derived-from": f"Media/{media['id']}"}).json()
    [obs] = [e["resource"] for e in found["entry"]]
    assert [i["coding"][0]["code"] for i in obs["interpretation"]] == ["IND", "POS"]
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "uncertain"
    steps = fhir.get("/Task", params={"part-of": f"Task/{case['id']}"}).json()["entry"]
    assert all(s["resource"].get("priority") != "routine" for s in steps
               if s["resource"]["status"] not in ("completed", "cancelled")), steps  # fmt: skip
