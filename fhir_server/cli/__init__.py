"""The ``hearth`` command line: serve, dicom, db upgrade, load, reindex, worker, ai, clients,
users, token, audit verify / checkpoint, version.

Settings come from ``HEARTH_*`` environment variables; flags override them (they are written
back into the environment so uvicorn's worker processes see the same settings).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from fhir_server import __version__
from fhir_server.cli.ai import ai, worker
from fhir_server.cli.settings import settings_from_flags as _settings
from fhir_server.runtime.settings import Settings


@click.group()
@click.version_option(__version__, prog_name="hearth")
def main() -> None:
    """Hearth, a FHIR R4 server."""
    from fhir_server.runtime import logsafe

    logsafe.install()  # every command: tracebacks in logs without exception messages (PHI)


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
@click.option("--dicom-port", type=int, help="DICOM listener port [HEARTH_DICOM_PORT, 11112]")
@click.option("--no-dicom", is_flag=True, help="no DICOM listener [HEARTH_DICOM_ENABLED=false]")
@click.option("--mllp-port", type=int, help="HL7 v2 MLLP listener port [HEARTH_MLLP_PORT, off]")
def serve(host, port, database_url, base_url, workers, dicom_port, no_dicom, mllp_port) -> None:  # type: ignore[no-untyped-def]
    """Serve the FHIR API (and DICOMweb) over HTTP, with the DICOM listener."""
    import uvicorn

    from resources.storage.migrate import current, head

    settings = _settings(
        host=host,
        port=port,
        database_url=database_url,
        base_url=base_url,
        workers=workers,
        dicom_port=dicom_port,
        dicom_enabled="false" if no_dicom else None,
        mllp_port=mllp_port,
    )
    have, want = current(settings.database_url), head()
    if have != want:
        raise click.ClickException(
            f"the database schema is at {have or 'nothing'}, not {want}: run `hearth db upgrade`"
        )
    click.echo(f"Hearth {__version__}: FHIR base {settings.fhir_base}")
    from resources.storage.advisory import is_postgres_url

    if settings.workers > 1 and not is_postgres_url(settings.database_url):
        # The elected worker binds these later (fhir_server/runtime/listeners.py): fail now, not
        # then. Not on PostgreSQL: another node on this host may be the one holding them.
        if settings.dicom_enabled:
            _check_port_free(settings.host, settings.dicom_port, "DICOM", "HEARTH_DICOM_PORT")
        if settings.mllp_port is not None:
            _check_port_free(settings.host, settings.mllp_port, "MLLP", "HEARTH_MLLP_PORT")
    if settings.dicom_enabled:
        click.echo(f"DICOM listener {settings.dicom_ae_title} on port {settings.dicom_port}")
    if settings.mllp_port is not None:
        click.echo(f"HL7 v2 MLLP listener on {settings.host}:{settings.mllp_port}")
    from fhir_server.runtime import budget

    warning = budget.check(settings)
    if warning:
        click.echo(f"WARNING: {warning}", err=True)
    if settings.workers > 1:
        from fhir_server.runtime import prefork

        prefork.run(settings)  # gunicorn: workers forked from one preloaded app
    else:
        _uvicorn(uvicorn, settings)


def _check_port_free(host: str, port: int, what: str, setting: str) -> None:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen for {what} on {host}:{port} ({exc.strerror}); set {setting}"
            ) from exc


def _start_dicom(settings: Settings):  # type: ignore[no-untyped-def]
    from fhir_server.dicom import service
    from fhir_server.runtime.app import build_context

    ctx = build_context(settings)
    try:
        service_ = service.start(ctx.repo, settings, listen=True)
    except OSError as exc:
        raise click.ClickException(str(exc.strerror)) from exc
    if settings.ai_triggers:
        from fhir_server.runtime import events

        service_.ingest.on_study_complete.append(events.on_study_complete(ctx.repo))
    return service_


def _uvicorn(uvicorn, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    uvicorn.run(
        "fhir_server.runtime.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
    )


@main.command()
@click.option("--port", "dicom_port", type=int, help="port [HEARTH_DICOM_PORT, 11112]")
@click.option("--ae-title", "dicom_ae_title", help="AE title [HEARTH_DICOM_AE_TITLE, HEARTH]")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def dicom(dicom_port, dicom_ae_title, database_url) -> None:  # type: ignore[no-untyped-def]
    """Run only the DICOM Storage SCP (C-ECHO, C-STORE) until interrupted."""
    import logging
    import signal
    import time

    from resources.storage.migrate import current, head

    settings = _settings(
        dicom_port=dicom_port, dicom_ae_title=dicom_ae_title, database_url=database_url
    )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if current(settings.database_url) != head():
        raise click.ClickException("the database schema is not current: run `hearth db upgrade`")
    service = _start_dicom(settings)
    click.echo(
        f"DICOM Storage SCP {settings.dicom_ae_title} on {settings.host}:{settings.dicom_port}",
    )
    # SIGTERM stops like Ctrl-C: the ingest writer finishes the ImagingStudy updates it holds.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()


def _dicom_store(settings: Settings):  # type: ignore[no-untyped-def]
    """The instance store for its pending journal (on this node's disk, whatever the blob
    store)."""
    from resources.storage.instances import InstanceStore

    return InstanceStore(settings.data_dir)


def _failed_ai_exports(settings: Settings) -> None:
    """The AI results whose DICOM objects could not be pushed (docs/dicom.md)."""
    from fhir_server.dicom.ai_export import JOB_KIND
    from fhir_server.runtime.app import build_context
    from resources.jobs import queue

    ctx = build_context(settings)
    try:
        for job in queue.failed(ctx.repo, [JOB_KIND]):
            click.echo(
                f"AI result {job.task_ref}\tDICOM push FAILED after {job.attempts} attempts"
                f" ({job.last_error})"
            )
    finally:
        ctx.repo.engine.dispose()


@main.command("dicom-pending")
def dicom_pending() -> None:
    """List DICOM instances acknowledged to their sender but not yet in an ImagingStudy, and the
    studies whose writes kept failing (dead-lettered; `hearth dicom-replay` retries them)."""
    settings = _settings()
    try:
        _failed_ai_exports(settings)
    except Exception as exc:  # the journal below is this node's own: listed all the same
        click.echo(f"AI results' DICOM pushes not listed: {type(exc).__name__}", err=True)
    store = _dicom_store(settings)
    pending, failed = store.pending(), store.failed()
    if not pending:
        click.echo("no DICOM instances pending")
        return
    for study_uid, sop_uids in pending.items():
        state = "pending"
        if study_uid in failed:
            f = failed[study_uid]
            state = f"FAILED {f.get('failed_at', '?')} after {f.get('attempts', '?')} attempts"
            state += f" ({f.get('error', '?')})"
        click.echo(f"{study_uid}\t{len(sop_uids)} instance(s)\t{state}")


@main.command("dicom-replay")
@click.option("--study", "studies", multiple=True, help="Study Instance UID (repeatable; all)")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def dicom_replay(studies, database_url) -> None:  # type: ignore[no-untyped-def]
    """Write the pending (and dead-lettered) DICOM instances into their ImagingStudy again, from
    the stored files; exits 1 while any selected study is still pending."""
    import logging

    from fhir_server.dicom import service
    from fhir_server.runtime.app import build_context
    from resources.storage.migrate import current, head

    settings = _settings(database_url=database_url)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if current(settings.database_url) != head():
        raise click.ClickException("the database schema is not current: run `hearth db upgrade`")
    ctx = build_context(settings)
    dicom = service.start(ctx.repo, settings, listen=False, replay=False)
    selected = list(studies) or None
    try:
        if settings.ai_triggers:
            from fhir_server.runtime import events

            dicom.ingest.on_study_complete.append(events.on_study_complete(ctx.repo))
        queued = dicom.ingest.replay(include_failed=True, studies=selected)
        dicom.ingest.flush(timeout=600)
    finally:
        dicom.stop()
    left = [u for u in dicom.store.pending() if selected is None or u in selected]
    click.echo(f"{queued} instance(s) replayed; {len(left)} study(ies) still pending")
    if left:
        raise SystemExit(1)


def _start_mllp(settings: Settings):  # type: ignore[no-untyped-def]
    from fhir_server.auth.service import AuthService
    from fhir_server.hl7v2 import mllp
    from fhir_server.hl7v2.service import Hl7v2Service
    from fhir_server.runtime.app import build_context

    ctx = build_context(settings)
    service = Hl7v2Service(ctx, AuthService.build(ctx.repo.engine, settings))
    try:
        return mllp.start(service, settings)
    except OSError as exc:
        raise click.ClickException(str(exc.strerror)) from exc


@main.command("mllp")
@click.option("--port", "mllp_port", type=int, help="port [HEARTH_MLLP_PORT, 2575]")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def mllp_command(mllp_port, database_url) -> None:  # type: ignore[no-untyped-def]
    """Run only the HL7 v2 MLLP listener (ADT, ORU → FHIR; ACKs) until interrupted."""
    import logging
    import signal
    import time

    from resources.storage.migrate import current, head

    settings = _settings(mllp_port=mllp_port, database_url=database_url)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if current(settings.database_url) != head():
        raise click.ClickException("the database schema is not current: run `hearth db upgrade`")
    listener = _start_mllp(settings)
    click.echo(f"HL7 v2 MLLP listener on {settings.host}:{listener.port}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def db_upgrade(database_url) -> None:  # type: ignore[no-untyped-def]
    """Create or migrate the schema to the latest revision (Alembic), then store the R4 core
    profiles (StructureDefinition/vitalsigns, ...) and Hearth's Measures (Measure/screening-volume,
    ...: docs/analytics.md) that are not in the database yet."""
    from fhir_server.runtime.app import build_context
    from fhir_server.runtime.measures import store_measures
    from fhir_server.runtime.profiles import store_core_profiles
    from resources.storage.migrate import current, upgrade

    settings = _settings(database_url=database_url)
    upgrade(settings.database_url)
    click.echo(f"database at revision {current(settings.database_url)}")
    ctx = build_context(settings)
    try:
        stored = store_core_profiles(ctx)
        measures = store_measures(ctx)
    finally:
        ctx.repo.engine.dispose()
    click.echo(f"R4 core profiles: {stored} stored")
    click.echo(f"Hearth's Measures: {measures} stored")


@main.group()
def backup() -> None:
    """Encrypted backups of the database and the blob store (docs/deployment.md, "Backups")."""


def _backup_error(fn):  # type: ignore[no-untyped-def]
    @functools.wraps(fn)
    def run(*args, **kwargs):  # type: ignore[no-untyped-def]
        from resources.storage.backup import BackupError

        try:
            return fn(*args, **kwargs)
        except BackupError as exc:
            raise click.ClickException(str(exc)) from None

    return run


@backup.command("create")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
@_backup_error
def backup_create(out, database_url) -> None:  # type: ignore[no-untyped-def]
    """Back up the database (one consistent snapshot, taken while Hearth runs) and the blob
    store into OUT, encrypted to HEARTH_BACKUP_RECIPIENTS, with the data directory's secret-key
    file unless HEARTH_SECRET_KEYS holds the keys."""
    from fhir_server.auth.keys import SECRET_KEYS_FILE
    from resources.storage import backup as b
    from resources.storage.db import create_engine
    from resources.storage.migrate import current

    settings = _settings(database_url=database_url)
    recipients = [r for r in (settings.backup_recipients or "").split(",") if r.strip()]
    engine = create_engine(settings.database_url)
    extra = {}
    if not settings.secret_keys:
        extra[f"keys/{SECRET_KEYS_FILE}"] = settings.data_dir / "keys" / SECRET_KEYS_FILE
    try:
        manifest = b.create(
            engine,
            settings.blobs(engine),
            settings.blob_store,
            out,
            recipients,
            migration=current(settings.database_url),
            extra_files=extra,
            say=click.echo,
        )
    finally:
        engine.dispose()
    click.echo(
        f"backup written to {out}: {manifest.database} at revision {manifest.migration}, "
        f"{manifest.resources} resources, {manifest.audit_events} audit events, "
        f"{len(manifest.members)} parts"
    )


@backup.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_backup_error
def backup_verify(file) -> None:  # type: ignore[no-untyped-def]
    """Decrypt FILE with HEARTH_BACKUP_IDENTITY_FILE and check every part against the manifest's
    SHA-256 and the database part's readability; exit 1 on any difference."""
    from resources.storage import backup as b

    settings = _settings()
    manifest = b.verify(file, settings.backup_identity_file)
    click.echo(
        f"{file}: OK — {manifest.database} backup of {manifest.created}, revision "
        f"{manifest.migration}, {manifest.resources} resources, {len(manifest.members)} parts"
    )


