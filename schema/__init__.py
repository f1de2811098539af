"""The one Strawberry schema. A domain adds its query, mutation (and later subscription) classes
and its node types to the lists below, one line each."""

from __future__ import annotations

import asyncio
from typing import Any

import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from app.services.errors import BadInput
from schema.auth import ApiKey, AuthMutations, AuthQueries
from schema.contacts import ActivityEvent, Contact, ContactMutations, ContactQueries
from schema.context import Info
from schema.documents import Document, DocumentMutations, DocumentQueries
from schema.extensions import ErrorPolicy, OperationScope, QueryLimits
from schema.fanout import FanOutExecutor
from schema.filters import FloatFilter
from schema.jobs import Job, JobMutations, JobQueries
from schema.node import Node, resolve_node
from schema.plan.runner import Planner
from schema.records import ObjectType, Record, RecordMutations, RecordQueries
from schema.relationships import Relationship, RelationshipMutations, RelationshipQueries
from schema.scalars import SCALAR_MAP, TextInputs
from schema.search import SearchQueries
from schema.sources import Source, SourceMutations, SourceQueries
from schema.subscriptions import Subscriptions
from schema.workspaces import Member, User, Workspace, WorkspaceMutations, WorkspaceQueries

MAX_IDS_PER_NODES = 100


@strawberry.type
class NodeQueries:
    @strawberry.field
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return await resolve_node(info, id)

    @strawberry.field
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > MAX_IDS_PER_NODES:
            raise BadInput(f"At most {MAX_IDS_PER_NODES} ids at a time")
        # Every look-up ends before the first error is raised: one left running past the
        # operation's end would hold its session's connection, in a transaction, for good.
        found = await asyncio.gather(*(resolve_node(info, i) for i in ids), return_exceptions=True)
        for outcome in found:
            if isinstance(outcome, BaseException):
                raise outcome
        return list(found)


QUERIES: list[type] = [
    NodeQueries,
    AuthQueries,
    WorkspaceQueries,
    SourceQueries,
    ContactQueries,
    RelationshipQueries,
    JobQueries,
    RecordQueries,
    DocumentQueries,
    SearchQueries,
]
MUTATIONS: list[type] = [
    AuthMutations,
    WorkspaceMutations,
    SourceMutations,
    ContactMutations,
    RelationshipMutations,
    JobMutations,
    RecordMutations,
    DocumentMutations,
]
SUBSCRIPTIONS: list[type] = [Subscriptions]
TYPES: list[type] = [User, Workspace, Member, ApiKey, Source, FloatFilter, Contact, ActivityEvent, Relationship, Job,
                    ObjectType, Record, Document]


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        """Logging is `ErrorPolicy`'s: request errors are the client's, not the server's, news."""


schema = Schema(
    query=merge_types("Query", tuple(QUERIES)),
    mutation=merge_types("Mutation", tuple(MUTATIONS)),
    subscription=merge_types("Subscription", tuple(SUBSCRIPTIONS)) if SUBSCRIPTIONS else None,
    types=TYPES,
    config=StrawberryConfig(disable_field_suggestions=True, scalar_map=SCALAR_MAP),
    extensions=[OperationScope, QueryLimits, TextInputs, Planner, ErrorPolicy],
    execution_context_class=FanOutExecutor,
)
