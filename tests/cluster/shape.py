"""The production shape on one machine, for tests/cluster/ and bench/cluster.py: three Hearth
nodes as separate processes, each in its own network namespace (``ip netns``, a veth into one
bridge) — two API nodes (``hearth serve``, which also campaign for the DICOM listener) and one
``hearth worker`` — behind HAProxy from Debian (HTTP and the DICOM port, both health-checked), on
a PostgreSQL primary and a streaming replica of their own (tests/pgpair.py) reached over the
bridge, every node with the same settings (one database, the replica for reads, the database blob
store, shared secret keys). Needs root (namespaces, veths) and haproxy (`make dicom-tools`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from tests.pgpair import Pair
from tests.servers import free_port

SUBNET = "10.213.{}."
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


@contextmanager
def cluster(tmp: Path, *, worker_args: tuple[str, ...] = ("worker", "--poll", "0.2", "--batch-size", "4")) -> Iterator[dict]:  # fmt: skip
    """The shape (see the module doc), torn down on exit: a dict with ``root`` (the load
    balancer), ``root_one`` (a second frontend that sends everything to node n1 only),
    ``lb_dicom``, ``headers`` (an operator token), ``nodes``, ``pair``, ``local`` (settings for
    commands run here against the primary) and ``tmp``."""
    net = Net()
    pair = haproxy = None
    nodes: dict[str, Node] = {}
    try:
        pair = Pair(listen=f"127.0.0.1,{net.gateway}", allow=f"{net.net}0/24").build()
        lb, lb_one, lb_dicom = free_port(), free_port(), free_port()
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
            args = ["serve", "--host", ip, "--port", "8080", "--dicom-port", "11112"] if role == "api" else list(worker_args)  # fmt: skip
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
frontend fhir_one
  mode http
  bind 127.0.0.1:{lb_one}
  default_backend one
backend one
  mode http
  server n1 {nodes["n1"].ip}:8080 check inter 300 fall 2 rise 1
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
        yield {"root": root, "root_one": f"http://127.0.0.1:{lb_one}", "lb_dicom": lb_dicom, "headers": headers, "nodes": nodes, "pair": pair, "local": local, "tmp": tmp}  # fmt: skip
    finally:
        for node in nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.kill()
        if haproxy is not None:
            haproxy.terminate()
        if pair is not None:
            pair.close()
        net.close()
