"""HL7 v2 ingest speed: ORU^R01 messages/s over MLLP, next to the same transaction Bundles
POSTed to ``/fhir`` as plain REST transactions, in the same run on the same server.

    .venv/bin/python bench/hl7v2.py [--messages 300] [--backend postgresql|sqlite]

Starts `hearth serve` (one process, MLLP listener on) on a throwaway database. Each message is a
lab result for a new patient: a Patient, a DiagnosticReport and five Observations, all
conditional (ifNoneExist / conditional update), sent one after another on one connection, each
waiting for its ACK (as MLLP senders do). The baseline maps the same messages client-side
(parse + map only, timed separately) and POSTs the resulting Bundles to ``/fhir``.

Outbound (``--outbound N``, default 30): the same server sends every final DiagnosticReport as
ORU^R01 to a receiver in this process (``HEARTH_HL7_OUT_*``, the sender polling its queue every
``HEARTH_HL7_OUT_POLL`` = 0.05 s here); the figure is the time from the REST write of a final
report returning to its message arriving at the receiver (which answers AA at once), beside the
baseline of the write itself, median of N one after another.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
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


class Receiver:
    """A loopback MLLP receiver: the arrival time of each message by its OBR-3, answered AA."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.arrived: dict[str, float] = {}
        self.event = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while chunk := conn.recv(65536):
                buf += chunk
                while b"\x1c\x0d" in buf:
                    frame, buf = buf.split(b"\x1c\x0d", 1)
                    msg = parse(frame.lstrip(b"\x0b"))
                    at = time.perf_counter()
                    ack = f"MSH|^~\\&|EHR|HOSP|HEARTH|HEARTH|||ACK|A|P|2.5.1\rMSA|AA|{msg.control_id}\r"
                    conn.sendall(b"\x0b" + ack.encode() + b"\x1c\x0d")
                    obr = msg.one("OBR")
                    with self.event:
                        self.arrived[obr.value(2) if obr is not None else ""] = at
                        self.event.notify_all()

    def wait(self, key: str, timeout: float = 60) -> float:
        with self.event:
            if not self.event.wait_for(lambda: key in self.arrived, timeout):
                raise RuntimeError(f"report {key} never arrived")
            return self.arrived[key]


def outbound_latency(base: str, token: str, receiver: Receiver, n: int) -> tuple[float, float]:
    """(median REST write of a final report, median write-returned → message arrived), s."""
    writes, latencies = [], []
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        patient = c.post(
            base + "/Patient",
            json={"resourceType": "Patient", "identifier": [{"system": "urn:b", "value": "1"}]},
        ).json()["id"]
        for i in range(n):
            key = f"out-{uuid.uuid4().hex[:10]}"
            report = {
                "resourceType": "DiagnosticReport",
                "identifier": [
                    {
                        "system": "urn:bench",
                        "value": key,
                        "type": {"coding": [{"code": "PLAC"}]},
                    }
                ],
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "24320-4"}]},
                "subject": {"reference": f"Patient/{patient}"},
                "conclusion": f"bench report {i}",
            }
            start = time.perf_counter()
            r = c.post(base + "/DiagnosticReport", json=report)
            done = time.perf_counter()
            if r.status_code != 201:
                raise RuntimeError(r.text)
            writes.append(done - start)
            latencies.append(receiver.wait(key) - done)
    return statistics.median(writes), statistics.median(latencies)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    ap.add_argument("--outbound", type=int, default=30, help="final reports sent out (0: none)")
    args = ap.parse_args()
    mllp_port = free_port()
    receiver = Receiver()
    env = {"HEARTH_MLLP_PORT": str(mllp_port)}
    if args.outbound:
        env |= {
            "HEARTH_HL7_OUT_HOST": "127.0.0.1",
            "HEARTH_HL7_OUT_PORT": str(receiver.port),
            "HEARTH_HL7_OUT_POLL": "0.05",
        }
    with (
        database(args.backend) as url,
        hearth(url, env=env) as server,
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
        if args.outbound:
            write, latency = outbound_latency(root + "/fhir", token, receiver, args.outbound)
            print(
                f"HL7 v2 out on {args.backend}, {args.outbound} final reports, one after another:"
            )
            print(f"  baseline: REST write of the report {write * 1000:8.1f} ms (median)")
            print(f"  write returned -> ORU^R01 received {latency * 1000:8.1f} ms (median)")


if __name__ == "__main__":
    main()
