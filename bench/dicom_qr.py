"""DICOM Query/Retrieve speed: C-FIND latency and C-MOVE throughput of Hearth beside Orthanc
(Debian) holding the same studies, in the same run.

    .venv/bin/python bench/dicom_qr.py [--studies 200] [--count 300] [--finds 20] [--sqlite]

Generates ``--studies`` one-instance studies (``small_studies``: five per patient, dates over
five years, four modalities) and one study of ``--count`` instances from the sample files
(bench/dicom_ingest.make_study), sends them all through the real ingest path — dcmtk storescu
to `hearth serve` (PostgreSQL throwaway database unless --sqlite), then to Orthanc — and times
with dcmtk: ``--finds`` C-FINDs of each kind at STUDY level (exact Patient ID; a month's Study
Date range; Modalities in Study; a Patient Name wildcard; wildcard plus date range) and at
SERIES level of one study, against each peer (median and 95th percentile in ms, findscu's own
start-up included), and C-MOVE of the large study to a dcmtk storescp (instances/s, MB/s).

    nice -n 10 .venv/bin/python bench/dicom_qr.py --studies 10000   # the documented figure
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydicom.uid import generate_uid  # noqa: E402

from bench.dicom_peers import Peers, imaging_study_lag, make_study, start_peers, storescu  # noqa: E402
from tests.dicom import tool  # noqa: E402
from tests.servers import free_port  # noqa: E402
from tests.shared import shared_path  # noqa: E402

MODALITIES = ("CT",) * 8 + ("MR",) * 6 + ("CR",) * 5 + ("US",)  # US: 1 study in 20


def small_studies(folder: Path, n: int) -> list[str]:
    """``n`` one-instance studies (a 16x16 CT header from the sample 693_UNCR, fresh UIDs),
    five per patient: Patient ID BENCH-QR-{k // 5}, name Bench^P{k // 5:05d}, Study Date spread
    over 2020-2024 (the 1st-28th of each month), modality CT/MR/CR/US 8:6:5:1."""
    folder.mkdir(parents=True)
    template = pydicom.dcmread(shared_path("data", "dicom", "693_UNCR.dcm"))
    template.Rows = template.Columns = 16
    template.PixelData = bytes(16 * 16 * 2)
    template.BitsAllocated, template.BitsStored, template.HighBit = 16, 12, 11
    template.SamplesPerPixel, template.PixelRepresentation = 1, 0
    uids = []
    for k in range(n):
        ds = template
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = f"BENCH-QR-{k // 5}"
        ds.PatientName = f"Bench^P{k // 5:05d}"
        ds.StudyDate = f"{2020 + k % 5}{1 + k // 5 % 12:02d}{1 + k % 28:02d}"
        ds.Modality = MODALITIES[k % len(MODALITIES)]
        ds.AccessionNumber = f"ACC{k:06d}"
        ds.save_as(folder / f"{k:06d}.dcm", enforce_file_format=True)
        uids.append(str(ds.StudyInstanceUID))
    return uids


def bulk_seed(env: dict[str, str], folder: Path, batch: int = 250) -> None:
    """Hearth seeded in bulk, honestly the ingest's own work: each file checked
    (``parse.check``), put in the same instance store, mapped by the ingest's mappings and
    written by the ingest's own unit of work (``Ingest._write_unit``: Patient conditional
    create, ImagingStudy create with its search index rows) — but ``batch`` studies to a
    transaction instead of one each, patients first (so that none is created twice)."""
    from fhir_server.dicom import ingest as ingest_module
    from fhir_server.dicom import service
    from fhir_server.dicom.parse import check
    from fhir_server.dicom.sop_classes import STORAGE_UIDS
    from fhir_server.runtime.app import build_context
    from fhir_server.runtime.settings import Settings
    from mappings.dicom import imaging_study, patient

    settings = Settings(
        database_url=env["HEARTH_DATABASE_URL"],
        data_dir=Path(env["HEARTH_DATA_DIR"]),
        base_url=env["HEARTH_BASE_URL"],
    )
    ctx = build_context(settings)
    dicom = service.start(ctx.repo, settings, listen=False, replay=False)
    ingest = dicom.ingest
    work: list[tuple[object, list[object]]] = []
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        checked = check(data, STORAGE_UIDS)
        header = imaging_study.header(checked.dataset, ingest.local_tz)
        pending = ingest_module._Pending(header, patient.patient(checked.dataset))
        ingest.store.put(checked.sop_uid, data)
        work.append((ingest_module._Study(header.study_uid), [pending]))
    ingest._ensure_endpoint()
    first: dict[str, tuple[object, list[object]]] = {}
    for study, items in work:
        first.setdefault(items[0].patient["identifier"][0]["value"], (study, items))  # type: ignore[attr-defined]
    for group in (list(first.values()), work):
        for i in range(0, len(group), batch):
            chunk = group[i : i + batch]
            ctx.repo.run(
                lambda unit, chunk=chunk: [ingest._write_unit(unit, s, it) for s, it in chunk]
            )
    dicom.stop()


def engine_timings(env: dict[str, str], queries: dict, finds: int) -> None:
    """The Q/R engine called in this process on the same database and files, without and
    with the repository narrowing (``QueryRetrieve.narrow``): median ms of ``finds`` C-FINDs
    each (no network, no findscu start-up; the full scan, first, warms the header and
    ImagingStudy caches both then use)."""
    from pydicom.dataset import Dataset

    from fhir_server.dicom.qr import STUDY_ROOT, QueryRetrieve
    from fhir_server.runtime.app import build_context
    from fhir_server.runtime.settings import Settings

    settings = Settings(
        database_url=env["HEARTH_DATABASE_URL"],
        data_dir=Path(env["HEARTH_DATA_DIR"]),
        base_url=env["HEARTH_BASE_URL"],
    )
    ctx = build_context(settings)
    store = settings.instance_store(ctx.repo.engine)
    engine = QueryRetrieve(ctx.repo, store)  # one engine: both ways with the same warm caches
    print(f"{'Q/R engine in process':<28} {'full scan ms':>12} {'narrowed ms':>12}")
    for name, keys in queries.items():
        medians = []
        for narrow in (False, True):
            engine.narrow = narrow
            times = []
            for k in range(-1, finds):
                ds = Dataset()
                for key in keys(k % max(finds, 1)):
                    kw, _, value = key.partition("=")
                    setattr(ds, kw, value)
                start = time.perf_counter()
                engine.find(ds, STUDY_ROOT)
                if k >= 0:  # the first warms the caches
                    times.append((time.perf_counter() - start) * 1000)
            medians.append(statistics.median(times))
        print(f"{name:<28} {medians[0]:12.1f} {medians[1]:12.1f}")
    ctx.repo.engine.dispose()


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
    ap.add_argument(
        "--bulk",
        action="store_true",
        help="seed Hearth's small studies in bulk (bulk_seed) instead of by storescu",
    )
    ap.add_argument("--sqlite", action="store_true", help="Hearth on SQLite instead of PostgreSQL")
    args = ap.parse_args()

    recv_port = free_port()
    with start_peers(
        "hearth-bench-qr-",
        sqlite=args.sqlite,
        hearth_env={
            "HEARTH_DICOM_QR_AES": "*",
            "HEARTH_DICOM_DESTINATIONS": f"RECV@127.0.0.1:{recv_port}",
        },
    ) as peers:
        received = peers.tmp / "received"
        received.mkdir()
        receiver = subprocess.Popen(
            [tool("storescp"), "-aet", "RECV", "+xa", "-od", str(received), str(recv_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            run(args, peers, received, recv_port)
        finally:
            receiver.terminate()
            receiver.wait(timeout=20)


def run(args: argparse.Namespace, peers: Peers, received: Path, recv_port: int) -> None:
    orthanc = peers.orthanc
    tmp, env, dicom_port, fhir = peers.tmp, peers.env, peers.dicom_port, peers.fhir
    for name, modality in {  # Orthanc answers and moves for known modalities only
        "recv": {"AET": "RECV", "Host": "127.0.0.1", "Port": recv_port},
        "bench": {"AET": "BENCH", "Host": "127.0.0.1", "Port": recv_port},
    }.items():
        httpx.put(f"{orthanc.url}/modalities/{name}", json=modality).raise_for_status()
    small = small_studies(tmp / "small", args.studies)
    big_uid, big_bytes = make_study(tmp / "big", args.count)
    headers = peers.token("system/ImagingStudy.rs")
    sent = {}
    start = time.perf_counter()
    if args.bulk:
        bulk_seed(env, tmp / "small")
        storescu(dicom_port, "HEARTH", tmp / "big")
    else:
        for folder in (tmp / "small", tmp / "big"):
            storescu(dicom_port, "HEARTH", folder)
    imaging_study_lag(fhir, big_uid, args.count, headers)
    imaging_study_lag(fhir, small[-1], 1, headers)
    sent["hearth"] = time.perf_counter() - start
    start = time.perf_counter()
    for folder in (tmp / "small", tmp / "big"):
        storescu(orthanc.dicom_port, "ORTHANC", folder)
    sent["orthanc"] = time.perf_counter() - start
    backend = peers.backend
    patients = max(1, args.studies // 5)
    print(
        f"{args.studies + 1} studies ({args.studies + args.count} instances, {patients} "
        f"patients); Hearth on {backend}; "
        f"{'seeded in bulk' if args.bulk else 'sent'} in {sent['hearth']:.0f} s to Hearth, "
        f"{sent['orthanc']:.0f} s to Orthanc; load average {os.getloadavg()[0]:.1f}"
    )
    queries = {
        "PatientID exact": lambda k: [
            "QueryRetrieveLevel=STUDY",
            f"PatientID=BENCH-QR-{(k * 37) % patients}",
            "StudyInstanceUID",
            "StudyDate",
        ],
        "StudyDate range (a month)": lambda k: [
            "QueryRetrieveLevel=STUDY",
            f"StudyDate={2020 + k % 5}{1 + k % 12:02d}01-{2020 + k % 5}{1 + k % 12:02d}31",
            "StudyInstanceUID",
            "PatientID",
        ],
        "ModalitiesInStudy=US": lambda k: [
            "QueryRetrieveLevel=STUDY",
            "ModalitiesInStudy=US",
            "StudyInstanceUID",
            "StudyDate",
        ],
        "PatientName wildcard": lambda k: [
            "QueryRetrieveLevel=STUDY",
            f"PatientName=bench^p{(k * 7) % max(1, patients // 10):04d}*",
            "StudyInstanceUID",
            "PatientID",
        ],
        "name wildcard + date range": lambda k: [
            "QueryRetrieveLevel=STUDY",
            f"PatientName=bench^p{k % 10}*",
            "StudyDate=20240301-20240630",
            "StudyInstanceUID",
        ],
        "SERIES of one study": lambda k: [
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={small[(k * 101) % args.studies]}",
            "SeriesInstanceUID",
            "Modality",
        ],
    }
    print(f"{'C-FIND':<28} {'peer':>8} {'median ms':>10} {'p95 ms':>8} {'answers (mean)':>14}")
    for name, keys in queries.items():
        for peer, port, aec in (
            ("hearth", dicom_port, "HEARTH"),
            ("orthanc", orthanc.dicom_port, "ORTHANC"),
        ):
            findscu(port, aec, keys(args.finds))  # warm
            times, answers = [], 0
            for k in range(args.finds):
                secs, got = findscu(port, aec, keys(k))
                times.append(secs * 1000)
                answers += got
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            print(
                f"{name:<28} {peer:>8} {statistics.median(times):10.1f} {p95:8.1f} {answers / args.finds:8.0f}"
            )
    engine_timings(env, queries, max(3, args.finds // 4))
    print(f"load average {os.getloadavg()[0]:.1f}")
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


if __name__ == "__main__":
    main()
