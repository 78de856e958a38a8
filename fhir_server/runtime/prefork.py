"""``hearth serve --workers N`` with N > 1: gunicorn forks N uvicorn workers from one process that
has already built the app and compiled the common validators, so the workers share those pages
instead of each loading its own copy (about half the memory of N separately started workers).

The forking process stays free of threads and database connections: each worker's lifespan opens
its own engine and threads after the fork, and one elected worker runs the DICOM and MLLP
listeners (:mod:`fhir_server.runtime.listeners`). gunicorn replaces a worker that dies.
"""

from __future__ import annotations

import gc
from typing import Any

from gunicorn.app.base import BaseApplication

from fhir_server.runtime.settings import Settings


class HearthGunicorn(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured from Hearth's settings (no gunicorn command line or config file)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        host = f"[{s.host}]" if ":" in s.host else s.host
        options: dict[str, Any] = {
            "bind": [f"{host}:{s.port}"],
            "workers": s.workers,
            "worker_class": "uvicorn_worker.UvicornWorker",
            "preload_app": True,
            "loglevel": s.log_level,
            "accesslog": "-" if s.log_level == "debug" else None,
            "timeout": 120,  # a worker silent this long (no heartbeat) is replaced
            "graceful_timeout": 30,
            "proc_name": "hearth",
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from fhir_server.runtime.app import create_app, preload

        app = create_app(self.settings, preload(self.settings))  # once, not in each worker
        gc.collect()
        gc.freeze()  # keep the collector from writing to the shared pages in every worker
        return app


def run(settings: Settings) -> None:
    HearthGunicorn(settings).run()
