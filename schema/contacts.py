"""Contacts, their activity timeline and intelligence, and the contact graph."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.utils.str_converters import to_camel_case

from app.db import models
from app.services import activity as activity_service
from app.services import contacts as service
from app.services import intelligence, merge
from app.services import relationships as relationship_service
from app.services import workspaces as workspace_service
from app.services.errors import BadInput
from app.services.filters import MAX_LIST
from schema.context import Info
from schema.documents import Document, documents_of_node, planned_documents
from schema.errors import UserError
from schema.filters import DateTimeFilter, IDFilter, SortDirection, StringFilter
from schema.mutations import Payload, run_mutation
from schema.node import Node, global_id, node_loader, uuid_of
from schema import plan
from schema.pagination import Connection, page_args
from schema.records import Record, records_of_node
from schema.relationships import Direction, Relationship, node_relationships, planned_relationships
from schema.sources import Source, load_source
from schema.workspaces import Member


@strawberry.enum
class CommunicationPattern(Enum):
    INITIATOR = "INITIATOR"
    RESPONDER = "RESPONDER"
    BALANCED = "BALANCED"


@strawberry.enum
class RelationshipHealth(Enum):
    NEW = "NEW"
    STRONG = "STRONG"
    AT_RISK = "AT_RISK"
    DORMANT = "DORMANT"


@strawberry.type(description="Derived from the contact's activity; no LLM needed.")
class ContactIntelligence:
    sent_count: int
    received_count: int
    first_contact_at: datetime | None
    last_contact_at: datetime | None
    last_sent_at: datetime | None
    last_received_at: datetime | None
    days_since_contact: int | None
    reply_rate: float | None = strawberry.field(description="Replies divided by received messages; null with none received.")
    avg_response_time_hours: float | None
    preferred_contact_hours: list[int] = strawberry.field(description="Top-3 UTC hours by frequency.")
    thread_count: int
    communication_pattern: CommunicationPattern | None
    health: RelationshipHealth
    strength: float = strawberry.field(description="0..1")

    @classmethod
    def of(cls, f: intelligence.Figures) -> ContactIntelligence:
        return cls(
            sent_count=f.sent_count, received_count=f.received_count, first_contact_at=f.first_contact_at,
            last_contact_at=f.last_contact_at, last_sent_at=f.last_sent_at, last_received_at=f.last_received_at,
            days_since_contact=f.days_since_contact, reply_rate=f.reply_rate,
            avg_response_time_hours=f.avg_response_time_hours, preferred_contact_hours=f.preferred_contact_hours,
            thread_count=f.thread_count,
            communication_pattern=CommunicationPattern(f.communication_pattern) if f.communication_pattern else None,
            health=RelationshipHealth(f.health), strength=f.strength,
        )


@strawberry.type
class Contact(Node):
    id: strawberry.ID
    full_name: str
    email: str | None = strawberry.field(description="Primary email, lower-cased; unique among live contacts of a workspace.")
    emails: list[str]
    phone: str | None
    title: str | None
    company: str | None
    city: str | None
    state: str | None
    tags: list[str]
    contact_type: str | None
    status: str | None
    remote_id: str | None
    custom_fields: JSON
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    _id: strawberry.Private[uuid.UUID]
    _owner_id: strawberry.Private[uuid.UUID | None]
    _source_id: strawberry.Private[uuid.UUID | None]

    @classmethod
    def of(cls, row: models.Contact) -> Contact:
        return cls(
            id=global_id("Contact", row.id), full_name=row.full_name, email=row.email, emails=row.emails,
            phone=row.phone, title=row.title, company=row.company, city=row.city, state=row.state, tags=row.tags,
            contact_type=row.contact_type, status=row.status, remote_id=row.remote_id,
            custom_fields=row.custom_fields, created_at=row.created_at, updated_at=row.updated_at,
            deleted_at=row.deleted_at, _id=row.id, _owner_id=row.owner_id, _source_id=row.source_id,
        )

    @strawberry.field
    async def owner(self, info: Info) -> Member | None:
        if self._owner_id is None:
            return None
        row = await info.context.loaders.load(workspace_service.members_by_id, self._owner_id)
        return Member.of(row) if row else None

    @strawberry.field
    async def source(self, info: Info) -> Source | None:
        return await load_source(info, self._source_id) if self._source_id else None

    @strawberry.field
    async def activity(
        self, info: Info, types: list[str] | None = None, since: datetime | None = None,
        first: int | None = None, after: str | None = None,
    ) -> Connection[ActivityEvent]:
        """Newest first; the first pages of many contacts load in one statement."""
        args = page_args(first, after, None, None)
        types_key = tuple(types) if types else None
        loaders = info.context.loaders
        if after is None:
            page = await loaders.load(activity_service.first_activity_pages, (self._id, types_key, since, args.size))
        else:
            async with info.context.db() as s:
                page = await activity_service.list_activity(
                    s, info.context.principal, self._id, args, types=types, since=since
                )
        page.count = lambda: loaders.load(activity_service.count_activity, (self._id, types_key, since))
        return Connection.of(page, ActivityEvent.of)

    @strawberry.field
    async def relationships(
        self, info: Info, direction: Direction | None = Direction.BOTH, kinds: list[str] | None = None,
        first: int | None = None, after: str | None = None,
    ) -> Connection[Relationship]:
        return await node_relationships(info, "Contact", self._id, direction or Direction.BOTH, kinds, first, after)

    @strawberry.field
    async def intelligence(self, info: Info) -> ContactIntelligence:
        row = await info.context.loaders.load(activity_service.intelligence_of, self._id)
        return ContactIntelligence.of(intelligence.figures(row, datetime.now(UTC)))

    # -- added by issue 4 (records/documents): the contact's records and documents --
    @strawberry.field(description="Live records whose REFERENCE fields name this contact.")
    async def records(self, info: Info, first: int | None = None, after: str | None = None) -> Connection[Record]:
        return await records_of_node(info, "Contact", self._id, first, after)

    @strawberry.field(description="Live documents linked to this contact.")
    async def documents(self, info: Info, first: int | None = None, after: str | None = None) -> Connection[Document]:
        return await documents_of_node(info, "Contact", self._id, first, after)
    # -- end of issue 4 addition --


load_contact = node_loader("Contact", service.contacts_by_id, Contact.of)


plan.declare(
    ContactIntelligence, **{name: plan.Computed(lambda row, scope, name=name: intelligence.figures_sql(row.c)[name])
                            for name in intelligence.Figures.__dataclass_fields__},
)
plan.declare(
    Contact, models.Contact.__table__, scope=service.READ,
    owner=plan.Reference(lambda row, scope: row.c.owner_id, "Member"),
    source=plan.Reference(lambda row, scope: row.c.source_id, "Source"),
    intelligence=plan.Embedded(lambda row, scope: intelligence.facts_row(row.c.id, scope.workspace)),
    activity=plan.Children(lambda row, scope, a: (
        activity_service.timeline_query(scope.workspace, [row.c.id], a.get("types"), a.get("since")), activity_service.TIMELINE)),
    relationships=planned_relationships("Contact"),
    documents=planned_documents("Contact"),
)
plan.declare_root("contacts", Contact, lambda p, a: (
    service.contacts_query(p, where=a.get("filter"), order=_order(a.get("order_by")), search=a.get("search"), entity=False),
    service.sort_keys(_order(a.get("order_by")))))


def _order(order_by: list[ContactOrder] | None) -> list[tuple[str, bool]]:
    return [(o.field.value, o.direction == SortDirection.DESC) for o in order_by or []]


@strawberry.type(description="Newest first. Ids are deterministic (workspace, contact, type, resourceId): recording the same event twice is a no-op.")
class ActivityEvent(Node):
    id: strawberry.ID
    type: str = strawberry.field(description=(
        "message.sent, message.received, message.delivered, message.bounced, message.spam_complaint, "
        "calendar_event.created, call.logged, note.added, ..."
    ))
    resource_id: str
    occurred_at: datetime
    summary: str | None
    participants: list[str]
    metadata: JSON
    _contact_id: strawberry.Private[uuid.UUID]

    @strawberry.field
    async def contact(self, info: Info) -> Contact:
        return await load_contact(info, self._contact_id)  # type: ignore[return-value]

    @classmethod
    def of(cls, row: models.ActivityEvent) -> ActivityEvent:
        return cls(
            id=global_id("ActivityEvent", row.id), type=row.type, resource_id=row.resource_id,
            occurred_at=row.occurred_at, summary=row.summary, participants=row.participants,
            metadata=row.metadata_, _contact_id=row.contact_id,
        )


node_loader("ActivityEvent", activity_service.events_by_id, ActivityEvent.of)
plan.declare(ActivityEvent, models.ActivityEvent.__table__, scope=activity_service.READ,
             contact=plan.Reference(lambda row, scope: row.c.contact_id, "Contact"))


@strawberry.type
class GraphEdge:
    source: strawberry.ID
    target: strawberry.ID
    kinds: list[str]
    weight: float
    last_seen_at: datetime | None

    @classmethod
    def of(cls, e: relationship_service.GraphEdge) -> GraphEdge:
        return cls(source=global_id("Contact", e.source), target=global_id("Contact", e.target), kinds=e.kinds,
                   weight=e.weight, last_seen_at=e.last_seen_at)


@strawberry.type
class RelationshipGraph:
    nodes: list[Contact]
    edges: list[GraphEdge]


@strawberry.type
class IntroductionPath:
    contacts: list[Contact]
    edges: list[GraphEdge]
    strength: float = strawberry.field(description="Product of edge weights.")


@strawberry.input(description=f"Every list in a filter holds at most {MAX_LIST:,} values.")
class ContactFilter:
    and_: list[ContactFilter] | None = strawberry.field(name="and", default=None)
    or_: list[ContactFilter] | None = strawberry.field(name="or", default=None)
    not_: ContactFilter | None = strawberry.field(name="not", default=None)
    id: IDFilter | None = None
    full_name: StringFilter | None = None
    email: StringFilter | None = None
    company: StringFilter | None = None
    city: StringFilter | None = None
    state: StringFilter | None = None
    contact_type: StringFilter | None = None
    status: StringFilter | None = None
    tags: StringFilter | None = strawberry.field(default=None, description="Matches when any tag does.")
    source_id: IDFilter | None = None
    owner_id: IDFilter | None = None
    created_at: DateTimeFilter | None = None
    updated_at: DateTimeFilter | None = None
    last_contact_at: DateTimeFilter | None = None
    include_deleted: bool | None = strawberry.field(default=None, description="Include soft-deleted contacts.")


@strawberry.enum
class ContactSortField(Enum):
    FULL_NAME = "FULL_NAME"
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    LAST_CONTACT_AT = "LAST_CONTACT_AT"
    STRENGTH = "STRENGTH"


@strawberry.input
class ContactOrder:
    field: ContactSortField
    direction: SortDirection | None = SortDirection.ASC


@strawberry.input
class CreateContactInput:
    full_name: str
    email: str | None = strawberry.UNSET
    emails: list[str] | None = strawberry.field(default=strawberry.UNSET, description=f"At most {MAX_LIST:,}.")
    phone: str | None = strawberry.UNSET
    title: str | None = strawberry.UNSET
    company: str | None = strawberry.UNSET
    city: str | None = strawberry.UNSET
    state: str | None = strawberry.UNSET
    tags: list[str] | None = strawberry.field(default=strawberry.UNSET, description=f"At most {MAX_LIST:,}.")
    contact_type: str | None = strawberry.UNSET
    status: str | None = strawberry.UNSET
    owner_id: strawberry.ID | None = strawberry.UNSET
    source_id: strawberry.ID | None = strawberry.UNSET
    remote_id: str | None = strawberry.UNSET
    custom_fields: JSON | None = strawberry.UNSET


@strawberry.input(description="Only the fields given change; null clears one.")
class UpdateContactInput:
    full_name: str | None = strawberry.UNSET
    email: str | None = strawberry.UNSET
    emails: list[str] | None = strawberry.field(default=strawberry.UNSET, description=f"At most {MAX_LIST:,}.")
    phone: str | None = strawberry.UNSET
    title: str | None = strawberry.UNSET
    company: str | None = strawberry.UNSET
    city: str | None = strawberry.UNSET
    state: str | None = strawberry.UNSET
    tags: list[str] | None = strawberry.field(default=strawberry.UNSET, description=f"At most {MAX_LIST:,}.")
    contact_type: str | None = strawberry.UNSET
    status: str | None = strawberry.UNSET
    owner_id: strawberry.ID | None = strawberry.UNSET
    custom_fields: JSON | None = strawberry.UNSET


@strawberry.input
class RecordActivityInput:
    contact_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="A contact id, or an email address (a contact is created for an unknown address)."
    )
    address: str | None = strawberry.UNSET
    type: str
    resource_id: str
    occurred_at: datetime
    summary: str | None = strawberry.UNSET
    participants: list[str] | None = strawberry.UNSET
    metadata: JSON | None = strawberry.field(
        default=strawberry.UNSET,
        description="For messages: threadId, inReplyTo, ... ; for calendar events: start, duration, location.",
    )


def contract_dict(value: Any) -> dict[str, Any]:
    """An input object as the service's contract-named dict; fields not given are left out."""
    return {
        to_camel_case(name): v for name, v in vars(value).items() if v is not strawberry.UNSET
    }


