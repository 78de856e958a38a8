"""mappings/report: FHIR resources in, PDF bytes out — content, escaping, images, refusals."""

from __future__ import annotations

import base64
import binascii
import io

import pytest
from pypdf import PdfReader

from mappings.report import ReportInput, render_html, render_pdf
from tests.shared import shared_path


def data(**changes: object) -> ReportInput:
    base = ReportInput(
        report={
            "resourceType": "DiagnosticReport",
            "id": "r1",
            "status": "final",
            "code": {"text": "Chest X-ray review"},
            "issued": "2026-11-26T10:15:00Z",
            "effectiveDateTime": "2026-11-25T08:00:00Z",
            "conclusion": "No consolidation <script>alert(1)</script>",
            "conclusionCode": [{"coding": [{"display": "Normal chest radiograph"}]}],
            "resultsInterpreter": [{"reference": "Practitioner/d"}],
        },
        patient={
            "name": [{"given": ["Thandi"], "family": "Mokoena"}],
            "birthDate": "1970-01-31",
            "gender": "female",
            "identifier": [{"value": "MRN-42"}],
        },
        organization={"resourceType": "Organization", "name": "Ngwelezana District Hospital"},
        ai_results=[
            {
                "resourceType": "RiskAssessment",
                "method": {"text": "PLCOm2012"},
                "device": {"reference": "Device/m"},
                "prediction": [{"qualitativeRisk": {"text": "high"}, "probabilityDecimal": 0.0212}],
            }
        ],
        devices={
            "Device/m": {"deviceName": [{"name": "plcom2012"}], "version": [{"value": "2012.1"}]}
        },
        people={"Practitioner/d": {"name": [{"prefix": ["Dr."], "family": "Naidoo"}]}},
        steps=[
            {
                "status": "completed",
                "description": "Doctor verification",
                "owner": {"reference": "Practitioner/d"},
                "executionPeriod": {"end": "2026-11-26T09:30:00Z"},
            }
        ],
    )
    for k, v in changes.items():
        setattr(base, k, v)
    return base


def text_of(pdf: bytes) -> str:
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)


def test_pdf_carries_header_ai_finding_disclaimer_and_signatures():
    pdf = render_pdf(data())
    assert pdf.startswith(b"%PDF-")
    text = text_of(pdf)
    for expected in (
        "Ngwelezana District Hospital",
        "Thandi Mokoena",
        "MRN-42",
        "plcom2012",
        "2012.1",
        "2.12 % risk",
        "decision support",
        "Normal chest radiograph",
        "Dr. Naidoo",
        "Doctor verification",
        "2026-11-26 09:30",
    ):
        assert expected in text, expected


def test_html_is_escaped():
    html = render_html(data())
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_images_come_only_from_the_resources_given():
    jpeg = base64.b64encode(
        shared_path("data", "skin_photos", "ISIC_0024872.jpg").read_bytes()
    ).decode()
    media = [
        {
            "resourceType": "Media",
            "content": {"contentType": "image/jpeg", "data": jpeg, "title": "Lesion photo"},
        },
        {
            "resourceType": "Media",
            "content": {"contentType": "image/png", "url": "Binary/h", "title": "Grad-CAM heatmap"},
        },
        {
            "resourceType": "Media",
            "content": {"contentType": "image/png", "url": "http://example.org/x.png"},
        },
    ]
    png = base64.b64encode(_tiny_png()).decode()
    html = render_html(
        data(media=media, binaries={"Binary/h": {"contentType": "image/png", "data": png}})
    )
    assert html.count("<img ") == 2 and "example.org" not in html
    pdf = render_pdf(
        data(media=media, binaries={"Binary/h": {"contentType": "image/png", "data": png}})
    )
    reader = PdfReader(io.BytesIO(pdf))
    assert sum(len(p.images) for p in reader.pages) == 2
    assert "Grad-CAM heatmap" in text_of(pdf)


def test_a_broken_image_fails_the_render():
    bad = [
        {"resourceType": "Media", "content": {"contentType": "image/jpeg", "data": "not base64!"}}
    ]
    with pytest.raises(binascii.Error):
        render_pdf(data(media=bad))


def _tiny_png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 4 for _ in range(4))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
