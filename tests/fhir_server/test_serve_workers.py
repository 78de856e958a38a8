"""`hearth serve --workers 2`, the production shape: gunicorn forks two uvicorn workers from one
preloaded app; one elected worker runs the DICOM and MLLP listeners, and when it dies another
worker takes the listeners over. A real server process, real DICOM and MLLP peers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from pynetdicom import AE

from fhir_server.hl7v2.mllp import frame
from tests.servers import database_url, free_port, system_token

VERIFICATION = "1.2.840.10008.1.1"
ORU = (
    "MSH|^~\\&|LAB|HOSP|HEARTH|HEARTH|20240105100000+0100||ORU^R01|{control}|P|2.5.1\r"
    "PID|1||W{control}^^^HOSP^MR||Doe^Jane||19700215|F\r"
    "OBR|1||F{control}^LAB|24320-4^Basic metabolic panel^LN|||20240105090000\r"
    "OBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L^^UCUM|3.9-5.5|N|||F\r"
)


def echo(port: int) -> bool:
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(VERIFICATION)
    ae.acse_timeout = ae.network_timeout = 5
    assoc = ae.associate("127.0.0.1", port, ae_title="HEARTH")
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return status is not None and status.Status == 0


def mllp(port: int, control: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(frame(ORU.format(control=control).encode()))
        data = b""
        while not data.endswith(b"\x1c\r"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode()


def wait_for(check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, httpx.HTTPError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        time.sleep(0.3)


def leader(log: Path) -> int | None:
    found = re.findall(r"worker (\d+) runs the DICOM / MLLP listeners", log.read_text())
    return int(found[-1]) if found else None


def children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_serve_and_hand_over_the_listeners(backend, tmp_path):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(backend, tmp_path)
    port, dicom_port, mllp_port = free_port(), free_port(), free_port()
    root = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "HEARTH_DATABASE_URL": url,
        "HEARTH_DATA_DIR": str(tmp_path / "data"),
        "HEARTH_BASE_URL": root,
    }
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port)]
    cmd += ["--workers", "2", "--dicom-port", str(dicom_port), "--mllp-port", str(mllp_port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: httpx.get(f"{root}/healthz").status_code == 200)
        headers = {"Authorization": f"Bearer {system_token(url, root)}"}

        def create(n: int) -> int:
            body = {"resourceType": "Patient", "name": [{"family": f"Worker{n}"}]}
            return httpx.post(f"{root}/fhir/Patient", json=body, headers=headers).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(create, range(40))) == {201}
        workers = wait_for(lambda: children(proc.pid) if len(children(proc.pid)) == 2 else None)
        first = wait_for(lambda: leader(log))
        assert first in workers
        assert echo(dicom_port)
        assert "MSA|AA|C1" in mllp(mllp_port, "C1")

        os.kill(first, signal.SIGKILL)  # the listeners' worker dies; gunicorn replaces it
        second = wait_for(lambda: leader(log) if leader(log) != first else None)
        assert second != first
        assert wait_for(lambda: echo(dicom_port))
        assert "MSA|AA|C2" in mllp(mllp_port, "C2")
        wait_for(lambda: len(children(proc.pid)) == 2)

        found = httpx.get(
            f"{root}/fhir/Patient", params={"_total": "accurate", "_count": 0}, headers=headers
        ).json()
        assert found["total"] == 42  # 40 over HTTP, one per ORU message
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
            cleanup()
