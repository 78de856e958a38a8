"""DICOM ingest speed: a 500-instance study sent by dcmtk ``storescu`` to Hearth and, in the same
run, to Orthanc (Debian) on this machine.

    .venv/bin/python bench/dicom_ingest.py [--count 500] [--rounds 2] [--sqlite]

Generates the study from the sample files in ../shared/data/dicom (CT, enhanced MR, SEG) with
fresh Study/Series/SOP Instance UIDs, starts `hearth serve` (PostgreSQL throwaway database unless
--sqlite) and Orthanc from a temporary configuration, warms both up, then per round times one
storescu association of all instances to each (a fresh copy of the study each round). Prints
instances/s and MB/s for both, the ratio, and how long after storescu returned Hearth's
ImagingStudy listed every instance.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resources.storage.migrate import upgrade  # noqa: E402
from tests.dicom import Orthanc, tool  # noqa: E402
from tests.servers import (  # noqa: E402
    create_pg_database,
    drop_pg_database,
    free_port,
    system_token,
)
from tests.shared import shared_path  # noqa: E402

SOURCES = ("693_UNCR.dcm", "emri_small.dcm", "liver.dcm")


def make_study(folder: Path, count: int) -> tuple[str, int]:
    """``count`` instances of one new study (a series per source file); (study UID, bytes)."""
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


def storescu(port: int, aec: str, folder: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run(
        [
            tool("storescu"),
            "-R",
            "+sd",
            "-aet",
            "BENCH",
            "-aec",
            aec,
            "127.0.0.1",
            str(port),
            str(folder),
        ],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"storescu to {aec} failed: {out.stderr[-2000:]}")
    return elapsed


def imaging_study_lag(fhir: str, study_uid: str, count: int, headers: dict[str, str]) -> float:
    """Seconds until the ImagingStudy lists all ``count`` instances (read with ``headers``: a
    token that may read ImagingStudy)."""
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
        ).json()
        entries = r.get("entry", [])
        if entries and entries[0]["resource"].get("numberOfInstances") == count:
            return time.perf_counter() - start
        if time.perf_counter() - start > 120:
            raise RuntimeError("ImagingStudy not complete after 120 s")
        time.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sqlite", action="store_true", help="Hearth on SQLite instead of PostgreSQL")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hearth-bench-dicom-"))
    pg_name = None
    if args.sqlite:
        db_url = f"sqlite:///{tmp / 'bench.db'}"
    else:
        pg_name, db_url = create_pg_database()
    upgrade(db_url)
    http_port, dicom_port = free_port(), free_port()
    env = {
        **os.environ,
        "HEARTH_DATABASE_URL": db_url,
        "HEARTH_DATA_DIR": str(tmp / "hearth-data"),
        "HEARTH_PORT": str(http_port),
        "HEARTH_BASE_URL": f"http://127.0.0.1:{http_port}",
        "HEARTH_DICOM_PORT": str(dicom_port),
        "HEARTH_LOG_LEVEL": "warning",
    }
    hearth = subprocess.Popen(
        [sys.executable, "-m", "fhir_server.cli", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    orthanc = Orthanc(tmp / "orthanc", dicom_port)
    fhir = f"http://127.0.0.1:{http_port}/fhir"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("hearth serve did not start")
            time.sleep(0.2)
        warm = tmp / "warm"
        warm_uid, _ = make_study(warm, 6)
        storescu(dicom_port, "HEARTH", warm)
        token = system_token(db_url, f"http://127.0.0.1:{http_port}", "system/ImagingStudy.rs")
        headers = {"Authorization": f"Bearer {token}"}
        imaging_study_lag(fhir, warm_uid, 6, headers)
        storescu(orthanc.dicom_port, "ORTHANC", warm)

        backend = "SQLite" if args.sqlite else "PostgreSQL"
        print(
            f"{args.count} instances per study, {args.rounds} round(s); Hearth on {backend}, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"{'round':>5} {'peer':>8} {'inst/s':>8} {'MB/s':>7} {'seconds':>8} {'FHIR lag s':>10}"
        )
        rates = {"hearth": [], "orthanc": []}
        for rnd in range(1, args.rounds + 1):
            for peer in ("hearth", "orthanc"):
                folder = tmp / f"round{rnd}-{peer}"
                study_uid, size = make_study(folder, args.count)
                if peer == "hearth":
                    secs = storescu(dicom_port, "HEARTH", folder)
                    lag = f"{imaging_study_lag(fhir, study_uid, args.count, headers):10.2f}"
                else:
                    secs = storescu(orthanc.dicom_port, "ORTHANC", folder)
                    lag = f"{'-':>10}"
                rates[peer].append(args.count / secs)
                print(
                    f"{rnd:>5} {peer:>8} {args.count / secs:8.1f} {size / secs / 1e6:7.1f} "
                    f"{secs:8.2f} {lag}"
                )
                shutil.rmtree(folder)
        h = sum(rates["hearth"]) / len(rates["hearth"])
        o = sum(rates["orthanc"]) / len(rates["orthanc"])
        print(
            f"mean: Hearth {h:.1f} inst/s, Orthanc {o:.1f} inst/s, ratio {h / o:.2f}x "
            "(goal >= 1.0x)"
        )
    finally:
        hearth.terminate()
        hearth.wait(timeout=30)
        orthanc.stop()
        if pg_name:
            drop_pg_database(pg_name)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
