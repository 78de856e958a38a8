"""Bulk Data import jobs (``$import``, the SMART Bulk Data Import proposal as HAPI FHIR offers
it): the job rows, the bad-line rows, and the runner that reads each input's NDJSON lines and
writes them in batches through the repository's write path.

A job is recorded together with its ``work_queue`` entry (kind ``bulk-import``) in one
transaction, so whoever claims the entry -- the API process right after the kick-off, or
``hearth worker`` / the API's sweep once a lease has expired -- runs it, one runner at a time.

The runner never opens a network connection itself: the caller hands it a ``source`` (a URL to
an iterator of byte chunks, ``fhir_server/runtime/import_runner.py``), which does the fetching
and its checks. Each batch of lines is one ``Repository.run``: the resources are written with
update-as-create (their own ids kept; new ones through ``Unit.create_many``, whose index rows go
in one COPY per table on PostgreSQL; existing ones through ``Unit.update``, which leaves an
identical resource unchanged), and in the same transaction the job's cursor (input, last line
done, counts) moves on, the batch's bad lines are recorded in ``bulk_import_error`` and the
queue lease is renewed. A crash therefore loses at most the batch in flight: the next runner
starts again after the cursor, and nothing is counted or written twice. A cancelled job stops at
its next batch (that batch rolled back); what earlier batches committed stays, as in any live
store.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import orjson
import sqlalchemy as sa

from resources.errors import FhirError, NotFound
from resources.jobs import queue
from resources.storage.repository import BatchItemError, Repository, Unit, new_id
from resources.storage.schema import Document, PrimaryKey, UtcDateTime, metadata, resource
from resources.storage.store import ID_RE, utcnow

KIND = "bulk-import"
ACCEPTED, RUNNING, COMPLETED, FAILED, CANCELLED = (
    "accepted",
    "running",
    "completed",
    "failed",
    "cancelled",
)

bulk_import = sa.Table(
    "bulk_import",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("who", Document, nullable=False),  # {username, fhir_user}: the audit's agents
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("spec", Document, nullable=False),
    sa.Column("transaction_time", UtcDateTime(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("progress", sa.Text, nullable=True),
    # {input: n (0-based), line: last line done, counts: [{count, errors, created, ...}]}
    sa.Column("cursor", Document, nullable=False),
    sa.Column("failure", sa.Text, nullable=True),
    sa.Column("created", UtcDateTime(), nullable=False),
    sa.Column("updated", UtcDateTime(), nullable=False),
)

bulk_import_error = sa.Table(
    "bulk_import_error",
    metadata,
    sa.Column("pk", PrimaryKey, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(64), nullable=False),
    sa.Column("input", sa.Integer, nullable=False),  # 0-based index into the job's inputs
    sa.Column("line", sa.Integer, nullable=False),  # 1-based; 0: the input as a whole
    sa.Column("outcome", Document, nullable=False),  # an OperationOutcome
    sa.Index("ix_bulk_import_error_job_id_input", "job_id", "input"),
)


@dataclass(frozen=True)
class Input:
    type: str
    url: str


@dataclass(frozen=True)
class Spec:
    """What a job imports: its inputs in order, the ``inputSource`` (stamped as
    ``meta.source`` where a resource has none), lines per batch, and how many bad lines it
    tolerates before it gives up. A ping-and-pull job given a static export manifest
    (``manifest_url``) has no inputs until the runner has read the manifest; ``writable``: the
    types the kick-off's token may create and update at system level (None: every type), the
    only ones taken from a manifest."""

    inputs: list[Input]
    input_source: str | None = None
    batch_size: int = 100
    max_errors: int = 1000
    manifest_url: str | None = None
    writable: list[str] | None = None

    def to_json(self) -> dict:
        return {
            "inputs": [{"type": i.type, "url": i.url} for i in self.inputs],
            "input_source": self.input_source,
            "batch_size": self.batch_size,
            "max_errors": self.max_errors,
            "manifest_url": self.manifest_url,
            "writable": self.writable,
        }

    @classmethod
    def from_json(cls, raw: dict) -> Spec:
        return cls(
            inputs=[Input(i["type"], i["url"]) for i in raw["inputs"]],
            input_source=raw.get("input_source"),
            batch_size=int(raw.get("batch_size") or 100),
            max_errors=int(raw.get("max_errors") or 1000),
            manifest_url=raw.get("manifest_url"),
            writable=raw.get("writable"),
        )


def _empty_counts() -> dict[str, int]:
    return {"count": 0, "errors": 0, "created": 0, "updated": 0, "unchanged": 0}


@dataclass(frozen=True)
class Import:
    id: str
    client_id: str
    who: dict
    request: str
    spec: Spec
    transaction_time: datetime
    state: str
    progress: str | None
    cursor: dict
    failure: str | None

    def counts(self) -> list[dict[str, int]]:
        """Per input: resources imported (``count``), bad lines (``errors``), and how many of
        the imported ones were created, updated or left unchanged."""
        done = list(self.cursor.get("counts") or [])
        return done + [_empty_counts() for _ in range(len(self.spec.inputs) - len(done))]


def _import(row: sa.Row) -> Import:
    return Import(
        row.id, row.client_id, dict(row.who or {}), row.request, Spec.from_json(row.spec),
        row.transaction_time, row.state, row.progress, dict(row.cursor or {}), row.failure,
    )  # fmt: skip


def start(repo: Repository, client_id: str, who: dict, request: str, spec: Spec) -> Import:
    """Record a job and enqueue its work in one transaction."""
    job_id = str(uuid.uuid4())
    cursor = {"input": 0, "line": 0, "counts": [_empty_counts() for _ in spec.inputs]}

    def run(u: Unit) -> Import:
        now = utcnow()
        u.conn.execute(
            sa.insert(bulk_import).values(
                id=job_id,
                client_id=client_id,
                who=who,
                request=request,
                spec=spec.to_json(),
                transaction_time=now,
                state=ACCEPTED,
                progress=None,
                cursor=cursor,
                failure=None,
                created=now,
                updated=now,
            )  # fmt: skip
        )
        queue.enqueue(u, KIND, job_id, f"BulkImport/{job_id}", max_attempts=3)
        return Import(job_id, client_id, who, request, spec, now, ACCEPTED, None, cursor, None)

    return repo.run(run)


def get(repo: Repository, job_id: str) -> Import:
    def run(u: Unit) -> Import:
        row = u.conn.execute(sa.select(bulk_import).where(bulk_import.c.id == job_id)).first()
        if row is None or row.state == CANCELLED:
            raise NotFound(f"no bulk import job {job_id}")
        job = _import(row)
        if job.state in (ACCEPTED, RUNNING):
            # a runner that died on its last attempt leaves the row as it was: the queue's
            # dead letter says that the job failed, and why
            why = queue.dead_letter(u, f"BulkImport/{job_id}")
            if why is not None:
                return replace(job, state=FAILED, failure=f"the import failed: {why}")
        return job

    return repo.read(run)


def cancel(repo: Repository, job_id: str) -> None:
    """Cancel a job: a running one stops at its next batch (that batch is rolled back; what
    earlier batches wrote stays). Its bad-line records are deleted."""

    def run(u: Unit) -> None:
        result = u.conn.execute(
            sa.update(bulk_import)
            .where(bulk_import.c.id == job_id, bulk_import.c.state != CANCELLED)
            .values(state=CANCELLED, updated=utcnow())
        )
        if result.rowcount != 1:
            raise NotFound(f"no bulk import job {job_id}")
        u.conn.execute(sa.delete(bulk_import_error).where(bulk_import_error.c.job_id == job_id))

    repo.run(run)


def error_lines(
    repo: Repository, job: Import, input_no: int, *, page: int = 1000
) -> Iterator[bytes]:
    """The OperationOutcomes of input ``input_no``'s bad lines as NDJSON, in line order, read a
    page at a time."""
    if job.state != COMPLETED or not 0 <= input_no < len(job.spec.inputs):
        raise NotFound(f"no error file {input_no + 1} in bulk import {job.id}")
    after = -1

    def read(u: Unit) -> list[sa.Row]:
        return list(
            u.conn.execute(
                sa.select(bulk_import_error.c.pk, bulk_import_error.c.outcome)
                .where(
                    bulk_import_error.c.job_id == job.id,
                    bulk_import_error.c.input == input_no,
                    bulk_import_error.c.pk > after,
                )
                .order_by(bulk_import_error.c.pk)
                .limit(page)
            ).all()
        )

    while True:
        rows = repo.read(read)
        for row in rows:
            yield orjson.dumps(row.outcome) + b"\n"
        if len(rows) < page:
            return
        after = rows[-1].pk


def outcome(text: str, *, line: int | None, url: str, code: str = "invalid") -> dict:
    """The OperationOutcome of one bad line (``line``) or of a whole input (None)."""
    where = f"line {line} of {url}" if line else url
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": f"{where}: {text}"}
    if line:
        issue["location"] = [f"line {line}"]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


# -- running -------------------------------------------------------------------------------
class Cancelled(Exception):
    """The job was cancelled (DELETE of its status URL) while it ran."""


class LeaseLost(Exception):
    """Another runner took the job over (our lease expired): stop without touching it."""


class SourceError(Exception):
    """An input cannot be read to its end for a reason retrying will not cure (refused host, an
    HTTP error status, too large): recorded as that input's error, the job goes on."""


