"""HL7 v2 ingest speed: messages/s over MLLP on one connection and on 8, for an ORU^R01 mix
and an ADT mix, next to the same messages mapped client-side and POSTed to ``/fhir`` as plain
REST transaction Bundles (on 1 and 8 connections too), in the same run on the same server.

    .venv/bin/python bench/hl7v2.py [--messages 300] [--backend postgresql|sqlite]

Starts `hearth serve` (one process, MLLP listener on) on a throwaway database. ORU mix: each
message is a lab result for a new patient: a Patient, a DiagnosticReport and five Observations,
all conditional (ifNoneExist / conditional update). ADT mix: per new patient an A01 admit (PID,
NK1, AL1, DG1, PV1 with an attending doctor), an A08 update and an A03 discharge, in that order
on one connection (a patient's messages are never split across connections). Each sender sends
one message after another, each waiting for its ACK (as MLLP senders do); with 8 connections the
messages are dealt out by patient. The baseline maps the same messages client-side (parse + map
only, timed separately) and POSTs the resulting Bundles to ``/fhir``.

Outbound (``--outbound N``, default 30): the same server sends every final DiagnosticReport as
ORU^R01 to a receiver in this process (``HEARTH_HL7_OUT_*``, the sender polling its queue every
``HEARTH_HL7_OUT_POLL`` = 0.05 s here); the figure is the time from the REST write of a final
report returning to its message arriving at the receiver (which answers AA at once), beside the
baseline of the write itself, median of N one after another.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
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


def adt_messages(n: int, tag: str) -> list[str]:
    """A01, A08, A03 of one new patient (``n``)."""
    mrn, visit = f"{tag}-{n}", f"V{tag}-{n}"
    out = []
    for i, event in enumerate(("A01", "A08", "A03")):
        end = "|20240107120000" if event == "A03" else ""
        out.append(
            f"MSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105081500+0100||ADT^{event}^ADT_A01|{tag}{n}-{i}|P|2.5.1\r"
            f"EVN|{event}|2024010508{15 + i}00\r"
            f"PID|1||{mrn}^^^HOSP^MR||Doe^Jane^Q||19700215|F|||1 Main St^^Town^ST^12345||555-{i}\r"
            f"NK1|1|Doe^John|SPO^Spouse^HL70063||555-9\r"
            f"AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives\r"
            f"DG1|1||I10^Essential hypertension^I10||20240105|A\r"
            f"PV1|1|I|W1^R2^B3||||1234^Welby^Marcus|||MED||||7|||||{visit}^^^HOSP"
            f"|||||||||||||||||||||||||20240105080000{end}\r"
        )
    return out


def _send_all(port: int, messages: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
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


def _deal(groups: list[list], connections: int) -> list[list]:
    """The groups (a patient's messages) dealt out to ``connections`` senders, flattened."""
    lanes: list[list] = [[] for _ in range(connections)]
    for i, g in enumerate(groups):
        lanes[i % connections].extend(g)
    return [lane for lane in lanes if lane]


def _parallel(work, lanes: list[list]) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    with ThreadPoolExecutor(len(lanes)) as pool:
        list(pool.map(work, lanes))
    return sum(len(lane) for lane in lanes) / (time.perf_counter() - start)


def mllp_rate(port: int, groups: list[list[str]], connections: int = 1) -> float:
    return _parallel(lambda lane: _send_all(port, lane), _deal(groups, connections))


def rest_rate(base: str, token: str, groups: list[list[dict]], connections: int = 1) -> float:
    def post_all(bundles: list[dict]) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            for b in bundles:
                r = c.post(base, json=b, headers={"Prefer": "return=minimal"})
                if r.status_code != 200:
                    raise RuntimeError(r.text)

    return _parallel(post_all, _deal(groups, connections))


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
        warm = [[message(i, "warm" + uuid.uuid4().hex[:6])] for i in range(20)]
        mllp_rate(mllp_port, warm)  # validators compiled, connections pooled
        n = args.messages
        mixes = {
            "ORU^R01 (7 resources each)": lambda tag: [[message(i, tag)] for i in range(n)],
            "ADT A01/A08/A03 (patient, visit, NK1, AL1, DG1)": lambda tag: [
                adt_messages(i, tag) for i in range(max(1, n // 3))
            ],
        }
        print(f"HL7 v2 ingest on {args.backend} (load average {os.getloadavg()[0]:.1f} at start):")
        for name, make in mixes.items():
            for connections in (1, 8):
                via_mllp = make("m" + uuid.uuid4().hex[:8])
                via_rest = make("r" + uuid.uuid4().hex[:8])
                count = sum(len(g) for g in via_rest)
                start = time.perf_counter()
                bundles = [[map_parsed(parse(m)).bundle for m in g] for g in via_rest]
                map_rate = count / (time.perf_counter() - start)
                rest = rest_rate(root + "/fhir", token, bundles, connections)
                mllp = mllp_rate(mllp_port, via_mllp, connections)
                print(f" {name}, {count} messages, {connections} connection(s):")
                print(f"  parse + map only (client side)     {map_rate:8.0f} messages/s")
                print(f"  baseline: REST POST /fhir Bundle   {rest:8.1f} transactions/s")
                print(f"  MLLP message -> ACK                {mllp:8.1f} messages/s  ({mllp / rest:.2f}x)")  # fmt: skip
        if args.outbound:
            write, latency = outbound_latency(root + "/fhir", token, receiver, args.outbound)
            print(
                f"HL7 v2 out on {args.backend}, {args.outbound} final reports, one after another:"
            )
            print(f"  baseline: REST write of the report {write * 1000:8.1f} ms (median)")
            print(f"  write returned -> ORU^R01 received {latency * 1000:8.1f} ms (median)")


if __name__ == "__main__":
    main()
