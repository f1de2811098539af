"""Relay connections, one generic shape for every entity (`SourceConnection`, `SourceEdge`...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry

from app.services.pagination import ChildPages, Page, PageArgs

NodeT = TypeVar("NodeT")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    cursor: str
    node: NodeT


@strawberry.type
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo
    _page: strawberry.Private[Page[Any]]

    @strawberry.field
    async def total_count(self) -> int:
        """Counted only when asked for: it is a statement of its own."""
        return await self._page.count()

    @classmethod
    def of(cls, page: Page[Any], convert: Callable[[Any], NodeT]) -> Connection[NodeT]:
        return cls(
            edges=[Edge(cursor=c, node=convert(item)) for c, item in zip(page.cursors, page.items, strict=True)],
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=page.start_cursor,
                end_cursor=page.end_cursor,
            ),
            _page=page,
        )


def page_args(first: int | None, after: str | None, last: int | None, before: str | None) -> PageArgs:
    return PageArgs(first=first, after=after, last=last, before=before)


async def nested_connection(
    info: Any, children: ChildPages, parent: Any, first: int | None, after: str | None, convert: Callable[[Any], NodeT]
) -> Connection[NodeT]:
    """A connection under a list of parents: first pages and counts of all parents are batched
    through loaders; a page after a cursor is one parent's own query."""
    args = page_args(first, after, None, None)
    loaders = info.context.loaders
    if after is None:
        page = await loaders.load(children.first_pages, (parent, args.size))
    else:
        async with info.context.db() as s:
            page = await children.page(s, info.context.principal, parent, args)
    page.count = lambda: loaders.load(children.counts, parent)
    return Connection.of(page, convert)
