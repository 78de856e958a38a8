"""A large multi-frame object (a 64 MiB Enhanced MR, generated frame by frame) through every path
— dcmtk storescu (C-STORE), STOW-RS, WADO-RS, dcmtk getscu (C-GET) — against `hearth serve` in
its own process, with the blobs in files and in the database: each comes back identical, and
the server's resident memory grows by well under the object's size during each operation (its
peak RSS, VmHWM, reset before each). Not a timing test.

The bound: the object is 64 MiB; the growth allowed is half of it. Streaming paths grow by a few
MiB with the blobs in files, and by up to ~17 MiB with the blobs in the database (a database blob
is read through a 16 MiB in-memory spool, resources/storage/blobs.py SPOOL; a STOW-RS part is held
in memory up to 8 MiB before it is spooled to disk). Before streaming, each path grew by one to
four times the object's size (pynetdicom's receive buffer and its copy; the STOW-RS part and its
join; pydicom's decode, pynetdicom's encode and its unbounded PDU queue for C-GET)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from resources.storage.migrate import upgrade
from tests.dicom import enhanced_mr, peak_rss, reset_peak, rss, tool, write_chunks
from tests.servers import free_port, system_token

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 128  # 512 KiB each: 64 MiB
MiB = 1024 * 1024


class Served:
    def __init__(  # type: ignore[no-untyped-def]
        self, proc: subprocess.Popen, root: str, dicom_port: int, headers: dict, blob_store: str
    ) -> None:
        self.proc, self.root, self.dicom_port, self.headers = proc, root, dicom_port, headers
        self.blob_store = blob_store

    @property
    def dicomweb(self) -> str:
        return f"{self.root}/dicomweb"


@pytest.fixture(scope="module", params=["files", "database"])
def served(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"large-{request.param}")
    db_url = f"sqlite:///{tmp / 'hearth.db'}"
    upgrade(db_url)
    http_port, dicom_port = free_port(), free_port()
    root = f"http://127.0.0.1:{http_port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HEARTH_DATABASE_URL": db_url,
        "HEARTH_DATA_DIR": str(tmp / "data"),
        "HEARTH_BLOB_STORE": request.param,
        "HEARTH_PORT": str(http_port),
        "HEARTH_BASE_URL": root,
        "HEARTH_DICOM_PORT": str(dicom_port),
        "HEARTH_DICOM_QR_AES": "*",
        "HEARTH_LOG_LEVEL": "warning",
    }
    log = (tmp / "hearth.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_server.cli", "serve"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{root}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp / "hearth.log"
            ).read_text()[-3000:]
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {system_token(db_url, root)}"}
        served = Served(proc, root, dicom_port, headers, request.param)
        # every path once with a small object, so first-use imports and caches are not counted
        _through_every_path(served, tmp / "warm", frames=2)
        yield served
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _storescu(port: int, path: Path) -> None:
    out = subprocess.run(
        [tool("storescu"), "-aec", "HEARTH", "127.0.0.1", str(port), str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]


def _stow(served: Served, chunks) -> httpx.Response:  # type: ignore[no-untyped-def]
    boundary = uuid.uuid4().hex

    def body():  # type: ignore[no-untyped-def]
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        yield from chunks()
        yield f"\r\n--{boundary}--\r\n".encode()

    return httpx.post(
        f"{served.dicomweb}/studies",
        content=body(),
        headers={
            **served.headers,
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        },
        timeout=300,
    )


def _wado_digest(served: Served, study: str, series: str, sop: str) -> str:
    """sha256 of the one application/dicom part of a WADO-RS retrieve as stored."""
    url = f"{served.dicomweb}/studies/{study}/series/{series}/instances/{sop}"
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    with httpx.stream("GET", url, headers={**served.headers, "Accept": accept}, timeout=300) as r:
        assert r.status_code == 200, r.read()[:500]
        boundary = r.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"')
        digest, pending, started = hashlib.sha256(), b"", False
        end = f"\r\n--{boundary}--".encode()
        for block in r.iter_bytes(1 << 20):
            pending += block
            if not started:
                head, sep, rest = pending.partition(b"\r\n\r\n")
                if not sep:
                    continue
                started, pending = True, rest
            keep = len(end) + 2
            if len(pending) > keep:
                digest.update(pending[:-keep])
                pending = pending[-keep:]
        assert pending.rstrip(b"\r\n").endswith(end.rstrip()), pending
        digest.update(pending[: pending.rindex(end)])
    return digest.hexdigest()


def _getscu(served: Served, study: str, series: str, sop: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [
            tool("getscu"),
            "-S",
            "-aec",
            "HEARTH",
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
            str(served.dicom_port),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    files = list(into.iterdir())
    assert out.returncode == 0 and len(files) == 1, out.stderr[-2000:]
    return files[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _same_instance(got: Path, sent: Path) -> bool:
    """The same data set (every element, every frame) — getscu writes its own file meta and
    dcmtk's own encoding of sequence lengths, so the files themselves differ."""
    import pydicom

    a, b = pydicom.dcmread(got), pydicom.dcmread(sent)
    return bool(a == b and a.PixelData == b.PixelData)


