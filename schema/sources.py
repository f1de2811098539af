"""Sources: the channels data arrives through."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from app.db import models
from app.services import sources as service
from app.services.filters import MAX_LIST
from schema import plan
from schema.context import Info
from schema.errors import UserError
from schema.filters import DateTimeFilter, IDFilter, SortDirection, StringFilter
from schema.mutations import Payload, run_mutation
from schema.node import Node, global_id, node_loader, uuid_of
from schema.pagination import Connection, page_args
from schema.workspaces import DeletePayload, deleted


@strawberry.enum
class SourceProvider(Enum):
    API = "API"
    FILE = "FILE"
    IMAP = "IMAP"
    GOOGLE_WORKSPACE = "GOOGLE_WORKSPACE"
    MICROSOFT_365 = "MICROSOFT_365"


@strawberry.enum
class SourceStatus(Enum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    ERROR = "ERROR"


@strawberry.type(description="A channel that data arrives through. Credentials are stored encrypted and never returned.")
class Source(Node):
    id: strawberry.ID
    name: str = strawberry.field(description="Stable machine name, unique in the workspace, immutable.")
    display_name: str
    provider: SourceProvider
    status: SourceStatus
    config: JSON
    has_credentials: bool
    created_at: datetime
    updated_at: datetime
    last_sync_started_at: datetime | None
    last_sync_finished_at: datetime | None
    last_sync_status_message: str | None

    @classmethod
    def of(cls, row: models.Source) -> Source:
        return cls(
            id=global_id("Source", row.id), name=row.name, display_name=row.display_name,
            provider=SourceProvider(row.provider), status=SourceStatus(row.status), config=row.config,
            has_credentials=row.credentials_encrypted is not None, created_at=row.created_at,
            updated_at=row.updated_at, last_sync_started_at=row.last_sync_started_at,
            last_sync_finished_at=row.last_sync_finished_at, last_sync_status_message=row.last_sync_status_message,
        )


load_source = node_loader("Source", service.sources_by_id, Source.of)
plan.declare(Source, models.Source.__table__, scope=service.READ,
             has_credentials=plan.Computed(lambda row, scope: row.c.credentials_encrypted.is_not(None)))


@strawberry.input(description=f"Every list in a filter holds at most {MAX_LIST:,} values.")
class SourceFilter:
    and_: list[SourceFilter] | None = strawberry.field(name="and", default=None)
    or_: list[SourceFilter] | None = strawberry.field(name="or", default=None)
    not_: SourceFilter | None = strawberry.field(name="not", default=None)
    id: IDFilter | None = None
    name: StringFilter | None = None
    display_name: StringFilter | None = None
    provider: list[SourceProvider] | None = None
    status: list[SourceStatus] | None = None
    created_at: DateTimeFilter | None = None
    updated_at: DateTimeFilter | None = None


@strawberry.enum
class SourceSortField(Enum):
    NAME = "NAME"
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"


@strawberry.input
class SourceOrder:
    field: SourceSortField
    direction: SortDirection = SortDirection.ASC


@strawberry.input
class CreateSourceInput:
    name: str = strawberry.field(description="A lower-case slug: letters, digits, - and _, starting with a letter, "
                                             "at most 63 characters (e.g. imap-acme).")
    display_name: str
    provider: SourceProvider
    config: JSON | None = None
    credentials: JSON | None = None


@strawberry.input
class UpdateSourceInput:
    display_name: str | None = None
    config: JSON | None = None
    credentials: JSON | None = None


@strawberry.type
class SourcePayload(Payload):
    source: Source | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, source: models.Source) -> SourcePayload:
        return cls(source=Source.of(source))


@strawberry.type
class SourceQueries:
    @strawberry.field
    async def sources(
        self, info: Info, filter: SourceFilter | None = None, order_by: list[SourceOrder] | None = None,
        first: int | None = None, after: str | None = None, last: int | None = None, before: str | None = None,
    ) -> Connection[Source]:
        async with info.context.db() as s:
            page = await service.list_sources(
                s, info.context.principal, page_args(first, after, last, before), where=filter, order=_order(order_by)
            )
        return Connection.of(page, Source.of)


def _order(order_by: list[SourceOrder] | None) -> list[tuple[str, bool]]:
    return [(o.field.value, o.direction == SortDirection.DESC) for o in order_by or []]


plan.declare_root("sources", Source, lambda p, a: service.sources_query(p, where=a.get("filter"), order=_order(a.get("order_by"))))


@strawberry.type
class SourceMutations:
    @strawberry.mutation
    async def create_source(self, info: Info, input: CreateSourceInput) -> SourcePayload:
        p, vault = info.context.principal, info.context.services.vault
        return await run_mutation(info, SourcePayload, lambda s: service.create_source(
            s, p, vault, name=input.name, display_name=input.display_name,
            provider=input.provider.value, config=input.config, credentials=input.credentials,
        ))

    @strawberry.mutation
    async def update_source(self, info: Info, id: strawberry.ID, input: UpdateSourceInput) -> SourcePayload:
        p, vault = info.context.principal, info.context.services.vault
        return await run_mutation(info, SourcePayload, lambda s: service.update_source(
            s, p, vault, uuid_of(id, "Source"), display_name=input.display_name,
            config=input.config, credentials=input.credentials,
        ))

    @strawberry.mutation
    async def delete_source(self, info: Info, id: strawberry.ID) -> DeletePayload:
        p = info.context.principal
        return await run_mutation(info, DeletePayload, lambda s: deleted(
            "Source", service.delete_source(s, p, uuid_of(id, "Source"))
        ))

    @strawberry.mutation
    async def pause_source(self, info: Info, id: strawberry.ID) -> SourcePayload:
        p = info.context.principal
        return await run_mutation(info, SourcePayload, lambda s: service.set_paused(s, p, uuid_of(id, "Source"), True))

    @strawberry.mutation
    async def resume_source(self, info: Info, id: strawberry.ID) -> SourcePayload:
        p = info.context.principal
        return await run_mutation(info, SourcePayload, lambda s: service.set_paused(s, p, uuid_of(id, "Source"), False))
