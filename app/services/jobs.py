"""Jobs: listing, cancel, retry, and the state changes the worker makes.

A job's row is the whole truth about it (the broker message carries only the id). The worker
claims a job by bumping `attempts`; that number is its lease: every later write of that run
checks it, so a worker presumed dead that wakes up cannot write over its successor.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal_column, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Job
from app.db.models.jobs import JobItem
from app.pubsub import publish_job
from app.services import effects, filters
from app.services.access import Principal
from app.services.errors import BadInput, Invalid, Problem, not_found
from app.services.pagination import Page, PageArgs, SortKey, decode_cursor, page_of, paginate

READ, WRITE = "jobs:read", "jobs:write"
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
ITEM_STATUS = {"CREATED": "SUCCESS", "UPDATED": "SUCCESS", "DELETED": "SUCCESS", "SKIPPED": "SKIPPED", "FAILED": "FAILED"}
COUNT_KEYS = ("created", "updated", "skipped", "deleted", "failed")

FILTER_FIELDS: filters.FieldMap = {
    "status": filters.one_of(Job.status),
    "kind": filters.one_of(Job.kind),
    "created_at": filters.comparable(Job.created_at),
}
NEWEST_FIRST = [
    SortKey(Job.created_at, lambda j: j.created_at, descending=True),
    SortKey(Job.id, lambda j: j.id, descending=True),
]


async def list_jobs(s: AsyncSession, p: Principal, args: PageArgs, *, where: Any = None) -> Page[Job]:
    ws = p.require(READ)
    query = select(Job).where(Job.workspace_id == ws)
    if where is not None:
        query = query.where(filters.compile_filter(where, FILTER_FIELDS))
    return await paginate(s, query, NEWEST_FIRST, args)


async def jobs_by_id(s: AsyncSession, p: Principal, ids: list[uuid.UUID]) -> dict[uuid.UUID, Job]:
    ws = p.require(READ)
    rows = await s.scalars(select(Job).where(Job.workspace_id == ws, Job.id.in_(ids)))
    return {row.id: row for row in rows}


async def get_job(s: AsyncSession, p: Principal, job_id: uuid.UUID | None) -> Job | None:
    return (await jobs_by_id(s, p, [job_id])).get(job_id) if job_id else None  # type: ignore[arg-type]


_ITEMS = (
    "FROM job_item_batches b CROSS JOIN LATERAL jsonb_to_recordset(b.items)"
    " AS i(i integer, r text, s text, t text, n uuid, e text)"
    " WHERE b.workspace_id = CAST(:ws AS uuid) AND b.job_id = CAST(:job AS uuid)"
)
_OF_STATUS = " AND CAST(:status AS text) = ANY(b.statuses) AND i.s = :status"
_AFTER = " AND b.last_idx > :after AND i.i > :after"
_ITEM_ORDER = [SortKey(literal_column("idx"), lambda i: i.idx)]


async def list_items(
    s: AsyncSession, p: Principal, job_id: uuid.UUID, args: PageArgs, *, status: str | None = None
) -> Page[JobItem]:
    """A forward page of the job's items by payload index. Batches hold disjoint, increasing
    index ranges, so (batch, index) order is index order and a page reads only the batches it
    needs; with `status`, only the batches holding that status."""
    ws = p.require(READ)
    where, values = (_OF_STATUS, {"ws": ws, "job": job_id, "status": status}) if status else ("", {"ws": ws, "job": job_id})
    page_where, page_values = where, {**values, "limit": args.size + 1}
    if args.after is not None:
        after = decode_cursor(args.after, 1)[0]
        if not isinstance(after, int):
            raise BadInput("Invalid cursor")
        page_where, page_values["after"] = where + _AFTER, after
    query = text(f"SELECT i.i, i.r, i.s, i.t, i.n, i.e {_ITEMS}{page_where} ORDER BY b.first_idx, i.i LIMIT :limit")
    rows = (await s.execute(query, page_values)).all() if args.size else []

    async def count() -> int:
        return int(await s.scalar(text(f"SELECT count(*) {_ITEMS}{where}"), values) or 0)

    return page_of([JobItem(*row) for row in rows], _ITEM_ORDER, args, count)


async def failed_indexes(s: AsyncSession, ws: uuid.UUID, job_id: uuid.UUID) -> list[int]:
    rows = await s.scalars(text(f"SELECT i.i {_ITEMS}{_OF_STATUS} ORDER BY b.first_idx, i.i"),
                           {"ws": ws, "job": job_id, "status": "FAILED"})
    return list(rows)


JOB_ACTOR = "run_job"
"The actor (app.jobs.actors) that runs a job; its message carries the job id only."


def new_job(p: Principal, ws: uuid.UUID, kind: str, **fields: Any) -> Job:
    """A PENDING job acting for `p`; the caller adds it, flushes it and calls `started`."""
    return Job(
        id=uuid.uuid4(), workspace_id=ws, kind=kind, status="PENDING", created_by_id=p.member_id,
        user_id=p.user_id, api_key_id=p.api_key_id, processed=0, successful=0, failed=0, skipped=0,
        counts={}, checkpoint=0, cancel_requested=False, attempts=0, **fields,
    )


def started(s: AsyncSession, job: Job) -> Job:
    """Once the new job has committed (the worker must find its row): its message, and
    `job.created`. A message Redis refuses is not lost for good: the reaper sends it later."""
    effects.message(s, JOB_ACTOR, str(job.id))
    effects.event(s, "job.created", "Job", job.id)
    return job


async def _locked(s: AsyncSession, ws: uuid.UUID, job_id: uuid.UUID | None) -> Job:
    job = await s.scalar(
        select(Job).where(Job.id == job_id, Job.workspace_id == ws).with_for_update()
    ) if job_id else None
    if job is None:
        raise not_found("Job")
    return job


async def cancel_job(s: AsyncSession, p: Principal, job_id: uuid.UUID | None) -> Job:
    """A PENDING job is cancelled at once; a RUNNING one at its worker's next batch boundary."""
    job = await _locked(s, p.require(WRITE), job_id)
    if job.status not in ("PENDING", "RUNNING"):
        raise Invalid(Problem(f"Only PENDING or RUNNING jobs can be cancelled; this one is {job.status}", "CONFLICT", ("id",)))
    if job.status == "PENDING":
        job.status = "CANCELLED"
        job.finished_at = func.clock_timestamp()  # type: ignore[assignment]
    job.cancel_requested = True
    job.updated_at = func.clock_timestamp()  # type: ignore[assignment]
    await s.flush()
    await s.refresh(job)
    if job.status == "CANCELLED":  # no worker will announce it
        state = snapshot(job)
        effects.on_commit(s, lambda surroundings: publish_job(surroundings.redis, job.id, state))
        effects.event(s, "job.updated", "Job", job.id)
    return job


