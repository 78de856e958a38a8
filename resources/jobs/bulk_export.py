"""Bulk Data export jobs (FHIR Bulk Data Access 2.0.0, "Flat FHIR"): the job rows, and the
runner that streams the matching resources into NDJSON files in the blob store under
``exports/<job>/`` (``resources/storage/blobs.py``: a folder, or the database every node shares,
so a download works on whichever node it lands).

A job is recorded together with its ``work_queue`` entry (kind ``bulk-export``) in one
transaction, so whoever claims the entry — the API process right after the kick-off, or
``hearth worker`` once a lease has expired — runs it exactly once at a time. Resources are read
type by type in primary-key order, one page per read (keyset: ``pk > last``), so memory stays
flat whatever the database holds; each page is written out before the next is read. Only
resources whose ``last_updated`` is at or before the job's ``transaction_time`` are exported
(the IG's consistency rule: later changes belong to the next ``_since`` export). A file is
closed at ``file_limit`` resources and the next one opened, so no file grows without bound.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import sqlalchemy as sa

from resources.errors import NotFound
from resources.jobs import queue
from resources.jobs.attachments import with_absolute_attachments
from resources.search import keys
from resources.search.compartments import all_compartment_params
from resources.search.shaping import select_elements
from resources.search.tables import idx_reference
from resources.storage.blobs import BlobStore, FileBlobs
from resources.storage.repository import Repository, Unit
from resources.storage.schema import Document, UtcDateTime, metadata, resource
from resources.storage.store import utcnow

KIND = "bulk-export"
ACCEPTED, RUNNING, COMPLETED, FAILED, CANCELLED = (
    "accepted",
    "running",
    "completed",
    "failed",
    "cancelled",
)

bulk_export = sa.Table(
    "bulk_export",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("request", sa.Text, nullable=False),
    # system | patient | group; ``patients``: the compartments of a Group or one Patient
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("spec", Document, nullable=False),
    sa.Column("transaction_time", UtcDateTime(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("progress", sa.Text, nullable=True),
    sa.Column("output", Document, nullable=True),  # [{type, file, count}]
    sa.Column("error", Document, nullable=True),  # [{type: OperationOutcome, file, count}]
    sa.Column("failure", sa.Text, nullable=True),
    sa.Column("created", UtcDateTime(), nullable=False),
    sa.Column("updated", UtcDateTime(), nullable=False),
)


@dataclass(frozen=True)
class Spec:
    """What a job exports: the types in order, ``since``, ``_typeFilter`` criteria per type,
    and for patient-level exports the patient ids (None: every patient's compartment)."""

    types: list[str]
    since: str | None = None  # FHIR instant
    type_filters: dict[str, list[list[tuple[str, str]]]] = field(default_factory=dict)
    compartment: bool = False
    patients: list[str] | None = None
    issues: list[str] = field(default_factory=list)  # ignored under Prefer: handling=lenient
    elements: list[str] = field(default_factory=list)  # _elements: "name" or "Type.name"
    associated: list[str] = field(default_factory=list)  # includeAssociatedData values
    # the FHIR base of the kick-off: relative Attachment.url values are resolved against it
    base: str | None = None

    def elements_of(self, res_type: str) -> list[str]:
        """The ``_elements`` that apply to ``res_type`` (bare names apply to every type); empty:
        the whole resource."""
        out = []
        for e in self.elements:
            kind, _, name = e.rpartition(".")
            if kind in ("", res_type):
                out.append(name)
        return out

    def to_json(self) -> dict:
        return {
            "types": self.types,
            "since": self.since,
            "type_filters": {
                t: [list(map(list, q)) for q in qs] for t, qs in self.type_filters.items()
            },
            "compartment": self.compartment,
            "patients": self.patients,
            "issues": self.issues,
            "elements": self.elements,
            "associated": self.associated,
            "base": self.base,
        }

    @classmethod
    def from_json(cls, raw: dict) -> Spec:
        return cls(
            types=list(raw["types"]),
            since=raw.get("since"),
            type_filters={
                t: [[(k, v) for k, v in q] for q in qs]
                for t, qs in (raw.get("type_filters") or {}).items()
            },
            compartment=bool(raw.get("compartment")),
            patients=raw.get("patients"),
            issues=list(raw.get("issues") or []),
            elements=list(raw.get("elements") or []),
            associated=list(raw.get("associated") or []),
            base=raw.get("base"),
        )


@dataclass(frozen=True)
class Export:
    id: str
    client_id: str
    request: str
    level: str
    spec: Spec
    transaction_time: datetime
    state: str
    progress: str | None
    output: list[dict]
    error: list[dict]
    failure: str | None


def _export(row: sa.Row) -> Export:
    return Export(
        row.id, row.client_id, row.request, row.level, Spec.from_json(row.spec),
        row.transaction_time, row.state, row.progress, list(row.output or []),
        list(row.error or []), row.failure,
    )  # fmt: skip


def stored_types(repo: Repository) -> list[str]:
    """The resource types with at least one current (not deleted) resource."""
    return repo.read(
        lambda u: sorted(
            r[0]
            for r in u.conn.execute(
                sa.select(resource.c.res_type).where(~resource.c.deleted).distinct()
            )
        )
    )


def start(repo: Repository, client_id: str, request: str, level: str, spec: Spec) -> Export:
    """Record a job and enqueue its work in one transaction."""
    job_id = str(uuid.uuid4())

    def run(u: Unit) -> Export:
        now = utcnow()
        u.conn.execute(
            sa.insert(bulk_export).values(
                id=job_id,
                client_id=client_id,
                request=request,
                level=level,
                spec=spec.to_json(),
                transaction_time=now,
                state=ACCEPTED,
                progress=None,
                output=[],
                error=[],
                failure=None,
                created=now,
                updated=now,
            )
        )
        queue.enqueue(u, KIND, job_id, f"BulkExport/{job_id}", max_attempts=3)
        return Export(job_id, client_id, request, level, spec, now, ACCEPTED, None, [], [], None)

    return repo.run(run)


def get(repo: Repository, job_id: str) -> Export:
    def run(u: Unit) -> Export:
        row = u.conn.execute(sa.select(bulk_export).where(bulk_export.c.id == job_id)).first()
        if row is None or row.state == CANCELLED:
            raise NotFound(f"no bulk export job {job_id}")
        job = _export(row)
        if job.state in (ACCEPTED, RUNNING):
            # a runner that died on its last attempt leaves the row as it was: the queue's
            # dead letter says that the job failed, and why
            why = queue.dead_letter(u, f"BulkExport/{job_id}")
            if why is not None:
                return replace(job, state=FAILED, failure=f"the export failed: {why}")
        return job

    return repo.read(run)


Files = BlobStore | Path  # the blob store, or a folder (a ``FileBlobs`` on it)


def _blobs(files: Files) -> BlobStore:
    return FileBlobs(files) if isinstance(files, Path | str) else files


def job_prefix(job_id: str) -> str:
    return f"exports/{job_id}"


def cancel(repo: Repository, files: Files, job_id: str) -> None:
    """Cancel a job (a running one stops at its next page) and delete its files."""

    def run(u: Unit) -> None:
        result = u.conn.execute(
            sa.update(bulk_export)
            .where(bulk_export.c.id == job_id, bulk_export.c.state != CANCELLED)
            .values(state=CANCELLED, updated=utcnow())
        )
        if result.rowcount != 1:
            raise NotFound(f"no bulk export job {job_id}")

    repo.run(run)
    _blobs(files).delete_prefix(job_prefix(job_id))


def open_file(files: Files, job: Export, name: str) -> BinaryIO:
    """One of a finished job's files, open for reading; NotFound for any name not in its
    manifest, or a file that is gone."""
    listed = {o["file"] for o in job.output} | {e["file"] for e in job.error}
    if job.state != COMPLETED or name not in listed:
        raise NotFound(f"no file {name!r} in bulk export {job.id}")
    try:
        return _blobs(files).open(f"{job_prefix(job.id)}/{name}")
    except NotFound:
        raise NotFound(f"the file {name!r} of bulk export {job.id} is gone") from None


# -- reading -------------------------------------------------------------------------------
def _in_patient_compartments(res_type: str, patients: list[str] | None) -> sa.ColumnElement:
    """Rows of ``res_type`` in the compartment of any of ``patients`` (None: of any Patient),
    by the reference index rows of the compartment definition's parameters."""
    if res_type == "Patient":
        if patients is None:
            return sa.true()
        return resource.c.res_id.in_(patients)
    idents = [keys.identity(t, p) for t, p in all_compartment_params("Patient") if t == res_type]
    if not idents:
        return sa.false()
    where = [idx_reference.c.hash_identity.in_(idents), idx_reference.c.target_type == "Patient"]
    if patients is not None:
        where.append(idx_reference.c.target_id.in_(patients))
    else:  # every stored patient's compartment (not references to patients never stored)
        patient = resource.alias("patient")
        stored = sa.select(patient.c.res_id).where(
            patient.c.res_type == "Patient", ~patient.c.deleted
        )
        where.append(idx_reference.c.target_id.in_(stored))
    return resource.c.pk.in_(sa.select(idx_reference.c.res_pk).where(*where))


def page(
    unit: Unit,
    res_type: str,
    spec: Spec,
    until: datetime,
    after_pk: int,
    limit: int,
) -> list[tuple[int, str]]:
    """The next ``limit`` (pk, JSON text) of ``res_type`` after ``after_pk`` matching ``spec``;
    for ``PROVENANCE_OF`` the Provenance resources that target a resource the export writes
    (``includeAssociatedData=RelevantProvenanceResources``), for ``LATEST_PROVENANCE_OF`` of
    those only the latest per target (``LatestProvenanceResources``)."""
    if res_type in (PROVENANCE_OF, LATEST_PROVENANCE_OF):
        where = [
            resource.c.res_type == "Provenance",
            ~resource.c.deleted,
            resource.c.last_updated <= until,
            _targets_exported(unit, spec, until, latest=res_type == LATEST_PROVENANCE_OF),
        ]
    else:
        where = _matching(unit, res_type, spec, until)
    where.append(resource.c.pk > after_pk)
    # The stored JSON as text, written out as it is: no decoding and re-encoding per resource
    stmt = (
        sa.select(resource.c.pk, sa.cast(resource.c.content, sa.Text).label("content"))
        .where(*where)
        .order_by(resource.c.pk)
        .limit(limit)
    )
    return [(r.pk, r.content) for r in unit.conn.execute(stmt)]


# ``page``'s names for the associated Provenance resources (not resource types: no clash).
PROVENANCE_OF = "provenance-of-exported"
LATEST_PROVENANCE_OF = "latest-provenance-of-exported"


def _targets_exported(
    unit: Unit, spec: Spec, until: datetime, *, latest: bool = False
) -> sa.ColumnElement:
    """Provenance rows whose ``target`` names a resource of one of ``spec.types`` that the
    export writes; with ``latest``, only those that no other such Provenance of the same target
    is newer than (``meta.lastUpdated``, then the later stored on a tie)."""
    target = keys.identity("Provenance", "target")
    per_type = []
    for res_type in spec.types:
        # its own SELECT of ``resource``, not correlated with the Provenance rows outside
        ids = (
            sa.select(resource.c.res_id)
            .where(*_matching(unit, res_type, spec, until))
            .correlate(None)
        )
        ref = idx_reference.alias("ref")
        rows = sa.select(ref.c.res_pk).where(
            ref.c.hash_identity == target,
            ref.c.target_type == res_type,
            ref.c.target_id.in_(ids),
        )
        if latest:
            prov, other_ref, other = (
                resource.alias("prov"),
                idx_reference.alias("other_ref"),
                resource.alias("other"),
            )
            newer = (
                sa.select(other_ref.c.res_pk)
                .join(other, other.c.pk == other_ref.c.res_pk)
                .where(
                    other_ref.c.hash_identity == target,
                    other_ref.c.target_type == ref.c.target_type,
                    other_ref.c.target_id == ref.c.target_id,
                    other.c.res_type == "Provenance",
                    ~other.c.deleted,
                    other.c.last_updated <= until,
                    sa.or_(
                        other.c.last_updated > prov.c.last_updated,
                        sa.and_(
                            other.c.last_updated == prov.c.last_updated, other.c.pk > prov.c.pk
                        ),
                    ),
                )
                .correlate(ref, prov)
            )
            rows = rows.join(prov, prov.c.pk == ref.c.res_pk).where(
                ~prov.c.deleted, prov.c.last_updated <= until, ~sa.exists(newer)
            )
        per_type.append(rows)
    if not per_type:
        return sa.false()
    return resource.c.pk.in_(sa.union_all(*per_type))


def _matching(unit: Unit, res_type: str, spec: Spec, until: datetime) -> list[sa.ColumnElement]:
    """The conditions on ``resource`` rows of ``res_type`` that the export writes."""
    where: list[sa.ColumnElement] = [
        resource.c.res_type == res_type,
        ~resource.c.deleted,
        resource.c.last_updated <= until,
    ]
    if spec.since is not None:
        where.append(resource.c.last_updated > datetime.fromisoformat(spec.since))
    if spec.compartment:
        where.append(_in_patient_compartments(res_type, spec.patients))
    filters = spec.type_filters.get(res_type)
    if filters:
        search = unit.repo.search
        where.append(sa.or_(*(resource.c.pk.in_(search.match(res_type, q)) for q in filters)))
    return where


def stream(
    repo: Repository, res_type: str, spec: Spec, until: datetime, *, page_size: int = 1000
) -> Iterator[list[Any]]:
    """Pages of matching resources' content, each read in its own short read."""
    after = 0
    while True:
        rows = repo.read(partial(page, res_type=res_type, spec=spec, until=until,
                                 after_pk=after, limit=page_size))  # fmt: skip
        if not rows:
            return
        after = rows[-1][0]
        yield [content for _, content in rows]
        if len(rows) < page_size:
            return


# -- running -------------------------------------------------------------------------------
class Cancelled(Exception):
    """The job was cancelled (DELETE of its status URL) while it ran."""


def _heartbeat(
    repo: Repository, job: queue.Job, worker: str, progress: str, lease: timedelta
) -> None:
    """After each page, in one transaction: record the progress and renew the lease; raise
    ``Cancelled`` when the job was cancelled meanwhile."""

    def run(u: Unit) -> bool:
        result = u.conn.execute(
            sa.update(bulk_export)
            .where(bulk_export.c.id == job.key, bulk_export.c.state != CANCELLED)
            .values(progress=progress, updated=utcnow())
        )
        queue.renew(u, job, worker, lease)
        return result.rowcount == 1

    if not repo.run(run):
        raise Cancelled


def _set(repo: Repository, job_id: str, **values: Any) -> None:
    def run(u: Unit) -> None:
        u.conn.execute(
            sa.update(bulk_export)
            .where(bulk_export.c.id == job_id, bulk_export.c.state != CANCELLED)
            .values(updated=utcnow(), **values)
        )

    repo.run(run)


def _outcome(text: str, severity: str = "error", code: str = "processing") -> dict:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": text}],
    }


