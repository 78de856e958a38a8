"""DICOM Query/Retrieve speed: C-FIND latency and C-MOVE throughput of Hearth beside Orthanc
(Debian) holding the same studies, in the same run.

    .venv/bin/python bench/dicom_qr.py [--studies 200] [--count 300] [--finds 20] [--sqlite]

Generates ``--studies`` small studies (3 instances, a patient each) and one study of
``--count`` instances from the sample files (bench/dicom_ingest.make_study), sends them all
to `hearth serve` (PostgreSQL throwaway database unless --sqlite) and to Orthanc with dcmtk
storescu, then times with dcmtk: ``--finds`` C-FINDs of each kind (exact Patient ID at STUDY
level; wildcard name plus date range; SERIES level of one study) against each peer (median and
95th percentile, ms), and C-MOVE of the large study to a dcmtk storescp (instances/s, MB/s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pydicom

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dicom_ingest import make_study, storescu  # noqa: E402

from resources.storage.migrate import upgrade  # noqa: E402
from tests.dicom import Orthanc, tool  # noqa: E402
from tests.servers import (  # noqa: E402
    create_pg_database,
    drop_pg_database,
    free_port,
    system_token,
)


def small_studies(folder: Path, n: int) -> list[str]:
    """``n`` studies of 3 instances, each its own patient (BENCH-QR-k, name Bench^Patient k)."""
    folder.mkdir(parents=True)
    uids = []
    for k in range(n):
        sub = folder / f"s{k:05d}"
        uid, _ = make_study(sub, 3)
        for path in sorted(sub.iterdir()):
            ds = pydicom.dcmread(path)
            ds.PatientID = f"BENCH-QR-{k}"
            ds.PatientName = f"Bench^Patient{k}"
            ds.StudyDate = f"2024{1 + k % 12:02d}{1 + k % 28:02d}"
            ds.save_as(folder / f"{k:05d}-{path.name}", enforce_file_format=True)
            path.unlink()
        sub.rmdir()  # storescu +sd reads one flat folder
        uids.append(uid)
    return uids


def wait_for_study(fhir: str, headers: dict[str, str], study_uid: str, count: int) -> None:
    """Until the ImagingStudy lists all ``count`` instances (the ingest writes in the back)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        r = httpx.get(
            f"{fhir}/ImagingStudy",
            params={"identifier": f"urn:dicom:uid|urn:oid:{study_uid}"},
            headers=headers,
            timeout=30,
        )
        r.raise_for_status()
        entries = r.json().get("entry", [])
        if entries and entries[0]["resource"].get("numberOfInstances") == count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"ImagingStudy {study_uid} not complete after 300 s")


def findscu(port: int, aec: str, keys: list[str]) -> tuple[float, int]:
    args = [tool("findscu"), "-S", "-v", "-aet", "BENCH", "-aec", aec]
    for k in keys:
        args += ["-k", k]
    start = time.perf_counter()
    out = subprocess.run([*args, "127.0.0.1", str(port)], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"findscu to {aec} failed: {out.stderr[-1500:]}")
    return elapsed, (out.stdout + out.stderr).count("(Pending)")


