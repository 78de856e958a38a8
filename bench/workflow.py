"""Workflow speed: cases/minute through the whole chain over HTTP, and PDF render time, each next
to a baseline measured in the same run.

    .venv/bin/python bench/workflow.py [--cases 20] [--concurrency 1 4] [--renders 30]

Starts `hearth serve` on a throwaway PostgreSQL database mailing through a local aiosmtpd server
(STARTTLS) and a real `hearth worker` beside it, then runs skin-screening cases end to end:
$start-case (photo), the AI step (the worker claims the analysis Task, runs the skin model and
Grad-CAM, and completes the step: the bench waits for AI_ANALYZED), doctor claim/complete
(finding + prescription), pharmacist, admin approval → final DiagnosticReport,
PDF, DocumentReference, e-mail — a case counts once its e-mail is in the SMTP inbox. Baseline:
the same number of HTTP requests as one case makes, as plain `POST /fhir/Observation` creates,
on the same server in the same run ("cases/min if every call were a plain create").

PDF: p50/p95 of ``mappings.report.render_pdf`` for a full report (photo, AI finding, findings,
prescription, signatures), next to WeasyPrint rendering a one-line HTML page (its fixed cost).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import database, hearth, process  # noqa: E402
from mappings.report import ReportInput, render_pdf  # noqa: E402
from tests.shared import shared_path  # noqa: E402
from tests.workflow.smtp import start_smtp  # noqa: E402
from workflow import signing  # noqa: E402

STEP = "http://hearth.local/fhir/CodeSystem/workflow-step"
PHOTO = base64.b64encode(
    shared_path("data", "skin_photos", "ISIC_0024310.jpg").read_bytes()
).decode()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000 if xs else float("nan")


class Client:
    def __init__(self, base: str, token: str) -> None:
        # A trusted backend (system/*.cruds) acting on behalf of each role with X-Hearth-* headers.
        self.http = httpx.Client(
            base_url=base, timeout=120, headers={"Authorization": f"Bearer {token}"}
        )
        self.requests = 0

    def post(self, path: str, body: dict, actor: tuple[str, str] | None = None) -> dict:
        headers = {"X-Hearth-Role": actor[0], "X-Hearth-Actor": actor[1]} if actor else {}
        self.requests += 1
        resp = self.http.post(path, json=body, headers=headers)
        if resp.status_code >= 300:
            raise RuntimeError(f"{path}: {resp.status_code} {resp.text[:300]}")
        return resp.json()

    def get(self, path: str, **params: object) -> dict:
        self.requests += 1
        resp = self.http.get(path, params=params)
        resp.raise_for_status()
        return resp.json()

    def op(self, path: str, actor: tuple[str, str], **params: dict | list) -> dict:
        parts = [
            {"name": k, **v}
            for k, vs in params.items()
            for v in (vs if isinstance(vs, list) else [vs])
        ]
        return self.post(path, {"resourceType": "Parameters", "parameter": parts}, actor)

    def wait_for_ai(self, case_id: str, timeout: float = 600) -> None:
        """Wait until the worker has analysed the case (polls are not counted as calls)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            case = self.http.get(f"/Task/{case_id}").json()
            status = case.get("businessStatus", {}).get("coding", [{}])[0].get("code")
            if status != "PENDING_AI":
                if status != "AI_ANALYZED":
                    raise RuntimeError(f"case {case_id}: {status} after the AI step")
                return
            time.sleep(0.02)
        raise RuntimeError(f"case {case_id}: no AI result within {timeout} s")

    def step(self, case_id: str, code: str) -> dict:
        bundle = self.get("/Task", **{"part-of": f"Task/{case_id}", "code": f"{STEP}|{code}"})
        return bundle["entry"][0]["resource"]


def team(c: Client, n: int) -> dict:
    def make(res_type: str, family: str, **extra: object) -> str:
        body = {"resourceType": res_type, "name": [{"family": family}], **extra}
        return f"{res_type}/{c.post(f'/{res_type}', body)['id']}"

    out = {
        "patient": (
            "patient",
            make(
                "Patient",
                f"Bench{n}",
                telecom=[{"system": "email", "value": f"bench{n}@example.org"}],
            ),
        ),
        "email": f"bench{n}@example.org",
    }
    for role in ("cadre", "doctor", "pharmacist", "admin"):
        out[role] = (role, make("Practitioner", f"{role}{n}"))
    return out


