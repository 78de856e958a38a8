"""Build the report's view model from FHIR resources and render it (Jinja2 → HTML → WeasyPrint)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from functools import lru_cache

import jinja2
from PIL import Image, ImageDraw, UnidentifiedImageError

LESION_AREA = "lesion-area"
LESION_OUTLINE = "lesion-outline"

DISCLAIMER = (
    "The AI finding is decision support produced by software. It is not a diagnosis; it was "
    "verified by the doctor named below, whose findings are authoritative."
)


@dataclass
class ReportInput:
    """Everything the report shows, as FHIR resources (JSON dicts)."""

    report: dict  # DiagnosticReport, status final
    patient: dict
    organization: dict | None = None
    facility_name: str = "Hearth"
    ai_results: list[dict] = field(default_factory=list)  # Observation / RiskAssessment
    findings: list[dict] = field(default_factory=list)  # the doctor's Observations
    prescriptions: list[dict] = field(default_factory=list)  # MedicationRequest
    media: list[dict] = field(default_factory=list)  # Media (image, heatmap)
    binaries: dict[str, dict] = field(default_factory=dict)  # "Binary/id" -> Binary
    devices: dict[str, dict] = field(default_factory=dict)  # "Device/id" -> Device
    people: dict[str, dict] = field(default_factory=dict)  # "Practitioner/id" -> Practitioner
    steps: list[dict] = field(default_factory=list)  # the case's step Tasks


def person_name(resource: dict | None) -> str:
    if not resource:
        return ""
    if resource.get("resourceType") == "Organization":
        return resource.get("name", "")
    for n in resource.get("name") or []:
        if n.get("text"):
            return n["text"]
        parts = [*(n.get("prefix") or []), *(n.get("given") or []), n.get("family", "")]
        return " ".join(p for p in parts if p)
    return resource.get("id", "")


def _concept(cc: dict | None) -> str:
    if not cc:
        return ""
    if cc.get("text"):
        return cc["text"]
    for c in cc.get("coding") or []:
        return c.get("display") or c.get("code", "")
    return ""


def _date(value: str | None) -> str:
    return (value or "")[:16].replace("T", " ")


def _image(media: dict, binaries: dict[str, dict]) -> dict | None:
    content = media.get("content") or {}
    mime, data = content.get("contentType", ""), content.get("data")
    if data is None and content.get("url", "").startswith("Binary/"):
        binary = binaries.get(content["url"])
        if binary:
            mime, data = binary.get("contentType", mime), binary.get("data")
    if not data or not mime.startswith("image/"):
        return None
    base64.b64decode(data, validate=True)  # refuse anything that is not base64
    label = content.get("title") or _concept(media.get("type")) or _concept(media.get("modality"))
    return {"src": f"data:{mime};base64,{data}", "label": label or "Image"}


def _component(result: dict, code: str) -> dict | None:
    for c in result.get("component") or []:
        if any(k.get("code") == code for k in (c.get("code") or {}).get("coding") or []):
            return dict(c)
    return None


def _outlined(result: dict, media: list[dict], binaries: dict[str, dict]) -> dict | None:
    """The photo an AI result analysed with the lesion outline it stored drawn over it (the
    ``lesion-outline`` component: SVG points in fractions of the photo's size), or None."""
    outline = _component(result, LESION_OUTLINE)
    source = next(
        (d.get("reference", "") for d in result.get("derivedFrom") or []),
        "",
    )
    photo = next((m for m in media if f"Media/{m.get('id')}" == source), None)
    if outline is None or photo is None:
        return None
    shown = _image(photo, binaries)
    if shown is None:
        return None
    try:
        points = [
            tuple(float(v) for v in pair.split(",")) for pair in outline["valueString"].split()
        ]
        raw = base64.b64decode(shown["src"].split(",", 1)[1])
        image = Image.open(io.BytesIO(raw)).convert("RGB")
    except (ValueError, KeyError, OSError, UnidentifiedImageError):
        return None  # an outline or photo that cannot be read is left out of the report
    if len(points) < 3 or any(len(p) != 2 for p in points):
        return None
    image.thumbnail((800, 800))
    width, height = image.size
    line = max(2, round(min(width, height) / 150))
    xy = [(x * width, y * height) for x, y in points]
    ImageDraw.Draw(image).line([*xy, xy[0]], fill=(0, 200, 0), width=line, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    area = _quantity((_component(result, LESION_AREA) or {}).get("valueQuantity") or {})
    label = "Lesion outline found by the AI" + (f" (area {area})" if area else "")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"src": f"data:image/png;base64,{encoded}", "label": label}


def _quantity(quantity: dict) -> str | float | None:
    """A component's value: a probability as the number, any other quantity with its unit
    (a lesion area: "14186 pixels")."""
    value = quantity.get("value")
    if value is None or quantity.get("code", "1") == "1":
        return value
    return f"{value} {quantity.get('unit') or quantity.get('code', '')}".strip()


def _ai(result: dict, devices: dict[str, dict]) -> dict:
    device = devices.get((result.get("device") or {}).get("reference", ""), {})
    model = ", ".join(d.get("name", "") for d in device.get("deviceName") or []) or "unnamed model"
    version = ", ".join(v.get("value", "") for v in device.get("version") or [])
    if result.get("resourceType") == "RiskAssessment":
        pred = (result.get("prediction") or [{}])[0]
        prob = pred.get("probabilityDecimal")
        value = _concept(pred.get("qualitativeRisk")) or ""
        if prob is not None:
            value = f"{value} ({prob * 100:.2f} % risk)".strip()
        method = _concept(result.get("method"))
    else:
        value = _concept(result.get("valueCodeableConcept")) or str(
            (result.get("valueQuantity") or {}).get("value", "")
        )
        method = _concept(result.get("method"))
    components = [
        (_concept(c.get("code")), _quantity(c.get("valueQuantity") or {}))
        for c in result.get("component") or []
    ]
    return {
        "what": _concept(result.get("code")) or result.get("resourceType"),
        "value": value,
        "interpretation": ", ".join(_concept(i) for i in result.get("interpretation") or []),
        "components": [(n, v) for n, v in components if v is not None],
        "model": model,
        "version": version,
        "method": method,
        "date": _date(result.get("effectiveDateTime") or result.get("occurrenceDateTime")),
    }


def _finding(obs: dict) -> dict:
    value = _concept(obs.get("valueCodeableConcept")) or obs.get("valueString") or ""
    if "valueQuantity" in obs:
        q = obs["valueQuantity"]
        value = f"{q.get('value')} {q.get('unit', '')}".strip()
    return {
        "what": _concept(obs.get("code")),
        "value": value,
        "note": " ".join(n.get("text", "") for n in obs.get("note") or []),
    }


def _prescription(mr: dict) -> dict:
    return {
        "medication": _concept(mr.get("medicationCodeableConcept"))
        or (mr.get("medicationReference") or {}).get("display", ""),
        "dosage": "; ".join(d.get("text", "") for d in mr.get("dosageInstruction") or []),
        "status": mr.get("status", ""),
    }


def _signatures(steps: list[dict], people: dict[str, dict]) -> list[dict]:
    out = []
    for step in steps:
        owner = (step.get("owner") or {}).get("reference", "")
        if step.get("status") != "completed" or not owner or owner.startswith("Device/"):
            continue
        out.append(
            {
                "step": step.get("description", ""),
                "name": person_name(people.get(owner)) or owner,
                "date": _date((step.get("executionPeriod") or {}).get("end")),
            }
        )
    return out


def view(data: ReportInput) -> dict:
    """The template's variables, from the resources."""
    r, p = data.report, data.patient
    ident = ", ".join(i.get("value", "") for i in p.get("identifier") or [])
    images = [i for i in (_image(m, data.binaries) for m in data.media) if i]
    images += [
        i
        for i in (_outlined(x, data.media, data.binaries) for x in data.ai_results)
        if i is not None
    ]
    return {
        "facility": person_name(data.organization) or data.facility_name,
        "title": _concept(r.get("code")) or "Report",
        "report_id": r.get("id", ""),
        "status": r.get("status", ""),
        "issued": _date(r.get("issued")),
        "effective": _date(r.get("effectiveDateTime")),
        "patient": {
            "name": person_name(p),
            "birth_date": p.get("birthDate", ""),
            "gender": p.get("gender", ""),
            "identifier": ident,
        },
        "images": images,
        "ai": [_ai(x, data.devices) for x in data.ai_results],
        "disclaimer": DISCLAIMER,
        "findings": [_finding(o) for o in data.findings],
        "conclusion": r.get("conclusion", ""),
        "conclusion_codes": [_concept(c) for c in r.get("conclusionCode") or []],
        "interpreters": [
            person_name(data.people.get(x.get("reference", ""))) or x.get("reference", "")
            for x in r.get("resultsInterpreter") or []
        ],
        "prescriptions": [_prescription(m) for m in data.prescriptions],
        "signatures": _signatures(data.steps, data.people),
    }


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mappings.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html")


def render_html(data: ReportInput) -> str:
    return _template().render(**view(data))


def render_pdf(data: ReportInput) -> bytes:
    """The report as PDF bytes."""
    import weasyprint
    from weasyprint.urls import URLFetcher

    # Only the data: URIs of the images the caller gave; a broken one fails the render.
    fetcher = URLFetcher(allowed_protocols={"data"}, fail_on_errors=True)
    html = weasyprint.HTML(string=render_html(data), url_fetcher=fetcher, base_url=".")
    return html.write_pdf()
