"""Imports: starting them (validated synchronously, payload stored) and importing one batch.

The target registry maps each ImportTarget to the domain service function that upserts a batch
of raw items by (source, remoteId) and answers one `ItemOutcome` per item: the same function a
mutation of that domain ends in.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import httpx
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

from app import outbound
from app.db.models import Job, JobPayloadChunk, Source
from app.services.adapters import (
    ADAPTERS,
    BadItem,
    Entry,
    PayloadError,
    check_columns,
    csv_entries,
    csv_header,
    csv_rows,
    json_entry,
    json_items,
    parse_mapping,
)
from app.services import activity, contacts, documents, ids, jobs, object_types, records
from app.services.access import Principal
from app.services.batch import ItemOutcome, json_text
from app.services.errors import Invalid, Problem, not_found

log = logging.getLogger("ctxgraph.imports")

CHUNK_BYTES = 1024 * 1024
SYNC_FETCH_SECONDS = 600.0
ImportFn = Callable[..., Awaitable[list[ItemOutcome]]]


@dataclass(frozen=True)
class Steps:
    """An import in two steps: `check(s, p, prepared, source_id)` reads the workspace (locking
    the rows written over), `write(s, p, checked)` writes. `keys(prepared)` names what a batch
    reads and writes, `checked.keys` what else its write changes: a batch whose keys the write
    before does not change is checked while that one is written."""
    keys: Callable[[list[Any]], set[str]]
    check: Callable[..., Awaitable[Any]]
    write: ImportFn


@dataclass(frozen=True)
class Target:
    """The scope an import into the target needs, and the domain function that upserts a batch.

    With `prepare(items, start_index)`, the work on a batch that needs no database (parsing,
    validation) is split off: the worker does it a batch ahead, while PostgreSQL writes the
    batch before, and `function` takes its result instead of the raw items. With `steps`, the
    worker checks a batch while the one before is written (see Steps). `fields` are the keys
    an item may have (see `check_columns`), of which a CSV must have one.
    """
    scope: str
    function: ImportFn
    fields: tuple[str, ...]
    needs_object_type: bool = False
    prepare: Callable[[list[dict[str, Any]], int], list[Any]] | None = None
    steps: Steps | None = None


TARGETS: dict[str, Target] = {
    "CONTACTS": Target(
        jobs.TARGET_SCOPES["CONTACTS"], contacts.write_import,
        ("fullName", "email", "id", "remoteId", "emails", "phone", "title", "company", "city", "state", "contactType",
         "status", "tags", "customFields.*", "ownerId", "deleted"),
        prepare=contacts.import_drafts, steps=Steps(contacts.import_keys, contacts.check_import, contacts.write_checked),
    ),
    "ACTIVITY": Target(jobs.TARGET_SCOPES["ACTIVITY"], activity.import_activity, (
        "contactId", "address", "type", "resourceId", "occurredAt", "summary", "participants", "metadata.*")),
    "RECORDS": Target(jobs.TARGET_SCOPES["RECORDS"], records.import_records,
                      ("id", "remoteId", "name", "displayName", "fields", "deleted"), needs_object_type=True),
    "DOCUMENTS": Target(jobs.TARGET_SCOPES["DOCUMENTS"], documents.import_documents, (
        "id", "title", "content", "url", "contentType", "tags", "metadata.*", "deleted")),
}
"Rebuilds derived relationship edges and intelligence from activity."
RECOMPUTE_SCOPE = jobs.KIND_SCOPES["RECOMPUTE_RELATIONSHIPS"][0]


class Readable(Protocol):
    async def read(self, size: int = -1) -> bytes: ...


def _invalid(message: str, field: Sequence[str], code: str = "INVALID") -> Invalid:
    return Invalid(Problem(message, code, tuple(field)))


async def _source_id(s: AsyncSession, ws: uuid.UUID, global_id: str | None, field: tuple[str, ...]) -> uuid.UUID | None:
    if global_id is None:
        return None
    source_id = ids.decode_as(global_id, "Source")
    found = await s.scalar(select(Source.id).where(Source.workspace_id == ws, Source.id == source_id)) if source_id else None
    if found is None:
        raise not_found("Source", field)
    return found


async def _object_type_id(s: AsyncSession, p: Principal, global_id: str | None) -> uuid.UUID | None:
    if global_id is None:
        return None
    object_type_id = ids.decode_as(global_id, "ObjectType")
    if object_type_id is None or object_type_id not in await object_types.object_types_by_id(s, p, [object_type_id]):
        raise not_found("Object type", ("input", "objectTypeId"))
    return object_type_id


def check_target(p: Principal, target: str, adapter: str, object_type_id: str | None) -> Target:
    """The rules that need no database: target known and available, adapter fits, scopes held."""
    p.require(jobs.WRITE)
    spec = TARGETS.get(target)
    if spec is None:
        raise _invalid(f"Unknown import target {target}", ("input", "target"))
    p.require(spec.scope)
    if adapter not in ADAPTERS:
        raise _invalid(f"Unknown adapter {adapter}", ("input", "adapter"))
    if adapter == "CONTENT_HUB" and target != "DOCUMENTS":
        raise _invalid("CONTENT_HUB imports documents only: use target DOCUMENTS", ("input", "adapter"))
    if spec.needs_object_type and object_type_id is None:
        raise _invalid("objectTypeId is required to import records", ("input", "objectTypeId"), "REQUIRED")
    if not spec.needs_object_type and object_type_id is not None:
        raise _invalid(f"objectTypeId applies to RECORDS only, not {target}", ("input", "objectTypeId"))
    return spec


async def start_import(
    s: AsyncSession, p: Principal, *, target: str, adapter: str, object_type_id: str | None = None,
    source_id: str | None = None, data: Any = None, file: Readable | None = None, field_mapping: Any = None,
) -> Job:
    """Validate, store the job and its payload; its message goes once committed."""
    check_target(p, target, adapter, object_type_id)
    ws = p.require(jobs.WRITE)
    if data is None and file is None:
        raise _invalid("Give the payload as data or as a file", ("input", "data"), "REQUIRED")
    if data is not None and file is not None:
        raise _invalid("Give either data or a file, not both", ("input", "file"))
    if field_mapping is not None and adapter != "CSV":
        raise _invalid("fieldMapping applies to CSV imports only", ("input", "fieldMapping"))
    job = jobs.new_job(
        p, ws, "IMPORT", target=target, adapter=adapter, object_type_id=await _object_type_id(s, p, object_type_id),
        source_id=await _source_id(s, ws, source_id, ("input", "sourceId")),
        params={"fieldMapping": field_mapping} if field_mapping is not None else {},
        payload_format="csv" if adapter == "CSV" else "json",
    )
    job.payload_job_id = job.id
    s.add(job)
    await s.flush()
    try:
        job.total = await store_payload(s, job, _chunks_of(data, file))
    except PayloadError as exc:
        given = ("input", "file" if file is not None else "data")
        raise _invalid(exc.message, given if exc.field in (("input", "data"), ("input", "file")) else exc.field) from None
    job.params = {**job.params, "payload_total": job.total} if job.total is not None else job.params
    await s.flush()
    await s.refresh(job)
    return jobs.started(s, job)


async def _chunks_of(data: Any, file: Readable | None) -> AsyncIterator[bytes]:
    if file is not None:
        while chunk := await file.read(CHUNK_BYTES):
            yield chunk
        return
    raw = (data if isinstance(data, str) else json_text(data)).encode()
    for start in range(0, len(raw), CHUNK_BYTES):
        yield raw[start:start + CHUNK_BYTES]


async def store_payload(s: AsyncSession, job: Job, chunks: AsyncIterator[bytes]) -> int | None:
    """Store the payload in chunks after checking it as a whole; the item count when known
    without reading it all (JSON: yes; CSV: counted by the worker)."""
    seq = 0
    if job.adapter == "CSV":
        first = True
        async for chunk in chunks:
            if first:
                await _check_csv_header(s, job, chunk)
                first = False
            await s.execute(insert(JobPayloadChunk).values(job_id=job.id, workspace_id=job.workspace_id, seq=seq, data=chunk))
            seq += 1
        if first:
            raise PayloadError("The CSV is empty", ("input", "file"))
        return None
    with tempfile.SpooledTemporaryFile(max_size=CHUNK_BYTES * 8) as spool:  # a large payload goes to disk
        blank = True
        async for chunk in chunks:
            blank = blank and not chunk.strip()
            spool.write(chunk)
            await s.execute(insert(JobPayloadChunk).values(job_id=job.id, workspace_id=job.workspace_id, seq=seq, data=chunk))
            seq += 1
        if blank:
            raise PayloadError("The payload is empty", ("input", "data"))
        spool.seek(0)
        # reads it all, so a payload that fails is refused; in a thread: 100 MB of JSON is seconds of parsing
        return await asyncio.to_thread(lambda: sum(1 for _ in json_items(job.adapter or "", spool)))


async def _check_csv_header(s: AsyncSession, job: Job, first_chunk: bytes) -> None:
    """The header row against the mapping, and against the fields of the target."""
    header = csv_header(first_chunk)
    mapping = job.params.get("fieldMapping")
    columns = parse_mapping(mapping, header)
    check_columns(columns, header, mapping is not None, job.target or "", await _item_fields(s, job))


async def _item_fields(s: AsyncSession, job: Job) -> tuple[str, ...]:
    """The keys an item of the job's target may have; a record's custom fields by their path
    (fields.openedAt)."""
    fields = TARGETS[job.target or ""].fields
    if job.object_type_id is None:
        return fields
    ot = await object_types.get_object_type(s, job.workspace_id, job.object_type_id)
    return (*fields, *(f"fields.{name}" for name in object_types.definitions(ot)))


# ---------------------------------------------------------------- sync and recompute jobs

async def sync_source(s: AsyncSession, p: Principal, source_id: uuid.UUID | None) -> Job:
    """A SYNC_SOURCE job re-importing a FILE source's file with its import spec."""
    ws = p.require(jobs.WRITE)
    p.require("sources:write")
    source = await s.scalar(select(Source).where(Source.workspace_id == ws, Source.id == source_id)) if source_id else None
    if source is None:
        raise not_found("Source")
    if source.status == "PAUSED":
        raise _invalid("The source is paused: resume it first", ("id",), "CONFLICT")
    if source.provider == "API":
        raise _invalid("API sources are push-only: send their data with startImport or the mutations", ("id",))
    if source.provider != "FILE":
        raise _invalid(f"{source.provider} sources have no connector on this server yet", ("id",))
    config = source.config or {}
    spec = config.get("import") if isinstance(config.get("import"), dict) else None
    if not isinstance(config.get("file"), str) or not config["file"].strip() or spec is None:
        raise _invalid(
            "A FILE source needs config {file: path or http(s) URL, import: {target, adapter, fieldMapping?, objectTypeId?}}",
            ("id",),
        )
    target, adapter = str(spec.get("target", "")), str(spec.get("adapter", ""))
    object_type = spec.get("objectTypeId")
    check_target(p, target, adapter, object_type)
    job = jobs.new_job(
        p, ws, "SYNC_SOURCE", source_id=source.id, target=target, adapter=adapter,
        object_type_id=await _object_type_id(s, p, object_type),
        params={"file": config["file"].strip(), "fieldMapping": spec.get("fieldMapping")},
        payload_format="csv" if adapter == "CSV" else "json",
    )
    job.payload_job_id = job.id
    s.add(job)
    await s.flush()
    await s.refresh(job)
    return jobs.started(s, job)