"What starting a job of each kind (and import target) takes beyond jobs:write."
TARGET_SCOPES = {"CONTACTS": "contacts:write", "ACTIVITY": "contacts:write", "RECORDS": "records:write",
                 "DOCUMENTS": "documents:write"}
KIND_SCOPES = {"SYNC_SOURCE": ("sources:write",), "RECOMPUTE_RELATIONSHIPS": ("contacts:write",)}


async def retry_job(s: AsyncSession, p: Principal, job_id: uuid.UUID | None) -> Job:
    """A new job over the items the finished one failed, and those it never reached. Retrying
    writes what the job writes, so it takes the scopes that starting the job took."""
    ws = p.require(WRITE)
    job = await _locked(s, ws, job_id)
    for scope in (*KIND_SCOPES.get(job.kind, ()), *([TARGET_SCOPES[job.target]] if job.target in TARGET_SCOPES else [])):
        p.require(scope)
    if job.status not in TERMINAL:
        raise Invalid(Problem(f"Only finished jobs can be retried; this one is {job.status}", "CONFLICT", ("id",)))
    params = dict(job.params)
    if job.kind in ("IMPORT", "SYNC_SOURCE"):
        failed = await failed_indexes(s, ws, job.id)
        indexes, rest_from = remaining_selection(params.get("indexes") or [], params.get("rest_from", 0), job.checkpoint)
        if job.status == "COMPLETED":
            indexes, rest_from = [], None
        selected = sorted(set(failed) | set(indexes))
        if not selected and rest_from is None:
            raise Invalid(Problem("The job has no failed items to retry", "CONFLICT", ("id",)))
        params.update(indexes=selected, rest_from=rest_from)
        payload_total = params.get("payload_total")
        if rest_from is None:
            known_total: int | None = len(selected)
        else:
            known_total = len(selected) + max(0, payload_total - rest_from) if payload_total is not None else None
    elif job.status == "COMPLETED":
        raise Invalid(Problem("The job completed: there is nothing to retry", "CONFLICT", ("id",)))
    else:
        known_total = None
    retry = new_job(
        p, ws, "IMPORT" if job.kind == "SYNC_SOURCE" else job.kind, source_id=job.source_id, target=job.target,
        adapter=job.adapter, object_type_id=job.object_type_id, params=params, payload_job_id=job.payload_job_id,
        payload_format=job.payload_format, total=known_total, retry_of_id=job.id,
    )
    s.add(retry)
    await s.flush()
    await s.refresh(retry)
    return started(s, retry)


