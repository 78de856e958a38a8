"""What the DICOM benches share (bench/dicom_ingest.py, dicom_qr.py, dicom_large.py): Hearth
(`hearth serve` on a throwaway PostgreSQL database, or SQLite) and Orthanc (Debian, from a
temporary configuration: tests/dicom.Orthanc) started side by side, dcmtk ``storescu``, a
generated study, and waiting for the ingest to list a study's instances."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import Server, database, hearth  # noqa: E402
from tests.dicom import Orthanc, tool  # noqa: E402
from tests.servers import free_port, system_token  # noqa: E402
from tests.shared import shared_path  # noqa: E402

SOURCES = ("693_UNCR.dcm", "emri_small.dcm", "liver.dcm")


@dataclass
class Peers:
    """Hearth (``server``: `hearth serve` with its DICOM listener on ``dicom_port``) and Orthanc,
    with a temporary folder ``tmp`` for what the bench writes."""

    tmp: Path
    db_url: str
    server: Server
    dicom_port: int
    orthanc: Orthanc
    sqlite: bool

    @property
    def root(self) -> str:
        return self.server.root

    @property
    def fhir(self) -> str:
        return self.server.fhir

    @property
    def env(self) -> dict[str, str]:
        return self.server.env

    @property
    def hearth(self) -> subprocess.Popen:
        return self.server.proc

    @property
    def backend(self) -> str:
        return "SQLite" if self.sqlite else "PostgreSQL"

    def token(self, scope: str) -> dict[str, str]:
        """Authorization header with a system token of ``scope``."""
        return {"Authorization": f"Bearer {system_token(self.db_url, self.root, scope)}"}


@contextmanager
def start_peers(
    prefix: str,
    *,
    sqlite: bool = False,
    hearth_env: dict[str, str] | None = None,
    orthanc_config: dict | None = None,
) -> Iterator[Peers]:
    """Hearth on a throwaway database (bench/harness.py: PostgreSQL unless ``sqlite``; more
    HEARTH_* settings in ``hearth_env``), answering C-ECHO, and Orthanc (``orthanc_config``:
    more of its configuration) on free ports; everything stopped and removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with database("sqlite" if sqlite else "postgresql") as url:
            dicom_port = free_port()
            env = {
                "HEARTH_DATA_DIR": str(tmp / "hearth-data"),
                "HEARTH_DICOM_ENABLED": "true",
                "HEARTH_DICOM_PORT": str(dicom_port),
                **(hearth_env or {}),
            }
            with hearth(url, env=env) as server:
                deadline = time.monotonic() + 60
                while subprocess.run(
                    [tool("echoscu"), "-aec", "HEARTH", "127.0.0.1", str(dicom_port)],
                    capture_output=True,
                ).returncode:
                    if time.monotonic() > deadline:
                        raise RuntimeError("Hearth's DICOM listener did not start")
                    time.sleep(0.3)
                orthanc = Orthanc(tmp / "orthanc", dicom_port, extra_config=orthanc_config)
                try:
                    yield Peers(tmp, url, server, dicom_port, orthanc, sqlite)
                finally:
                    orthanc.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def storescu(port: int, aec: str, path: Path) -> float:
    """dcmtk storescu of a file, or of every file of a folder, on one association, proposing
    each file's own SOP class (-R); seconds."""
    args = [tool("storescu"), "-R", "-aet", "BENCH", "-aec", aec]
    if path.is_dir():
        args.append("+sd")
    start = time.perf_counter()
    out = subprocess.run([*args, "127.0.0.1", str(port), str(path)], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"storescu to {aec} failed: {out.stderr[-2000:]}")
    return elapsed


def make_study(folder: Path, count: int) -> tuple[str, int]:
    """``count`` instances of one new study from the sample files in ../shared/data/dicom (CT,
    enhanced MR, SEG: a series per source file, fresh UIDs); (study UID, bytes)."""
    folder.mkdir(parents=True)
    sources = [pydicom.dcmread(shared_path("data", "dicom", name)) for name in SOURCES]
    study_uid = generate_uid()
    series = [generate_uid() for _ in sources]
    total = 0
    for n in range(count):
        k = n % len(sources)
        ds = sources[k]
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series[k]
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = n // len(sources) + 1
        ds.PatientID = "BENCH-1"
        path = folder / f"{n:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        total += path.stat().st_size
    return study_uid, total


def imaging_study_lag(
    fhir: str, study_uid: str, count: int, headers: dict[str, str], timeout: float = 300
) -> float:
    """Seconds until the ImagingStudy lists all ``count`` instances (read with ``headers``: a
    token that may read ImagingStudy; the ingest writes in the back)."""
    start = time.perf_counter()
    while True:
        r = httpx.get(
            f"{fhir}/ImagingStudy",
            params={
                "identifier": f"urn:dicom:uid|urn:oid:{study_uid}",
                "_elements": "numberOfInstances",
            },
            headers=headers,
            timeout=30,
        )
        r.raise_for_status()
        entries = r.json().get("entry", [])
        if entries and entries[0]["resource"].get("numberOfInstances") == count:
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"ImagingStudy {study_uid} not complete after {timeout:.0f} s")
        time.sleep(0.02)
