"""A PostgreSQL 15 primary and its streaming replica, built for one test module the way Debian's
PostgreSQL makes them on one machine: ``initdb`` (trust auth, replication allowed), then
``pg_basebackup -R`` into a second cluster, each on a free port, run as the ``postgres`` user.
Nothing of the machine's own cluster (127.0.0.1:5432) is touched."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.servers import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def as_postgres(*cmd: str) -> None:
    done = subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


class Pair:
    def __init__(self, listen: str = "127.0.0.1", allow: str = "127.0.0.1/32") -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hearth-pgpair-"))
        shutil.chown(self.root, "postgres")
        self.listen, self.allow = listen, allow
        self.primary_port, self.replica_port = free_port(), free_port()
        self.primary, self.replica = self.root / "primary", self.root / "replica"

    def start(self, data: Path, port: int) -> None:
        opts = f"-p {port} -k {self.root} -c listen_addresses={self.listen} -c max_connections=60"
        as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(data) + ".log", "-w", "start")  # fmt: skip

    def stop(self, data: Path) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)  # fmt: skip

    def build(self) -> Pair:
        as_postgres(str(BIN / "initdb"), "-D", str(self.primary), "--auth=trust", "-U", "postgres")
        with (self.primary / "pg_hba.conf").open("a") as f:
            f.write(f"host all all {self.allow} trust\n")
            f.write("host replication all 127.0.0.1/32 trust\n")
        self.start(self.primary, self.primary_port)
        as_postgres(str(BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres", "-D", str(self.replica), "-R", "-X", "stream")  # fmt: skip
        self.start(self.replica, self.replica_port)
        return self

    def url(self, port: int, host: str = "127.0.0.1") -> str:
        return f"postgresql+psycopg://postgres@{host}:{port}/postgres"

    def sql(self, port: int, statement: str) -> tuple:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as c:  # fmt: skip
            row = c.execute(statement).fetchone()
            assert row is not None
            return row

    def wait_replayed(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sent = self.sql(self.primary_port, "SELECT pg_current_wal_lsn()")[0]
            if self.sql(self.replica_port, f"SELECT pg_last_wal_replay_lsn() >= '{sent}'")[0]:
                return
            time.sleep(0.05)
        raise AssertionError("the replica did not catch up")

    def close(self) -> None:
        self.stop(self.replica)
        self.stop(self.primary)
        shutil.rmtree(self.root, ignore_errors=True)
