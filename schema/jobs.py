"""Jobs: imports, source syncs and recomputes running in the background, and their progress."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON

from app.db import models
from app.services import ids, imports
from app.services import jobs as service
from app.services.filters import MAX_LIST
from schema.context import Info
from schema.errors import UserError
from schema.filters import DateTimeFilter
from schema.mutations import Payload, run_mutation
from schema.node import Node, global_id, node_loader, resolve_node, uuid_of
from schema.pagination import Connection, page_args
from schema.sources import Source, load_source
from schema.workspaces import Member


@strawberry.enum
class JobKind(Enum):
    IMPORT = "IMPORT"
    SYNC_SOURCE = "SYNC_SOURCE"
    RECOMPUTE_RELATIONSHIPS = "RECOMPUTE_RELATIONSHIPS"
    EXPORT = "EXPORT"


@strawberry.enum
class JobStatus(Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@strawberry.enum
class JobItemStatus(Enum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


@strawberry.enum
class ImportTarget(Enum):
    CONTACTS = "CONTACTS"
    RECORDS = "RECORDS"
    DOCUMENTS = "DOCUMENTS"
    ACTIVITY = "ACTIVITY"


@strawberry.enum
class ImportAdapter(Enum):
    GENERIC_JSON = "GENERIC_JSON"
    CONTENT_HUB = "CONTENT_HUB"
    CSV = "CSV"


@strawberry.type
class JobProgress:
    total: int | None
    processed: int
    successful: int
    failed: int
    skipped: int


@strawberry.type(description="The outcome for one input item of a job.")
class JobItem:
    index: int = strawberry.field(description="The item's position in the job's payload (0-based).")
    remote_id: str | None
    status: JobItemStatus
    error: str | None
    _node: strawberry.Private[tuple[str, uuid.UUID] | None]

    @strawberry.field
    async def node(self, info: Info) -> Node | None:
        return await resolve_node(info, ids.encode(*self._node)) if self._node else None

    @classmethod
    def of(cls, row: models.JobItem) -> JobItem:
        node = (row.node_type, row.node_id) if row.node_type and row.node_id else None
        return cls(index=row.idx, remote_id=row.remote_id, status=JobItemStatus(row.status), error=row.error, _node=node)


@strawberry.type
class Job(Node):
    id: strawberry.ID
    kind: JobKind
    status: JobStatus
    progress: JobProgress
    created_at: datetime
    updated_at: datetime = strawberry.field(description="When the job last changed (progress or status).")
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None = strawberry.field(description="Why the job failed as a whole.")
    result: JSON | None = strawberry.field(description="Counts: created, updated, skipped, deleted, failed.")
    attempts: int = strawberry.field(description="Runs started, redeliveries after a crash included.")
    _uuid: strawberry.Private[uuid.UUID]
    _source_id: strawberry.Private[uuid.UUID | None]
    _created_by_id: strawberry.Private[uuid.UUID | None]

    @strawberry.field
    async def source(self, info: Info) -> Source | None:
        return await load_source(info, self._source_id) if self._source_id else None

    @strawberry.field
    async def created_by(self, info: Info) -> Member | None:
        return await resolve_node(info, global_id("Member", self._created_by_id)) if self._created_by_id else None

    @strawberry.field
    async def items(
        self, info: Info, status: JobItemStatus | None = None, first: int | None = None, after: str | None = None
    ) -> Connection[JobItem]:
        async with info.context.db() as s:
            page = await service.list_items(
                s, info.context.principal, self._uuid, page_args(first, after, None, None),
                status=status.value if status else None,
            )
        return Connection.of(page, JobItem.of)

    @classmethod
    def of(cls, row: models.Job) -> Job:
        return cls.of_snapshot(service.snapshot(row))

    @classmethod
    def of_snapshot(cls, snap: dict[str, Any]) -> Job:
        """From `app.services.jobs.snapshot` (what the job's pub/sub channel carries)."""

        def ts(value: str | None) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        job_id = uuid.UUID(snap["id"])
        return cls(
            id=global_id("Job", job_id), kind=JobKind(snap["kind"]), status=JobStatus(snap["status"]),
            progress=JobProgress(
                total=snap["total"], processed=snap["processed"], successful=snap["successful"],
                failed=snap["failed"], skipped=snap["skipped"],
            ),
            created_at=ts(snap["createdAt"]), updated_at=ts(snap["updatedAt"]),  # type: ignore[arg-type]
            started_at=ts(snap["startedAt"]), finished_at=ts(snap["finishedAt"]), error=snap["error"],
            result=snap["result"], attempts=snap["attempts"], _uuid=job_id,
            _source_id=uuid.UUID(snap["sourceId"]) if snap["sourceId"] else None,
            _created_by_id=uuid.UUID(snap["createdById"]) if snap["createdById"] else None,
        )


node_loader("Job", service.jobs_by_id, Job.of)


@strawberry.input(description=f"Every list in a filter holds at most {MAX_LIST:,} values.")
class JobFilter:
    status: list[JobStatus] | None = None
    kind: list[JobKind] | None = None
    created_at: DateTimeFilter | None = None


@strawberry.input
class StartImportInput:
    target: ImportTarget
    adapter: ImportAdapter
    object_type_id: strawberry.ID | None = strawberry.field(default=None, description="Required when target is RECORDS.")
    source_id: strawberry.ID | None = strawberry.field(
        default=None, description="Items are upserted by (source, remoteId): re-running an import never duplicates."
    )
    data: JSON | None = strawberry.field(default=None, description="Inline payload, e.g. {records: [...]} for GENERIC_JSON.")
    file: Upload | None = strawberry.field(default=None, description="Or a CSV / JSON file (multipart).")
    field_mapping: JSON | None = strawberry.field(
        default=None, description='CSV column -> field name; "field:type" types it (int, float, bool, json, list).'
    )


@strawberry.type
class JobPayload(Payload):
    job: Job | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, job: models.Job) -> JobPayload:
        return cls(job=Job.of(job))


