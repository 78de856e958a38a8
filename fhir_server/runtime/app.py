"""The FastAPI application: built by ``create_app(settings)``; engine and repository are created
in the lifespan, never at import time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.types import Receive, Scope, Send

from fhir_server import __version__
from fhir_server.auth import endpoints
from fhir_server.auth.bodylimit import AuthBodyLimit
from fhir_server.auth.service import AuthService
from fhir_server.dicom import ai_export
from fhir_server.dicom import service as dicom_service
from fhir_server.dicom import web as dicomweb
from fhir_server.hl7v2 import mllp
from fhir_server.hl7v2 import outbound as hl7_outbound
from fhir_server.hl7v2 import web as hl7v2_web
from fhir_server.hl7v2.service import Hl7v2Service
from fhir_server.rest import bulkdata, bulkimport, errors, websocket
from fhir_server.rest.consistency import ReadYourWrites
from fhir_server.rest.context import Context
from fhir_server.rest.fast_read import FastRead
from fhir_server.rest.headers import SecurityHeaders, docs_csp
from fhir_server.rest.routes import router
from fhir_server.runtime import (
    ai,
    events,
    logsafe,
    mailsink,
    profiles,
    subscriptions,
    terminology,
)
from fhir_server.runtime.audit_anchor import Checkpointer
from fhir_server.runtime.bulk_runner import ExportRunner
from fhir_server.runtime.import_runner import ImportRunner
from fhir_server.runtime.listeners import Election, FileLock, Lock
from fhir_server.runtime.settings import Settings
from fhir_server.webapp import build_router as webapp_router
from fhir_server.webapp import mailbox as dev_mailbox
from resources.search import SearchEngine
from resources.storage.advisory import SessionLock, is_postgres_url
from resources.storage.db import create_engine
from resources.storage.point_read import async_point_reader, point_reader
from resources.storage.repository import Repository
from workflow import careplans
from workflow import search_params as workflow_search_params

# The advisory lock whose holder runs the DICOM / MLLP listeners of all nodes on one database.
LISTENER_LOCK = "hearth:listeners"


def build_search(settings: Settings) -> SearchEngine:
    search = SearchEngine(base_urls=(settings.fhir_base,))
    workflow_search_params.register(search)  # Task?performer-type= for worklists
    return search


def build_context(settings: Settings, search: SearchEngine | None = None) -> Context:
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
    )
    search = search or build_search(settings)
    replica = None
    if settings.database_replica_url:
        replica = create_engine(
            settings.database_replica_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout,
        )
    ctx = Context(repo=Repository(engine, search, replica=replica), settings=settings)
    ctx.services["repo"] = ctx.repo  # the unguarded repository, for per-process services
    # PostgreSQL: reads by id on prepared statements of their own (resources/storage/point_read.py)
    ctx.services["point_read"] = point_reader(
        engine, settings.db_lookup_pool_size, settings.db_pool_timeout
    )
    ai.install(ctx)
    terminology.install(ctx)  # ValueSet / CodeSystem lookups for search and $expand & co.
    profiles.install(ctx)  # StructureDefinitions for $validate (and HEARTH_ENFORCE_PROFILES)
    subscriptions.install(ctx)  # rest-hook endpoint rules on Subscription writes
    ai_export.install(ctx.repo, settings)  # AI results of a study → its DICOM SR / SC job
    ctx.repo.write_hooks.append(careplans.on_write)  # a plan's status follows its activities
    return ctx


# The types Hearth's own workflows write; their validators are compiled in the background at
# start so the first request of each type does not pay for it (~0.1-0.25 s each).
COMMON_TYPES = (
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Observation",
    "ImagingStudy",
    "DiagnosticReport",
    "Task",
    "ServiceRequest",
    "MedicationRequest",
    "RiskAssessment",
    "Communication",
    "AuditEvent",
    "Appointment",
    "Bundle",
    "Encounter",
    "Condition",
)


def warm_validators() -> None:
    from resources.validation import compile_validator

    for res_type in COMMON_TYPES:
        compile_validator(res_type)


def preload(settings: Settings) -> SearchEngine:
    """What every worker would otherwise build for itself, built once before gunicorn forks
    them (fhir_server/runtime/prefork.py): the common types' validators (R4 JSON Schema, R4B models and
    the quick walk's tables over them) and a search engine with their index plans. Opens no connection, starts no thread."""
    from resources.validation import prepare

    search = build_search(settings)
    for res_type in COMMON_TYPES:
        prepare(res_type)  # its validators and the quick walk's tables
        search.indexer.plan(res_type)
    return search