def run_case(c: Client, t: dict) -> None:
    patient = t["patient"][1]
    media = c.post(
        "/Media",
        {
            "resourceType": "Media",
            "status": "completed",
            "subject": {"reference": patient},
            "content": {"contentType": "image/jpeg", "data": PHOTO, "title": "Lesion"},
        },
    )
    case = c.op(
        "/Task/$start-case",
        t["cadre"],
        caseType={"valueCode": "skin-screening"},
        patient={"valueReference": {"reference": patient}},
        focus={"valueReference": {"reference": f"Media/{media['id']}"}},
    )
    c.wait_for_ai(case["id"])
    doctor = c.step(case["id"], "doctor-review")
    c.op(f"/Task/{doctor['id']}/$claim", t["doctor"])
    c.op(
        f"/Task/{doctor['id']}/$complete",
        t["doctor"],
        output=[
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "Dermoscopy"},
                    "valueString": "Benign pattern",
                }
            },
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "status": "active",
                    "intent": "order",
                    "medicationCodeableConcept": {"text": "Emollient cream"},
                    "dosageInstruction": [{"text": "twice daily"}],
                }
            },
        ],
        conclusion={"valueString": "Benign naevus"},
    )
    for code, who in (("pharmacist-review", "pharmacist"), ("admin-approval", "admin")):
        task = c.step(case["id"], code)
        c.op(f"/Task/{task['id']}/$claim", t[who])
        c.op(f"/Task/{task['id']}/$complete", t[who])


def report_input() -> ReportInput:
    media = {
        "resourceType": "Media",
        "content": {"contentType": "image/jpeg", "data": PHOTO, "title": "Lesion photo"},
    }
    return ReportInput(
        report={
            "resourceType": "DiagnosticReport",
            "id": "bench",
            "status": "final",
            "code": {"text": "Skin lesion screening"},
            "issued": "2026-11-26T10:00:00Z",
            "conclusion": "Benign naevus",
            "conclusionCode": [{"text": "Melanocytic naevus"}],
        },
        patient={
            "name": [{"given": ["Ada"], "family": "Okafor"}],
            "birthDate": "1984-03-02",
            "gender": "female",
        },
        facility_name="Hearth District Hospital",
        ai_results=[
            {
                "resourceType": "Observation",
                "code": {"text": "Skin lesion classification"},
                "valueCodeableConcept": {"text": "nv"},
                "device": {"reference": "Device/m"},
                "component": [
                    {"code": {"text": f"p({k})"}, "valueQuantity": {"value": 0.1}}
                    for k in ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
                ],
            }
        ],
        devices={
            "Device/m": {
                "deviceName": [{"name": "skin-classifier"}],
                "version": [{"value": "1.0.0"}],
            }
        },
        findings=[{"code": {"text": "Dermoscopy"}, "valueString": "Benign pattern"}],
        prescriptions=[
            {
                "medicationCodeableConcept": {"text": "Emollient"},
                "dosageInstruction": [{"text": "twice daily"}],
                "status": "active",
            }
        ],
        media=[media, media],
        steps=[
            {
                "status": "completed",
                "description": d,
                "owner": {"reference": "Practitioner/x"},
                "executionPeriod": {"end": "2026-11-26T09:00:00Z"},
            }
            for d in ("Doctor review", "Admin approval")
        ],
        people={"Practitioner/x": {"name": [{"text": "Dr. N. Dlamini"}]}},
    )


