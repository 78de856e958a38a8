"""The ``hearth`` command line: serve, db upgrade, load, reindex, worker, version.

Settings come from ``HEARTH_*`` environment variables; flags override them (they are written
back into the environment so uvicorn's worker processes see the same settings).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from fhir_server import __version__
from fhir_server.settings import Settings


def _settings(**overrides: object) -> Settings:
    for key, value in overrides.items():
        if value is not None:
            os.environ[f"HEARTH_{key.upper()}"] = str(value)
    try:
        return Settings()
    except Exception as exc:  # pydantic ValidationError: print it plainly and stop
        raise click.ClickException(f"invalid settings: {exc}") from exc


@click.group()
@click.version_option(__version__, prog_name="hearth")
def main() -> None:
    """Hearth, a FHIR R4 server."""


@main.command()
def version() -> None:
    """Print Hearth's version and FHIR version."""
    click.echo(f"hearth {__version__} (FHIR 4.0.1)")


@main.command()
@click.option("--host", help="address to bind [HEARTH_HOST, 127.0.0.1]")
@click.option("--port", type=int, help="port [HEARTH_PORT, 8080]")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
@click.option("--base-url", help="public URL of the server root [HEARTH_BASE_URL]")
@click.option("--workers", type=int, help="worker processes [HEARTH_WORKERS, 1]")
def serve(host, port, database_url, base_url, workers) -> None:  # type: ignore[no-untyped-def]
    """Serve the FHIR API over HTTP."""
    import uvicorn

    from resources.migrate import current, head

    settings = _settings(
        host=host, port=port, database_url=database_url, base_url=base_url, workers=workers
    )
    try:
        settings.require_loopback()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    have, want = current(settings.database_url), head()
    if have != want:
        raise click.ClickException(
            f"the database schema is at {have or 'nothing'}, not {want}: run `hearth db upgrade`"
        )
    click.echo(f"Hearth {__version__}: FHIR base {settings.fhir_base}")
    uvicorn.run(
        "fhir_server.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
    )


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def db_upgrade(database_url) -> None:  # type: ignore[no-untyped-def]
    """Create or migrate the schema to the latest revision (Alembic)."""
    from resources.migrate import current, upgrade

    settings = _settings(database_url=database_url)
    upgrade(settings.database_url)
    click.echo(f"database at revision {current(settings.database_url)}")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
@click.option("--quiet", is_flag=True, help="no progress bar")
def load(paths, database_url, quiet) -> None:  # type: ignore[no-untyped-def]
    """Load FHIR JSON files, Bundles and NDJSON into the database.

    A transaction or batch Bundle is processed as one; every other resource (other Bundles
    included) and every NDJSON line is stored on its own: update-as-create when it carries an
    id, create otherwise. Prints a summary of what was created, updated and failed, with reasons.
    """
    from fhir_server.app import build_context
    from fhir_server.loader import load_paths

    settings = _settings(database_url=database_url)
    ctx = build_context(settings)
    try:
        summary = load_paths(ctx, list(paths), progress=not quiet)
    finally:
        ctx.repo.engine.dispose()
    click.echo(summary.report())
    if summary.failed:
        sys.exit(1)


@main.command()
@click.option("--type", "res_type", help="only this resource type")
@click.option("--resume", is_flag=True, help="continue the unfinished jobs instead of starting one")
@click.option("--batch", type=int, default=500, show_default=True, help="resources per transaction")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def reindex(res_type, resume, batch, database_url) -> None:  # type: ignore[no-untyped-def]
    """Re-index stored resources (after adding custom SearchParameters), resumably."""
    from tqdm import tqdm

    from fhir_server.app import build_context
    from resources import reindex as jobs

    ctx = build_context(_settings(database_url=database_url))
    try:
        todo = jobs.unfinished(ctx.repo) if resume else [jobs.start(ctx.repo, res_type)]
        if resume and not todo:
            click.echo("no unfinished reindex job")
        for job in todo:
            with tqdm(total=job.total, initial=job.done_count, unit="res") as bar:
                last = job.done_count

                def progress(j, bar=bar):  # type: ignore[no-untyped-def]
                    nonlocal last
                    bar.update(j.done_count - last)
                    last = j.done_count

                done = jobs.run_to_end(ctx.repo, job.id, batch=batch, progress=progress)
            click.echo(f"reindex job {done.id}: {done.done_count} resources re-indexed")
    finally:
        ctx.repo.engine.dispose()


@main.command()
@click.option("--once", is_flag=True, help="run one pass and exit (tests, cron)")
@click.option(
    "--interval", type=float, default=30.0, show_default=True, help="seconds between passes"
)
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def worker(once, interval, database_url) -> None:  # type: ignore[no-untyped-def]
    """Run background work: report delivery, medication reminders, e-mail (docs/workflow.md)."""
    import time

    from fhir_server.app import build_context
    from workflow import worker as workflow_worker

    settings = _settings(database_url=database_url)
    ctx = build_context(settings)
    try:
        while True:
            done = workflow_worker.run_once(
                ctx.repo, settings.smtp(), facility_name=settings.facility_name
            )
            click.echo(done.summary())
            if once:
                break
            time.sleep(interval)
    finally:
        ctx.repo.engine.dispose()


if __name__ == "__main__":
    main()