@backup.command("keygen")
@click.argument("identity_file", type=click.Path(dir_okay=False, path_type=Path))
def backup_keygen(identity_file) -> None:  # type: ignore[no-untyped-def]
    """Write a new age identity to IDENTITY_FILE (0600; keep it away from the server) and print
    its public key, for HEARTH_BACKUP_RECIPIENTS."""
    from resources.storage.backup import keygen

    if identity_file.exists():
        raise click.ClickException(f"{identity_file} exists; not overwritten")
    identity, recipient = keygen()
    fd = os.open(identity_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# public key: {recipient}\n{identity}\n")
    click.echo(recipient)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--database-url", help="the EMPTY database to restore into [HEARTH_DATABASE_URL]")
@_backup_error
def restore(file, database_url) -> None:  # type: ignore[no-untyped-def]
    """Restore the backup FILE (decrypted with HEARTH_BACKUP_IDENTITY_FILE, every part checked)
    into an empty database, the blobs into HEARTH_BLOB_STORE and the secret-key file into
    HEARTH_DATA_DIR; then migrate it to this version's schema."""
    from resources.storage import backup as b
    from resources.storage.migrate import current, upgrade

    settings = _settings(database_url=database_url)
    manifest = b.restore(
        file,
        settings.backup_identity_file,
        settings.database_url,
        settings.blobs,
        files_to=settings.data_dir,
        say=click.echo,
    )
    upgrade(settings.database_url)
    click.echo(
        f"restored the backup of {manifest.created} ({manifest.resources} resources); "
        f"database at revision {current(settings.database_url)}"
    )


@main.group()
def blobs() -> None:
    """The blob store (DICOM instances, Bulk Data files: HEARTH_BLOB_STORE)."""


@blobs.command("copy")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def blobs_copy(database_url) -> None:  # type: ignore[no-untyped-def]
    """Copy this node's DICOM instances and export files from HEARTH_DATA_DIR into the database
    blob store (before switching a deployment to HEARTH_BLOB_STORE=database). Idempotent:
    a blob already in the database with the same size is skipped. The files are left as
    they are."""
    from functools import partial

    from resources.storage.blobs import DatabaseBlobs, FileBlobs
    from resources.storage.db import create_engine

    settings = _settings(database_url=database_url)
    files = FileBlobs(settings.data_dir)
    engine = create_engine(settings.database_url)
    target = DatabaseBlobs(engine)
    copied = skipped = 0
    try:
        for prefix in ("dicom", "exports"):
            for key in files.keys(prefix):
                if key.startswith("dicom/pending/"):
                    continue  # the ingest journal stays on the node that acknowledged
                size = files.path(key).stat().st_size
                if target.size(key) == size:
                    skipped += 1
                    continue
                with files.open(key) as f:
                    target.put(key, iter(partial(f.read, 1 << 20), b""))
                copied += 1
    finally:
        engine.dispose()
    click.echo(f"copied {copied} blob(s) into the database, {skipped} already there")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
@click.option("--quiet", is_flag=True, help="no progress bar")
def load(paths, database_url, quiet) -> None:  # type: ignore[no-untyped-def]
    """Load FHIR JSON files, Bundles, NDJSON, FHIR XML and FHIR packages into the database.

    From a FHIR package (an implementation guide's .tgz) its StructureDefinitions, ValueSets and
    CodeSystems are loaded (for $validate and terminology), its other files skipped. A transaction or batch Bundle is processed as one; every other resource (other Bundles
    included) and every NDJSON line is stored on its own: update-as-create when it carries an
    id, create otherwise. Prints a summary of what was created, updated and failed, with reasons.
    """
    from fhir_server.runtime.app import build_context
    from fhir_server.runtime.loader import load_paths

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
@click.argument(
    "folder", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("demo")
)
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def demo(folder, database_url) -> None:  # type: ignore[no-untyped-def]
    """Tell the demo story (`make run`): load FOLDER's bundle, make the demo doctor's free Slots
    and walk six skin screenings through the API and the models — finished, urgent, waiting for
    each role (fhir_server/runtime/demo.py). Reports go to the development mailbox when
    HEARTH_DEV_MAILBOX is set. Told once per database."""
    from fhir_server.runtime.demo import tell

    settings = _settings(database_url=database_url)
    click.echo(tell(settings, folder, say=click.echo).summary())


@main.command()
@click.option("--type", "res_type", help="only this resource type")
@click.option("--resume", is_flag=True, help="continue the unfinished jobs instead of starting one")
@click.option("--batch", type=int, default=500, show_default=True, help="resources per transaction")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def reindex(res_type, resume, batch, database_url) -> None:  # type: ignore[no-untyped-def]
    """Re-index stored resources (after adding custom SearchParameters), resumably."""
    from tqdm import tqdm

    from fhir_server.runtime.app import build_context
    from resources.jobs import reindex as jobs

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


def _store(database_url: str | None, *, secrets: bool = False):  # type: ignore[no-untyped-def]
    """(settings, auth store); with ``secrets``, the store holds the key that encrypts TOTP
    seeds (HEARTH_SECRET_KEYS, or HEARTH_DATA_DIR/keys/secret-keys as `hearth serve` uses)."""
    from resources.auth.store import AuthStore
    from resources.storage.db import create_engine

    settings = _settings(database_url=database_url)
    box = None
    if secrets:
        from fhir_server.auth.keys import secret_box

        box = secret_box(settings)
    return settings, AuthStore(create_engine(settings.database_url), box=box)


@main.group("clients")
def clients_group() -> None:
    """Register and list SMART client applications."""


@clients_group.command("create")
@click.option("--name", required=True, help="the application's name, shown at sign-in")
@click.option(
    "--kind",
    type=click.Choice(["public", "confidential-symmetric", "confidential-asymmetric"]),
    required=True,
)
@click.option("--scope", required=True, help="the most this client may be granted")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="repeatable")
@click.option("--jwks", type=click.Path(exists=True, path_type=Path), help="public JWKS file")
@click.option(
    "--jwks-url",
    help="JWK Set URL of a confidential-asymmetric client, instead of --jwks "
    "(its host must be in HEARTH_JWKS_ALLOWED_HOSTS)",
)
@click.option("--client-id", help="choose the client id (default: random)")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def clients_create(
    name, kind, scope, redirect_uris, jwks, jwks_url, client_id, database_url
) -> None:  # type: ignore[no-untyped-def]
    """Register a client; prints its id (and its secret, once)."""
    import json

    from fhir_server.auth.clients import register

    settings, store = _store(database_url)
    try:
        cid, secret = register(
            store,
            name,
            kind,
            scope=scope,
            redirect_uris=list(redirect_uris),
            jwks=json.loads(jwks.read_text()) if jwks else None,
            client_id=client_id,
            jwks_uri=jwks_url,
            settings=settings,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.engine.dispose()
    click.echo(f"client_id: {cid}")
    if secret:
        click.echo(f"client_secret: {secret}  (shown once)")


@clients_group.command("list")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def clients_list(database_url) -> None:  # type: ignore[no-untyped-def]
    """List registered clients."""
    _, store = _store(database_url)
    try:
        for c in store.clients():
            uris = ",".join(c["redirect_uris"]) or "-"
            click.echo(f"{c['client_id']}\t{c['kind']}\t{c['name']}\t{c['scope']}\t{uris}")
    finally:
        store.engine.dispose()


@main.command()
@click.option("--client", "client_id", required=True, help="a registered client id")
@click.option("--scope", required=True, help="e.g. 'system/*.cruds' or 'user/*.rs'")
@click.option("--patient", help="patient context (for patient/ scopes)")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
@click.option("--base-url", help="the server's public URL [HEARTH_BASE_URL]")
def token(client_id, scope, patient, database_url, base_url) -> None:  # type: ignore[no-untyped-def]
    """Issue an access token for scripts and tests (operators only: needs database access)."""
    from fhir_server.auth.tokens import operator_token

    settings, store = _store(database_url)
    if base_url:
        settings = _settings(database_url=database_url, base_url=base_url)
    try:
        body = operator_token(store, settings, client_id, scope, patient=patient)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.engine.dispose()
    click.echo(body["access_token"])


@main.group("users")
def users_group() -> None:
    """Manage user accounts."""


@users_group.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["patient", "cadre", "doctor", "pharmacist", "admin"]))
@click.option("--fhir-user", help="Patient/<id>, Practitioner/<id> or RelatedPerson/<id>")
@click.option("--email", help="for password-reset links")
@click.option("--totp/--no-totp", default=None, help="enrol TOTP (always for staff)")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def users_create(username, role, fhir_user, email, totp, password, database_url) -> None:  # type: ignore[no-untyped-def]
    """Create a user; prints the TOTP enrolment QR code and the one-time recovery codes.

    A cadre, doctor or pharmacist gets an active PractitionerRole with that care-role code for
    their Practitioner (unless one exists): the role of their tokens comes from it."""
    from fhir_server.auth.roles import PRACTITIONER_ROLES, assign
    from fhir_server.auth.users import create_user

    if role is None:
        raise click.ClickException("--role is required")
    settings, store = _store(database_url, secrets=True)
    try:
        created = create_user(
            store, username, password, role=role, fhir_user=fhir_user, email=email, totp=totp
        )
        if role in PRACTITIONER_ROLES:
            from fhir_server.runtime.app import build_context
            from fhir_server.runtime.operator_audit import agents_of, audited

            ctx = build_context(settings)
            try:
                ops = audited(ctx, agents_of("hearth users create"))
                role_id = ops.repo.run(lambda u: assign(u, fhir_user, role))
            finally:
                ctx.repo.engine.dispose()
            click.echo(f"{fhir_user} has PractitionerRole/{role_id} ({role})")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.engine.dispose()
    click.echo(f"user {created.username} created ({role})")
    if created.totp_uri:
        import io

        import segno

        out = io.StringIO()
        segno.make(created.totp_uri, error="m").terminal(out=out, compact=True)
        click.echo("Scan with an authenticator app:")
        click.echo(out.getvalue())
        click.echo(f"or enter: {created.totp_uri}")
    click.echo("recovery codes (each works once): " + " ".join(created.recovery_codes))


