"""AI tests run against their own Hearth (fresh databases of both backends), so the queue holds
only the jobs each test makes; the worker is the real ``hearth worker`` command."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import database_url, start_server
from tests.shared import shared_path

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="module", params=BACKENDS)
def ai_server(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"ai-{request.param}")
    url, cleanup = database_url(request.param, tmp)
    running = start_server(request.param, url, data_dir=tmp / "data")
    running.data_dir = tmp / "data"  # type: ignore[attr-defined]
    yield running
    running.stop()
    cleanup()


@pytest.fixture
def fhir(ai_server):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=ai_server.fhir, timeout=120, headers=ai_server.headers) as c:
        yield c


def run_worker(
    server, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    """``hearth worker --once`` against the test server's database (``env``: more settings)."""
    env = {
        **os.environ,
        "HEARTH_DATABASE_URL": server.database_url,
        "HEARTH_BASE_URL": server.root,
        "HEARTH_DATA_DIR": str(server.data_dir),
        **(env or {}),
    }
    hearth = Path(sys.executable).with_name("hearth")
    done = subprocess.run(
        [str(hearth), "worker", "--once", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(done.stdout, done.stderr)  # shown when a test fails
    assert done.returncode == 0, done.stderr
    return done


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def skin_photo_media(patient_id: str, data: str, content_type: str = "image/jpeg") -> dict:
    return {
        "resourceType": "Media",
        "status": "completed",
        "modality": {
            "coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "XC"}]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "createdDateTime": "2026-11-20T10:00:00Z",
        "content": {"contentType": content_type, "data": data},
    }


def dicom_media(patient_id: str, path: Path, modality: str) -> dict:
    return {
        "resourceType": "Media",
        "status": "completed",
        "modality": {
            "coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": modality}]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "content": {"contentType": "application/dicom", "data": b64(path)},
    }


@pytest.fixture
def patient_id(fhir) -> str:  # type: ignore[no-untyped-def]
    r = fhir.post(
        "/Patient",
        json={"resourceType": "Patient", "name": [{"family": "Okafor"}], "birthDate": "1958-03-02",
              "gender": "female"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()["id"]


SKIN_PHOTO = shared_path("data", "skin_photos", "ISIC_0024872.jpg")
CHEST_CR = shared_path("data", "dicom", "RG1_UNCR.dcm")
HEAD_CT = shared_path("data", "dicom", "693_UNCR.dcm")
