"""`hearth worker` on PostgreSQL is woken by new analysis jobs (LISTEN/NOTIFY): a worker whose
poll interval is 10 minutes, already idle, still analyses a photo uploaded after it went idle —
long before its next poll could have found it."""

from __future__ import annotations

import os
import queue as stdqueue
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.inference.conftest import SKIN_PHOTO, b64, skin_photo_media
from tests.servers import database_url, start_server

POLL_SECONDS = 600  # the fallback poll: far beyond the bound below
BOUND_SECONDS = 120  # generous: model load and a busy shared CPU included


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("wakeup")
    url, cleanup = database_url("postgresql", tmp)
    running = start_server("postgresql", url, data_dir=tmp / "data")
    running.data_dir = tmp / "data"  # type: ignore[attr-defined]
    yield running
    running.stop()
    cleanup()


def test_idle_worker_with_a_long_poll_is_woken_by_an_upload(pg_server):
    env = {
        **os.environ,
        "HEARTH_DATABASE_URL": pg_server.database_url,
        "HEARTH_BASE_URL": pg_server.root,
        "HEARTH_DATA_DIR": str(pg_server.data_dir),
        "HEARTH_LOG_LEVEL": "debug",
    }
    hearth = Path(sys.executable).with_name("hearth")
    worker = subprocess.Popen(
        [str(hearth), "worker", "--poll", str(POLL_SECONDS), "--interval", str(POLL_SECONDS)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: stdqueue.Queue[str] = stdqueue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in worker.stderr],
        daemon=True,  # type: ignore[union-attr]
    ).start()
    seen: list[str] = []

    def wait_for(text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except stdqueue.Empty:
                continue
            seen.append(line)
            if text in line:
                return
        raise AssertionError(f"worker never logged {text!r}:\n{''.join(seen)}")

    try:
        wait_for("listening for new jobs", 120)
        wait_for("idle: waiting up to", 120)  # it claimed nothing and sleeps for ~10 minutes
        with httpx.Client(base_url=pg_server.fhir, headers=pg_server.headers, timeout=60) as fhir:
            patient = fhir.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
            uploaded = time.monotonic()
            media = fhir.post("/Media", json=skin_photo_media(patient, b64(SKIN_PHOTO))).json()
            task_ref = None
            while time.monotonic() - uploaded < BOUND_SECONDS:
                found = fhir.get("/Task", params={"focus": f"Media/{media['id']}"}).json()
                task = found["entry"][0]["resource"]
                task_ref = f"Task/{task['id']}"
                if task["status"] in ("completed", "failed"):
                    break
                time.sleep(0.5)
            assert task["status"] == "completed", (task, "".join(seen))
        # Well before the worker's next poll (10 minutes after it went idle).
        assert time.monotonic() - uploaded < POLL_SECONDS, task_ref
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