@strawberry.type
class JobQueries:
    @strawberry.field(description="Newest first.")
    async def jobs(
        self, info: Info, filter: JobFilter | None = None,
        first: int | None = None, after: str | None = None, last: int | None = None, before: str | None = None,
    ) -> Connection[Job]:
        async with info.context.db() as s:
            page = await service.list_jobs(s, info.context.principal, page_args(first, after, last, before), where=filter)
        return Connection.of(page, Job.of)


@strawberry.type
class JobMutations:
    @strawberry.mutation(description="Validates synchronously, stores the payload, enqueues a worker job and returns at once.")
    async def start_import(self, info: Info, input: StartImportInput) -> JobPayload:
        p = info.context.principal
        return await run_mutation(info, JobPayload, lambda s: imports.start_import(
            s, p, target=input.target.value, adapter=input.adapter.value, object_type_id=input.object_type_id,
            source_id=input.source_id, data=input.data, file=input.file, field_mapping=input.field_mapping,
        ))

    @strawberry.mutation(description="Only PENDING or RUNNING jobs; others give a CONFLICT user error.")
    async def cancel_job(self, info: Info, id: strawberry.ID) -> JobPayload:
        p = info.context.principal
        return await run_mutation(info, JobPayload, lambda s: service.cancel_job(s, p, uuid_of(id, "Job")))

    @strawberry.mutation(description="A new job over the failed items of a finished one.")
    async def retry_job(self, info: Info, id: strawberry.ID) -> JobPayload:
        p = info.context.principal
        return await run_mutation(info, JobPayload, lambda s: service.retry_job(s, p, uuid_of(id, "Job")))

    @strawberry.mutation
    async def recompute_relationships(self, info: Info) -> JobPayload:
        p = info.context.principal
        return await run_mutation(info, JobPayload, lambda s: imports.recompute_relationships(s, p))

    @strawberry.mutation(description="Enqueues a SYNC_SOURCE job.")
    async def sync_source(self, info: Info, id: strawberry.ID) -> JobPayload:
        p = info.context.principal
        return await run_mutation(info, JobPayload, lambda s: imports.sync_source(s, p, uuid_of(id, "Source")))
