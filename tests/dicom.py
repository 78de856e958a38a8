"""DICOM test helpers: a Hearth with its DICOM listener on a free port (per backend), the
sample files, dcmtk over loopback, and an independent reading of what a header should map to."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pydicom
import pytest

from tests.servers import database_url, free_port, start_server
from tests.shared import shared_path

BACKENDS = ["sqlite", "postgresql"]  # as tests/conftest.py (which imports this module)

SAMPLES = ("RG1_UNCR.dcm", "693_UNCR.dcm", "emri_small.dcm", "liver.dcm")


def sample_files() -> list[Path]:
    return [shared_path("data", "dicom", name) for name in SAMPLES]


def pydicom_data_files() -> list[Path]:
    """Every file of the PyPI ``pydicom-data`` package (installed by the dev extra)."""
    import data_store

    folder = Path(data_store.__file__).parent / "data"
    files = sorted(p for p in folder.iterdir() if p.is_file())
    assert len(files) > 50, f"pydicom-data looks incomplete in {folder}"
    return files


def tool(name: str) -> str:
    """A dcmtk / Orthanc executable; fails loudly (make test installs them)."""
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(
            f"{name} not found: run `make test` (scripts/ensure-dicom-tools.sh)"
        )
    return path


def storescu(port: int, *files: Path | str, aet: str = "STORESCU", aec: str = "HEARTH"):
    flags = [str(f) for f in files if str(f).startswith("-")]
    paths = [str(f) for f in files if not str(f).startswith("-")]
    return subprocess.run(
        [tool("storescu"), "-R", *flags, "-aet", aet, "-aec", aec, "127.0.0.1", str(port), *paths],
        capture_output=True,
        text=True,
        timeout=300,
    )


def echoscu(port: int, aet: str = "ECHOSCU", aec: str = "HEARTH"):
    return subprocess.run(
        [tool("echoscu"), "-aet", aet, "-aec", aec, "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )


# storescu proposes compressed transfer syntaxes only when told (dcmtk storescu --propose-*)
STORESCU_PROPOSE = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-x=",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


# The test HTTP client: it carries the current server's operator token (set by ``dicom_hearth``).
HTTP = httpx.Client(timeout=120)


class DicomHearth:
    """A running Hearth (HTTP + DICOM listener) and handles on its ingest service."""

    def __init__(self, running, dicom_port: int) -> None:
        self.running = running
        self.dicom_port = dicom_port

    @property
    def app(self):  # type: ignore[no-untyped-def]
        return self.running.server.config.app

    @property
    def ingest(self):  # type: ignore[no-untyped-def]
        return self.app.state.dicom.ingest

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.app.state.dicom.store

    @property
    def fhir(self) -> str:
        return self.running.fhir

    @property
    def dicomweb(self) -> str:
        return f"{self.running.root}/dicomweb"

    def study(self, study_uid: str) -> dict:
        assert self.ingest.flush(timeout=60)
        bundle = HTTP.get(
            f"{self.fhir}/ImagingStudy",
            params={"identifier": f"urn:dicom:uid|urn:oid:{study_uid}"},
            timeout=60,
        ).json()
        assert bundle.get("total", len(bundle.get("entry", []))) == 1, bundle
        return bundle["entry"][0]["resource"]


@pytest.fixture(scope="module", params=BACKENDS)
def dicom_hearth(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"dicom-{request.param}")
    url, cleanup = database_url(request.param, tmp)
    port = free_port()
    running = start_server(
        request.param,
        url,
        dicom_enabled=True,
        dicom_port=port,
        data_dir=tmp / "data",
        dicom_quiet_seconds=3600,  # completion in these tests comes from association release
    )
    HTTP.headers.update(running.headers)
    yield DicomHearth(running, port)
    running.stop()
    cleanup()


def read_header(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


class Orthanc:
    """Orthanc from Debian, run from a temporary configuration: its own DICOM and HTTP ports,
    storage under ``folder``, Hearth registered as the modality ``hearth`` (and as the DICOMweb
    server ``hearth`` for the DICOMweb plugin)."""

    PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")

    def __init__(
        self,
        folder: Path,
        hearth_port: int,
        hearth_dicomweb: str | None = None,
        hearth_headers: dict[str, str] | None = None,
        dicom_port: int | None = None,
    ):
        import json

        self.folder = folder
        self.http_port, self.dicom_port = free_port(), dicom_port or free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        config = {
            "Name": "hearth-test-orthanc",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpServerEnabled": True,
            "DicomModalities": {"hearth": ["HEARTH", "127.0.0.1", hearth_port]},
            "DicomScpTimeout": 30,
            "StorageCompression": False,
            "Plugins": [],
        }
        if hearth_dicomweb:
            if not self.PLUGIN.exists():
                raise FileNotFoundError(f"{self.PLUGIN} missing: apt-get install orthanc-dicomweb")
            config["Plugins"] = [str(self.PLUGIN)]
            server = {"Url": hearth_dicomweb, "HttpHeaders": dict(hearth_headers or {})}
            config["DicomWeb"] = {"Enable": True, "Servers": {"hearth": server}}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = (folder / "orthanc.log").open("wb")
        self.proc = subprocess.Popen(
            [tool("Orthanc"), str(folder / "orthanc.json")], stdout=self.log, stderr=self.log
        )
        import time

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/system", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Orthanc did not start: {(folder / 'orthanc.log').read_text()[-3000:]}"
                )
            time.sleep(0.2)

    def upload(self, path: Path) -> dict:
        r = httpx.post(f"{self.url}/instances", content=path.read_bytes(), timeout=60)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