async def recompute_relationships(s: AsyncSession, p: Principal) -> Job:
    ws = p.require(jobs.WRITE)
    p.require(RECOMPUTE_SCOPE)
    job = jobs.new_job(p, ws, "RECOMPUTE_RELATIONSHIPS")
    s.add(job)
    await s.flush()
    await s.refresh(job)
    return jobs.started(s, job)


async def run_recompute(s: AsyncSession, p: Principal) -> dict[str, Any]:
    return dict(await activity.recompute_relationships(s, p))


def open_sync_file(
    location: str, root: Path, allow_private: bool = False, max_bytes: int = 100 * 1024 * 1024,
    deadline_seconds: float = SYNC_FETCH_SECONDS,
) -> Iterator[bytes]:
    """The bytes of a sync source's file, in chunks of CHUNK_BYTES: an http(s) URL (public
    addresses only, unless `allow_private`), or a path under `root`. A file over `max_bytes`, or a
    download slower than `deadline_seconds` in all (a server can drip bytes within every read
    timeout), fails the sync with the reason."""
    too_large = PayloadError(f"The file is larger than {max_bytes} bytes", ("config", "file"))
    if location.startswith(("http://", "https://")):
        deadline = time.monotonic() + deadline_seconds
        try:
            with outbound.client(allow_private, follow_redirects=True, timeout=60) as client, \
                    client.stream("GET", location) as response:
                if response.status_code >= 400:
                    raise PayloadError(f"HTTP {response.status_code} from {location}", ("config", "file"))
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise too_large
                buffered, seen = bytearray(), 0
                for read in response.iter_bytes():  # as it arrives, so the deadline is checked per read
                    seen += len(read)
                    if seen > max_bytes:
                        raise too_large
                    if time.monotonic() > deadline:
                        raise PayloadError(f"Fetching {location} took longer than {deadline_seconds:g} s", ("config", "file"))
                    buffered += read
                    while len(buffered) >= CHUNK_BYTES:
                        yield bytes(buffered[:CHUNK_BYTES])
                        del buffered[:CHUNK_BYTES]
                if buffered:
                    yield bytes(buffered)
        except httpx.HTTPError as exc:
            raise PayloadError(f"Could not fetch {location}: {exc}", ("config", "file")) from None
        return
    path = (root / location).resolve()
    if not path.is_relative_to(root.resolve()):
        raise PayloadError("The file must be inside the workspace's own files folder", ("config", "file"))
    if path.is_file() and path.stat().st_size > max_bytes:
        raise too_large
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


