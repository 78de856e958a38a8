"""DICOM ingest speed: a 500-instance study sent by dcmtk ``storescu`` to Hearth and, in the same
run, to Orthanc (Debian) on this machine.

    .venv/bin/python bench/dicom_ingest.py [--count 500] [--rounds 2] [--sqlite]

Generates the study from the sample files in ../shared/data/dicom (CT, enhanced MR, SEG) with
fresh Study/Series/SOP Instance UIDs, starts `hearth serve` (PostgreSQL throwaway database unless
--sqlite) and Orthanc from a temporary configuration (bench/dicom_peers.py), warms both up, then
per round times one storescu association of all instances to each (a fresh copy of the study
each round). Prints instances/s and MB/s for both, the ratio, and how long after storescu
returned Hearth's ImagingStudy listed every instance.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dicom_peers import imaging_study_lag, make_study, start_peers, storescu  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sqlite", action="store_true", help="Hearth on SQLite instead of PostgreSQL")
    args = ap.parse_args()

    with start_peers("hearth-bench-dicom-", sqlite=args.sqlite) as peers:
        tmp, dicom_port, fhir = peers.tmp, peers.dicom_port, peers.fhir
        warm = tmp / "warm"
        warm_uid, _ = make_study(warm, 6)
        storescu(dicom_port, "HEARTH", warm)
        headers = peers.token("system/ImagingStudy.rs")
        imaging_study_lag(fhir, warm_uid, 6, headers)
        storescu(peers.orthanc.dicom_port, "ORTHANC", warm)

        backend = peers.backend
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
                    secs = storescu(peers.orthanc.dicom_port, "ORTHANC", folder)
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


if __name__ == "__main__":
    main()
