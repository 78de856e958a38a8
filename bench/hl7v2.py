"""HL7 v2 ingest speed: ORU^R01 messages/s over MLLP, next to the same transaction Bundles
POSTed to ``/fhir`` as plain REST transactions, in the same run on the same server.

    .venv/bin/python bench/hl7v2.py [--messages 300] [--backend postgresql|sqlite]

Starts `hearth serve` (one process, MLLP listener on) on a throwaway database. Each message is a
lab result for a new patient: a Patient, a DiagnosticReport and five Observations, all
conditional (ifNoneExist / conditional update), sent one after another on one connection, each
waiting for its ACK (as MLLP senders do). The baseline maps the same messages client-side
(parse + map only, timed separately) and POSTs the resulting Bundles to ``/fhir``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import database, hearth  # noqa: E402
from mappings.hl7v2 import map_parsed, parse  # noqa: E402
from tests.servers import free_port  # noqa: E402


def message(n: int, tag: str) -> str:
    mrn, filler = f"{tag}-{n}", f"F{tag}-{n}"
    obx = "".join(
        f"OBX|{i}|NM|{code}^{name}^LN||{value}|{unit}^^UCUM|{rng}|N|||F|||20240105090000\r"
        for i, (code, name, value, unit, rng) in enumerate(
            [
                ("2345-7", "Glucose", "5.4", "mmol/L", "3.9-5.5"),
                ("2823-3", "Potassium", "4.1", "mmol/L", "3.5-5.1"),
                ("2951-2", "Sodium", "140", "mmol/L", "135-145"),
                ("2160-0", "Creatinine", "80", "umol/L", "60-110"),
                ("3094-0", "Urea", "5.0", "mmol/L", "2.5-7.8"),
            ],
            start=1,
        )
    )
    return (
        f"MSH|^~\\&|LAB|HOSP|HEARTH|HEARTH|20240105100000+0100||ORU^R01^ORU_R01|{tag}{n}|P|2.5.1\r"
        f"PID|1||{mrn}^^^HOSP^MR||Doe^Jane||19700215|F\r"
        f"OBR|1|P{filler}|{filler}^LAB|24320-4^Basic metabolic panel^LN|||20240105090000"
        f"|||||||||||||||20240105095500|||F\r" + obx
    )


def mllp_rate(port: int, messages: list[str]) -> float:
    with socket.create_connection(("127.0.0.1", port)) as s:
        start = time.perf_counter()
        for m in messages:
            s.sendall(b"\x0b" + m.encode() + b"\x1c\x0d")
            buf = b""
            while not buf.endswith(b"\x1c\x0d"):
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("the listener closed the connection")
                buf += chunk
            if b"MSA|AA|" not in buf:
                raise RuntimeError(f"not applied: {buf!r}")
        return len(messages) / (time.perf_counter() - start)


def rest_rate(base: str, token: str, bundles: list[dict]) -> float:
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        start = time.perf_counter()
        for b in bundles:
            r = c.post(base, json=b, headers={"Prefer": "return=minimal"})
            if r.status_code != 200:
                raise RuntimeError(r.text)
        return len(bundles) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    args = ap.parse_args()
    mllp_port = free_port()
    with (
        database(args.backend) as url,
        hearth(url, env={"HEARTH_MLLP_PORT": str(mllp_port)}) as server,
    ):
        root, token = server.root, server.token
        warm = [message(i, "warm" + uuid.uuid4().hex[:6]) for i in range(20)]
        mllp_rate(mllp_port, warm)  # validators compiled, connections pooled
        n = args.messages
        via_mllp = [message(i, "m" + uuid.uuid4().hex[:8]) for i in range(n)]
        via_rest = [message(i, "r" + uuid.uuid4().hex[:8]) for i in range(n)]
        start = time.perf_counter()
        bundles = [map_parsed(parse(m)).bundle for m in via_rest]
        map_rate = n / (time.perf_counter() - start)
        rest = rest_rate(root + "/fhir", token, bundles)
        mllp = mllp_rate(mllp_port, via_mllp)
        print(f"HL7 v2 ingest on {args.backend}, {n} ORU^R01 (7 resources each), one connection:")
        print(f"  parse + map only (client side)     {map_rate:8.0f} messages/s")
        print(f"  baseline: REST POST /fhir Bundle   {rest:8.1f} transactions/s")
        print(f"  MLLP message -> ACK                {mllp:8.1f} messages/s  ({mllp / rest:.2f}x)")


if __name__ == "__main__":
    main()