def _start_listeners(settings: Settings, state) -> Callable[[], None]:  # type: ignore[no-untyped-def]
    """Start this process's DICOM and MLLP listeners (the elected one), published on the app's
    state as a lone process publishes them (``state.dicom.listener``, ``state.mllp``); returns
    their stop."""
    dicom = mllp_listener = sink = None
    try:
        if settings.dicom_enabled:
            dicom = dicom_service.start_listener(state.dicom.ingest, settings)
        if settings.mllp_port is not None:
            mllp_listener = mllp.start(state.hl7v2, settings)
        if settings.dev_mailbox is not None:
            sink = mailsink.start(settings.dev_mailbox, settings.dev_mailbox_port)
    except OSError:
        for started in (dicom, mllp_listener):
            if started is not None:
                started.stop()
        raise
    state.dicom.listener, state.mllp = dicom, mllp_listener

    def stop() -> None:
        state.dicom.listener = state.mllp = None
        for listener in (dicom, mllp_listener, sink):
            if listener is not None:
                listener.stop()

    return stop


class HearthApp(FastAPI):
    """FastAPI, with the read by id answered before Starlette's middleware stack and routing
    when it can be (``fhir_server/rest/fast_read.py``; set in the lifespan on PostgreSQL)."""

    fast_read: FastRead | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_read
        if fast is not None and scope["type"] == "http" and await fast(scope, receive, send):
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, search: SearchEngine | None = None) -> FastAPI:
    """The ASGI app; ``search``, when given, is the preloaded search engine (``preload``)."""
    settings = settings or Settings()
    logsafe.install()  # tracebacks in the logs without exception messages (they quote PHI)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    @asynccontextmanager
    async def lifespan(app: HearthApp):  # type: ignore[no-untyped-def]
        ctx = build_context(settings, search)
        app.state.context = ctx
        # The threads running interactions at once (anyio's limiter: 40 unless set); requests
        # beyond wait in the event loop, not as threads contending for the GIL and the pool.
        to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        app.state.auth = AuthService.build(ctx.repo.engine, settings)
        ctx.services["auth"] = app.state.auth  # the admin operations (fhir_server/auth/accounts.py)
        app.state.checkpoints = Checkpointer(
            ctx.repo.engine,
            app.state.auth.key,
            settings.audit_checkpoint_files(),
            settings.audit_checkpoint_seconds,
        )
        threading.Thread(target=warm_validators, name="warm-validators", daemon=True).start()
        # One process on SQLite: the listeners run here. Several workers, or any PostgreSQL
        # database (other nodes may share it): the process that wins the election runs them (a
        # lock under the data directory, or a PostgreSQL advisory lock:
        # fhir_server/runtime/listeners.py).
        shared = is_postgres_url(settings.database_url)
        alone = settings.workers == 1 and not shared
        app.state.dicom = dicom_service.start(
            ctx.repo, settings, listen=settings.dicom_enabled and alone
        )
        ctx.services["dicom-ingest"] = app.state.dicom.ingest  # $upload-xray's DICOM files
        if settings.ai_triggers:
            app.state.dicom.ingest.on_study_complete.append(events.on_study_complete(ctx.repo))
        app.state.hl7v2 = ctx.services["hl7v2"] = Hl7v2Service(ctx, app.state.auth)
        exports = ctx.services["bulk-export"] = ExportRunner(ctx.repo, settings)
        exports.start_sweeper()  # Bulk Data jobs whose runner died (docs/bulk-export.md)
        imports = ctx.services["bulk-import"] = ImportRunner(ctx.repo, settings)
        imports.start_sweeper()  # $import jobs whose runner died (docs/bulk-import.md)
        # HL7 v2 out (HEARTH_HL7_OUT_HOST): final reports sent as ORU^R01 (docs/hl7v2.md)
        app.state.hl7_out = hl7_outbound.start(ctx.repo, settings)
        app.state.mllp = None
        if settings.mllp_port is not None and alone:
            app.state.mllp = mllp.start(app.state.hl7v2, settings)
        # The development mail sink (HEARTH_DEV_MAILBOX) is one more listener of the same kind.
        app.state.mail_sink = None
        if settings.dev_mailbox is not None and alone:
            app.state.mail_sink = mailsink.start(settings.dev_mailbox, settings.dev_mailbox_port)
        election = None
        if not alone and (
            settings.dicom_enabled
            or settings.mllp_port is not None
            or settings.dev_mailbox is not None
        ):
            lock: Lock = (
                SessionLock(settings.database_url, LISTENER_LOCK)
                if shared
                else FileLock(settings.data_dir / "listeners.lock")
            )
            election = Election(
                lock,
                lambda: _start_listeners(settings, app.state),
            ).begin()
        app.state.listeners = election
        # PostgreSQL: the read by id in the event loop, token and row in one round trip
        reader = async_point_reader(
            ctx.repo.engine, settings.db_lookup_pool_size, settings.db_pool_timeout
        )
        app.fast_read = FastRead(app, reader) if reader is not None else None
        try:
            yield
        finally:
            app.fast_read = None
            if reader is not None:
                await reader.aclose()
            if election is not None:
                election.end()
            if app.state.mllp is not None:
                app.state.mllp.stop()
            if app.state.mail_sink is not None:
                app.state.mail_sink.stop()
            app.state.dicom.stop()
            if app.state.hl7_out is not None:
                app.state.hl7_out.stop()
            exports.stop()
            imports.stop()
            app.state.auth.close()  # drains the audit writer
            app.state.checkpoints.stop()  # then anchors the final head outside the database
            if ctx.services.get("point_read") is not None:
                ctx.services["point_read"].close()
            ctx.repo.engine.dispose()

    app = HearthApp(
        title="Hearth",
        version=__version__,
        lifespan=lifespan,
        # The OpenAPI document and its Swagger UI page (scripts from a CDN) only when
        # HEARTH_API_DOCS is on, and then with a CSP that names exactly what the page loads.
        docs_url=None,
        openapi_url="/openapi.json" if settings.api_docs else None,
        redoc_url=None,
    )
    errors.install(app)
    app.add_middleware(AuthBodyLimit)  # /auth/* bodies: 413 before reading past the limit
    if settings.database_replica_url:
        app.add_middleware(ReadYourWrites)  # the client's last write's LSN (rest/consistency.py)
    app.add_middleware(
        SecurityHeaders
    )  # nosniff & co. on every response (fhir_server/rest/headers.py)
    if settings.api_docs:

        @app.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            page = get_swagger_ui_html(openapi_url="/openapi.json", title="Hearth API")
            page.headers["Content-Security-Policy"] = docs_csp(bytes(page.body).decode())
            return page

    app.include_router(endpoints.router)
    app.include_router(websocket.router)  # the R4 websocket subscription channel
    app.include_router(hl7v2_web.router, prefix="/fhir")  # before the generic /{op} route
    app.include_router(bulkdata.router, prefix="/fhir")  # before /{res_type}/{res_id}
    app.include_router(bulkimport.router, prefix="/fhir")
    app.include_router(router, prefix="/fhir")
    app.include_router(dicomweb.router, prefix="/dicomweb")
    app.include_router(dev_mailbox.router)  # HEARTH_DEV_MAILBOX, for administrators
    # the clinicians' web app at /app/ and the portal (docs/webapp.md)
    app.include_router(webapp_router(settings.base_url))

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/fhir/metadata")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok", "version": __version__}

    return app
