"""The work queue on both databases: idempotent enqueue, exclusive claims under concurrency,
lease expiry, back-off and the final failure."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from resources.jobs import queue
from resources.search import SearchEngine
from resources.storage.db import create_engine
from resources.storage.repository import Repository
from tests.servers import database_url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def repo(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(request.param))
    repository = Repository(create_engine(url), SearchEngine(base_urls=("http://q.test/fhir",)))
    yield repository
    repository.engine.dispose()
    cleanup()


def _kind() -> str:
    return f"k-{uuid.uuid4().hex[:8]}"


def test_concurrent_claimers_take_each_job_once(repo):
    kind = _kind()
    for n in range(10):
        repo.run(lambda u, n=n: queue.enqueue(u, kind, f"job-{n}", f"Task/t{n}"))
    start = threading.Barrier(20)

    def claimer(i: int) -> list[str]:
        start.wait()
        return [j.key for j in queue.claim(repo, [kind], f"w{i}", limit=2)]

    with ThreadPoolExecutor(20) as pool:
        claimed = [key for keys in pool.map(claimer, range(20)) for key in keys]
    assert sorted(claimed) == sorted(f"job-{n}" for n in range(10))


def test_expired_lease_is_claimed_again_and_finish_checks_the_owner(repo):
    kind = _kind()
    repo.run(lambda u: queue.enqueue(u, kind, "a", "Task/a"))
    [first] = queue.claim(repo, [kind], "dead", lease=timedelta(seconds=-1))
    [second] = queue.claim(repo, [kind], "alive")
    assert second.id == first.id and second.attempts == 2
    assert repo.run(lambda u: queue.finish(u, first, "dead")) is False
    assert repo.run(lambda u: queue.finish(u, second, "alive")) is True
    assert queue.get(repo, first.id).state == queue.DONE
    assert queue.claim(repo, [kind], "late") == []


def test_failures_back_off_then_fail_for_good(repo):
    kind = _kind()
    repo.run(lambda u: queue.enqueue(u, kind, "b", "Task/b", max_attempts=2))
    [job] = queue.claim(repo, [kind], "w")
    state = repo.run(
        lambda u: queue.fail(u, job, "w", "boom", retry=True, backoff=timedelta(hours=1))
    )
    assert state == queue.READY
    assert queue.claim(repo, [kind], "w") == []  # backing off
    [job] = queue.claim(repo, [kind], "w", now=queue.utcnow() + timedelta(hours=2))
    state = repo.run(
        lambda u: queue.fail(u, job, "w", "boom again", retry=True, backoff=timedelta(0))
    )
    assert state == queue.FAILED
    assert queue.get(repo, job.id).last_error == "boom again"


def test_enqueue_is_idempotent_per_key(repo):
    kind = _kind()
    a = repo.run(lambda u: queue.enqueue(u, kind, "same", "Task/s"))
    b = repo.run(lambda u: queue.enqueue(u, kind, "same", "Task/s"))
    assert a.id == b.id


def test_wakeup_on_commit_of_an_enqueue(repo):
    """PostgreSQL: a waiting worker is woken by the NOTIFY of an enqueue once its transaction
    commits (not by a rolled-back one, nor by another kind's); SQLite: the wait just times out."""
    kind = _kind()
    wakeup = queue.Wakeup(repo, [kind])
    wakeup.start()
    try:
        if repo.engine.dialect.name != "postgresql":
            repo.run(lambda u: queue.enqueue(u, kind, "s", "Task/s"))
            assert wakeup.wait(0.05) is False  # polling only
            return

        class Rollback(Exception):
            pass

        def enqueue_then_fail(u):  # type: ignore[no-untyped-def]
            queue.enqueue(u, kind, "rolled-back", "Task/r")
            raise Rollback

        with pytest.raises(Rollback):
            repo.run(enqueue_then_fail)
        repo.run(lambda u: queue.enqueue(u, _kind(), "other", "Task/o"))
        assert wakeup.wait(0.5) is False  # nothing committed for this kind

        def enqueue_later() -> None:
            time.sleep(0.2)
            repo.run(lambda u: queue.enqueue(u, kind, "new", "Task/n"))

        threading.Thread(target=enqueue_later).start()
        assert wakeup.wait(60) is True  # woken by the commit, not by the 60 s timeout
        [job] = queue.claim(repo, [kind], "w")
        assert job.key == "new"
    finally:
        wakeup.close()


def test_dead_letter_names_a_job_that_will_never_run_again(repo):
    """``dead_letter``: None while a job may still run (waiting, leased, lease expired with
    attempts left) or is done; why, once dead-lettered or expired on its last attempt."""
    kind, worker = _kind(), "w-dead"
    lease = timedelta(minutes=1)
    repo.run(lambda u: queue.enqueue(u, kind, "j", "Task/dead", max_attempts=2))
    dead = lambda at=None: repo.read(lambda u: queue.dead_letter(u, "Task/dead", now=at))  # noqa: E731
    assert dead() is None  # waiting
    [job] = queue.claim(repo, [kind], worker, lease=lease)
    later = queue.utcnow() + 2 * lease
    assert dead() is None and dead(later) is None  # leased; expired, one attempt left
    [job] = queue.claim(repo, [kind], worker, lease=lease, now=later)
    assert job.attempts == 2 and dead(later) is None  # its last attempt, leased
    assert "expired" in (dead(later + 2 * lease) or "")  # ... its runner died
    repo.run(lambda u: queue.fail(u, job, worker, "boom", retry=False, backoff=lease))
    assert dead() == "boom"
    repo.run(lambda u: queue.enqueue(u, kind, "k", "Task/done"))
    [done] = queue.claim(repo, [kind], worker)
    repo.run(lambda u: queue.finish(u, done, worker))
    assert repo.read(lambda u: queue.dead_letter(u, "Task/done")) is None


def test_a_dead_lettered_row_does_not_hide_the_next_runnable_job(repo):
    """A claim that meets a row with its attempts used up dead-letters it and claims the next
    runnable job instead of returning nothing (a ``hearth worker --once`` pass stopped there)."""
    kind, worker = _kind(), "w-next"
    lease = timedelta(minutes=1)
    repo.run(lambda u: queue.enqueue(u, kind, "first", "Task/first", max_attempts=1))
    [first] = queue.claim(repo, [kind], worker, lease=lease)  # its only attempt; then it dies
    repo.run(lambda u: queue.enqueue(u, kind, "second", "Task/second"))
    later = queue.utcnow() + 2 * lease
    [got] = queue.claim(repo, [kind], worker, limit=1, lease=lease, now=later)
    assert got.key == "second"
    assert [j.key for j in queue.failed(repo, [kind])] == ["first"]