def _through_every_path(served: Served, folder: Path, frames: int) -> dict[str, int]:
    """Each operation on a new ``frames``-frame object; the server's RSS growth (peak during
    the operation minus RSS before it) per operation."""
    folder.mkdir(parents=True, exist_ok=True)
    pid = served.proc.pid
    growth: dict[str, int] = {}

    def measure(name: str, action):  # type: ignore[no-untyped-def]
        before = rss(pid)
        reset_peak(pid)
        result = action()
        growth[name] = peak_rss(pid) - before
        return result

    sop, study, series, _, chunks = enhanced_mr(frames)
    sent = folder / "sent.dcm"
    write_chunks(sent, chunks)
    measure("C-STORE", lambda: _storescu(served.dicom_port, sent))
    stow_sop, _, stow_series, _, stow_chunks = enhanced_mr(frames, study_uid=study)
    r = measure("STOW-RS", lambda: _stow(served, stow_chunks))
    assert r.status_code == 200, r.text
    digest = measure("WADO-RS", lambda: _wado_digest(served, study, stow_series, stow_sop))
    stow_file = folder / "stow.dcm"
    write_chunks(stow_file, stow_chunks)
    assert digest == _sha256(stow_file)  # byte for byte as sent
    got = measure("C-GET", lambda: _getscu(served, study, series, sop, folder / "got"))
    assert _same_instance(got, sent)
    shutil.rmtree(folder)
    return growth


def test_a_large_object_streams_through_every_path(served, tmp_path):  # type: ignore[no-untyped-def]
    size = FRAMES * 512 * 512 * 2
    growth = _through_every_path(served, tmp_path / "large", FRAMES)
    report = ", ".join(f"{k} +{v / MiB:.1f} MiB" for k, v in growth.items())
    print(f"blobs in {served.blob_store}, 64 MiB object: {report}")
    for name, grew in growth.items():
        assert grew < size / 2, f"{name}: RSS grew {grew / MiB:.0f} MiB for 64 MiB ({report})"


def test_a_truncated_large_part_is_refused(served):  # type: ignore[no-untyped-def]
    """A STOW-RS part over the in-memory limit is checked from its spooled file without reading
    its pixel data: pixel data shorter than its declared length is still caught (0xC000), and
    nothing is stored."""
    sop, study, series, size, chunks = enhanced_mr(32)  # 16 MiB: spooled to disk

    def cut():  # type: ignore[no-untyped-def]
        left = size - 1_000_000
        for block in chunks():
            yield block[:left]
            left -= len(block[:left])
            if left <= 0:
                return

    r = _stow(served, cut)
    assert r.status_code == 409, r.text
    failed = r.json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [0xC000]
    gone = httpx.get(
        f"{served.dicomweb}/studies/{study}/series/{series}/instances/{sop}",
        headers={**served.headers, "Accept": 'multipart/related; type="application/dicom"'},
    )
    assert gone.status_code == 404
