"""The Node interface and `node`/`nodes`: each domain registers how to load its type by uuid."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import strawberry

from app.services import ids
from schema.context import Info


@strawberry.interface(description="Opaque global IDs: every entity is reachable through Query.node.")
class Node:
    id: strawberry.ID


NodeLoader = Callable[[Info, uuid.UUID], Awaitable[Any]]
_LOADERS: dict[str, NodeLoader] = {}


def register_node(type_name: str, load: NodeLoader) -> None:
    _LOADERS[type_name] = load


def node_loader(type_name: str, fetch: Any, convert: Callable[[Any], Any]) -> NodeLoader:
    """Registers `type_name` for `node(id)`: its rows come through the per-operation loader of
    `fetch(session, principal, ids) -> {id: row}` and become GraphQL objects by `convert`."""

    async def load(info: Info, id_: uuid.UUID) -> Any:
        row = await info.context.loaders.load(fetch, id_)
        return convert(row) if row is not None else None

    register_node(type_name, load)
    return load


def global_id(type_name: str, id_: uuid.UUID) -> strawberry.ID:
    return strawberry.ID(ids.encode(type_name, id_))


def uuid_of(global_id_: str, type_name: str) -> uuid.UUID | None:
    """The uuid behind an id of `type_name`; None for another type (treated as not found)."""
    return ids.decode_as(global_id_, type_name)


async def load_node(info: Info, type_name: str, id_: uuid.UUID) -> Any:
    """A node by its type and uuid (an edge's endpoint); None when unknown or not visible."""
    load = _LOADERS.get(type_name)
    return await load(info, id_) if load else None


async def resolve_node(info: Info, global_id_: str) -> Any:
    """None for an unknown type, a missing row, or another workspace's row alike."""
    type_name, id_ = ids.decode(global_id_)
    load = _LOADERS.get(type_name)
    return await load(info, id_) if load else None
