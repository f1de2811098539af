"""Documents: content or url (fetched by a worker), versions, links to any node."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from app.db import models
from app.services import documents as service
from app.services.filters import MAX_LIST
from schema.context import Info
from schema import plan
from schema.errors import UserError
from schema.filters import DateTimeFilter, IDFilter, SortDirection, StringFilter
from schema.mutations import Payload, run_mutation
from schema.node import Node, global_id, load_node, node_loader, uuid_of
from schema.pagination import Connection, nested_connection, page_args
from schema.sources import Source, load_source

if TYPE_CHECKING:
    from schema.contacts import Contact


@strawberry.enum
class DocumentStatus(Enum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    READY = "READY"
    FAILED = "FAILED"


@strawberry.type
class DocumentVersion:
    version: int
    content_hash: str | None
    title: str
    url: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: models.DocumentVersion) -> DocumentVersion:
        return cls(version=row.version, content_hash=row.content_hash, title=row.title, url=row.url,
                   created_at=row.created_at)


@strawberry.type
class Document(Node):
    id: strawberry.ID
    title: str
    content_type: str
    url: str | None
    content_hash: str | None = strawberry.field(
        description="sha256 of the normalised content; a workspace never stores the same content twice."
    )
    status: DocumentStatus
    error: str | None = strawberry.field(description="Why processing FAILED.")
    tags: list[str]
    metadata: JSON
    version: int
    remote_id: str | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    _id: strawberry.Private[uuid.UUID]
    _source_id: strawberry.Private[uuid.UUID | None]
    _author_id: strawberry.Private[uuid.UUID | None]

    @classmethod
    def of(cls, row: models.Document) -> Document:
        return cls(
            id=global_id("Document", row.id), title=row.title, content_type=row.content_type, url=row.url,
            content_hash=row.content_hash, status=DocumentStatus(row.status), error=row.error, tags=row.tags,
            metadata=row.metadata_, version=row.version, remote_id=row.remote_id, created_at=row.created_at,
            updated_at=row.updated_at, deleted_at=row.deleted_at, _id=row.id, _source_id=row.source_id,
            _author_id=row.author_id,
        )

    @strawberry.field(description="Extracted plain text.")
    async def content(self, info: Info) -> str | None:
        return await info.context.loaders.load(service.contents_by_id, self._id)

    @strawberry.field
    async def versions(self, info: Info, first: int | None = None, after: str | None = None
                       ) -> Connection[DocumentVersion]:
        return await nested_connection(info, service.VERSIONS, self._id, first, after, DocumentVersion.of)

    @strawberry.field
    async def source(self, info: Info) -> Source | None:
        return await load_source(info, self._source_id) if self._source_id else None

    @strawberry.field
    async def author(self, info: Info) -> Annotated[Contact, strawberry.lazy("schema.contacts")] | None:
        return await load_node(info, "Contact", self._author_id) if self._author_id else None

    @strawberry.field(description="The nodes this document is linked to.")
    async def linked_nodes(self, info: Info) -> list[Node]:
        links = await info.context.loaders.load(service.links_by_document, self._id)
        nodes = [await load_node(info, type_name, node_id) for type_name, node_id in links or []]
        return [n for n in nodes if n is not None]


node_loader("Document", service.documents_by_id, Document.of)


plan.declare(DocumentVersion, models.DocumentVersion.__table__, scope=service.READ)
plan.declare(
    Document, models.Document.__table__, scope=service.READ,
    versions=plan.Children.of(service.VERSIONS),
    author=plan.Reference(lambda row, scope: row.c.author_id, "Contact"),
    source=plan.Reference(lambda row, scope: row.c.source_id, "Source"),
    linked_nodes=plan.Unplanned("a list of nodes of several types"),
)
plan.declare_root("documents", Document, lambda p, a: service.documents_query(
    p, where=a.get("filter"), order=_order(a.get("order_by")), search=a.get("search")))


def _order(order_by: list[DocumentOrder] | None) -> list[tuple[str, bool]]:
    return [(o.field.value, o.direction != SortDirection.ASC) for o in order_by or []]


def planned_documents(node_type: str) -> plan.Children:
    """A node's documents field, planned."""
    return plan.Children.of(service.LINKED_TO[node_type])


async def documents_of_node(info: Info, node_type: str, node_id: uuid.UUID, first: int | None, after: str | None
                            ) -> Connection[Document]:
    """The live documents linked to a node (Contact.documents, Record.documents), newest first."""
    return await nested_connection(info, service.LINKED_TO[node_type], node_id, first, after, Document.of)