def remaining_selection(indexes: Sequence[int], rest_from: int | None, done: int) -> tuple[list[int], int | None]:
    """A job's items are `indexes`, then every index from `rest_from` on (none if None); the
    first `done` of them are done: what is left, in the same form."""
    if done < len(indexes):
        return list(indexes[done:]), rest_from
    return [], None if rest_from is None else rest_from + done - len(indexes)


def snapshot(job: Job) -> dict[str, Any]:
    """What `jobProgress` subscribers receive: the job's state, JSON-ready."""

    def ts(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": str(job.id), "workspaceId": str(job.workspace_id), "kind": job.kind, "status": job.status,
        "sourceId": str(job.source_id) if job.source_id else None,
        "createdById": str(job.created_by_id) if job.created_by_id else None,
        "total": job.total, "processed": job.processed, "successful": job.successful, "failed": job.failed,
        "skipped": job.skipped, "attempts": job.attempts, "error": job.error, "result": result_of(job),
        "createdAt": ts(job.created_at), "updatedAt": ts(job.updated_at), "startedAt": ts(job.started_at),
        "finishedAt": ts(job.finished_at),
    }


def result_of(job: Job) -> dict[str, int] | None:
    """The created / updated / skipped / deleted / failed counts, once the job has run."""
    if job.kind == "RECOMPUTE_RELATIONSHIPS":
        return dict(job.counts) or None
    if job.status == "PENDING" and not job.counts:
        return None
    return {key: int(job.counts.get(key, 0)) for key in COUNT_KEYS}


# ------------------------------------------------------------------ the worker's side (system sessions)

async def claim(s: AsyncSession, job_id: uuid.UUID, stale_seconds: int) -> Job | None:
    """Start a run of a PENDING job, or take over a RUNNING one whose worker stopped beating.

    None when another run holds it, it is finished, or it does not exist (a message of another
    database). The caller commits.
    """
    stale = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, stale_seconds)
    return await s.scalar(
        update(Job)
        .where(Job.id == job_id)
        .where((Job.status == "PENDING") | ((Job.status == "RUNNING") & (Job.heartbeat_at < stale)))
        .values(
            status="RUNNING", attempts=Job.attempts + 1, heartbeat_at=func.now(),
            started_at=func.coalesce(Job.started_at, func.now()), updated_at=func.clock_timestamp(),
        )
        .returning(Job)
    )


async def beat(s: AsyncSession, job: Job) -> bool:
    """Renew the run's lease; False when another run took the job over (or it ended)."""
    result = await s.execute(
        update(Job).where(Job.id == job.id, Job.attempts == job.attempts, Job.status == "RUNNING")
        .values(heartbeat_at=func.now())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def save_progress(s: AsyncSession, job: Job, **values: Any) -> Job | None:
    """Write this run's new state if it still holds the lease; None (and nothing written) if not."""
    return await s.scalar(
        update(Job).where(Job.id == job.id, Job.attempts == job.attempts, Job.status == "RUNNING")
        .values(heartbeat_at=func.now(), updated_at=func.clock_timestamp(), **values)
        .returning(Job)
    )


async def finish(s: AsyncSession, job: Job, status: str, *, error: str | None = None, lease: bool = True) -> Job | None:
    """Move the job to a terminal status (`lease=False`: whoever holds it)."""
    query = update(Job).where(Job.id == job.id, Job.status.in_(("PENDING", "RUNNING")))
    if lease:
        query = query.where(Job.attempts == job.attempts)
    return await s.scalar(
        query.values(status=status, error=error, finished_at=func.clock_timestamp(), updated_at=func.clock_timestamp())
        .returning(Job)
    )


async def back_to_pending(s: AsyncSession, job: Job, error: str) -> Job | None:
    """After an error a retry may fix: the job waits for its retried message."""
    return await s.scalar(
        update(Job).where(Job.id == job.id, Job.attempts == job.attempts, Job.status == "RUNNING")
        .values(status="PENDING", error=error, enqueued_at=func.now(), updated_at=func.clock_timestamp())
        .returning(Job)
    )


async def orphans(s: AsyncSession, stale_seconds: int, limit: int = 100) -> list[uuid.UUID]:
    """Jobs to send again: RUNNING ones whose worker stopped beating, PENDING ones waiting too
    long (their message may be lost). Marks them re-sent now; the caller commits, then sends."""
    stale = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, stale_seconds)
    ids = list(await s.scalars(
        select(Job.id)
        .where(
            ((Job.status == "RUNNING") & (Job.heartbeat_at < stale) & (func.coalesce(Job.enqueued_at, Job.created_at) < stale))
            | ((Job.status == "PENDING") & (func.coalesce(Job.enqueued_at, Job.created_at) < stale))
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    ))
    if ids:
        await s.execute(update(Job).where(Job.id.in_(ids)).values(enqueued_at=func.now()))
    return ids
