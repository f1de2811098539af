"""One run of a job, from claim to terminal status, and the reaper.

A run claims the job (bumping `attempts`, its lease), then imports batch after batch, each in
one transaction with its item outcomes and the new checkpoint, committed in order: a crash loses
at most the batches in flight (two: one is checked while the one before is written), which the
next run replays from the checkpoint. Progress is published after every commit. Errors: a payload no retry can fix fails the job at once; any other error fails the run,
and Dramatiq retries it with backoff until `job_max_attempts` runs have started.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.db.models import Job
from app.jobs import queue
from app.jobs.runtime import Runtime
from app.pubsub import publish_event, publish_job
from app.services import effects, imports, jobs
from app.services.adapters import PayloadError

log = logging.getLogger("ctxgraph.jobs")


class LeaseLost(Exception):
    """Another run took the job over: this one stops without writing."""


async def announce(rt: Runtime, job: Job, *, status_changed: bool = False) -> None:
    """Publish the job's state (after commit): its channel, and the workspace's on status changes.
    (The runtime's client sends a call once more on a connection that died with a Redis restart:
    lost after Redis is back, a terminal state would leave its subscribers waiting.)"""
    try:
        await publish_job(rt.redis, job.id, jobs.snapshot(job))
        if status_changed:
            await publish_event(rt.redis, job.workspace_id, "job.updated", "Job", job.id)
    except Exception:  # noqa: BLE001 - progress is best effort; the row is the truth
        log.warning("could not publish the progress of job %s", job.id, exc_info=True)


async def run_job(rt: Runtime, job_id: uuid.UUID) -> None:
    settings = rt.settings
    async with rt.db.system() as s:
        job = await jobs.claim(s, job_id, settings.job_stale_seconds)
        await effects.commit(s, rt)
    if job is None:
        log.debug("job %s is not ours to run (finished, running elsewhere, or unknown)", job_id)
        return
    if job.attempts > settings.job_max_attempts:
        reason = job.error or "its worker stopped every time"
        await _end(rt, job, "FAILED", f"Gave up after {job.attempts - 1} attempts: {reason}")
        return
    log.info("job %s (%s) run %d started", job.id, job.kind, job.attempts)
    await announce(rt, job, status_changed=True)
    beating = asyncio.create_task(_heartbeat(rt, job))
    try:
        if job.kind == "RECOMPUTE_RELATIONSHIPS":
            await _recompute(rt, job)
        else:
            await _import(rt, job)
    except LeaseLost:
        log.warning("job %s was taken over by another run; this one stops", job.id)
    except PayloadError as exc:
        await _end(rt, job, "FAILED", exc.message)
    except Exception as exc:
        # Users read `Job.error`: the exception's text (SQL, parameters, paths) goes to the log only.
        detail = f"{type(exc).__name__}: {exc}"[:2000]
        error = f"Unexpected error in run {job.attempts} (logged on the worker with job id {job.id})"
        if job.attempts >= settings.job_max_attempts:
            log.exception("job %s failed on its last attempt", job.id)
            await _end(rt, job, "FAILED", error)
            return
        log.warning("job %s run %d failed, to be retried: %s", job.id, job.attempts, detail)
        async with rt.db.system() as s:
            pending = await jobs.back_to_pending(s, job, error)
            await effects.commit(s, rt)
        if pending is not None:
            await announce(rt, pending, status_changed=True)
        raise
    finally:
        beating.cancel()


async def _heartbeat(rt: Runtime, job: Job) -> None:
    """Keep the lease while a long batch runs."""
    interval = max(1.0, rt.settings.job_stale_seconds / 4)
    while True:
        await asyncio.sleep(interval)
        try:
            async with rt.db.system() as s:
                alive = await jobs.beat(s, job)
                await effects.commit(s, rt)
            if not alive:
                return
        except Exception:  # noqa: BLE001 - the next beat may get through
            log.warning("heartbeat of job %s failed", job.id, exc_info=True)


async def _end(rt: Runtime, job: Job, status: str, error: str | None = None, message: str | None = None) -> None:
    async with rt.db.tenant(job.workspace_id) as s:
        ended = await jobs.finish(s, job, status, error=error)
        if ended is not None:
            await imports.mark_sync(s, job, started=False, message=message or error or status.lower())
        await effects.commit(s, rt)
    if ended is not None:
        log.info("job %s %s", job.id, status)
        await announce(rt, ended, status_changed=True)


async def _recompute(rt: Runtime, job: Job) -> None:
    async with rt.db.tenant(job.workspace_id) as s:
        counts = await imports.run_recompute(s, imports.job_principal(job, imports.RECOMPUTE_SCOPE))
        saved = await jobs.save_progress(s, job, counts=counts)
        if saved is None:
            raise LeaseLost
        await effects.commit(s, rt)
    await _end(rt, saved, "COMPLETED")


async def _import(rt: Runtime, job: Job) -> None:
    with tempfile.TemporaryFile() as spool:
        async with rt.db.tenant(job.workspace_id) as s:
            if job.kind == "SYNC_SOURCE":
                await imports.mark_sync(s, job, started=True, message="syncing")
                if not await imports.has_payload(s, job):
                    root = Path(rt.settings.home) / "files" / str(job.workspace_id)  # a tenant reads only its own
                    fetched = imports.open_sync_file(job.params["file"], root, rt.settings.fetch_private_networks,
                                                      max_bytes=rt.settings.max_upload_bytes)  # as an upload's
                    job.total = await imports.store_payload(s, job, _in_thread(fetched))
            await imports.spool_payload(s, job, spool)
            if job.total is None:
                job.total = sum(1 for _ in imports.entries(job, spool))
            params = {**job.params, "payload_total": job.params.get("payload_total", job.total)}
            saved = await jobs.save_progress(s, job, total=job.total, params=params)
            if saved is None:
                raise LeaseLost
            await effects.commit(s, rt)
        job = saved
        await announce(rt, job)
        pending = itertools.islice(imports.entries(job, spool), job.checkpoint, None)

        async def prepare_next() -> imports.Batch | None:
            entries = list(itertools.islice(pending, rt.settings.job_batch_size))
            return await imports.prepare_batch(job, entries) if entries else None

        batch = await prepare_next()
        with _frozen_heap():
            try:
                job = await _pipeline(rt, job, batch, prepare_next)
            except _Cancelled as cancelled:
                await _end(rt, cancelled.job, "CANCELLED", message="cancelled")
                return
    result = jobs.result_of(job) or {}
    await _end(rt, job, "COMPLETED", message=", ".join(f"{v} {k}" for k, v in result.items()))


class _Cancelled(Exception):
    """A cancel was requested: the batch in flight is rolled back; `job` is as last committed."""

    def __init__(self, job: Job) -> None:
        self.job = job


@dataclass
class _Flight:
    """A batch in flight: set once it is checked (None if it failed first), done once committed
    (the job as committed)."""
    checked: asyncio.Future[imports.Checked | None]
    done: asyncio.Task[Job]


async def _pipeline(
    rt: Runtime, job: Job, batch: imports.Batch | None, prepare_next: Callable[[], Awaitable[imports.Batch | None]],
) -> Job:
    """Import the batches in order, each in its transaction, committed in order. While a batch is
    written, the next one is checked (unless it reads what the writing one changes) and the one
    after is prepared: at most two transactions are open."""
    flights: list[_Flight] = []
    upcoming: asyncio.Future[imports.Batch | None] | None = None
    try:
        while batch is not None:
            checked: asyncio.Future[imports.Checked | None] = asyncio.get_running_loop().create_future()
            previous = flights[-1] if flights else None
            flights.append(_Flight(checked, asyncio.ensure_future(_batch(rt, job, batch, previous, checked))))
            upcoming = asyncio.ensure_future(prepare_next())  # runs while the batches wait for PostgreSQL
            await asyncio.wait([checked])
            if len(flights) == 2:
                job = await _committed(rt, flights.pop(0))
            batch = await upcoming
        while flights:
            flight = flights.pop(0)
            job = await _committed(rt, flight, announce_it=bool(flights))  # the last is announced by its end (_end)
        return job
    finally:
        if upcoming is not None:
            upcoming.cancel()
        await asyncio.gather(*(flight.done for flight in flights), return_exceptions=True)


async def _committed(rt: Runtime, flight: _Flight, announce_it: bool = True) -> Job:
    """The batch's job once committed. The last batch's state is not announced on its own: its
    end follows at once with the same counts, and two events back to back would make every
    subscriber's second one wait behind the first's fan-out."""
    job = await flight.done
    if announce_it:
        await announce(rt, job)
    return job


async def _batch(
    rt: Runtime, job: Job, batch: imports.Batch, previous: _Flight | None, checked_out: asyncio.Future[imports.Checked | None],
) -> Job:
    """One batch's transaction; `previous` is the batch before, maybe not committed yet: this one
    is checked after it commits unless independent of it, and commits after it. What its items'
    writes registered (their workspace events, url documents to fetch) follows its commit."""
    try:
        async with rt.db.tenant(job.workspace_id) as s:
            before = job if previous is None else None
            if previous is not None:
                earlier = await previous.checked
                if earlier is None or not imports.independent(job, earlier, batch):
                    before = await previous.done
            checked = await imports.check_batch(s, job, batch)
            checked_out.set_result(checked)
            outcomes = await imports.write_batch(s, job, checked)
            await imports.save_items(s, job, outcomes)
            if before is None:
                assert previous is not None
                before = await previous.done
            if before.cancel_requested:  # as of the last commit
                raise _Cancelled(before)
            saved = await jobs.save_progress(s, before, **imports.tally(before, outcomes))
            if saved is None:
                raise LeaseLost
            await effects.commit(s, rt)
        return saved
    finally:
        if not checked_out.done():
            checked_out.set_result(None)


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Leave the objects alive when the batches start (modules, caches, the parsed payload) out
    of the garbage collector's passes until they end: an import allocates enough for a full pass
    every few batches, and each would walk them all again (about a second per 100,000 items)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def _in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A blocking chunk iterator (file or HTTP reads) consumed without blocking the loop."""
    done = object()
    while (chunk := await asyncio.to_thread(next, chunks, done)) is not done:
        yield chunk  # type: ignore[misc]


async def reap(rt: Runtime) -> None:
    """Every `job_reaper_interval_seconds`: send again the jobs no worker is running."""
    while True:
        await asyncio.sleep(rt.settings.job_reaper_interval_seconds)
        try:
            async with rt.db.system() as s:
                found = await jobs.orphans(s, rt.settings.job_stale_seconds)
                await effects.commit(s, rt)
            for job_id in found:
                log.warning("job %s has no live worker or message: sending it again", job_id)
                with contextlib.suppress(Exception):
                    await queue.enqueue(job_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - try again next round
            log.warning("the job reaper failed", exc_info=True)
