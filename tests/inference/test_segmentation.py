"""Lesion segmentation (inference/segmentation.py): a synthetic lesion of known area is measured
within a few per cent and outlined where it is; a real dermoscopy photo gets a plausible mask;
the outline and area are stored on the AI result as FHIR components, and the PDF report draws
the outline over the photo."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inference import results
from inference.registry import MODELS
from inference.segmentation import segment_photo, simplify, trace_outline
from mappings.report.render import ReportInput, view

DEMO = Path(__file__).resolve().parents[2] / "demo" / "photos"
SKIN = MODELS["skin"]
SKIN_COLOUR, LESION_COLOUR = (228, 182, 160), (96, 58, 44)


def disc_photo(size=(640, 480), centre=(320, 240), radius=100) -> Image.Image:
    image = Image.new("RGB", size, SKIN_COLOUR)
    cx, cy = centre
    ImageDraw.Draw(image).ellipse(
        (cx - radius, cy - radius, cx + radius, cy + radius), fill=LESION_COLOUR
    )
    return image


def shoelace(points: list[tuple[float, float]]) -> float:
    x, y = np.array(points).T
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


@pytest.mark.parametrize("radius", [60, 100, 160])
def test_disc_of_known_area_is_measured_within_a_few_percent(radius):
    found = segment_photo(disc_photo(radius=radius))
    assert found is not None
    true_area = math.pi * radius**2
    assert found.area_pixels == pytest.approx(true_area, rel=0.03)
    assert found.area_mm2 is None
    # The outline, back in photo pixels, encloses about the same area around the same centre.
    polygon = [(x * 640, y * 480) for x, y in found.outline]
    assert shoelace(polygon) == pytest.approx(true_area, rel=0.06)
    xs, ys = np.array(polygon).T
    assert abs((xs.min() + xs.max()) / 2 - 320) < 4 and abs((ys.min() + ys.max()) / 2 - 240) < 4
    radii = [math.hypot(x - 320, y - 240) for x, y in polygon]
    assert max(abs(r - radius) for r in radii) < 0.06 * radius + 4


def test_outline_is_in_fractions_of_the_whole_photo_off_centre_and_not_square():
    # The centre square of a 900×500 photo is x 200..700; a lesion left of centre inside it.
    found = segment_photo(disc_photo(size=(900, 500), centre=(380, 260), radius=70))
    assert found is not None and (found.width, found.height) == (900, 500)
    xs = [x * 900 for x, _ in found.outline]
    ys = [y * 500 for _, y in found.outline]
    assert min(xs) == pytest.approx(310, abs=5) and max(xs) == pytest.approx(450, abs=5)
    assert min(ys) == pytest.approx(190, abs=5) and max(ys) == pytest.approx(330, abs=5)
    assert found.area_pixels == pytest.approx(math.pi * 70**2, rel=0.04)


def test_pixel_spacing_gives_square_millimetres():
    found = segment_photo(disc_photo(radius=100), pixel_spacing_mm=(0.05, 0.05))
    assert found is not None and found.area_mm2 is not None
    assert found.area_mm2 == pytest.approx(math.pi * 5.0**2, rel=0.03)  # r = 100 px = 5 mm
    [area, _] = results.lesion_components(found)
    assert area["valueQuantity"]["code"] == "mm2" and area["valueQuantity"]["unit"] == "mm2"


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (300, 300), SKIN_COLOUR),  # nothing to separate
        disc_photo(size=(300, 300), centre=(150, 150), radius=12),  # under 2 % of the frame
        Image.new("RGB", (300, 300), LESION_COLOUR),  # fills the frame
    ],
)
def test_no_lesion_or_a_frame_filling_one_is_a_failed_segmentation(image):
    assert segment_photo(image) is None
    [area] = results.lesion_components(None)
    assert "valueQuantity" not in area
    assert area["dataAbsentReason"]["coding"][0]["code"] == "error"
    assert "could not be outlined" in area["dataAbsentReason"]["text"]


def test_real_dermoscopy_photo_gets_a_plausible_mask():
    """A demo ISIC photo of a dark, well-bounded lesion in the middle of the frame."""
    photo = Image.open(DEMO / "ISIC_0000191.jpg")
    found = segment_photo(photo)
    assert found is not None
    assert 0.05 < found.frame_share < 0.4  # a lesion, not the frame or a speck
    xs, ys = zip(*found.outline, strict=True)
    assert 0.3 < float(np.mean(xs)) < 0.7 and 0.3 < float(np.mean(ys)) < 0.7
    assert len(found.outline) >= 8
    assert min(xs) > 0.05 and max(xs) < 0.95 and min(ys) > 0.05 and max(ys) < 0.95
    # The region it outlines is darker in the blue channel than the skin outside it.
    rgb = np.asarray(photo.convert("RGB"), dtype=float)
    mask = Image.new("L", photo.size)
    ImageDraw.Draw(mask).polygon([(x * photo.width, y * photo.height) for x, y in found.outline], 1)
    inside = np.asarray(mask, dtype=bool)
    assert rgb[inside, 2].mean() < rgb[~inside, 2].mean() - 20


def test_trace_follows_the_boundary_of_a_square_and_simplifies_it_to_its_corners():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:7, 3:8] = True
    outline = trace_outline(mask)
    assert len(outline) == 16 and len(set(outline)) == 16  # the 5×5 square's border pixels
    assert outline[0] == (2, 3)
    corners = simplify([(float(y), float(x)) for y, x in [*outline, outline[0]]], 0.5)[:-1]
    assert sorted(corners) == [(2.0, 3.0), (2.0, 7.0), (6.0, 3.0), (6.0, 7.0)]


def test_result_stores_outline_and_area_as_components():
    found = segment_photo(disc_photo())
    probs = [0.02, 0.02, 0.06, 0.01, 0.05, 0.83, 0.01]
    obs = results.classification_observation(
        SKIN, "skin-test", probs, 5, task_id="t1", subject="Patient/p",
        derived_from="Media/m", lesion=results.lesion_components(found),
    )  # fmt: skip
    by_code = {c["code"]["coding"][0]["code"]: c for c in obs["component"]}
    area = by_code["lesion-area"]["valueQuantity"]
    assert area["system"] == "http://unitsofmeasure.org" and area["code"] == "{pixels}"
    assert area["value"] == round(found.area_pixels)  # type: ignore[union-attr]
    points = [
        tuple(map(float, p.split(","))) for p in by_code["lesion-outline"]["valueString"].split()
    ]
    assert points == [pytest.approx(p, abs=1e-4) for p in found.outline]  # type: ignore[union-attr]
    # Still a valid R4 Observation with the probabilities first.
    from fhir.resources.R4B.observation import Observation

    Observation.model_validate(obs)
    assert [c["valueQuantity"]["code"] for c in obs["component"][:7]] == ["1"] * 7


def test_pdf_report_draws_the_outline_over_the_photo():
    photo = disc_photo()
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    media = {
        "resourceType": "Media",
        "id": "m",
        "status": "completed",
        "content": {
            "contentType": "image/png",
            "data": base64.b64encode(buffer.getvalue()).decode(),
        },
    }
    found = segment_photo(photo)
    obs = results.classification_observation(
        SKIN, "skin-test", [0.02, 0.02, 0.06, 0.01, 0.05, 0.83, 0.01], 5, task_id="t1",
        subject="Patient/p", derived_from="Media/m", lesion=results.lesion_components(found),
    )  # fmt: skip
    shown = view(
        ReportInput(
            report={"resourceType": "DiagnosticReport", "status": "final"},
            patient={"resourceType": "Patient"},
            ai_results=[obs],
            media=[media],
        )
    )
    outlined = [i for i in shown["images"] if i["label"].startswith("Lesion outline")]
    assert len(outlined) == 1 and f"{round(found.area_pixels)} pixels" in outlined[0]["label"]  # type: ignore[union-attr]
    drawn = np.asarray(
        Image.open(io.BytesIO(base64.b64decode(outlined[0]["src"].split(",", 1)[1]))).convert("RGB")
    )
    green = (drawn[..., 1] > 150) & (drawn[..., 0] < 80) & (drawn[..., 2] < 80)
    ys, xs = np.nonzero(green)
    assert green.sum() > 200  # a line was drawn, around the disc
    assert abs(xs.mean() - 320) < 10 and abs(ys.mean() - 240) < 10
    assert [c for c in shown["ai"][0]["components"] if "Lesion area" in c[0]][0][1].endswith(
        "pixels"
    )