def movescu(port: int, aec: str, study_uid: str) -> float:
    start = time.perf_counter()
    out = subprocess.run(
        [
            tool("movescu"),
            "-S",
            "-aet",
            "BENCH",
            "-aec",
            aec,
            "-aem",
            "RECV",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study_uid}",
            "127.0.0.1",
            str(port),
        ],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if out.returncode != 0 or "Failed" in out.stderr:
        raise RuntimeError(f"movescu from {aec} failed: {out.stderr[-1500:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--finds", type=int, default=20)
    ap.add_argument("--sqlite", action="store_true", help="Hearth on SQLite instead of PostgreSQL")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hearth-bench-qr-"))
    pg_name = None
    if args.sqlite:
        db_url = f"sqlite:///{tmp / 'bench.db'}"
    else:
        pg_name, db_url = create_pg_database()
    upgrade(db_url)
    http_port, dicom_port, recv_port = free_port(), free_port(), free_port()
    received = tmp / "received"
    received.mkdir()
    receiver = subprocess.Popen(
        [tool("storescp"), "-aet", "RECV", "+xa", "-od", str(received), str(recv_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        **os.environ,
        "HEARTH_DATABASE_URL": db_url,
        "HEARTH_DATA_DIR": str(tmp / "hearth-data"),
        "HEARTH_PORT": str(http_port),
        "HEARTH_BASE_URL": f"http://127.0.0.1:{http_port}",
        "HEARTH_DICOM_PORT": str(dicom_port),
        "HEARTH_DICOM_QR_AES": "*",
        "HEARTH_DICOM_DESTINATIONS": f"RECV@127.0.0.1:{recv_port}",
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
        for name, modality in {  # Orthanc answers and moves for known modalities only
            "recv": {"AET": "RECV", "Host": "127.0.0.1", "Port": recv_port},
            "bench": {"AET": "BENCH", "Host": "127.0.0.1", "Port": recv_port},
        }.items():
            httpx.put(f"{orthanc.url}/modalities/{name}", json=modality).raise_for_status()
        small = small_studies(tmp / "small", args.studies)
        big_uid, big_bytes = make_study(tmp / "big", args.count)
        for folder in (tmp / "small", tmp / "big"):
            storescu(dicom_port, "HEARTH", folder)
            storescu(orthanc.dicom_port, "ORTHANC", folder)
        token = system_token(db_url, f"http://127.0.0.1:{http_port}", "system/ImagingStudy.rs")
        headers = {"Authorization": f"Bearer {token}"}
        wait_for_study(fhir, headers, big_uid, args.count)
        wait_for_study(fhir, headers, small[-1], 3)
        backend = "SQLite" if args.sqlite else "PostgreSQL"
        print(
            f"{args.studies + 1} studies ({args.studies * 3 + args.count} instances); Hearth on "
            f"{backend}; load average {os.getloadavg()[0]:.1f}"
        )
        queries = {
            "PatientID exact (STUDY)": lambda k: [
                "QueryRetrieveLevel=STUDY",
                f"PatientID=BENCH-QR-{k % args.studies}",
                "StudyInstanceUID",
                "StudyDate",
            ],
            "name wildcard + date range": lambda k: [
                "QueryRetrieveLevel=STUDY",
                f"PatientName=bench^patient{k % 10}*",
                "StudyDate=20240301-20240630",
                "StudyInstanceUID",
            ],
            "SERIES of one study": lambda k: [
                "QueryRetrieveLevel=SERIES",
                f"StudyInstanceUID={small[k % args.studies]}",
                "SeriesInstanceUID",
                "Modality",
            ],
        }
        print(f"{'C-FIND':<28} {'peer':>8} {'median ms':>10} {'p95 ms':>8} {'answers':>8}")
        for name, keys in queries.items():
            for peer, port, aec in (
                ("hearth", dicom_port, "HEARTH"),
                ("orthanc", orthanc.dicom_port, "ORTHANC"),
            ):
                findscu(port, aec, keys(0))  # warm
                times, answers = [], 0
                for k in range(args.finds):
                    secs, answers = findscu(port, aec, keys(k))
                    times.append(secs * 1000)
                times.sort()
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                print(
                    f"{name:<28} {peer:>8} {statistics.median(times):10.1f} {p95:8.1f} {answers:>8}"
                )
        print(f"{'C-MOVE':<28} {'peer':>8} {'inst/s':>10} {'MB/s':>8} {'seconds':>8}")
        rates = {}
        for peer, port, aec in (
            ("hearth", dicom_port, "HEARTH"),
            ("orthanc", orthanc.dicom_port, "ORTHANC"),
        ):
            shutil.rmtree(received)
            received.mkdir()
            secs = movescu(port, aec, big_uid)
            got = len(list(received.iterdir()))
            if got != args.count:
                raise RuntimeError(f"{peer}: {got} of {args.count} instances arrived")
            rates[peer] = args.count / secs
            print(
                f"{'study of ' + str(args.count):<28} {peer:>8} {args.count / secs:10.1f} "
                f"{big_bytes / secs / 1e6:8.1f} {secs:8.2f}"
            )
        print(f"C-MOVE ratio Hearth/Orthanc {rates['hearth'] / rates['orthanc']:.2f}x")
    finally:
        hearth.terminate()
        hearth.wait(timeout=30)
        orthanc.stop()
        receiver.terminate()
        receiver.wait(timeout=20)
        if pg_name:
            drop_pg_database(pg_name)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