class TooManyErrors(Exception):
    """More bad lines than the job tolerates: the job fails without retrying."""


# A source: the URL of one input -> its bytes, in chunks. It raises SourceError for a
# permanent problem and anything else (a timeout, a refused connection) for a transient one,
# which the queue retries.
Source = Callable[[str], Iterable[bytes]]


@dataclass
class _Item:
    line: int
    body: dict
    res_id: str | None


@dataclass
class _Batch:
    input_no: int
    first_line: int
    last_line: int
    items: list[_Item] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line, why)


def lines_of(chunks: Iterable[bytes], max_line: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, the line without its end) for every line of ``chunks``; None for a line
    longer than ``max_line`` bytes (never held whole in memory)."""
    n = 0
    pending: list[bytes] = []  # the start of a line that goes on in the next chunk
    size = 0
    too_long = False
    for chunk in chunks:
        start = 0
        while (cut := chunk.find(b"\n", start)) >= 0:
            piece = chunk[start:cut]
            n += 1
            if too_long or size + len(piece) > max_line:
                yield n, None
            else:
                line = b"".join([*pending, piece]) if pending else piece
                yield n, line.rstrip(b"\r")
            pending, size, too_long = [], 0, False
            start = cut + 1
        rest = chunk[start:]
        if rest and not too_long:
            pending.append(rest)
            size += len(rest)
            if size > max_line:
                pending, size, too_long = [], 0, True
    if size or too_long:
        yield n + 1, (None if too_long else b"".join(pending).rstrip(b"\r"))


def _parse(line: bytes, res_type: str, input_source: str | None) -> dict | str:
    """The resource of one line, or why it is not one of ``res_type``."""
    try:
        body = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    if not isinstance(body, dict):
        return "not a JSON object"
    found = body.get("resourceType")
    if found != res_type:
        return f"resourceType {found!r}, but this input holds {res_type} resources"
    res_id = body.get("id")
    if res_id is not None and (not isinstance(res_id, str) or not ID_RE.match(res_id)):
        return f"{res_id!r} is not a valid FHIR id"
    if input_source:  # the proposal: meta.source from inputSource where the resource has none
        meta = body.get("meta")
        if isinstance(meta, dict) and "source" not in meta:
            body["meta"] = {**meta, "source": input_source}
        elif meta is None:
            body["meta"] = {"source": input_source}
    return body


def _batches(
    job: Import, input_no: int, chunks: Iterable[bytes], after_line: int, max_line: int
) -> Iterator[_Batch]:
    spec = job.spec
    res_type = spec.inputs[input_no].type
    batch: _Batch | None = None
    for n, line in lines_of(chunks, max_line):
        if n <= after_line:
            continue  # done by an earlier attempt
        if batch is None:
            batch = _Batch(input_no, n, n)
        batch.last_line = n
        if line is None:
            batch.bad.append((n, f"longer than {max_line} bytes"))
        elif line.strip():
            parsed = _parse(line, res_type, spec.input_source)
            if isinstance(parsed, str):
                batch.bad.append((n, parsed))
            else:
                batch.items.append(_Item(n, parsed, parsed.get("id")))
        if len(batch.items) + len(batch.bad) >= spec.batch_size:
            yield batch
            batch = None
    if batch is not None:
        yield batch


class _ItemFailed(Exception):
    def __init__(self, item: _Item, error: FhirError) -> None:
        super().__init__(error.diagnostics)
        self.item, self.error = item, error


class _OneByOne(Exception):
    """``create_many`` failed in a way no item is named for (a write hook refused one): the
    batch is written again, one ``update`` / ``create`` at a time."""


def _write(u: Unit, res_type: str, items: list[_Item], *, batched: bool = True) -> dict[str, int]:
    """Write ``items`` (update-as-create): new ids in one ``create_many``, the others (existing,
    deleted, or repeated in the batch) through ``update``, in line order after it; with
    ``batched`` False every item on its own."""
    named = [i.res_id for i in items if i.res_id]
    existing: set[str] = set()
    if not batched:
        tally = {"created": 0, "updated": 0, "unchanged": 0}
        for item in items:
            try:
                if item.res_id is None:
                    status = u.create(item.body).status
                else:
                    status = u.update(res_type, item.res_id, item.body).status
            except FhirError as exc:
                raise _ItemFailed(item, exc) from exc
            tally[status if status in tally else "updated"] += 1
        return tally
    if named:
        existing = set(
            u.conn.execute(
                sa.select(resource.c.res_id).where(
                    resource.c.res_type == res_type, resource.c.res_id.in_(named)
                )
            ).scalars()
        )
    fresh: list[tuple[str, _Item]] = []
    later: list[_Item] = []
    seen: set[str] = set()
    for item in items:
        if item.res_id is None:
            fresh.append((new_id(), item))
        elif item.res_id in existing or item.res_id in seen:
            later.append(item)
        else:
            seen.add(item.res_id)
            fresh.append((item.res_id, item))
    tally = {"created": 0, "updated": 0, "unchanged": 0}
    if fresh:
        try:
            results = u.create_many([(rid, item.body) for rid, item in fresh])
        except BatchItemError as exc:
            raise _ItemFailed(fresh[exc.index][1], exc.error) from exc
        except FhirError as exc:  # a write hook refused one of them: find which, one by one
            raise _OneByOne from exc
        tally["created"] += len(results)
    for item in later:
        assert item.res_id is not None
        try:
            status = u.update(res_type, item.res_id, item.body).status
        except FhirError as exc:
            raise _ItemFailed(item, exc) from exc
        tally[status if status in tally else "updated"] += 1
    return tally


def _commit_batch(
    repo: Repository,
    job: Import,
    qjob: queue.Job,
    worker: str,
    batch: _Batch,
    counts: list[dict[str, int]],
    lease: timedelta,
) -> list[dict[str, int]]:
    """Write one batch; a line the write path refuses is moved to the bad lines and the batch
    is written again without it. Returns the new counts (committed with the cursor)."""
    url = job.spec.inputs[batch.input_no].url
    res_type = job.spec.inputs[batch.input_no].type
    items = list(batch.items)
    bad = list(batch.bad)
    batched = True
    while True:

        def run(u: Unit, batched: bool = batched) -> list[dict[str, int]]:
            # built afresh on each try: the repository runs a unit again after a collision
            mine = [dict(c) for c in counts]
            current = mine[batch.input_no]
            tally = _write(u, res_type, items, batched=batched) if items else {}
            for k, v in tally.items():
                current[k] += v
            current["count"] += len(items)
            current["errors"] += len(bad)
            if bad:
                u.conn.execute(
                    sa.insert(bulk_import_error),
                    [
                        {
                            "job_id": job.id,
                            "input": batch.input_no,
                            "line": line,
                            "outcome": outcome(why, line=line, url=url),
                        }
                        for line, why in sorted(bad)
                    ],  # fmt: skip
                )
            _advance(u, job, qjob, worker, batch.input_no, batch.last_line, mine, lease)
            return mine

        try:
            return repo.run(run)
        except _ItemFailed as exc:
            items.remove(exc.item)
            bad.append((exc.item.line, exc.error.diagnostics))
        except _OneByOne:
            batched = False


def _progress(job: Import, input_no: int, line: int, counts: list[dict[str, int]]) -> str:
    done = sum(c["count"] for c in counts)
    errors = sum(c["errors"] for c in counts)
    res_type = job.spec.inputs[input_no].type if input_no < len(job.spec.inputs) else "-"
    return (
        f"{res_type} (input {min(input_no + 1, len(job.spec.inputs))} of "
        f"{len(job.spec.inputs)}): line {line}; {done} imported, {errors} failed"
    )[:100]


def _advance(
    u: Unit,
    job: Import,
    qjob: queue.Job,
    worker: str,
    input_no: int,
    line: int,
    counts: list[dict[str, int]],
    lease: timedelta,
) -> None:
    """In the writing transaction: move the cursor, record the progress, renew the lease; raise
    ``Cancelled`` (or ``LeaseLost``), rolling the batch back, when the job is no longer ours."""
    errors = sum(c["errors"] for c in counts)
    if errors > job.spec.max_errors:
        raise TooManyErrors(
            f"more than {job.spec.max_errors} lines failed (the job's error tolerance)"
        )
    result = u.conn.execute(
        sa.update(bulk_import)
        .where(bulk_import.c.id == job.id, bulk_import.c.state != CANCELLED)
        .values(
            cursor={"input": input_no, "line": line, "counts": counts},
            progress=_progress(job, input_no, line, counts),
            updated=utcnow(),
        )
    )
    if result.rowcount != 1:
        raise Cancelled
    if not queue.renew(u, qjob, worker, lease):
        raise LeaseLost


def _set(repo: Repository, job_id: str, **values: Any) -> None:
    def run(u: Unit) -> None:
        u.conn.execute(
            sa.update(bulk_import)
            .where(bulk_import.c.id == job_id, bulk_import.c.state != CANCELLED)
            .values(updated=utcnow(), **values)
        )

    repo.run(run)


def _input_failed(
    repo: Repository,
    job: Import,
    qjob: queue.Job,
    worker: str,
    input_no: int,
    counts: list[dict[str, int]],
    why: str,
    lease: timedelta,
) -> list[dict[str, int]]:
    """Record that input ``input_no`` could not be read to its end, and move past it."""
    mine = [dict(c) for c in counts]
    mine[input_no]["errors"] += 1
    url = job.spec.inputs[input_no].url

    def run(u: Unit) -> None:
        u.conn.execute(
            sa.insert(bulk_import_error).values(
                job_id=job.id,
                input=input_no,
                line=0,
                outcome=outcome(why, line=None, url=url, code="processing"),
            )  # fmt: skip
        )
        _advance(u, job, qjob, worker, input_no + 1, 0, mine, lease)

    repo.run(run)
    return mine


def _next_input(
    u: Unit, *, job: Import, qjob: queue.Job, worker: str, input_no: int,
    counts: list[dict[str, int]], lease: timedelta,
) -> None:  # fmt: skip
    """Input ``input_no`` is done: the cursor moves to the start of the next one."""
    _advance(u, job, qjob, worker, input_no + 1, 0, counts, lease)


class BadManifest(Exception):
    """The export manifest of a ping-and-pull job cannot be used: the job fails, unretried."""


MAX_MANIFEST = 16 * 1024 * 1024


def _resolve_manifest(repo: Repository, job: Import, source: Source) -> Import:
    """Read a ping-and-pull job's static export manifest (Bulk Data export's complete-status
    body) and record its ``output`` files as the job's inputs, with their counts, in one
    transaction; the job with them."""
    assert job.spec.manifest_url is not None
    raw = b""
    for chunk in source(job.spec.manifest_url):
        raw += chunk
        if len(raw) > MAX_MANIFEST:
            raise BadManifest(f"the export manifest is larger than {MAX_MANIFEST} bytes")
    try:
        manifest = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadManifest(f"the export manifest is not JSON: {exc}") from exc
    output = manifest.get("output") if isinstance(manifest, dict) else None
    if not isinstance(output, list):
        raise BadManifest("the export manifest has no output list")
    if manifest.get("requiresAccessToken") is True:
        raise BadManifest(
            "the export manifest says its files need an access token; Hearth holds no "
            "credentials for sources: give files it may fetch without one (signed URLs)"
        )
    inputs = []
    for entry in output:
        res_type = entry.get("type") if isinstance(entry, dict) else None
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(res_type, str) or not isinstance(url, str):
            raise BadManifest("each output of the export manifest needs a type and a url")
        inputs.append(Input(res_type, url))
    if not inputs:
        raise BadManifest("the export manifest lists no files")
    spec = replace(job.spec, inputs=inputs)
    cursor = {"input": 0, "line": 0, "counts": [_empty_counts() for _ in inputs]}

    def run(u: Unit) -> None:
        u.conn.execute(
            sa.update(bulk_import)
            .where(bulk_import.c.id == job.id, bulk_import.c.state != CANCELLED)
            .values(spec=spec.to_json(), cursor=cursor, updated=utcnow())
        )

    repo.run(run)
    return replace(job, spec=spec, cursor=cursor)


def _refused(job: Import, input_no: int) -> str | None:
    """Why an input taken from a manifest may not be imported (a type the kick-off's token may
    not write at system level, or none Hearth writes); None: it may."""
    res_type = job.spec.inputs[input_no].type
    if job.spec.writable is None or res_type in job.spec.writable:
        return None
    return f"the kick-off's token may not create and update {res_type!r} resources"


def run_job(
    repo: Repository,
    source: Source,
    qjob: queue.Job,
    worker: str,
    *,
    max_line: int = 8 * 1024 * 1024,
    lease: timedelta = timedelta(minutes=5),
    writer: Callable[[Import], Repository] | None = None,
    on_done: Callable[[Unit, Import], None] | None = None,
) -> str:
    """Run one claimed import job from its cursor to its end; returns its final state.
    ``writer(job)`` is the repository view the job's batches are written through (one whose
    ``on_commit`` audits them as the job's client); ``on_done`` is told of a completed job (the
    closing Import audit event, in the transaction that completes it)."""
    job_id = qjob.key
    row = repo.read(
        lambda u: u.conn.execute(sa.select(bulk_import).where(bulk_import.c.id == job_id)).first()
    )
    if row is None or row.state == CANCELLED:
        repo.run(lambda u: queue.finish(u, qjob, worker))
        return CANCELLED
    job = _import(row)
    _set(repo, job_id, state=RUNNING, progress=job.progress or "started")
    if job.spec.manifest_url is not None and not job.spec.inputs:
        try:
            job = _resolve_manifest(repo, job, source)
        except (SourceError, BadManifest) as exc:
            return _fail(repo, qjob, worker, job_id, str(exc), retry=False)
        except Exception as exc:
            return _fail(repo, qjob, worker, job_id, repr(exc), retry=True)
    view = writer(job) if writer is not None else repo
    counts = job.counts()
    start_input = int(job.cursor.get("input") or 0)
    after_line = int(job.cursor.get("line") or 0)
    try:
        for input_no in range(start_input, len(job.spec.inputs)):
            skip = after_line if input_no == start_input else 0
            try:
                refused = _refused(job, input_no)
                if refused is not None:
                    raise SourceError(refused)
                chunks = source(job.spec.inputs[input_no].url)
                for batch in _batches(job, input_no, chunks, skip, max_line):
                    counts = _commit_batch(view, job, qjob, worker, batch, counts, lease)
            except SourceError as exc:
                counts = _input_failed(view, job, qjob, worker, input_no, counts, str(exc), lease)
                continue
            # the input is done: the cursor moves to the next one's start
            repo.run(partial(_next_input, job=job, qjob=qjob, worker=worker, input_no=input_no,
                             counts=counts, lease=lease))  # fmt: skip
    except Cancelled:
        repo.run(lambda u: queue.finish(u, qjob, worker))
        return CANCELLED
    except LeaseLost:
        return RUNNING  # the runner that holds it now carries on from the cursor
    except TooManyErrors as exc:
        return _fail(repo, qjob, worker, job_id, str(exc), retry=False)
    except Exception as exc:
        return _fail(repo, qjob, worker, job_id, repr(exc), retry=True)

    def finish(u: Unit) -> str:
        if not queue.finish(u, qjob, worker):
            return RUNNING
        done = u.conn.execute(
            sa.update(bulk_import)
            .where(bulk_import.c.id == job_id, bulk_import.c.state != CANCELLED)
            .values(state=COMPLETED, progress="completed", updated=utcnow())
        )
        if done.rowcount != 1:
            return CANCELLED
        if on_done is not None:
            row = u.conn.execute(sa.select(bulk_import).where(bulk_import.c.id == job_id)).one()
            on_done(u, _import(row))
        return COMPLETED

    return repo.run(finish)


def _fail(
    repo: Repository, qjob: queue.Job, worker: str, job_id: str, error: str, *, retry: bool
) -> str:
    final = repo.run(
        lambda u: queue.fail(u, qjob, worker, error, retry=retry, backoff=timedelta(seconds=5))
    )
    if final == queue.FAILED:
        _set(repo, job_id, state=FAILED, failure=f"the import failed: {error}")
    else:
        _set(repo, job_id, progress=f"retrying after: {error}"[:100])
    return final


def run_pending(repo: Repository, source: Source, worker: str, **options: Any) -> int:
    """Claim and run the import jobs waiting now (``hearth worker``, the API's sweep); how
    many ran."""
    lease = options.get("lease", timedelta(minutes=5))
    ran = 0
    while jobs := queue.claim(repo, [KIND], worker, limit=1, lease=lease):
        for qjob in jobs:
            run_job(repo, source, qjob, worker, **options)
            ran += 1
    return ran


def run_now(
    repo: Repository, source: Source, job_id: str, worker: str, **options: Any
) -> str | None:
    """Claim one given job and run it (the API process right after its kick-off); None when a
    worker already holds it."""
    lease = options.get("lease", timedelta(minutes=5))
    claimed = queue.for_task(repo, f"BulkImport/{job_id}")
    if not claimed:
        return None
    qjob = queue.claim_job(repo, claimed[0].id, worker, lease=lease)
    if qjob is None:
        return None
    return run_job(repo, source, qjob, worker, **options)