@strawberry.type
class ContactPayload(Payload):
    contact: Contact | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, contact: models.Contact) -> ContactPayload:
        return cls(contact=Contact.of(contact))


@strawberry.type
class ActivityEventPayload(Payload):
    event: ActivityEvent | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, event: models.ActivityEvent) -> ActivityEventPayload:
        return cls(event=ActivityEvent.of(event))


@strawberry.type
class ContactQueries:
    @strawberry.field
    async def contacts(
        self, info: Info, filter: ContactFilter | None = None, order_by: list[ContactOrder] | None = None,
        search: str | None = None, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
    ) -> Connection[Contact]:
        async with info.context.db() as s:
            page = await service.list_contacts(
                s, info.context.principal, page_args(first, after, last, before), where=filter, order=_order(order_by),
                search=search,
            )
        return Connection.of(page, Contact.of)

    @strawberry.field(description=(
        "The weighted contact graph: the whole workspace, or the contacts within `depth` hops (0 to 6) of `focus`; "
        "the strongest `limit` of them (1 to 1,000, focus first) and the edges among them. Answered within a "
        "budget (CTXGRAPH_GRAPH_*, defaults: the walk reads at most 250,000 relationships, reaches at most 10,000 "
        "contacts, runs at most 5 s; at most 5,000 edges are returned); past it the field is a QUERY_TOO_COMPLEX "
        "error saying what to narrow (depth, limit, minWeight, kinds)."
    ))
    async def relationship_graph(
        self, info: Info, focus: strawberry.ID | None = None,
        depth: Annotated[int | None, strawberry.argument(description="Hops from focus, 0 to 6.")] = 1,
        min_weight: float | None = None, kinds: list[str] | None = None,
        limit: Annotated[int | None, strawberry.argument(description="Contacts returned, 1 to 1,000.")] = 200,
    ) -> RelationshipGraph:
        focus_id = uuid_of(focus, "Contact") if focus is not None else None
        if focus is not None and focus_id is None:
            return RelationshipGraph(nodes=[], edges=[])
        async with info.context.db() as s:
            graph = await relationship_service.relationship_graph(
                s, info.context.principal, focus=focus_id, depth=1 if depth is None else depth, min_weight=min_weight, kinds=kinds,
                limit=200 if limit is None else limit, limits=relationship_service.GraphLimits.of(info.context.services.settings),
            )
        return RelationshipGraph(nodes=[Contact.of(c) for c in graph.nodes], edges=[GraphEdge.of(e) for e in graph.edges])

    @strawberry.field(description=(
        "Strongest chain of relationships from one contact to another (warm introduction path): the largest product "
        "of edge weights within maxDepth hops; null if none. Searched within the graph budget (CTXGRAPH_GRAPH_*, "
        "defaults: at most 250,000 relationships read, 10,000 contacts reached, 5 s); past it a QUERY_TOO_COMPLEX "
        "error (lower maxDepth)."
    ))
    async def introduction_path(
        self, info: Info, from_: Annotated[strawberry.ID, strawberry.argument(name="from")], to: strawberry.ID,
        max_depth: Annotated[int | None, strawberry.argument(description="Hops at most, 1 to 6.")] = 4,
    ) -> IntroductionPath | None:
        async with info.context.db() as s:
            path = await relationship_service.introduction_path(
                s, info.context.principal, uuid_of(from_, "Contact"), uuid_of(to, "Contact"), 4 if max_depth is None else max_depth,
                limits=relationship_service.GraphLimits.of(info.context.services.settings),
            )
        if path is None:
            return None
        return IntroductionPath(contacts=[Contact.of(c) for c in path.contacts], edges=[GraphEdge.of(e) for e in path.edges],
                                strength=path.strength)