def run_job(
    repo: Repository,
    files: Files,
    job: queue.Job,
    worker: str,
    *,
    page_size: int = 1000,
    file_limit: int = 100_000,
    lease: timedelta = timedelta(minutes=5),
) -> str:
    """Run one claimed export job to its end; returns its final state."""
    job_id = job.key
    blobs = _blobs(files)
    prefix = job_prefix(job_id)
    row = repo.read(
        lambda u: u.conn.execute(sa.select(bulk_export).where(bulk_export.c.id == job_id)).first()
    )
    if row is None or row.state == CANCELLED:
        repo.run(lambda u: queue.finish(u, job, worker))
        blobs.delete_prefix(prefix)
        return CANCELLED
    export = _export(row)
    _set(repo, job_id, state=RUNNING, progress="started")
    try:
        blobs.delete_prefix(prefix)  # a retried attempt starts over
        output, errors = _write_all(repo, export, blobs, job, worker, page_size, file_limit, lease)
    except Cancelled:
        repo.run(lambda u: queue.finish(u, job, worker))
        blobs.delete_prefix(prefix)
        return CANCELLED
    except Exception as exc:
        error = repr(exc)
        final = repo.run(
            lambda u: queue.fail(u, job, worker, error, retry=True, backoff=timedelta(seconds=5))
        )
        if final == queue.FAILED:
            _set(repo, job_id, state=FAILED, failure=f"the export failed: {exc}")
            blobs.delete_prefix(prefix)
        return final

    def finish(u: Unit) -> str:
        if not queue.finish(u, job, worker):
            return RUNNING  # the lease went to another worker, whose run wins
        u.conn.execute(
            sa.update(bulk_export)
            .where(bulk_export.c.id == job_id, bulk_export.c.state != CANCELLED)
            .values(
                state=COMPLETED,
                progress="completed",
                output=output,
                error=errors,
                updated=utcnow(),
            )  # fmt: skip
        )
        return COMPLETED

    return repo.run(finish)


