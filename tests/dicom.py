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
        extra_config: dict | None = None,
    ):
        """``extra_config``: more Orthanc settings (merged over these; ``"Plugins": "dicomweb"``
        loads the DICOMweb plugin without a Hearth server entry)."""
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
        config.update(extra_config or {})
        if config["Plugins"] == "dicomweb":
            config["Plugins"] = [str(self.PLUGIN)]
            config.setdefault("DicomWeb", {"Enable": True})
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


# -- very large objects ---------------------------------------------------------------------
def enhanced_mr(
    frames: int,
    *,
    rows: int = 512,
    columns: int = 512,
    study_uid: str | None = None,
    patient_id: str = "LARGE-1",
):
    """A multi-frame Enhanced MR Image Storage instance (Explicit VR Little Endian, 16-bit
    frames) produced without ever holding its pixel data: ``(sop_uid, study_uid, series_uid,
    size, chunks)`` where ``chunks()`` yields the Part 10 bytes (header, then one frame at a
    time, generated). ``frames`` of 512x512 give 512 KiB each: 2048 frames are 1 GiB."""
    import io
    import struct

    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    template = pydicom.dcmread(
        shared_path("data", "dicom", "emri_small.dcm"), stop_before_pixels=True
    )
    ds = Dataset()
    for elem in template:  # the sample's MR header, without its image attributes
        if elem.tag.group not in (0x0028, 0x7FE0) and elem.keyword not in (
            "SharedFunctionalGroupsSequence",
            "PerFrameFunctionalGroupsSequence",
        ):
            ds.add(elem)
    study_uid = study_uid or generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (
        study_uid,
        generate_uid(),
        generate_uid(),
    )
    ds.PatientID, ds.PatientName = patient_id, "Large^Object"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.SeriesDescription = f"generated {frames} frames {rows}x{columns}"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.5, 0.5], 1.0
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for k in range(frames):
        content, position, item = Dataset(), Dataset(), Dataset()
        content.DimensionIndexValues = [k + 1]
        content.InStackPositionNumber = k + 1
        position.ImagePositionPatient = [0.0, 0.0, float(k)]
        item.FrameContentSequence = [content]
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    frame_bytes = rows * columns * 2
    length = frame_bytes * frames
    if length > 0xFFFFFFFE:
        raise ValueError("pixel data over 4 GiB cannot have a defined length")
    # (7FE0,0010) OW, explicit VR little endian: tag, VR, 2 reserved bytes, 4-byte length
    head = buf.getvalue() + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length)
    ramp = np.arange(rows * columns, dtype=np.uint16).reshape(rows, columns)

    def chunks():  # type: ignore[no-untyped-def]
        yield head
        for k in range(frames):
            yield ((ramp + k * 7) & 0x0FFF).astype("<u2").tobytes()

    return str(ds.SOPInstanceUID), study_uid, str(ds.SeriesInstanceUID), len(head) + length, chunks


def write_chunks(path: Path, chunks) -> int:  # type: ignore[no-untyped-def]
    with path.open("wb") as out:
        for block in chunks():
            out.write(block)
    return path.stat().st_size


def peak_rss(pid: int) -> int:
    """The process's peak resident set size since its start or the last ``reset_peak`` (bytes,
    VmHWM of /proc/<pid>/status)."""
    return _status_kb(pid, "VmHWM") * 1024


def rss(pid: int) -> int:
    return _status_kb(pid, "VmRSS") * 1024


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/<pid>/clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)