@strawberry.type
class ContactMutations:
    @strawberry.mutation
    async def create_contact(self, info: Info, input: CreateContactInput) -> ContactPayload:
        p, data = info.context.principal, contract_dict(input)
        return await run_mutation(info, ContactPayload, lambda s: service.create_contact(s, p, data))

    @strawberry.mutation
    async def update_contact(self, info: Info, id: strawberry.ID, input: UpdateContactInput) -> ContactPayload:
        p, data = info.context.principal, contract_dict(input)
        return await run_mutation(info, ContactPayload, lambda s: service.update_contact(s, p, uuid_of(id, "Contact"), data))

    @strawberry.mutation(description="Soft delete; restoreContact undoes it.")
    async def delete_contact(self, info: Info, id: strawberry.ID) -> ContactPayload:
        p = info.context.principal
        return await run_mutation(info, ContactPayload, lambda s: service.delete_contact(s, p, uuid_of(id, "Contact")))

    @strawberry.mutation
    async def restore_contact(self, info: Info, id: strawberry.ID) -> ContactPayload:
        p = info.context.principal
        return await run_mutation(info, ContactPayload, lambda s: service.restore_contact(s, p, uuid_of(id, "Contact")))

    @strawberry.mutation(description="Merges duplicates into the first contact; activity, relationships, links move over.")
    async def merge_contacts(self, info: Info, ids: list[strawberry.ID]) -> ContactPayload:
        p = info.context.principal
        if len(ids) > 100:
            raise BadInput("At most 100 contacts at a time")
        return await run_mutation(info, ContactPayload, lambda s: merge.merge_contacts(s, p, [uuid_of(i, "Contact") for i in ids]))

    @strawberry.mutation(description="Idempotent per (contact, type, resourceId); updates the contact's intelligence and derived relationships.")
    async def record_activity(self, info: Info, input: RecordActivityInput) -> ActivityEventPayload:
        p, data = info.context.principal, contract_dict(input)
        return await run_mutation(info, ActivityEventPayload, lambda s: activity_service.record_activity(s, p, data))
