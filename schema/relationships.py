"""Relationships: weighted edges between any two nodes.

A node type lists its edges with `node_relationships` (Contact.relationships, and
Record.relationships in one line the same way); endpoints resolve through the node loaders of
`schema.node`, batched per type, so any node type registered there works as an endpoint.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.scalars import JSON

from app.db import models
from app.services import relationships as service
from app.services.access import Principal
from app.services.filters import MAX_LIST
from schema.context import Info
from schema import plan
from schema.errors import UserError
from schema.filters import DateTimeFilter, FloatFilter, IDFilter, SortDirection, StringFilter
from schema.mutations import Payload, run_mutation
from schema.node import Node, global_id, load_node, node_loader, uuid_of
from schema.pagination import Connection, page_args
from schema.plan.encode import NotPlannable
from schema.workspaces import DeletePayload, deleted


@strawberry.enum
class Direction(Enum):
    OUTGOING = "OUTGOING"
    INCOMING = "INCOMING"
    BOTH = "BOTH"


@strawberry.type(description="A typed, weighted edge between any two nodes (contact, record, document).")
class Relationship(Node):
    id: strawberry.ID
    kind: str = strawberry.field(
        description="shared_thread, shared_calendar_event, same_company, same_domain, or any user kind such as works_with."
    )
    weight: float = strawberry.field(
        description="0..1: frequency log(count+1)/log(50) combined with recency decay (half-life 90 days); manual edges may set it."
    )
    shared_thread_count: int
    shared_calendar_count: int
    last_seen_at: datetime | None
    is_active: bool
    metadata: JSON
    created_at: datetime
    _source: strawberry.Private[tuple[str, uuid.UUID]]
    _target: strawberry.Private[tuple[str, uuid.UUID]]
    _owner: strawberry.Private[tuple[str, uuid.UUID] | None]

    @strawberry.field
    async def source(self, info: Info) -> Node:
        return await load_node(info, *self._source)

    @strawberry.field
    async def target(self, info: Info) -> Node:
        return await load_node(info, *self._target)

    @strawberry.field(description="The end that is not the node whose relationships were listed (the target elsewhere).")
    async def other(self, info: Info) -> Node:
        return await load_node(info, *(self._source if self._owner == self._target else self._target))

    @classmethod
    def of(cls, row: models.Relationship, owner: tuple[str, uuid.UUID] | None = None, now: datetime | None = None) -> Relationship:
        return cls(
            id=global_id("Relationship", row.id), kind=row.kind, weight=service.weight_of(row, now or datetime.now(UTC)),
            shared_thread_count=row.shared_thread_count, shared_calendar_count=row.shared_calendar_count,
            last_seen_at=row.last_seen_at, is_active=row.is_active, metadata=row.metadata_, created_at=row.created_at,
            _source=(row.source_type, row.source_id), _target=(row.target_type, row.target_id), _owner=owner,
        )


node_loader("Relationship", service.relationships_by_id, Relationship.of)


plan.declare(
    Relationship, models.Relationship.__table__, scope=service.READ,
    weight=plan.Computed(lambda row, scope: service.weight_sql(row.c)),
    source=plan.Reference(lambda row, scope: row.c.source_id, type_of=lambda row, scope: row.c.source_type,
                          types=service.endpoint_types),
    target=plan.Reference(lambda row, scope: row.c.target_id, type_of=lambda row, scope: row.c.target_type,
                          types=service.endpoint_types),
    other=plan.Reference(lambda row, scope: service.other_end(row.c, scope.owner)[1],
                         type_of=lambda row, scope: service.other_end(row.c, scope.owner)[0], types=service.endpoint_types),
)
plan.declare_root("relationships", Relationship, lambda p, a: service.relationships_query(
    p, where=a.get("filter"), order=[(o.field.value, o.direction != SortDirection.ASC) for o in a.get("order_by") or []] or None))


def planned_relationships(node_type: str) -> plan.Children:
    """A node's relationships field, planned: the stored kinds (virtual ones are computed)."""
    def rows(row: Any, scope: plan.Scope, a: dict[str, Any]) -> Any:
        kinds = a.get("kinds")
        if kinds and set(kinds) & service.VIRTUAL:
            raise NotPlannable("computed relationship kinds")
        direction = (a.get("direction") or Direction.BOTH).value
        return service.stored_edges(scope.workspace, node_type, row.c.id, direction, kinds)

    return plan.Children(rows)