def _lines(contents: Sequence[Any]) -> Iterator[bytes]:
    for content in contents:
        line = content.encode("utf-8") if isinstance(content, str) else orjson.dumps(content)
        yield line + b"\n"


def _write_ndjson(
    blobs: BlobStore, prefix: str, name_of: Callable[[int], str], res_type: str,
    pages: Iterator[Sequence[Any]], limit: int,
) -> list[dict]:  # fmt: skip
    """The resources of ``pages`` as NDJSON files of at most ``limit`` lines each (the first
    named ``name_of(1)``), each streamed into the store as the pages are read; their manifest
    entries. No page, no file."""
    lines = (line for page in pages for line in _lines(page))
    files: list[dict] = []
    first = next(lines, None)
    while first is not None:
        entry = {"type": res_type, "file": name_of(len(files) + 1), "count": 0}

        def one_file(first: bytes = first, entry: dict = entry) -> Iterator[bytes]:
            yield first
            entry["count"] = 1
            for line in islice(lines, limit - 1):
                entry["count"] += 1
                yield line

        blobs.put(f"{prefix}/{entry['file']}", _batched(one_file()))
        files.append(entry)
        first = next(lines, None)
    return files


def _file_name(prefix: str, res_type: str, n: int) -> str:
    return f"{prefix}{res_type}-{n}.ndjson"