# ---------------------------------------------------------------- the worker's side

def job_principal(job: Job, scope: str) -> Principal:
    """Who a job acts as: its starter, with just the scopes its work needs."""
    return Principal(
        user_id=job.user_id, api_key_id=job.api_key_id, workspace_id=job.workspace_id, member_id=job.created_by_id,
        scopes=frozenset({scope, scope.replace(":write", ":read"), jobs.READ}),
    )


async def payload_chunks(s: AsyncSession, job: Job) -> AsyncIterator[bytes]:
    """The stored payload, a chunk per statement."""
    seq = 0
    while True:
        chunk = await s.scalar(select(JobPayloadChunk.data).where(
            JobPayloadChunk.workspace_id == job.workspace_id, JobPayloadChunk.job_id == job.payload_job_id,
            JobPayloadChunk.seq == seq,
        ))
        if chunk is None:
            return
        yield chunk
        seq += 1


async def has_payload(s: AsyncSession, job: Job) -> bool:
    return bool(await s.scalar(select(func.count()).select_from(JobPayloadChunk).where(
        JobPayloadChunk.workspace_id == job.workspace_id, JobPayloadChunk.job_id == job.payload_job_id
    )))


def selection(job: Job) -> tuple[frozenset[int], int | None]:
    """The payload indexes this job imports: explicit ones, then all from rest_from on."""
    return frozenset(job.params.get("indexes") or []), job.params.get("rest_from", 0)