@users_group.command("rotate-secrets")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def users_rotate_secrets(database_url) -> None:  # type: ignore[no-untyped-def]
    """Re-encrypt every stored TOTP secret and signing key with the first secret key (HEARTH_SECRET_KEYS, or
    the first line of HEARTH_DATA_DIR/keys/secret-keys), encrypting those still in clear. Run
    it after putting a new key first; remove an old key only after this has run."""
    from resources.auth.key_store import KeyStore
    from resources.auth.secret_box import SecretKeyError

    _, store = _store(database_url, secrets=True)
    try:
        n = store.rewrite_secrets()
        assert store.box is not None
        keys = KeyStore(store.engine, store.box).rewrite()  # the shared signing keys
    except SecretKeyError as exc:
        raise click.ClickException(
            f"{exc}: keep the old key in the list until this succeeds"
        ) from exc
    finally:
        store.engine.dispose()
    click.echo(f"{n} secret(s) and {keys} signing key(s) re-encrypted with the first key")


@users_group.command("sync-roles")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def users_sync_roles(database_url) -> None:  # type: ignore[no-untyped-def]
    """Give every cadre/doctor/pharmacist account's Practitioner an active PractitionerRole with
    the role the account was created with, where none exists (accounts made before roles came
    from PractitionerRole)."""
    from fhir_server.auth.roles import PRACTITIONER_ROLES, assign
    from fhir_server.runtime.app import build_context
    from fhir_server.runtime.operator_audit import agents_of, audited

    settings, store = _store(database_url)
    ctx = build_context(settings)
    ops = audited(ctx, agents_of("hearth users sync-roles"))
    try:
        for user in store.users():
            fhir_user = user["fhir_user"] or ""
            if user["role"] in PRACTITIONER_ROLES and fhir_user.startswith("Practitioner/"):
                role_id = ops.repo.run(
                    functools.partial(assign, practitioner=fhir_user, role=user["role"])
                )
                click.echo(
                    f"{user['username']}: {fhir_user} PractitionerRole/{role_id} ({user['role']})"
                )
    finally:
        ctx.repo.engine.dispose()
        store.engine.dispose()