async def node_relationships(
    info: Info, node_type: str, node_id: uuid.UUID, direction: Direction, kinds: list[str] | None,
    first: int | None, after: str | None,
) -> Connection[Relationship]:
    """A node's edges, oldest first. First pages of many nodes load in one statement."""
    args = page_args(first, after, None, None)
    kinds_key = tuple(kinds) if kinds else None
    loaders = info.context.loaders
    if after is None:
        page = await loaders.load(service.first_relationship_pages, (node_type, node_id, direction.value, kinds_key, args.size))
    else:
        async with info.context.db() as s:
            page = await service.node_relationships(
                s, info.context.principal, node_type, node_id, args, direction=direction.value, kinds=kinds,
            )
    page.count = lambda: loaders.load(service.count_relationships, (node_type, node_id, direction.value, kinds_key))
    owner, now = (node_type, node_id), datetime.now(UTC)
    return Connection.of(page, lambda r: Relationship.of(r, owner, now))


@strawberry.input(description=f"Every list in a filter holds at most {MAX_LIST:,} values.")
class RelationshipFilter:
    kind: StringFilter | None = None
    node_id: IDFilter | None = strawberry.field(default=None, description="Either end is this node.")
    weight: FloatFilter | None = None
    is_active: bool | None = None
    last_seen_at: DateTimeFilter | None = None


@strawberry.enum
class RelationshipSortField(Enum):
    WEIGHT = "WEIGHT"
    CREATED_AT = "CREATED_AT"
    LAST_SEEN_AT = "LAST_SEEN_AT"


@strawberry.input
class RelationshipOrder:
    field: RelationshipSortField
    direction: SortDirection | None = SortDirection.DESC


@strawberry.input
class CreateRelationshipInput:
    source_id: strawberry.ID
    target_id: strawberry.ID
    kind: str
    weight: float | None = None
    metadata: JSON | None = None


@strawberry.input
class UpdateRelationshipInput:
    kind: str | None = None
    weight: float | None = None
    is_active: bool | None = None
    metadata: JSON | None = None


@strawberry.type
class RelationshipPayload(Payload):
    relationship: Relationship | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, relationship: models.Relationship) -> RelationshipPayload:
        return cls(relationship=Relationship.of(relationship))


@strawberry.type
class RelationshipsPayload(Payload):
    relationships: list[Relationship] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, relationships: list[models.Relationship]) -> RelationshipsPayload:
        return cls(relationships=[Relationship.of(r) for r in relationships])


def _create_input(i: CreateRelationshipInput) -> dict[str, Any]:
    return {"sourceId": i.source_id, "targetId": i.target_id, "kind": i.kind, "weight": i.weight, "metadata": i.metadata}


@strawberry.type
class RelationshipQueries:
    @strawberry.field
    async def relationships(
        self, info: Info, filter: RelationshipFilter | None = None, order_by: list[RelationshipOrder] | None = None,
        first: int | None = None, after: str | None = None, last: int | None = None, before: str | None = None,
    ) -> Connection[Relationship]:
        order = [(o.field.value, o.direction != SortDirection.ASC) for o in order_by or []]
        async with info.context.db() as s:
            page = await service.list_relationships(
                s, info.context.principal, page_args(first, after, last, before), where=filter, order=order or None,
            )
        now = datetime.now(UTC)
        return Connection.of(page, lambda r: Relationship.of(r, None, now))


@strawberry.type
class RelationshipMutations:
    @strawberry.mutation
    async def create_relationship(self, info: Info, input: CreateRelationshipInput) -> RelationshipPayload:
        p = info.context.principal
        return await run_mutation(info, RelationshipPayload, lambda s: _created_one(s, p, input))

    @strawberry.mutation(description=f"All or nothing: any input's problem refuses them all, each reported under its index. At most {MAX_LIST:,} inputs.")
    async def create_relationships(self, info: Info, inputs: list[CreateRelationshipInput]) -> RelationshipsPayload:
        p = info.context.principal
        return await run_mutation(info, RelationshipsPayload, lambda s: service.create_relationships(
            s, p, [_create_input(i) for i in inputs], ("inputs",)
        ))

    @strawberry.mutation
    async def update_relationship(self, info: Info, id: strawberry.ID, input: UpdateRelationshipInput) -> RelationshipPayload:
        p = info.context.principal
        data = {"kind": input.kind, "weight": input.weight, "isActive": input.is_active, "metadata": input.metadata}
        return await run_mutation(info, RelationshipPayload, lambda s: service.update_relationship(
            s, p, uuid_of(id, "Relationship"), data
        ))

    @strawberry.mutation
    async def delete_relationship(self, info: Info, id: strawberry.ID) -> DeletePayload:
        p = info.context.principal
        return await run_mutation(info, DeletePayload, lambda s: deleted(
            "Relationship", service.delete_relationship(s, p, uuid_of(id, "Relationship"))
        ))


async def _created_one(s: AsyncSession, p: Principal, input: CreateRelationshipInput) -> models.Relationship:
    (row,) = await service.create_relationships(s, p, [_create_input(input)], ("input",))
    return row