async def spool_payload(s: AsyncSession, job: Job, spool: IO[bytes]) -> None:
    """Copy the stored payload to `spool` (a temporary file): parsed from there, a large CSV is
    never held in memory whole."""
    async for chunk in payload_chunks(s, job):
        spool.write(chunk)
    spool.seek(0)


def entries(job: Job, spool: IO[bytes]) -> Iterator[tuple[int, Entry]]:
    """(payload index, entry) of every item this job imports, in order, read from the spool."""
    chosen, rest_from = selection(job)

    def wanted(index: int) -> bool:
        return index in chosen or (rest_from is not None and index >= rest_from)

    spool.seek(0)
    if job.payload_format == "csv":
        parsed = csv_entries(csv_rows(iter(lambda: spool.read(CHUNK_BYTES), b"")), job.params.get("fieldMapping"))
        return ((i, e) for i, e in enumerate(parsed) if wanted(i))
    items = json_items(job.adapter or "", spool)
    return ((i, json_entry(job.adapter or "", raw)) for i, raw in enumerate(items) if wanted(i))


def _transient(exc: BaseException) -> bool:
    """Errors a later attempt may not meet: connections lost, statement timeouts, deadlocks."""
    return isinstance(exc, (OperationalError, InterfaceError))


async def _call(spec: Target, s: AsyncSession, p: Principal, job: Job, items: list[Any]) -> list[ItemOutcome]:
    if spec.prepare is not None:
        return await spec.function(s, p, items, job.source_id)
    if spec.needs_object_type:
        return await spec.function(s, p, job.object_type_id, items, job.source_id, 0)
    return await spec.function(s, p, items, job.source_id, 0)


@dataclass
class Batch:
    """A batch of entries, ready to import: its bad items already failed, and what the target
    function takes for the good ones."""
    entries: list[tuple[int, Entry]]
    failed: dict[int, ItemOutcome]
    good: list[tuple[int, dict[str, Any]]]
    prepared: list[Any]
    "What it reads and writes, for a target with steps."
    keys: set[str] = field(default_factory=set)