def bench_pdf(n: int) -> None:
    import weasyprint

    data = report_input()
    material = signing.load_or_create(Path(tempfile.mkdtemp()), "Hearth District Hospital")
    signing.sign_pdf(render_pdf(data), material, signer_name="warm-up", reason="warm-up")
    weasyprint.HTML(string="<p>x</p>").write_pdf()
    full, signed, sign_only, base = [], [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        pdf = render_pdf(data)
        t1 = time.perf_counter()
        signing.sign_pdf(pdf, material, signer_name="Dr. N. Dlamini", reason="approved")
        t2 = time.perf_counter()
        full.append(t1 - t0)
        sign_only.append(t2 - t1)
        signed.append(t2 - t0)
        t0 = time.perf_counter()
        weasyprint.HTML(string="<p>x</p>").write_pdf()
        base.append(time.perf_counter() - t0)
    print(
        f"PDF render, full report: p50 {pct(full, 50):.0f} ms, p95 {pct(full, 95):.0f} ms (goal p95 < 1000 ms); "
        f"baseline one-line page: p50 {pct(base, 50):.0f} ms, p95 {pct(base, 95):.0f} ms; n={n}"
    )
    print(
        f"PDF render + signature (as delivered): p50 {pct(signed, 50):.0f} ms, p95 {pct(signed, 95):.0f} ms; "
        f"signature alone (pyHanko, ECDSA P-256): p50 {pct(sign_only, 50):.0f} ms, p95 {pct(sign_only, 95):.0f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", type=int, default=20, help="cases per concurrency level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--renders", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    print(
        f"# Hearth workflow benchmark — PostgreSQL, {args.workers} uvicorn worker(s), {os.cpu_count()} CPU cores, load {os.getloadavg()[0]:.1f}"
    )
    bench_pdf(args.renders)
    smtp = start_smtp(Path(tempfile.mkdtemp()))
    smtp_env = {
        "HEARTH_WORKERS": str(args.workers),
        "HEARTH_SMTP_HOST": "127.0.0.1",
        "HEARTH_SMTP_PORT": str(smtp.port),
        "HEARTH_SMTP_CA_FILE": str(smtp.ca_file),
    }
    try:
        with (
            database() as url,
            hearth(url, env=smtp_env) as server,
            process([sys.executable, "-m", "fhir_server.cli", "worker"], server.env),
        ):
            base, token = server.fhir, server.token
            warm = Client(base, token)
            for n in range(2):  # warm-up: every worker process compiles validators and the template
                run_case(warm, team(warm, -1 - n))
            for conc in args.concurrency:
                clients = [Client(base, token) for _ in range(conc)]
                teams = [team(clients[i % conc], 1000 * conc + i) for i in range(args.cases)]
                sent_before = len(smtp.inbox.messages)
                latencies: list[float] = []

                def one(i: int, clients=clients, teams=teams, latencies=latencies) -> None:
                    t0 = time.perf_counter()
                    run_case(clients[i % len(clients)], teams[i])
                    latencies.append(time.perf_counter() - t0)

                t0 = time.perf_counter()
                with ThreadPoolExecutor(conc) as pool:
                    list(pool.map(one, range(args.cases)))
                while len(smtp.inbox.messages) - sent_before < args.cases:
                    time.sleep(0.01)
                wall = time.perf_counter() - t0
                per_case = sum(c.requests for c in clients) / args.cases
                # Baseline: the same number of plain creates, same concurrency, same server.
                n_base = int(per_case * args.cases)
                obs = {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "baseline"},
                    "valueString": "x",
                }

                def plain(i: int, clients=clients, obs=obs) -> None:
                    clients[i % len(clients)].post("/Observation", obs)

                t1 = time.perf_counter()
                with ThreadPoolExecutor(conc) as pool:
                    list(pool.map(plain, range(n_base)))
                base_wall = time.perf_counter() - t1
                rate, base_rate = args.cases / wall * 60, args.cases / base_wall * 60
                print(
                    f"concurrency {conc}: {rate:.1f} cases/min (case p50 {pct(latencies, 50) / 1000:.2f} s, p95 {pct(latencies, 95) / 1000:.2f} s, "
                    f"{per_case:.0f} HTTP calls/case, all {args.cases} e-mails received); baseline {base_rate:.1f} 'cases'/min "
                    f"as {per_case:.0f} plain creates each; ratio {rate / base_rate:.2f}"
                )
    finally:
        smtp.stop()


if __name__ == "__main__":
    main()
