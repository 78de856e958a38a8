"""The image-quality and out-of-distribution gate: every kind of bad image is refused with a
reason a cadre can act on, real lesions and real X-rays pass (false-refusal rate on the
validation split at most 2 %), and a refusal surfaces through the product — a failed analysis
Task with the reason and no Observation (``$ai-analyze``, an upload, a case), and ``hearth ai
predict`` printing it and exiting 1."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from inference import quality
from inference.images import BadInput
from inference.registry import MODELS
from inference.training.quality_gate import bad_images, real_images, split_images
from tests.inference.conftest import CHEST_CR, SKIN_PHOTO, run_worker, skin_photo_media
from tests.shared import shared_path

# What a refusal of each kind must tell the cadre.
REASONS = {
    "stripes (generated)": ("stripe", "no visible content"),
    "stripes (ISIC UDA-1 placeholders)": ("stripe", "too dark", "over-exposed"),
    "solid colour": ("no visible content", "too dark", "over-exposed"),
    "noise": ("does not look like", "no visible content", "X-ray", "out of focus"),
    "blurred": ("out of focus", "no visible content"),
    "dark": ("too dark",),
    "over-exposed": ("over-exposed",),
    "tiny": ("too small",),
    "chest X-ray": ("looks like an X-ray",),
    "skin photo": ("looks like a colour photo",),
}
GATED = sorted(n for n, s in MODELS.items() if s.quality is not None)
PLACEHOLDER = shared_path("data", "isic_uda1_cc0", "ISIC_0000000.jpg")


@pytest.fixture(scope="module", params=GATED)
def spec(request):  # type: ignore[no-untyped-def]
    return MODELS[request.param]


def test_every_bad_kind_is_refused_with_its_reason(spec):
    kinds = bad_images(spec)
    assert {"stripes (ISIC UDA-1 placeholders)", "blurred", "dark", "tiny", "solid colour"} <= set(
        kinds
    )
    assert ("chest X-ray" if spec.name == "skin" else "skin photo") in kinds
    for kind, images in kinds.items():
        assert len(images) >= 10, kind
        for n, image in enumerate(images):
            with pytest.raises(BadInput) as refused:
                quality.check(spec, image)
            assert any(r in str(refused.value) for r in REASONS[kind]), (kind, n, refused.value)


def test_real_images_pass(spec):
    for image in real_images(spec):
        quality.check(spec, image)  # raises if refused


def test_false_refusals_on_validation_at_most_2_percent(spec):
    gate = quality.thresholds_for(spec)
    images = split_images(spec, "val")
    refused = [i for i, a in enumerate(images) if quality.verdict(spec, Image.fromarray(a))]
    rate = len(refused) / len(images)
    assert rate <= 0.02, rate
    assert gate["figures"]["val"]["refused"] == len(refused)  # the model card's figure


def test_an_xray_is_refused_by_the_skin_model_and_a_photo_by_the_xray_model():
    skin, pneumonia = MODELS["skin"], MODELS["pneumonia"]
    xray = Image.open(io.BytesIO(_dicom_png(CHEST_CR)))
    with pytest.raises(BadInput, match="X-ray"):
        quality.check(skin, xray)
    quality.check(pneumonia, xray)
    with Image.open(SKIN_PHOTO) as photo:
        with pytest.raises(BadInput, match="colour photo"):
            quality.check(pneumonia, photo)
        quality.check(skin, photo)


def test_a_model_without_a_gate_takes_every_image():
    from dataclasses import replace

    ungated = replace(MODELS["skin"], quality=None)
    assert quality.verdict(ungated, Image.new("RGB", (8, 8))) is None


# -- through the product -------------------------------------------------------------------------
def tasks_of(fhir, focus: str, kind: str) -> list[dict]:  # type: ignore[no-untyped-def]
    code = f"http://hearth.local/fhir/CodeSystem/ai-analysis|{kind}"
    bundle = fhir.get("/Task", params={"focus": focus, "code": code}).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _dicom_png(path: Path) -> bytes:
    from inference.images import dicom_image, read_dicom

    buffer = io.BytesIO()
    dicom_image(read_dicom(path.read_bytes())).save(buffer, format="PNG")
    return buffer.getvalue()


def _blurred_lesion() -> Image.Image:
    with Image.open(SKIN_PHOTO) as photo:
        return photo.convert("RGB").filter(ImageFilter.GaussianBlur(radius=20))


def _dark_lesion() -> Image.Image:
    with Image.open(SKIN_PHOTO) as photo:
        return Image.eval(photo.convert("RGB"), lambda v: v // 4)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: base64.b64encode(PLACEHOLDER.read_bytes()).decode(), "stripe"),
        (lambda: _png(_blurred_lesion()), "retake: out of focus"),
        (lambda: _png(_dark_lesion()), "retake: the image is too dark"),
        (lambda: base64.b64encode(_dicom_png(CHEST_CR)).decode(), "looks like an X-ray"),
    ],
    ids=["stripes", "blurred", "dark", "xray-to-skin"],
)
def test_an_upload_the_gate_refuses_fails_its_task(ai_server, fhir, patient_id, make, reason):
    media = fhir.post("/Media", json=skin_photo_media(patient_id, make(), "image/png")).json()
    [task] = tasks_of(fhir, f"Media/{media['id']}", "skin-lesion-classification")
    run_worker(ai_server)
    task = fhir.get(f"/Task/{task['id']}").json()
    assert task["status"] == "failed" and reason in task["statusReason"]["text"], task
    assert task["statusReason"]["coding"][0]["code"] == "input-rejected"
    assert fhir.get(f"/Observation/ai-{task['id']}").status_code == 404
    found = fhir.get("/Observation", params={"derived-from": f"Media/{media['id']}"}).json()
    assert found.get("entry", []) == []


def test_ai_analyze_refuses_a_photo_for_the_xray_model(fhir, patient_id):
    media = skin_photo_media(patient_id, base64.b64encode(SKIN_PHOTO.read_bytes()).decode())
    media.pop("modality")  # not announced as a photo: no analysis of its own
    media = fhir.post("/Media", json=media).json()
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "analysis", "valueCode": "chest-xray-pneumonia"}],
    }
    task = fhir.post(f"/Media/{media['id']}/$ai-analyze", json=body).json()
    assert task["status"] == "failed", task
    assert "looks like a colour photo, not an X-ray" in task["statusReason"]["text"]
    assert fhir.get(f"/Observation/ai-{task['id']}").status_code == 404


def test_a_case_on_a_striped_image_gets_a_failed_analysis(ai_server, fhir, patient_id):
    from tests.inference.test_reuse_http import start_case

    media = skin_photo_media(patient_id, base64.b64encode(PLACEHOLDER.read_bytes()).decode())
    media.pop("modality")
    media = fhir.post("/Media", json=media).json()
    case = start_case(fhir, patient_id, media["id"])
    run_worker(ai_server)
    [task] = tasks_of(fhir, f"Media/{media['id']}", "skin-lesion-classification")
    assert task["partOf"] == [{"reference": f"Task/{case['id']}"}]
    assert task["status"] == "failed" and "stripe" in task["statusReason"]["text"]
    found = fhir.get("/Observation", params={"derived-from": f"Media/{media['id']}"}).json()
    assert found.get("entry", []) == []
    case = fhir.get(f"/Task/{case['id']}").json()
    assert case["priority"] != "urgent"  # nothing was classified: no proposed appointment


def _predict(*args: str) -> subprocess.CompletedProcess:
    hearth = Path(sys.executable).with_name("hearth")
    return subprocess.run(
        [str(hearth), "ai", "predict", *args], capture_output=True, text=True, timeout=300
    )


def test_hearth_ai_predict_prints_the_refusal_and_exits_1(tmp_path):
    dark = tmp_path / "dark.png"
    Image.new("RGB", (300, 200), (5, 4, 3)).save(dark)
    done = _predict("--model", "skin", str(PLACEHOLDER), str(SKIN_PHOTO), str(dark))
    assert done.returncode == 1, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    by_input = {Path(r["input"]).name: r for r in rows}
    assert "stripe" in by_input[PLACEHOLDER.name]["error"]
    assert "prediction" not in by_input[PLACEHOLDER.name]
    assert "too dark" in by_input["dark.png"]["error"]
    good = by_input[SKIN_PHOTO.name]
    assert good["prediction"] in MODELS["skin"].labels and "refer" in good["screening"]
    alone = _predict("--model", "skin", str(SKIN_PHOTO))
    assert alone.returncode == 0, alone.stderr


def test_hearth_ai_predict_reports_the_gate_on_npz_rows(tmp_path):
    images = split_images(MODELS["skin"], "val")[:3].copy()
    images[1] = 0  # a black frame among real lesions
    path = tmp_path / "rows.npz"
    np.savez(path, images=images, labels=np.array([4, 5, 5]))
    done = _predict("--model", "skin", "--npz", str(path))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [("refused" in r) for r in rows] == [False, True, False]
    assert all("prediction" in r for r in rows)
