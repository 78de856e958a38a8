"""The FastAPI application: built by ``create_app(settings)``; engine and repository are created
in the lifespan, never at import time."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from fhir_server import __version__, ai, bulkdata, errors, events, terminology
from fhir_server.auth import endpoints
from fhir_server.auth.service import AuthService
from fhir_server.bulk_runner import ExportRunner
from fhir_server.context import Context
from fhir_server.dicom import service as dicom_service
from fhir_server.dicom import web as dicomweb
from fhir_server.hl7v2 import mllp
from fhir_server.hl7v2 import web as hl7v2_web
from fhir_server.hl7v2.service import Hl7v2Service
from fhir_server.routes import router
from fhir_server.settings import Settings
from fhir_server.webapp import build_router as webapp_router
from resources.db import create_engine
from resources.repository import Repository
from resources.search import SearchEngine
from workflow import search_params as workflow_search_params


def build_context(settings: Settings) -> Context:
    engine = create_engine(settings.database_url)
    search = SearchEngine(base_urls=(settings.fhir_base,))
    workflow_search_params.register(search)  # Task?performer-type= for worklists
    ctx = Context(repo=Repository(engine, search), settings=settings)
    ctx.services["repo"] = ctx.repo  # the unguarded repository, for per-process services
    ai.install(ctx)
    terminology.install(ctx)  # ValueSet / CodeSystem lookups for search and $expand & co.
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
    from resources.validation_schema import schema

    for res_type in COMMON_TYPES:
        schema().validator(res_type)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        ctx = build_context(settings)
        app.state.context = ctx
        app.state.auth = AuthService.build(ctx.repo.engine, settings)
        threading.Thread(target=warm_validators, name="warm-validators", daemon=True).start()
        app.state.dicom = dicom_service.start(ctx.repo, settings, listen=settings.dicom_enabled)
        if settings.ai_triggers:
            app.state.dicom.ingest.on_study_complete.append(events.on_study_complete(ctx.repo))
        app.state.hl7v2 = Hl7v2Service(ctx, app.state.auth)
        exports = ctx.services["bulk-export"] = ExportRunner(ctx.repo, settings)
        exports.start_sweeper()  # Bulk Data jobs whose runner died (docs/bulk-export.md)
        app.state.mllp = None
        if settings.mllp_port is not None:
            app.state.mllp = mllp.start(app.state.hl7v2, settings.host, settings.mllp_port)
        try:
            yield
        finally:
            if app.state.mllp is not None:
                app.state.mllp.stop()
            app.state.dicom.stop()
            exports.stop()
            app.state.auth.close()
            ctx.repo.engine.dispose()

    app = FastAPI(
        title="Hearth",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    errors.install(app)
    app.include_router(endpoints.router)
    app.include_router(hl7v2_web.router, prefix="/fhir")  # before the generic /{op} route
    app.include_router(bulkdata.router, prefix="/fhir")  # before /{res_type}/{res_id}
    app.include_router(router, prefix="/fhir")
    app.include_router(dicomweb.router, prefix="/dicomweb")
    app.include_router(webapp_router())  # the clinicians' web app at /app/ (docs/webapp.md)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/fhir/metadata")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok", "version": __version__}

    return app
