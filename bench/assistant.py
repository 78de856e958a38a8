"""``POST /fhir/$assistant`` answer latency on this CPU, next to a baseline measured in the same
run on the same server and token: the plain FHIR read ``GET /fhir/Patient/[id]``.

    .venv/bin/python bench/assistant.py [--requests 300] [--backend postgresql|sqlite]

Starts `hearth serve` on a throwaway database, writes one patient's record (an appointment, a
report, medicines, a case), and asks as that patient (a patient-context token) a mix of record,
knowledge-base, safety and unanswerable questions, one request at a time, each followed by the
baseline read. The model is loaded and the knowledge base embedded by a first, untimed question.
Target: p95 < 300 ms (issue 25).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import database, hearth  # noqa: E402
from tests.fhir_server.auth.smart import client_token  # noqa: E402

QUESTIONS = [
    "When is my next appointment?",
    "what did my last report say",
    "Which medicines should I take tonight?",
    "What is the status of my scan?",
    "What does my result mean?",
    "How do I take a good photo of a mole?",
    "what does uncertain mean",
    "how do I book an appointment",
    "I have chest pain",
    "is my mole cancer?",
    "show me Patient/1's report",
    "what is the capital of France",
]


def record(c: httpx.Client) -> str:
    def create(body: dict) -> dict:
        r = c.post(f"/{body['resourceType']}", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    me = create({"resourceType": "Patient", "name": [{"family": "Bench", "given": ["Ada"]}]})
    p = f"Patient/{me['id']}"
    start = datetime.now(UTC) + timedelta(days=2)
    create(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "description": "Follow-up",
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
            "participant": [{"actor": {"reference": p}, "status": "accepted"}],
        }
    )
    create(
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"text": "Skin screening report"},
            "subject": {"reference": p},
            "issued": datetime.now(UTC).isoformat(),
            "conclusion": "Benign naevus.",
        }
    )
    for name, when in (("Amlodipine 5 mg", "EVE"), ("Metformin 500 mg", "CM")):
        create(
            {
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {"text": name},
                "subject": {"reference": p},
                "dosageInstruction": [
                    {"text": "One tablet", "timing": {"repeat": {"when": [when]}}}
                ],
            }
        )
    return str(me["id"])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--backend", default="postgresql", choices=["postgresql", "sqlite"])
    args = parser.parse_args()
    with database(args.backend) as url, hearth(url) as server:
        with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=120) as op:
            patient = record(op)
        ns = SimpleNamespace(root=server.root, fhir=server.fhir, database_url=url, settings=None)
        headers = client_token(ns, "patient/*.rs", patient=patient)
        ask: list[float] = []
        read: list[float] = []
        kinds: dict[str, list[float]] = {}
        with httpx.Client(base_url=server.fhir, headers=headers, timeout=120) as c:

            def question(q: str) -> tuple[float, str]:
                body = {
                    "resourceType": "Parameters",
                    "parameter": [{"name": "question", "valueString": q}],
                }
                t = time.perf_counter()
                r = c.post("/$assistant", json=body)
                took = (time.perf_counter() - t) * 1000
                assert r.status_code == 200, r.text
                kind = next(p["valueCode"] for p in r.json()["parameter"] if p["name"] == "kind")
                return took, kind

            t = time.perf_counter()
            question("hello")
            warm = time.perf_counter() - t
            for _ in range(20):  # warm the connection and the read path alike
                c.get(f"/Patient/{patient}")
            for i in range(args.requests):
                took, kind = question(QUESTIONS[i % len(QUESTIONS)])
                ask.append(took)
                kinds.setdefault(kind, []).append(took)
                t = time.perf_counter()
                r = c.get(f"/Patient/{patient}")
                read.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
    print(f"backend {args.backend}; {args.requests} questions, one at a time; first question "
          f"(model load + knowledge-base embeddings) {warm:.1f} s")  # fmt: skip
    print(f"{'':34} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    rows = [("POST /fhir/$assistant", ask), ("baseline GET /fhir/Patient/[id]", read)]
    rows += [(f"  $assistant, kind {k}", v) for k, v in sorted(kinds.items())]
    for name, values in rows:
        print(
            f"{name:34} {pct(values, 0.5):8.1f} {pct(values, 0.95):8.1f} {pct(values, 0.99):8.1f} "
            f"{statistics.fmean(values):8.1f}"
        )
    p95 = pct(ask, 0.95)
    print(f"$assistant p95 {p95:.1f} ms: {'within' if p95 < 300 else 'OVER'} the 300 ms target")


if __name__ == "__main__":
    main()
