"""A real cluster that loses nodes under load (docs/deployment.md, "Tested: a cluster").

Three Hearth nodes as separate processes, each in its own network namespace (``ip netns``, a
veth into one bridge): two API nodes (``hearth serve``, which also campaign for the DICOM
listener) and one ``hearth worker``; HAProxy from Debian in front (HTTP and the DICOM port, both
health-checked); a PostgreSQL primary and a streaming replica of their own (tests/pgpair.py),
reached over the bridge, every node with the same settings (one database, the database blob
store, shared secret keys, the replica for reads). Under a bounded mixed load through the load
balancer — creates, transactions, searches, skin photos (AI jobs), DICOM C-STORE — the test kills
with SIGKILL, in turn,
the API node that does not hold the listener (restarting it), the worker (restarting it) and the
listener holder. Afterwards: every create and transaction that was acknowledged is there exactly
once, every photo was analysed exactly once, the DICOM listener answered again within seconds on
the other node, WADO-RS serves the study from either node, a Bulk Data export
started after the kills is downloadable byte-identical from every node, and the audit chain
verifies."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pydicom
import pytest
from cryptography.fernet import Fernet
from pydicom.uid import generate_uid
from pynetdicom import AE

from tests.pgpair import Pair
from tests.servers import free_port
from tests.shared import shared_path

pytestmark = pytest.mark.slow

SUBNET = "10.213.{}."
CT = shared_path("data", "dicom", "RG1_UNCR.dcm")
PHOTO = shared_path("data", "skin_photos", "ISIC_0024872.jpg")
SKIN = "http://hearth.local/fhir/CodeSystem/ai-analysis|skin-lesion-classification"
HEARTH = str(Path(sys.executable).with_name("hearth"))


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: {done.stderr}")
    return done


class Net:
    """A bridge in this namespace and one namespace per node, each with a veth into it."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:4]
        self.net = SUBNET.format(int(self.tag, 16) % 200 + 20)
        self.bridge = f"hb{self.tag}"
        self.names: list[str] = []
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.net}1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    @property
    def gateway(self) -> str:
        return f"{self.net}1"

    def add(self, n: int) -> tuple[str, str]:
        ns, host_end, node_end = f"hc{self.tag}{n}", f"hv{self.tag}{n}", f"hn{self.tag}{n}"
        ip = f"{self.net}{10 + n}"
        sh("ip", "netns", "add", ns)
        self.names.append(ns)
        sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", node_end)
        sh("ip", "link", "set", host_end, "master", self.bridge)
        sh("ip", "link", "set", host_end, "up")
        sh("ip", "link", "set", node_end, "netns", ns)
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", node_end)
        sh("ip", "-n", ns, "link", "set", node_end, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", self.gateway)
        return ns, ip

    def close(self) -> None:
        for ns in self.names:
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)


class Node:
    def __init__(self, ns: str, ip: str, args: list[str], env: dict, log: Path) -> None:
        self.ns, self.ip, self.args, self.env, self.log = ns, ip, args, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, HEARTH, *self.args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)  # the process and anything it forked
        self.proc.wait(timeout=30)

    def listening(self, port: int) -> bool:
        out = sh("ip", "netns", "exec", self.ns, "ss", "-ltnH", f"sport = :{port}", check=False)
        return bool(out.stdout.strip())


