"""Re-indexing stored resources after search parameters change (``hearth reindex``,
``$reindex``): in primary-key order, one batch per transaction, with the position saved in
``reindex_job`` so an interrupted run resumes where it stopped."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from resources.errors import NotFound
from resources.storage.repository import Repository, Unit
from resources.storage.schema import UtcDateTime, metadata, resource
from resources.storage.store import utcnow

reindex_job = sa.Table(
    "reindex_job",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("res_type", sa.String(64), nullable=True),  # None: every type
    sa.Column("last_pk", sa.BigInteger, nullable=False),
    sa.Column("done_count", sa.BigInteger, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("finished", sa.Boolean, nullable=False),
    sa.Column("started", UtcDateTime(), nullable=False),
    sa.Column("updated", UtcDateTime(), nullable=False),
)


@dataclass(frozen=True)
class Job:
    id: str
    res_type: str | None
    last_pk: int
    done_count: int
    total: int
    finished: bool


def start(repo: Repository, res_type: str | None = None) -> Job:
    """Record a new job over every current resource (of ``res_type``)."""

    def run(u: Unit) -> Job:
        where = [~resource.c.deleted]
        if res_type:
            where.append(resource.c.res_type == res_type)
        total = u.conn.execute(
            sa.select(sa.func.count()).select_from(resource).where(*where)
        ).scalar_one()
        job = Job(str(uuid.uuid4()), res_type, 0, 0, total, total == 0)
        now = utcnow()
        u.conn.execute(sa.insert(reindex_job).values(**job.__dict__, started=now, updated=now))
        return job

    return repo.run(run)


def get(repo: Repository, job_id: str) -> Job:
    def run(u: Unit) -> Job:
        row = u.conn.execute(sa.select(reindex_job).where(reindex_job.c.id == job_id)).first()
        if row is None:
            raise NotFound(f"no reindex job {job_id}")
        return Job(row.id, row.res_type, row.last_pk, row.done_count, row.total, row.finished)

    return repo.read(run)


def unfinished(repo: Repository) -> list[Job]:
    rows = repo.read(
        lambda u: u.conn.execute(
            sa.select(reindex_job).where(~reindex_job.c.finished).order_by(reindex_job.c.started)
        ).all()
    )
    return [Job(r.id, r.res_type, r.last_pk, r.done_count, r.total, r.finished) for r in rows]


def step(repo: Repository, job_id: str, *, batch: int = 500) -> Job:
    """Re-index the next ``batch`` resources of the job, in one transaction."""

    def run(u: Unit) -> Job:
        job = u.conn.execute(
            sa.select(reindex_job).where(reindex_job.c.id == job_id).with_for_update()
        ).first()
        if job is None:
            raise NotFound(f"no reindex job {job_id}")
        if job.finished:
            return Job(job.id, job.res_type, job.last_pk, job.done_count, job.total, True)
        where = [~resource.c.deleted, resource.c.pk > job.last_pk]
        if job.res_type:
            where.append(resource.c.res_type == job.res_type)
        rows = u.conn.execute(
            sa.select(resource.c.pk, resource.c.content)
            .where(*where)
            .order_by(resource.c.pk)
            .limit(batch)
            .with_for_update()
        ).all()
        pks = [r.pk for r in rows]
        if pks:
            u.repo.search.unindex(u.conn, pks)
            u.repo.search.index(u.conn, [(r.pk, r.content) for r in rows])
        last_pk = pks[-1] if pks else job.last_pk
        done = job.done_count + len(pks)
        finished = len(pks) < batch
        u.conn.execute(
            sa.update(reindex_job)
            .where(reindex_job.c.id == job_id)
            .values(last_pk=last_pk, done_count=done, finished=finished, updated=utcnow())
        )
        return Job(job.id, job.res_type, last_pk, done, job.total, finished)

    return repo.run(run)


def run_to_end(
    repo: Repository,
    job_id: str,
    *,
    batch: int = 500,
    progress: Callable[[Job], None] | None = None,
) -> Job:
    job = get(repo, job_id)
    while not job.finished:
        job = step(repo, job_id, batch=batch)
        if progress:
            progress(job)
    return job


__all__ = ["Job", "get", "reindex_job", "run_to_end", "start", "step", "unfinished"]
