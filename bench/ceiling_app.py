"""The ceiling of Hearth's HTTP stack: a minimal FastAPI app on uvicorn that does only what a
benchmark's raw baseline does — a point SELECT by primary key returning the stored JSON bytes, a
single-row autocommit INSERT of the posted JSON — so that ``bench/crud.py`` can show how much of
the gap between Hearth and raw psycopg is the Python HTTP stack itself. A benchmark baseline, not
product code: no auth, no audit, no validation.

    CEILING_DSN=postgresql://... uvicorn bench.ceiling_app:create_app --factory

Each worker process keeps a LIFO pool of up to 4 autocommit psycopg connections; routes are plain
``def`` functions, which FastAPI runs in its thread pool (one thread hop, as Hearth's routes make).
The table is ``ceiling_resource (id text primary key, content jsonb)``, created by the bench.
"""

from __future__ import annotations

import os
import queue
import uuid
from contextlib import asynccontextmanager

import orjson
import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

SIZE = 4
SELECT = "select content::text from ceiling_resource where id = %s"
INSERT = "insert into ceiling_resource (id, content) values (%s, %s)"


class Pool:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.free: queue.LifoQueue[psycopg.Connection | None] = queue.LifoQueue()
        for _ in range(SIZE):
            self.free.put(None)  # a slot; connected on first use

    def run(self, sql: str, params: tuple, fetch: bool) -> tuple | None:
        conn = self.free.get()
        try:
            if conn is None:
                conn = psycopg.connect(self.dsn, autocommit=True)
            cur = conn.execute(sql, params, prepare=True)
            return cur.fetchone() if fetch else None
        finally:
            self.free.put(conn)

    def close(self) -> None:
        while not self.free.empty():
            conn = self.free.get_nowait()
            if conn is not None:
                conn.close()


def create_app() -> FastAPI:
    dsn = os.environ["CEILING_DSN"]

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        app.state.pool = Pool(dsn)
        try:
            yield
        finally:
            app.state.pool.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, openapi_url=None, redoc_url=None)

    @app.get("/Patient/{rid}")
    def read(rid: str, request: Request) -> Response:
        row = request.app.state.pool.run(SELECT, (rid,), True)
        if row is None:
            return Response(status_code=404)
        return Response(row[0].encode(), media_type="application/fhir+json")

    @app.post("/Patient")
    async def create(request: Request) -> Response:
        body = orjson.loads(await request.body())  # parsed, as any server must
        rid = str(uuid.uuid4())
        await run_in_threadpool(
            request.app.state.pool.run, INSERT, (rid, orjson.dumps(body).decode()), False
        )
        return Response(status_code=201, headers={"Location": f"/Patient/{rid}/_history/1"})

    return app
