"""The one Strawberry schema. A domain adds its query, mutation (and later subscription) classes
and its node types to the lists below, one line each."""

from __future__ import annotations

import asyncio
from typing import Any

import strawberry
from strawberry.extensions import ParserCache
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from app.services.errors import BadInput
from schema.auth import ApiKey, AuthMutations, AuthQueries
from schema.context import Info
from schema.extensions import ErrorPolicy, OperationScope, QueryLimits
from schema.filters import FloatFilter
from schema.node import Node, resolve_node
from schema.scalars import SCALAR_MAP
from schema.sources import Source, SourceMutations, SourceQueries
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
        return list(await asyncio.gather(*(resolve_node(info, i) for i in ids)))


QUERIES: list[type] = [
    NodeQueries,
    AuthQueries,
    WorkspaceQueries,
    SourceQueries,
]
MUTATIONS: list[type] = [
    AuthMutations,
    WorkspaceMutations,
    SourceMutations,
]
SUBSCRIPTIONS: list[type] = []
TYPES: list[type] = [User, Workspace, Member, ApiKey, Source, FloatFilter]


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        """Logging is `ErrorPolicy`'s: request errors are the client's, not the server's, news."""


schema = Schema(
    query=merge_types("Query", tuple(QUERIES)),
    mutation=merge_types("Mutation", tuple(MUTATIONS)),
    subscription=merge_types("Subscription", tuple(SUBSCRIPTIONS)) if SUBSCRIPTIONS else None,
    types=TYPES,
    config=StrawberryConfig(disable_field_suggestions=True, scalar_map=SCALAR_MAP),
    extensions=[OperationScope, lambda: ParserCache(maxsize=1024), QueryLimits, ErrorPolicy],
)