def wait(cond, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if cond():
                return time.monotonic() - start
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out: {what}")


def c_store(port: int, ds: pydicom.Dataset) -> int:
    ae = AE(ae_title="CLUSTERSCU")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="HEARTH")
    if not assoc.is_established:
        return -1
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def instance(study: str) -> pydicom.Dataset:
    ds = pydicom.dcmread(CT)
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("cluster")
    net = Net()
    pair = haproxy = None
    nodes: dict[str, Node] = {}
    try:
        pair = Pair(listen=f"127.0.0.1,{net.gateway}", allow=f"{net.net}0/24").build()
        lb, lb_dicom = free_port(), free_port()
        root = f"http://127.0.0.1:{lb}"
        env = {
            **os.environ,
            "HEARTH_DATABASE_URL": pair.url(pair.primary_port, net.gateway),
            "HEARTH_DATABASE_REPLICA_URL": pair.url(pair.replica_port, net.gateway),
            "HEARTH_BASE_URL": root,
            "HEARTH_BLOB_STORE": "database",
            "HEARTH_SECRET_KEYS": Fernet.generate_key().decode(),
            "HEARTH_DB_POOL_SIZE": "4",
            # a job claimed by a worker that is killed is another's after this long
            "HEARTH_WORKER_LEASE_SECONDS": "10",
            "HEARTH_LOG_LEVEL": "info",
        }
        local = {**env, "HEARTH_DATABASE_URL": pair.url(pair.primary_port), "HEARTH_DATA_DIR": str(tmp / "ops")}  # fmt: skip
        up = subprocess.run([HEARTH, "db", "upgrade"], env=local, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert up.returncode == 0, up.stderr
        made = subprocess.run([HEARTH, "clients", "create", "--client-id", "cluster-ops", "--name", "ops", "--kind", "confidential-symmetric", "--scope", "system/*.cruds"], env=local, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert made.returncode == 0, made.stderr
        tok = subprocess.run([HEARTH, "token", "--client", "cluster-ops", "--scope", "system/*.cruds"], env=local, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert tok.returncode == 0, tok.stderr
        token = tok.stdout.strip().splitlines()[-1]
        for n, role in ((1, "api"), (2, "api"), (3, "worker")):
            ns, ip = net.add(n)
            node_env = {**env, "HEARTH_DATA_DIR": str(tmp / f"node{n}")}
            args = ["serve", "--host", ip, "--port", "8080", "--dicom-port", "11112"] if role == "api" else ["worker", "--poll", "0.2", "--batch-size", "4"]  # fmt: skip
            nodes[f"n{n}"] = Node(ns, ip, args, node_env, tmp / f"node{n}.log")
            nodes[f"n{n}"].start()
        cfg = tmp / "haproxy.cfg"
        cfg.write_text(
            f"""global
  maxconn 512
defaults
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  retries 2
  option redispatch
frontend fhir
  mode http
  bind 127.0.0.1:{lb}
  default_backend api
backend api
  mode http
  option httpchk GET /healthz
  server n1 {nodes["n1"].ip}:8080 check inter 300 fall 2 rise 1
  server n2 {nodes["n2"].ip}:8080 check inter 300 fall 2 rise 1
frontend dicom
  mode tcp
  bind 127.0.0.1:{lb_dicom}
  default_backend dicom
backend dicom
  mode tcp
  server n1 {nodes["n1"].ip}:11112 check inter 300 fall 2 rise 1
  server n2 {nodes["n2"].ip}:11112 check inter 300 fall 2 rise 1
"""
        )
        haproxy = subprocess.Popen(["haproxy", "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL, stderr=(tmp / "haproxy.log").open("wb"))  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"}
        for n in ("n1", "n2"):
            wait(lambda n=n: httpx.get(f"http://{nodes[n].ip}:8080/healthz", timeout=2).status_code == 200, 90, f"{n} up")  # fmt: skip
        wait(lambda: httpx.get(f"{root}/fhir/metadata", timeout=2).status_code == 200, 30, "LB up")
        yield {"root": root, "lb_dicom": lb_dicom, "headers": headers, "nodes": nodes, "pair": pair, "local": local, "tmp": tmp}  # fmt: skip
    finally:
        for node in nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.kill()
        if haproxy is not None:
            haproxy.terminate()
        if pair is not None:
            pair.close()
        net.close()


def test_nodes_die_under_load_and_nothing_acknowledged_is_lost(cluster):  # type: ignore[no-untyped-def]
    root, h, nodes = cluster["root"], cluster["headers"], cluster["nodes"]
    fhir = f"{root}/fhir"
    study = generate_uid()
    # The listener: exactly one API node holds the DICOM port.
    wait(lambda: nodes["n1"].listening(11112) or nodes["n2"].listening(11112), 30, "a listener")
    holder = "n1" if nodes["n1"].listening(11112) else "n2"
    other = "n2" if holder == "n1" else "n1"
    assert not nodes[other].listening(11112)
    assert c_store(cluster["lb_dicom"], instance(study)) == 0

    photo = base64.b64encode(PHOTO.read_bytes()).decode()
    patient_ref = "Patient/" + httpx.post(f"{fhir}/Patient", json={"resourceType": "Patient", "name": [{"family": "Photos"}]}, headers=h).json()["id"]  # fmt: skip
    photos: list[str] = []  # Media ids acknowledged: each gets exactly one analysis
    acknowledged: list[str] = []  # identifier values of every 201 / transaction 200
    tx_acknowledged: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load(k: int) -> None:
        with httpx.Client(headers=h, timeout=30) as c:
            n = 0
            while not stop.is_set():
                n += 1
                mark = f"c{k}-{n}-{uuid.uuid4().hex[:6]}"
                try:
                    if n % 5 == 0:
                        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
                            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "load"}, "identifier": [{"system": "urn:cluster", "value": f"{mark}-{i}"}]},
                             "request": {"method": "POST", "url": "Observation"}} for i in range(3)]}  # fmt: skip
                        r = c.post(fhir, json=bundle)
                        if r.status_code == 200:
                            tx_acknowledged.append(mark)
                    elif n % 11 == 0 and k == 0:  # a skin photo: its AI analysis is queued
                        r = c.post(f"{fhir}/Media", json={"resourceType": "Media", "status": "completed", "modality": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "XC"}]}, "subject": {"reference": patient_ref}, "content": {"contentType": "image/jpeg", "data": photo}})  # fmt: skip
                        if r.status_code == 201:
                            photos.append(r.json()["id"])
                    elif n % 7 == 0:
                        c.get(f"{fhir}/Patient", params={"identifier": f"urn:cluster|c{k}-{n - 1}", "_count": 5})  # fmt: skip
                    else:
                        r = c.post(f"{fhir}/Patient", json={"resourceType": "Patient", "identifier": [{"system": "urn:cluster", "value": mark}]})  # fmt: skip
                        if r.status_code == 201:
                            acknowledged.append(mark)
                        elif r.status_code < 500 and r.status_code != 429:
                            failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError:
                    pass  # in flight on a node that died: not acknowledged

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(3)
        # 1. The API node that does not hold the listener dies; it comes back.
        nodes[other].kill()
        time.sleep(2)
        nodes[other].start()
        wait(lambda: httpx.get(f"http://{nodes[other].ip}:8080/healthz", timeout=2).status_code == 200, 90, "restarted API node")  # fmt: skip
        # 2. The worker dies; it comes back.
        nodes["n3"].kill()
        time.sleep(1)
        nodes["n3"].start()
        time.sleep(2)
        # 3. The listener holder dies: the other node takes the DICOM port over.
        killed_at = time.monotonic()
        nodes[holder].kill()
        moved = wait(lambda: nodes[other].listening(11112), 30, "the listener moved")
        stored = wait(lambda: c_store(cluster["lb_dicom"], instance(study)) == 0, 30, "C-STORE through the LB")  # fmt: skip
        print(f"listener moved after {moved:.1f} s; C-STORE answered {time.monotonic() - killed_at:.1f} s after the kill ({stored:.1f} s of retries)")  # fmt: skip
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == [], failures[:5]
    assert len(acknowledged) > 20 and len(tx_acknowledged) > 3, (len(acknowledged), len(tx_acknowledged))  # fmt: skip

    # Every acknowledged write is there, exactly once (read on the primary: the LSN header).
    cluster["pair"].wait_replayed()
    with httpx.Client(headers=h, timeout=60) as c:
        for start in range(0, len(acknowledged), 50):
            chunk = acknowledged[start : start + 50]
            found = c.get(f"{fhir}/Patient", params={"identifier": ",".join(f"urn:cluster|{m}" for m in chunk), "_count": 200, "_elements": "identifier"}).json()  # fmt: skip
            values = [e["resource"]["identifier"][0]["value"] for e in found.get("entry", [])]
            assert sorted(values) == sorted(chunk)
        for mark in tx_acknowledged:
            found = c.get(f"{fhir}/Observation", params={"identifier": ",".join(f"urn:cluster|{mark}-{i}" for i in range(3))}).json()  # fmt: skip
            assert len(found.get("entry", [])) == 3, mark
        # Both DICOM instances are in the study.
        studies = c.get(f"{fhir}/ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{study}"}).json()  # fmt: skip
        wait(lambda: sum(s["resource"].get("numberOfInstances", 0) for s in c.get(f"{fhir}/ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{study}"}).json().get("entry", [])) == 2, 30, "both instances indexed")  # fmt: skip
        del studies
        # WADO-RS: the study's instances come from either API node (blobs in the database).
        live = [n for n in ("n1", "n2") if nodes[n].proc is not None and nodes[n].proc.poll() is None]  # fmt: skip
        for n in live:
            got = httpx.get(f"http://{nodes[n].ip}:8080/dicomweb/studies/{study}", headers={**h, "Accept": 'multipart/related; type="application/dicom"'}, timeout=60)  # fmt: skip
            assert got.status_code == 200 and got.content.count(b"DICM") == 2, (n, got.status_code)
        # Every acknowledged photo was analysed exactly once, whichever worker life ran it.
        assert photos, "no photo was acknowledged"

        def analysed() -> bool:
            for media in photos:
                tasks = c.get(f"{fhir}/Task", params={"focus": f"Media/{media}", "code": SKIN}).json().get("entry", [])  # fmt: skip
                if len(tasks) != 1 or tasks[0]["resource"]["status"] != "completed":
                    return False
            return True

        wait(analysed, 240, "every photo analysed")
        for media in photos:
            results = c.get(f"{fhir}/Observation", params={"derived-from": f"Media/{media}"}).json().get("entry", [])  # fmt: skip
            assert len(results) == 1, (media, len(results))

        # A Bulk Data export after the kills, downloadable byte-identical from every live node.
        nodes[holder].start()
        wait(lambda: httpx.get(f"http://{nodes[holder].ip}:8080/healthz", timeout=2).status_code == 200, 90, "node back")  # fmt: skip
        kick = c.get(f"{fhir}/Patient/$export", headers={"Accept": "application/fhir+json", "Prefer": "respond-async"})  # fmt: skip
        assert kick.status_code == 202, kick.text
        status_url = kick.headers["content-location"]
        done: dict = {}

        def complete() -> bool:
            r = c.get(status_url)
            if r.status_code == 200:
                done.update(r.json())
                return True
            return False

        wait(complete, 120, "the export")
        assert done["output"], done
        for out in done["output"]:
            path = out["url"].removeprefix(root)
            bodies = {n: httpx.get(f"http://{nodes[n].ip}:8080{path}", headers={**h, "Accept": "application/fhir+ndjson"}, timeout=60).content for n in ("n1", "n2")}  # fmt: skip
            assert bodies["n1"] == bodies["n2"] and bodies["n1"], out
    verify = subprocess.run([HEARTH, "audit", "verify"], env=cluster["local"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stdout + verify.stderr
