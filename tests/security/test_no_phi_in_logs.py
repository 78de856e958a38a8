"""Logs name requests and resources, never their content. Bad resources, searches, database
errors that quote the failing row (PostgreSQL's DETAIL, SQLAlchemy's parameters), a server fault
and bad HL7 messages over MLLP all carry a distinctive marker; the running server's whole log
output (Hearth's loggers and uvicorn's) must not contain it, and must name the request."""

from __future__ import annotations

import logging
import socket
import uuid

import httpx
import pytest
import sqlalchemy as sa

from resources.storage.db import create_engine
from tests.servers import database_url, free_port, start_server

MSH = "MSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105081500+0100||ADT^A01^ADT_A01|{cid}|P|2.5.1\r"


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("httpx", "httpcore")):
            return  # the test's own client, not the server
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def captured():  # type: ignore[no-untyped-def]
    """Everything logged in this process (the server runs in a thread here) at DEBUG and up."""
    handler = Capture()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield handler
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


def _mllp(port: int, message: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"\x0b" + message.encode() + b"\x1c\x0d")
        buf = b""
        while not buf.endswith(b"\x1c\x0d"):
            chunk = s.recv(65536)
            assert chunk, "no ACK"
            buf += chunk
    return buf[1:-2].decode()


def _refuse_marker(engine: sa.Engine, marker: str) -> None:
    """As the database owner: refuse any resource row whose content holds ``marker``, so the
    database's error quotes the row (PostgreSQL: DETAIL 'Failing row contains ...')."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "ALTER TABLE resource ADD CONSTRAINT no_marker "
                f"CHECK (position('{marker}' in content::text) = 0)"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER no_marker BEFORE INSERT ON resource "
                f"WHEN NEW.content LIKE '%{marker}%' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_no_record_content_in_the_logs(backend, tmp_path, captured):
    mark = "Qzvx" + uuid.uuid4().hex[:6]  # 10 characters: fits an HL7 segment id's echo
    url, cleanup = database_url(backend, tmp_path)
    mllp_port = free_port()
    running = start_server(backend, url, mllp_port=mllp_port, slow_query_ms=0)
    engine = create_engine(url)
    rids: list[str] = []
    try:
        with httpx.Client(base_url=running.fhir, headers=running.headers, timeout=60) as c:
            # a bad resource: 400, the outcome quotes the bad value back to its sender
            bad = {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:test", "value": f"{mark}id"}],
                "name": [{"family": f"{mark}fam"}],
                "birthDate": f"19{mark}",
            }
            r = c.post("/Patient", json=bad)
            assert r.status_code == 400 and mark in r.text
            rids.append(r.headers["x-request-id"])
            # a good one, and a search for it (slow_query_ms=0: every search is "slow")
            good = {**bad, "birthDate": "1970-02-15"}
            r = c.post("/Patient", json=good)
            assert r.status_code == 201, r.text
            pid = r.json()["id"]
            r = c.get("/Patient", params={"name": f"{mark}fam", "identifier": f"{mark}id"})
            assert r.status_code == 200 and len(r.json()["entry"]) == 1
            r = c.put(f"/Patient/{pid}", json={**good, "id": pid, "gender": f"{mark}sex"})
            assert r.status_code == 400
            rids.append(r.headers["x-request-id"])
            # the database refuses a row and its error quotes the row: 409, no quote anywhere
            _refuse_marker(engine, f"{mark}db")
            r = c.post("/Patient", json={**good, "name": [{"family": f"{mark}db"}]})
            assert r.status_code == 409, r.text
            assert mark not in r.text  # not even back to the client: it is the database's text
            rids.append(r.headers["x-request-id"])

            # HL7 v2 over MLLP: rejected (AR, the segment id quoted), unmappable (AE, the value
            # quoted), refused by the database (AE)
            pid_seg = f"PID|1||{mark}mrn^^^HOSP^MR||{mark}fam^Jane||19700215|F\r"
            ack = _mllp(mllp_port, MSH.format(cid="CTRL-AR1") + pid_seg + f"{mark}|x\r")
            assert "MSA|AR|" in ack and mark in ack  # unparsed: no control id to echo
            dob = pid_seg.replace("19700215", f"1970{mark}")
            ack = _mllp(mllp_port, MSH.format(cid="CTRL-AE1") + dob)
            assert "MSA|AE|CTRL-AE1" in ack and mark in ack
            refused = pid_seg.replace(f"{mark}fam", f"{mark}db")
            ack = _mllp(mllp_port, MSH.format(cid="CTRL-AE2") + refused)
            assert "MSA|AE|CTRL-AE2" in ack, ack

            # a server fault while writing the marker: 500, logged with a traceback
            with engine.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE resource_version RENAME TO resource_version_x")
            r = c.post("/Patient", json={**good, "name": [{"family": f"{mark}500"}]})
            assert r.status_code == 500, r.text
            rids.append(r.headers["x-request-id"])
        running.server.config.app.state.auth.writer.flush()
    finally:
        running.stop()
        engine.dispose()
        cleanup()  # type: ignore[operator]

    text = captured.text
    assert text, "nothing was logged"
    leaks = [line for line in captured.lines if mark.lower() in line.lower()]
    assert not leaks, "\n".join(leaks)
    # ... while the lines still say which request, resource and message
    for rid in rids:
        assert f"request {rid}:" in text, rid
    assert f"PUT /fhir/Patient/{pid} -> 400" in text
    assert "POST /fhir/Patient -> 409" in text
    assert "slow search" in text and "identifier,name" in text
    assert "HL7 v2 message -: AR 100" in text  # the rejected one had no readable control id
    for cid in ("CTRL-AE1", "CTRL-AE2"):
        assert f"HL7 v2 message {cid}" in text, cid
    assert "Traceback (most recent call last)" in text
    assert "message not logged" in text


def test_access_log_has_paths_without_query_strings(tmp_path, captured):
    """uvicorn's access log (on at HEARTH_LOG_LEVEL=debug) names the path, not the values
    searched for."""
    import threading

    import uvicorn

    from fhir_server.runtime.app import create_app
    from fhir_server.runtime.settings import Settings
    from tests.servers import system_token

    mark = "Qzvx" + uuid.uuid4().hex[:6]
    url, cleanup = database_url("sqlite", tmp_path)
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    settings = Settings(
        database_url=url, base_url=root, port=port, dicom_enabled=False, data_dir=tmp_path
    )
    config = uvicorn.Config(create_app(settings), port=port, log_level="info", access_log=True)
    server = uvicorn.Server(config)
    access = logging.getLogger("uvicorn.access")  # uvicorn's own handler, not propagated
    access.addHandler(captured)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(timeout=0.05)
            assert thread.is_alive()
        headers = {"Authorization": f"Bearer {system_token(url, root)}"}
        r = httpx.get(f"{root}/fhir/Patient", params={"name": mark}, headers=headers)
        assert r.status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        access.removeHandler(captured)
        cleanup()  # type: ignore[operator]
    assert '"GET /fhir/Patient HTTP/1.1" 200' in captured.text
    assert mark not in captured.text