"Items prepared between two yields to the event loop: a statement's result waits at most that long."
PREPARE_SLICE = 50


async def prepare_batch(job: Job, entries: list[tuple[int, Entry]]) -> Batch:
    """The part of a batch's import that needs no database. It yields to the event loop every
    PREPARE_SLICE items: run as a task beside the write of the batch before, it fills the time
    that write waits for PostgreSQL."""
    failed: dict[int, ItemOutcome] = {}
    good: list[tuple[int, dict[str, Any]]] = []
    for index, entry in entries:
        if isinstance(entry, BadItem):
            failed[index] = ItemOutcome(index, "FAILED", entry.remote_id, None, entry.error)
        else:
            good.append((index, entry))
    items = [item for _, item in good]
    spec = TARGETS[job.target or ""]
    if spec.prepare is None:
        return Batch(entries, failed, good, items)
    prepared: list[Any] = []
    for start in range(0, len(items), PREPARE_SLICE):
        await asyncio.sleep(0)
        prepared += spec.prepare(items[start:start + PREPARE_SLICE], start)
    return Batch(entries, failed, good, prepared, spec.steps.keys(prepared) if spec.steps is not None else set())


async def import_batch(s: AsyncSession, job: Job, batch: Batch) -> list[ItemOutcome]:
    """Import one batch in the caller's transaction; one outcome per entry, in order, each with
    its payload index. An item the target function cannot take fails alone."""
    spec = TARGETS[job.target or ""]
    if not batch.good:
        return [batch.failed[index] for index, _ in batch.entries]
    try:
        async with s.begin_nested():
            results = await _call(spec, s, job_principal(job, spec.scope), job, batch.prepared)
    except Exception as exc:  # noqa: BLE001 - isolate the item that breaks the batch
        if _transient(exc):
            raise
        return await _one_by_one(s, job, batch, exc)
    return _in_order(batch, results)


@dataclass
class Checked:
    """A batch after the first of its target's `steps`: what the second takes (`checked`, within
    `savepoint`), or its `outcomes` already (a target without steps, or a batch that failed as
    a whole and was imported one item at a time)."""
    batch: Batch
    outcomes: list[ItemOutcome] | None = None
    checked: Any = None
    savepoint: AsyncSessionTransaction | None = None


async def check_batch(s: AsyncSession, job: Job, batch: Batch) -> Checked:
    """The first step of `import_batch`, in the caller's transaction."""
    spec = TARGETS[job.target or ""]
    if spec.steps is None or not batch.good:
        return Checked(batch, await import_batch(s, job, batch))
    savepoint = await s.begin_nested()
    try:
        checked = await spec.steps.check(s, job_principal(job, spec.scope), batch.prepared, job.source_id)
    except Exception as exc:  # noqa: BLE001 - isolate the item that breaks the batch
        if _transient(exc):
            raise
        await savepoint.rollback()
        return Checked(batch, await _one_by_one(s, job, batch, exc))
    return Checked(batch, checked=checked, savepoint=savepoint)


async def write_batch(s: AsyncSession, job: Job, checked: Checked) -> list[ItemOutcome]:
    """The second step of `import_batch`: the outcomes, as `import_batch` gives them."""
    if checked.outcomes is not None:
        return checked.outcomes
    spec = TARGETS[job.target or ""]
    assert spec.steps is not None and checked.savepoint is not None
    try:
        results = await spec.steps.write(s, job_principal(job, spec.scope), checked.checked)
        await checked.savepoint.commit()
    except Exception as exc:  # noqa: BLE001 - isolate the item that breaks the batch
        if _transient(exc):
            raise
        await checked.savepoint.rollback()
        return await _one_by_one(s, job, checked.batch, exc)
    return _in_order(checked.batch, results)


def independent(job: Job, checked: Checked, batch: Batch) -> bool:
    """Whether `batch` reads the same before and after `checked` is written: then it may be
    checked meanwhile."""
    if TARGETS[job.target or ""].steps is None or checked.checked is None:
        return False
    return batch.keys.isdisjoint(checked.batch.keys) and batch.keys.isdisjoint(checked.checked.keys)


