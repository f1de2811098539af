"""One run of a job, from claim to terminal status, and the reaper.

A run claims the job (bumping `attempts`, its lease), then imports batch after batch, each in
one transaction with its item outcomes and the new checkpoint: a crash loses at most the batch
in flight, which the next run replays from the checkpoint. Progress is published after every
commit. Errors: a payload no retry can fix fails the job at once; any other error fails the run,
and Dramatiq retries it with backoff until `job_max_attempts` runs have started.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from app.db.models import Job
from app.jobs import queue
from app.jobs.adapters import PayloadError
from app.jobs.runtime import Runtime
from app.pubsub import publish_event, publish_job
from app.services import imports, jobs

log = logging.getLogger("ctxgraph.jobs")


class LeaseLost(Exception):
    """Another run took the job over: this one stops without writing."""


async def announce(rt: Runtime, job: Job, *, status_changed: bool = False) -> None:
    """Publish the job's state (after commit): its channel, and the workspace's on status changes."""
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
        await s.commit()
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
            await s.commit()
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
                await s.commit()
            if not alive:
                return
        except Exception:  # noqa: BLE001 - the next beat may get through
            log.warning("heartbeat of job %s failed", job.id, exc_info=True)


async def _end(rt: Runtime, job: Job, status: str, error: str | None = None, message: str | None = None) -> None:
    async with rt.db.tenant(job.workspace_id) as s:
        ended = await jobs.finish(s, job, status, error=error)
        if ended is not None:
            await imports.mark_sync(s, job, started=False, message=message or error or status.lower())
        await s.commit()
    if ended is not None:
        log.info("job %s %s", job.id, status)
        await announce(rt, ended, status_changed=True)


async def _recompute(rt: Runtime, job: Job) -> None:
    async with rt.db.tenant(job.workspace_id) as s:
        counts = await imports.run_recompute(s, imports.job_principal(job, imports.RECOMPUTE_SCOPE))
        saved = await jobs.save_progress(s, job, counts=counts)
        if saved is None:
            raise LeaseLost
        await s.commit()
    await _end(rt, saved, "COMPLETED")


async def _import(rt: Runtime, job: Job) -> None:
    with tempfile.TemporaryFile() as spool:
        async with rt.db.tenant(job.workspace_id) as s:
            if job.kind == "SYNC_SOURCE":
                await imports.mark_sync(s, job, started=True, message="syncing")
                if not await imports.has_payload(s, job):
                    root = Path(rt.settings.home) / "files" / str(job.workspace_id)  # a tenant reads only its own
                    job.total = await imports.store_payload(s, job, _in_thread(imports.open_sync_file(job.params["file"], root, rt.settings.fetch_private_networks)))
            await imports.spool_payload(s, job, spool)
            if job.total is None:
                job.total = sum(1 for _ in imports.entries(job, spool))
            params = {**job.params, "payload_total": job.params.get("payload_total", job.total)}
            saved = await jobs.save_progress(s, job, total=job.total, params=params)
            if saved is None:
                raise LeaseLost
            await s.commit()
        job = saved
        await announce(rt, job)
        pending = itertools.islice(imports.entries(job, spool), job.checkpoint, None)
        while batch := list(itertools.islice(pending, rt.settings.job_batch_size)):
            async with rt.db.tenant(job.workspace_id) as s:
                if await jobs.is_cancel_requested(s, job):
                    await s.rollback()
                    await _end(rt, job, "CANCELLED", message="cancelled")
                    return
                outcomes = await imports.import_batch(s, job, batch)
                await imports.save_items(s, job, outcomes)
                fetches = await imports.pending_fetches(s, job, outcomes)
                saved = await jobs.save_progress(s, job, **imports.tally(job, outcomes))
                if saved is None:
                    raise LeaseLost
                await s.commit()
            job = saved
            await queue.fetch_documents(fetches, job.workspace_id)
            await announce(rt, job)
    result = jobs.result_of(job) or {}
    await _end(rt, job, "COMPLETED", message=", ".join(f"{v} {k}" for k, v in result.items()))


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
                await s.commit()
            for job_id in found:
                log.warning("job %s has no live worker or message: sending it again", job_id)
                with contextlib.suppress(Exception):
                    await queue.enqueue(job_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - try again next round
            log.warning("the job reaper failed", exc_info=True)
