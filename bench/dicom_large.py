"""Memory for a very large multi-frame object: a ~1 GiB Enhanced MR sent to Hearth and to Orthanc
(Debian) in the same run, by dcmtk ``storescu`` and by STOW-RS, then retrieved by WADO-RS and by
dcmtk ``getscu`` (C-GET), with each server's peak resident memory during each operation.

    .venv/bin/python bench/dicom_large.py [--frames 2048] [--sqlite]

The instance (``tests.dicom.enhanced_mr``: 512x512 16-bit frames, 512 KiB each, per-frame
functional groups) is generated frame by frame, written to disk once for storescu, and streamed
straight from the generator for STOW-RS (another SOP Instance UID, so neither server sees a
duplicate). Before each operation the server's peak RSS is reset (``/proc/<pid>/clear_refs``);
after it, VmHWM of ``/proc/<pid>/status`` is the peak during that operation. Hearth runs as
``hearth serve`` (one process: HTTP, DICOM listener, ingest) on PostgreSQL (SQLite with
--sqlite), its blobs in files; Orthanc from a temporary configuration with its DICOMweb plugin.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import uuid
from functools import partial
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dicom_peers import start_peers, storescu  # noqa: E402
from tests.dicom import (  # noqa: E402
    enhanced_mr,
    peak_rss,
    reset_peak,
    rss,
    tool,
    write_chunks,
)
from tests.servers import free_port  # noqa: E402

MB = 1024 * 1024


def stow_body(chunks, boundary: str):  # type: ignore[no-untyped-def]
    yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    yield from chunks()
    yield f"\r\n--{boundary}--\r\n".encode()


def stow(url: str, chunks, headers: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    boundary = uuid.uuid4().hex
    r = httpx.post(
        url,
        content=stow_body(chunks, boundary),
        headers={
            **headers,
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        },
        timeout=900,
    )
    if r.status_code != 200:
        raise RuntimeError(f"STOW-RS to {url}: {r.status_code} {r.text[:500]}")
    return r.status_code


def wado(url: str, headers: dict[str, str]) -> int:
    """Retrieve by WADO-RS as stored; the number of body bytes (read and dropped)."""
    got = 0
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    with httpx.stream("GET", url, headers={**headers, "Accept": accept}, timeout=900) as r:
        if r.status_code != 200:
            raise RuntimeError(f"WADO-RS {url}: {r.status_code} {r.read()[:300]!r}")
        for block in r.iter_bytes(1 << 20):
            got += len(block)
    return got


def getscu(port: int, aec: str, study: str, series: str, sop: str, into: Path) -> int:
    into.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [
            tool("getscu"),
            "-S",
            "-aet",
            "BENCHGET",
            "-aec",
            aec,
            "-od",
            str(into),
            "-k",
            "QueryRetrieveLevel=IMAGE",
            "-k",
            f"StudyInstanceUID={study}",
            "-k",
            f"SeriesInstanceUID={series}",
            "-k",
            f"SOPInstanceUID={sop}",
            "127.0.0.1",
            str(port),
        ],
        capture_output=True,
        text=True,
    )
    files = list(into.iterdir())
    size = sum(f.stat().st_size for f in files)
    shutil.rmtree(into)
    if out.returncode != 0 or not files:
        raise RuntimeError(f"getscu from {aec}: {out.stderr[-1500:]}")
    return size


def measured(pid: int, action) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """(seconds, peak RSS bytes of ``pid`` during ``action()``)."""
    reset_peak(pid)
    start = time.perf_counter()
    action()
    return time.perf_counter() - start, peak_rss(pid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=2048, help="512 KiB frames (2048: 1 GiB)")
    ap.add_argument("--sqlite", action="store_true", help="Hearth on SQLite instead of PostgreSQL")
    args = ap.parse_args()

    getscu_port = free_port()
    with start_peers(
        "hearth-bench-large-",
        sqlite=args.sqlite,
        hearth_env={
            "HEARTH_DICOM_QR_AES": "*",
            "HEARTH_DICOM_MAX_UPLOAD_BYTES": str(4 * 1024 * MB),
        },
        orthanc_config={
            "Plugins": "dicomweb",
            # getscu's AE may C-GET (Orthanc answers C-GET to known modalities only)
            "DicomModalities": {"bench": ["BENCHGET", "127.0.0.1", getscu_port]},
        },
    ) as bench:
        hearth, orthanc, tmp = bench.hearth, bench.orthanc, bench.tmp
        dicom_port, root = bench.dicom_port, bench.root
        auth = bench.token("system/*.cruds")
        peers = {
            "Hearth": (hearth.pid, dicom_port, "HEARTH", f"{root}/dicomweb", auth),
            "Orthanc": (
                orthanc.proc.pid,
                orthanc.dicom_port,
                "ORTHANC",
                f"{orthanc.url}/dicom-web",
                {},
            ),
        }
        # warm both up with a small object through every path
        sop, study, series, size, chunks = enhanced_mr(4)
        small = tmp / "warm.dcm"
        write_chunks(small, chunks)
        for _, (_pid, port, aec, web, headers) in peers.items():
            storescu(port, aec, small)
            stow(f"{web}/studies", enhanced_mr(4)[4], headers)
            wado(f"{web}/studies/{study}/series/{series}/instances/{sop}", headers)
            getscu(port, aec, study, series, sop, tmp / "got")

        sop, study, series, size, chunks = enhanced_mr(args.frames)
        big = tmp / "large.dcm"
        write_chunks(big, chunks)
        print(
            f"Enhanced MR, {args.frames} frames 512x512x16 bit, {size / MB:.0f} MiB "
            f"({size} bytes); Hearth on {bench.backend}; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"{'operation':<22} {'peer':<8} {'seconds':>8} {'peak RSS MiB':>13} {'idle RSS MiB':>13}"
        )
        for name, (pid, port, aec, web, headers) in peers.items():
            idle = rss(pid)
            url = f"{web}/studies/{study}/series/{series}/instances/{sop}"
            stow_sop, _, _, _, stow_chunks = enhanced_mr(args.frames, study_uid=study)
            ops = [
                ("C-STORE (storescu)", partial(storescu, port, aec, big)),
                ("STOW-RS", partial(stow, f"{web}/studies", stow_chunks, headers)),
                ("WADO-RS (as stored)", partial(wado, url, headers)),
                ("C-GET (getscu)", partial(getscu, port, aec, study, series, sop, tmp / "got")),
            ]
            for op, action in ops:
                secs, peak = measured(pid, action)
                print(f"{op:<22} {name:<8} {secs:8.1f} {peak / MB:13.0f} {idle / MB:13.0f}")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