@main.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log."""


@audit_group.command("verify")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
@click.option(
    "--checkpoints",
    "checkpoint_files",
    type=click.Path(dir_okay=False, path_type=Path),
    multiple=True,
    help="a checkpoint file to check against (repeatable) "
    "[HEARTH_DATA_DIR/audit/checkpoints.jsonl when it exists]",
)
@click.option(
    "--jwks",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="public keys (JWKS, as /auth/jwks serves it) that signed the checkpoints "
    "[the signing key in the database]",
)
def audit_verify(database_url, checkpoint_files, jwks) -> None:  # type: ignore[no-untyped-def]
    """Recompute the hash chain and check it against the signed checkpoints; exit 1 naming the
    first broken link, a removed or changed checkpointed row, or a bad checkpoint."""
    import json

    from joserfc.jwk import KeySet

    from fhir_server.auth.keys import SharedKeyError, SigningKey, key_store
    from fhir_server.runtime import audit_anchor
    from resources import audit
    from resources.storage.db import create_engine

    settings = _settings(database_url=database_url)
    files = list(checkpoint_files)
    if not files and audit_anchor.default_file(settings.data_dir).exists():
        files = [audit_anchor.default_file(settings.data_dir)]
    checkpoints: list[audit.Head] = []
    if files:
        if jwks is not None:
            keys = KeySet.import_key_set(json.loads(jwks.read_text()))
        else:
            key_engine = create_engine(settings.database_url)
            try:
                key = SigningKey.load(key_store(key_engine, settings))
            except SharedKeyError as exc:
                raise click.ClickException(str(exc)) from None
            finally:
                key_engine.dispose()
            if key is None:
                raise click.ClickException(
                    "no signing key in the database to check the checkpoints with (give --jwks)"
                )
            keys = KeySet.import_key_set(key.jwks())
        for path in files:
            try:
                checkpoints += audit_anchor.read(path, keys)
            except FileNotFoundError:
                raise click.ClickException(f"no checkpoint file {path}") from None
            except audit_anchor.BadCheckpoint as exc:
                click.echo(f"BAD CHECKPOINT {exc}")
                sys.exit(1)
    engine = create_engine(settings.database_url)
    try:
        n, broken = audit.verify(engine, checkpoints)
    finally:
        engine.dispose()
    if broken is not None:
        click.echo(f"BROKEN at audit event {broken.seq}: {broken.reason} ({n} events read)")
        sys.exit(1)
    if checkpoints:
        newest = max(c.seq for c in checkpoints)
        click.echo(
            f"audit chain intact: {n} events; {len(checkpoints)} checkpoints hold "
            f"(newest at event {newest})"
        )
    else:
        click.echo(
            f"audit chain intact: {n} events (no checkpoints: removal of the newest events "
            "would not show)"
        )


@audit_group.command("checkpoint")
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
def audit_checkpoint(database_url) -> None:  # type: ignore[no-untyped-def]
    """Sign the chain's head now: append the checkpoint to HEARTH_DATA_DIR/audit/checkpoints.jsonl
    (and HEARTH_AUDIT_CHECKPOINT_EXPORT) and print it, for the auditor to keep."""
    import json

    from fhir_server.auth.keys import SigningKey, key_store
    from fhir_server.runtime import audit_anchor
    from resources.storage.db import create_engine

    settings = _settings(database_url=database_url)
    engine = create_engine(settings.database_url)
    try:
        line = audit_anchor.make(
            engine, SigningKey.load_or_create(key_store(engine, settings), settings.data_dir)
        )
    finally:
        engine.dispose()
    if line is None:
        click.echo("the audit log is empty: nothing to checkpoint", err=True)
        return
    for path in settings.audit_checkpoint_files():
        audit_anchor.append(line, path)
    click.echo(json.dumps(line, separators=(",", ":")))


main.add_command(worker)
main.add_command(ai)
