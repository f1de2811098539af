"""Object types and their records."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from app.db import models
from app.services import object_types as type_service
from app.services import records as service
from app.services import workspaces as workspace_service
from app.services.filters import MAX_LIST
from schema.context import Info
from schema import plan
from schema.documents import Document, documents_of_node, planned_documents
from schema.errors import UserError
from schema.filters import IN, DateTimeFilter, IDFilter, SortDirection, StringFilter
from schema.mutations import Payload, run_mutation
from schema.node import Node, global_id, node_loader, uuid_of
from schema.pagination import Connection, nested_connection, page_args
from schema.relationships import Direction, Relationship, node_relationships, planned_relationships
from schema.sources import Source, load_source
from schema.workspaces import DeletePayload, Member, deleted


@strawberry.enum
class FieldType(Enum):
    STRING = "STRING"
    TEXT = "TEXT"
    INT = "INT"
    FLOAT = "FLOAT"
    BOOLEAN = "BOOLEAN"
    DATE = "DATE"
    DATETIME = "DATETIME"
    EMAIL = "EMAIL"
    URL = "URL"
    SELECT = "SELECT"
    MULTI_SELECT = "MULTI_SELECT"
    JSON = "JSON"
    REFERENCE = "REFERENCE"


@strawberry.type
class FieldDefinition:
    name: str
    field_type: FieldType
    label: str | None
    required: bool
    options: list[str] | None


@strawberry.type(description="The schema of a kind of record (support_ticket, lead, property...).")
class ObjectType(Node):
    id: strawberry.ID
    name: str
    display_name: str
    field_definitions: list[FieldDefinition]
    created_at: datetime
    updated_at: datetime
    _id: strawberry.Private[uuid.UUID]
    _source_id: strawberry.Private[uuid.UUID | None]

    @classmethod
    def of(cls, row: models.ObjectType) -> ObjectType:
        return cls(
            id=global_id("ObjectType", row.id), name=row.name, display_name=row.display_name,
            field_definitions=[
                FieldDefinition(name=d.name, field_type=FieldType(d.field_type), label=d.label, required=d.required,
                                options=list(d.options) if d.options is not None else None)
                for d in type_service.definitions(row).values()
            ],
            created_at=row.created_at, updated_at=row.updated_at, _id=row.id, _source_id=row.source_id,
        )

    @strawberry.field(description="Live records of this type.")
    async def record_count(self, info: Info) -> int:
        return await info.context.loaders.load(type_service.record_counts, self._id)

    @strawberry.field
    async def source(self, info: Info) -> Source | None:
        return await load_source(info, self._source_id) if self._source_id else None


node_loader("ObjectType", type_service.object_types_by_id, ObjectType.of)


@strawberry.type
class RecordVersion:
    version: int
    fields: JSON
    name: str
    display_name: str | None
    action: str = strawberry.field(description="created, updated or reverted.")
    changed_fields: list[str] = strawberry.field(description="The fields whose values this version changed.")
    created_at: datetime
    _changed_by_id: strawberry.Private[uuid.UUID | None]

    @classmethod
    def of(cls, row: models.RecordVersion) -> RecordVersion:
        return cls(version=row.version, fields=row.fields, name=row.name, display_name=row.display_name,
                   action=row.action, changed_fields=row.changed_fields, created_at=row.created_at,
                   _changed_by_id=row.changed_by_id)

    @strawberry.field
    async def changed_by(self, info: Info) -> Member | None:
        if self._changed_by_id is None:
            return None
        row = await info.context.loaders.load(workspace_service.members_by_id, self._changed_by_id)
        return Member.of(row) if row else None


@strawberry.type
class Record(Node):
    id: strawberry.ID
    remote_id: str | None
    name: str
    display_name: str | None
    fields: JSON = strawberry.field(description="Field name -> value, validated against the object type.")
    version: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    _id: strawberry.Private[uuid.UUID]
    _object_type_id: strawberry.Private[uuid.UUID]
    _source_id: strawberry.Private[uuid.UUID | None]

    @classmethod
    def of(cls, row: models.Record) -> Record:
        return cls(
            id=global_id("Record", row.id), remote_id=row.remote_id, name=row.name, display_name=row.display_name,
            fields=row.fields, version=row.version, created_at=row.created_at, updated_at=row.updated_at,
            deleted_at=row.deleted_at, _id=row.id, _object_type_id=row.object_type_id, _source_id=row.source_id,
        )

    @strawberry.field
    async def object_type(self, info: Info) -> ObjectType:
        return ObjectType.of(await info.context.loaders.load(type_service.object_types_by_id, self._object_type_id))

    @strawberry.field
    async def source(self, info: Info) -> Source | None:
        return await load_source(info, self._source_id) if self._source_id else None

    @strawberry.field(description="Newest version first.")
    async def history(self, info: Info, first: int | None = None, after: str | None = None
                      ) -> Connection[RecordVersion]:
        return await nested_connection(info, service.HISTORY, self._id, first, after, RecordVersion.of)

    @strawberry.field
    async def relationships(
        self, info: Info, direction: Direction | None = Direction.BOTH, kinds: list[str] | None = None,
        first: int | None = None, after: str | None = None,
    ) -> Connection[Relationship]:
        return await node_relationships(info, "Record", self._id, direction or Direction.BOTH, kinds, first, after)

    @strawberry.field
    async def documents(self, info: Info, first: int | None = None, after: str | None = None) -> Connection[Document]:
        return await documents_of_node(info, "Record", self._id, first, after)


async def records_of_node(info: Info, node_type: str, node_id: uuid.UUID, first: int | None, after: str | None
                          ) -> Connection[Record]:
    """Live records whose REFERENCE fields name the node (Contact.records), oldest first."""
    async with info.context.db() as s:
        page = await service.records_referencing(s, info.context.principal, page_args(first, after, None, None),
                                                 node_type, node_id)
    return Connection.of(page, Record.of)


node_loader("Record", service.records_by_id, Record.of)
plan.declare(RecordVersion, models.RecordVersion.__table__, scope=service.READ,
             changed_by=plan.Reference(lambda row, scope: row.c.changed_by_id, "Member"))
plan.declare(
    ObjectType, models.ObjectType.__table__, scope=type_service.READ,
    field_definitions=plan.Unplanned("field definitions are normalised in Python"),
    record_count=plan.Computed(lambda row, scope: type_service.record_count_sql(row.c.id, scope.workspace)),
    source=plan.Reference(lambda row, scope: row.c.source_id, "Source"),
)
plan.declare(
    Record, models.Record.__table__, scope=service.READ,
    object_type=plan.Reference(lambda row, scope: row.c.object_type_id, "ObjectType"),
    source=plan.Reference(lambda row, scope: row.c.source_id, "Source"),
    history=plan.Children.of(service.HISTORY),
    relationships=planned_relationships("Record"),
    documents=planned_documents("Record"),
)


@strawberry.input
class FieldCondition:
    field: str
    eq: JSON | None = None
    neq: JSON | None = None
    in_: list[JSON] | None = strawberry.field(name="in", default=None, description=IN)
    contains: str | None = None
    gt: JSON | None = None
    gte: JSON | None = None
    lt: JSON | None = None
    lte: JSON | None = None
    is_null: bool | None = None


@strawberry.input(description=f"Every list in a filter holds at most {MAX_LIST:,} values.")
class RecordFilter:
    and_: list[RecordFilter] | None = strawberry.field(name="and", default=None)
    or_: list[RecordFilter] | None = strawberry.field(name="or", default=None)
    not_: RecordFilter | None = strawberry.field(name="not", default=None)
    name: StringFilter | None = None
    remote_id: StringFilter | None = None
    source_id: IDFilter | None = None
    created_at: DateTimeFilter | None = None
    updated_at: DateTimeFilter | None = None
    fields: list[FieldCondition] | None = strawberry.field(
        default=None, description="Conditions on custom fields, compared in the field's type; needs objectTypeId. "
                                  f"At most {MAX_LIST:,}."
    )
    include_deleted: bool | None = None


@strawberry.enum
class RecordSortField(Enum):
    NAME = "NAME"
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"


@strawberry.input(description="Sort by a built-in field, or by a custom field of the object type.")
class RecordOrder:
    field: RecordSortField | None = None
    custom_field: str | None = None
    direction: SortDirection | None = SortDirection.ASC


@strawberry.input
class FieldDefinitionInput:
    name: str = strawberry.field(description="The key of the field in a record's fields: letters, digits and _, not "
                                             "starting with a digit or __, at most 63 characters (openedAt, amount_usd); "
                                             "case-sensitive.")
    field_type: FieldType
    label: str | None = None
    required: bool | None = False
    options: list[str] | None = None


@strawberry.input
class CreateObjectTypeInput:
    name: str
    display_name: str
    source_id: strawberry.ID | None = None
    field_definitions: list[FieldDefinitionInput]


@strawberry.input
class UpdateObjectTypeInput:
    display_name: str | None = None
    field_definitions: list[FieldDefinitionInput] | None = None


@strawberry.input
class CreateRecordInput:
    object_type_id: strawberry.ID
    source_id: strawberry.ID | None = None
    remote_id: str | None = None
    name: str
    display_name: str | None = None
    fields: JSON


@strawberry.input
class UpdateRecordInput:
    name: str | None = None
    display_name: str | None = strawberry.UNSET
    fields: JSON | None = None


@strawberry.type
class ObjectTypePayload(Payload):
    object_type: ObjectType | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, object_type: models.ObjectType) -> ObjectTypePayload:
        return cls(object_type=ObjectType.of(object_type))


@strawberry.type
class RecordPayload(Payload):
    record: Record | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, record: models.Record) -> RecordPayload:
        return cls(record=Record.of(record))


def _definitions(defs: list[FieldDefinitionInput]) -> list[dict[str, Any]]:
    return [{"name": d.name, "fieldType": d.field_type.value, "label": d.label, "required": bool(d.required),
             "options": d.options} for d in defs]


@strawberry.type
class RecordQueries:
    @strawberry.field
    async def object_types(self, info: Info, first: int | None = None, after: str | None = None
                           ) -> Connection[ObjectType]:
        async with info.context.db() as s:
            page = await type_service.list_object_types(s, info.context.principal, page_args(first, after, None, None))
        return Connection.of(page, ObjectType.of)

    @strawberry.field
    async def object_type(self, info: Info, name: str) -> ObjectType | None:
        async with info.context.db() as s:
            row = await type_service.object_type_by_name(s, info.context.principal, name)
        return ObjectType.of(row) if row else None

    @strawberry.field
    async def records(
        self, info: Info, object_type_id: strawberry.ID | None = None, filter: RecordFilter | None = None,
        order_by: list[RecordOrder] | None = None, search: str | None = None, first: int | None = None,
        after: str | None = None, last: int | None = None, before: str | None = None,
    ) -> Connection[Record]:
        async with info.context.db() as s:
            page = await service.list_records(
                s, info.context.principal, page_args(first, after, last, before),
                object_type_id=uuid_of(object_type_id, "ObjectType") if object_type_id else None,
                object_type_given=object_type_id is not None, where=filter, order=_order(order_by), search=search,
            )
        return Connection.of(page, Record.of)


def _order(order_by: list[RecordOrder] | None) -> list[service.Order]:
    return [service.Order(o.field.value if o.field else None, o.custom_field, o.direction == SortDirection.DESC)
            for o in order_by or []]


async def _object_type(s: Any, p: Any, a: dict[str, Any]) -> models.ObjectType | None:
    given = a.get("object_type_id")
    return await service.object_type_of(s, p, uuid_of(given, "ObjectType")) if given is not None else None


def _records(p: Any, a: dict[str, Any], ot: models.ObjectType | None) -> Any:
    return service.records_query(p, ot, object_type_given=a.get("object_type_id") is not None, where=a.get("filter"),
                                 order=_order(a.get("order_by")), search=a.get("search"))


def _same_object_type(ot: models.ObjectType | None, a: dict[str, Any], scope: plan.Scope) -> Any:
    """The object type is as it was read when the plan was made (its fields decide the SQL)."""
    given = a.get("object_type_id")
    return type_service.unchanged_sql(ot, uuid_of(given, "ObjectType") if given is not None else None, scope.workspace,
                                      given=given is not None)


plan.declare_root("records", Record, _records, load=_object_type, guard=_same_object_type)


@strawberry.type
class RecordMutations:
    @strawberry.mutation
    async def create_object_type(self, info: Info, input: CreateObjectTypeInput) -> ObjectTypePayload:
        p = info.context.principal
        return await run_mutation(info, ObjectTypePayload, lambda s: type_service.create_object_type(
            s, p, name=input.name, display_name=input.display_name,
            source_id=uuid_of(input.source_id, "Source") if input.source_id else None,
            source_given=input.source_id is not None, field_definitions=_definitions(input.field_definitions),
        ))

    @strawberry.mutation(description="Supplying fieldDefinitions replaces the schema; changes that existing records violate are refused.")
    async def update_object_type(self, info: Info, id: strawberry.ID, input: UpdateObjectTypeInput) -> ObjectTypePayload:
        p = info.context.principal
        return await run_mutation(info, ObjectTypePayload, lambda s: type_service.update_object_type(
            s, p, uuid_of(id, "ObjectType"), display_name=input.display_name,
            field_definitions=_definitions(input.field_definitions) if input.field_definitions is not None else None,
        ))

    @strawberry.mutation
    async def delete_object_type(self, info: Info, id: strawberry.ID) -> DeletePayload:
        p = info.context.principal
        return await run_mutation(info, DeletePayload, lambda s: deleted(
            "ObjectType", type_service.delete_object_type(s, p, uuid_of(id, "ObjectType"))
        ))

    @strawberry.mutation
    async def create_record(self, info: Info, input: CreateRecordInput) -> RecordPayload:
        p = info.context.principal
        return await run_mutation(info, RecordPayload, lambda s: service.create_record(
            s, p, object_type_id=uuid_of(input.object_type_id, "ObjectType"), name=input.name,
            fields=input.fields, display_name=input.display_name,
            source_id=uuid_of(input.source_id, "Source") if input.source_id else None,
            source_given=input.source_id is not None, remote_id=input.remote_id,
        ))

    @strawberry.mutation(description="fields merge per RFC 7396: present keys overwrite, absent keys stay, null deletes.")
    async def update_record(self, info: Info, id: strawberry.ID, input: UpdateRecordInput) -> RecordPayload:
        p = info.context.principal
        return await run_mutation(info, RecordPayload, lambda s: service.update_record(
            s, p, uuid_of(id, "Record"), name=input.name, fields=input.fields,
            display_name=service.KEEP if input.display_name is strawberry.UNSET else input.display_name,
        ))

    @strawberry.mutation(description="Soft delete; restoreRecord undoes it.")
    async def delete_record(self, info: Info, id: strawberry.ID) -> RecordPayload:
        p = info.context.principal
        return await run_mutation(info, RecordPayload, lambda s: service.set_deleted(s, p, uuid_of(id, "Record"), True))

    @strawberry.mutation
    async def restore_record(self, info: Info, id: strawberry.ID) -> RecordPayload:
        p = info.context.principal
        return await run_mutation(info, RecordPayload, lambda s: service.set_deleted(s, p, uuid_of(id, "Record"), False))

    @strawberry.mutation(description="Creates a new version whose fields are those of an earlier one.")
    async def revert_record(self, info: Info, id: strawberry.ID, version: int) -> RecordPayload:
        p = info.context.principal
        return await run_mutation(info, RecordPayload, lambda s: service.revert_record(s, p, uuid_of(id, "Record"), version))