@strawberry.input(description=f"Every list in a filter holds at most {MAX_LIST:,} values.")
class DocumentFilter:
    title: StringFilter | None = None
    content_type: StringFilter | None = None
    status: list[DocumentStatus] | None = None
    tags: StringFilter | None = strawberry.field(default=None, description="Any tag matches.")
    source_id: IDFilter | None = None
    created_at: DateTimeFilter | None = None
    include_deleted: bool | None = None


@strawberry.enum
class DocumentSortField(Enum):
    TITLE = "TITLE"
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"


@strawberry.input
class DocumentOrder:
    field: DocumentSortField
    direction: SortDirection | None = SortDirection.DESC


@strawberry.input
class CreateDocumentInput:
    title: str
    content: str | None = None
    url: str | None = None
    content_type: str | None = "text/plain"
    source_id: strawberry.ID | None = None
    remote_id: str | None = None
    tags: list[str] | None = None
    metadata: JSON | None = None
    author_id: strawberry.ID | None = None
    link_to: list[strawberry.ID] | None = strawberry.field(default=None, description=f"Nodes to link the document to, at most {MAX_LIST:,}.")


@strawberry.input
class UpdateDocumentInput:
    title: str | None = strawberry.UNSET
    content: str | None = strawberry.UNSET
    url: str | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    metadata: JSON | None = strawberry.UNSET


@strawberry.type
class DocumentPayload(Payload):
    document: Document | None = None
    deduplicated: bool = False
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, outcome: models.Document | tuple[models.Document, bool]) -> DocumentPayload:
        """A document, or (document, deduplicated) as createDocument's service answers."""
        document, deduplicated = outcome if isinstance(outcome, tuple) else (outcome, False)
        return cls(document=Document.of(document), deduplicated=deduplicated)


def _keep(value: Any) -> Any:
    return service.KEEP if value is strawberry.UNSET else value


@strawberry.type
class DocumentQueries:
    @strawberry.field
    async def documents(
        self, info: Info, filter: DocumentFilter | None = None, order_by: list[DocumentOrder] | None = None,
        search: str | None = None, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> Connection[Document]:
        async with info.context.db() as s:
            page = await service.list_documents(s, info.context.principal, page_args(first, after, last, before),
                                                where=filter, order=_order(order_by), search=search)
        return Connection.of(page, Document.of)


@strawberry.type
class DocumentMutations:
    @strawberry.mutation(description="Exactly one of content or url. The same content twice returns the existing document (code DUPLICATE in userErrors is not raised; `deduplicated` is true).")
    async def create_document(self, info: Info, input: CreateDocumentInput) -> DocumentPayload:
        p = info.context.principal
        return await run_mutation(info, DocumentPayload, lambda s: service.create_document(
            s, p, title=input.title, content=input.content, url=input.url, content_type=input.content_type,
            source_id=uuid_of(input.source_id, "Source") if input.source_id else None,
            source_given=input.source_id is not None, remote_id=input.remote_id, tags=input.tags,
            metadata=input.metadata, author_id=uuid_of(input.author_id, "Contact") if input.author_id else None,
            author_given=input.author_id is not None, link_to=input.link_to or [],
        ))

    @strawberry.mutation(description="New content makes a new version and reprocesses; metadata-only changes do not.")
    async def update_document(self, info: Info, id: strawberry.ID, input: UpdateDocumentInput) -> DocumentPayload:
        p = info.context.principal
        return await run_mutation(info, DocumentPayload, lambda s: service.update_document(
            s, p, uuid_of(id, "Document"), title=_keep(input.title), content=_keep(input.content),
            url=_keep(input.url), tags=_keep(input.tags), metadata=_keep(input.metadata),
        ))

    @strawberry.mutation
    async def delete_document(self, info: Info, id: strawberry.ID) -> DocumentPayload:
        p = info.context.principal
        return await run_mutation(info, DocumentPayload, lambda s: service.delete_document(s, p, uuid_of(id, "Document")))

    @strawberry.mutation
    async def link_document(self, info: Info, document_id: strawberry.ID, node_id: strawberry.ID) -> DocumentPayload:
        p = info.context.principal
        return await run_mutation(info, DocumentPayload, lambda s: service.link_document(
            s, p, uuid_of(document_id, "Document"), node_id, True
        ))

    @strawberry.mutation
    async def unlink_document(self, info: Info, document_id: strawberry.ID, node_id: strawberry.ID) -> DocumentPayload:
        p = info.context.principal
        return await run_mutation(info, DocumentPayload, lambda s: service.link_document(
            s, p, uuid_of(document_id, "Document"), node_id, False
        ))