async def _one_by_one(s: AsyncSession, job: Job, batch: Batch, error: Exception) -> list[ItemOutcome]:
    """A batch that failed as a whole (`error`), imported one item at a time: the item that
    breaks it fails alone."""
    log.warning("a batch of job %s failed as a whole; importing its items one by one", job.id, exc_info=error)
    spec = TARGETS[job.target or ""]
    p = job_principal(job, spec.scope)
    outcomes = dict(batch.failed)
    for index, item in batch.good:
        try:
            async with s.begin_nested():
                one = spec.prepare([item], 0) if spec.prepare is not None else [item]  # afresh: a write changes drafts
                _collect(outcomes, [(index, item)], await _call(spec, s, p, job, one))
        except Exception as item_exc:  # noqa: BLE001
            if _transient(item_exc):
                raise
            log.exception("item %d of job %s failed", index, job.id)
            remote = item.get("id") if isinstance(item.get("id"), str) else None
            outcomes[index] = ItemOutcome(index, "FAILED", remote, None, "Internal error while importing the item")
    return [outcomes[index] for index, _ in batch.entries]


def _in_order(batch: Batch, results: list[ItemOutcome]) -> list[ItemOutcome]:
    outcomes = dict(batch.failed)
    _collect(outcomes, batch.good, results)
    return [outcomes[index] for index, _ in batch.entries]


def _collect(outcomes: dict[int, ItemOutcome], good: list[tuple[int, dict[str, Any]]], results: list[ItemOutcome]) -> None:
    """Results come in item order; their index (relative to the batch) is mapped to the payload's."""
    for position, result in enumerate(results):
        at = result.index if 0 <= result.index < len(good) else position
        index = good[at][0]
        outcomes[index] = ItemOutcome(index, result.outcome, result.remote_id, result.node, result.error)
    for index, item in good:
        if index not in outcomes:
            outcomes[index] = ItemOutcome(index, "FAILED", None, None, "The import gave no outcome for the item")


_INSERT_ITEMS = text(
    "INSERT INTO job_item_batches (job_id, workspace_id, first_idx, last_idx, statuses, items)"
    " VALUES (:job, :ws, :first, :last, :statuses, CAST(:items AS jsonb)) ON CONFLICT (job_id, first_idx) DO NOTHING"
)


async def save_items(s: AsyncSession, job: Job, outcomes: list[ItemOutcome]) -> None:
    """A batch's outcomes in one row (see JobItemBatch), in payload order as `entries` gives them."""
    if not outcomes:
        return
    items = []
    for o in outcomes:
        item: dict[str, Any] = {"i": o.index, "s": jobs.ITEM_STATUS[o.outcome], "o": o.outcome}
        if o.remote_id is not None:
            item["r"] = o.remote_id.replace("\x00", "\ufffd")  # PostgreSQL text holds no NUL
        if o.node:
            item["t"], item["n"] = o.node
        if o.error is not None:
            item["e"] = o.error.replace("\x00", "\ufffd")
        items.append(item)
    await s.execute(_INSERT_ITEMS, {
        "job": job.id, "ws": job.workspace_id, "first": outcomes[0].index, "last": outcomes[-1].index,
        "statuses": sorted({item["s"] for item in items}), "items": json_text(items),
    })


def tally(job: Job, outcomes: list[ItemOutcome]) -> dict[str, Any]:
    """The job's new counters after `outcomes`."""
    counts = {key: int(job.counts.get(key, 0)) for key in jobs.COUNT_KEYS}
    successful, failed, skipped = job.successful, job.failed, job.skipped
    for o in outcomes:
        counts[o.outcome.lower()] += 1
        status = jobs.ITEM_STATUS[o.outcome]
        successful += status == "SUCCESS"
        failed += status == "FAILED"
        skipped += status == "SKIPPED"
    return {
        "counts": counts, "successful": successful, "failed": failed, "skipped": skipped,
        "processed": successful + failed + skipped, "checkpoint": job.checkpoint + len(outcomes),
    }


async def mark_sync(s: AsyncSession, job: Job, *, started: bool, message: str | None = None) -> None:
    """Keep a synced source's lastSync* fields current."""
    if job.kind != "SYNC_SOURCE" or job.source_id is None:
        return
    values: dict[str, Any] = {"last_sync_status_message": message}
    values["last_sync_started_at" if started else "last_sync_finished_at"] = func.now()
    await s.execute(update(Source).where(Source.workspace_id == job.workspace_id, Source.id == job.source_id).values(**values))