def _batched(lines: Iterator[bytes], size: int = 1 << 18) -> Iterator[bytes]:
    """``lines`` joined into pieces of about ``size`` bytes (fewer, larger writes)."""
    buf: list[bytes] = []
    n = 0
    for line in lines:
        buf.append(line)
        n += len(line)
        if n >= size:
            yield b"".join(buf)
            buf, n = [], 0
    if buf:
        yield b"".join(buf)


def _write_all(
    repo: Repository,
    export: Export,
    blobs: BlobStore,
    job: queue.Job,
    worker: str,
    page_size: int,
    file_limit: int,
    lease: timedelta,
) -> tuple[list[dict], list[dict]]:
    spec = export.spec
    prefix = job_prefix(export.id)
    output: list[dict] = []
    total = 0
    runs = [(t, t, "") for t in spec.types]
    if "RelevantProvenanceResources" in spec.associated:  # every one: Latest's too
        runs.append((PROVENANCE_OF, "Provenance", "associated-"))
    elif "LatestProvenanceResources" in spec.associated:
        runs.append((LATEST_PROVENANCE_OF, "Provenance", "associated-"))
    for n, (what, res_type, name_prefix) in enumerate(runs, 1):
        wanted = spec.elements_of(res_type)

        def pages(what=what, res_type=res_type, wanted=wanted, n=n) -> Iterator[Sequence[Any]]:  # type: ignore[no-untyped-def]
            nonlocal total
            for contents in stream(repo, what, spec, export.transaction_time, page_size=page_size):
                if spec.base:  # the IG: Attachment.url SHALL be absolute (stored rows unchanged)
                    contents = [with_absolute_attachments(c, spec.base) for c in contents]
                if wanted:
                    contents = [
                        select_elements(c if isinstance(c, dict) else orjson.loads(c), wanted)
                        for c in contents
                    ]
                yield contents
                total += len(contents)
                progress = f"{res_type} (type {n} of {len(runs)}): {total} resources"
                _heartbeat(repo, job, worker, progress, lease)

        output += _write_ndjson(
            blobs, prefix, partial(_file_name, name_prefix, res_type), res_type, pages(),
            file_limit,
        )  # fmt: skip
    errors: list[dict] = []
    if spec.issues:
        name = "OperationOutcome-1.ndjson"
        blobs.put(
            f"{prefix}/{name}",
            b"".join(
                orjson.dumps(_outcome(text, "warning", "not-supported")) + b"\n"
                for text in spec.issues
            ),
        )
        errors.append({"type": "OperationOutcome", "file": name, "count": len(spec.issues)})
    return output, errors


def run_pending(
    repo: Repository,
    files: Files,
    worker: str,
    *,
    page_size: int = 1000,
    file_limit: int = 100_000,
    lease: timedelta = timedelta(minutes=5),
) -> int:
    """Claim and run the export jobs waiting now (``hearth worker``); how many ran."""
    ran = 0
    while jobs := queue.claim(repo, [KIND], worker, limit=1, lease=lease):
        for job in jobs:
            run_job(
                repo, files, job, worker, page_size=page_size, file_limit=file_limit,
                lease=lease,
            )  # fmt: skip
            ran += 1
    return ran


def run_now(
    repo: Repository,
    files: Files,
    job_id: str,
    worker: str,
    *,
    page_size: int = 1000,
    file_limit: int = 100_000,
    lease: timedelta = timedelta(minutes=5),
) -> str | None:
    """Claim one given job and run it (the API process right after its kick-off); None when a
    worker already holds it."""
    claimed = queue.for_task(repo, f"BulkExport/{job_id}")
    if not claimed:
        return None
    job = queue.claim_job(repo, claimed[0].id, worker, lease=lease)
    if job is None:
        return None
    return run_job(
        repo, files, job, worker, page_size=page_size, file_limit=file_limit, lease=lease
    )
