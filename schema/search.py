"""Ranked full-text search across contacts, records and documents."""

from __future__ import annotations

from enum import Enum

import strawberry

from app.services import search as service
from schema.context import Info
from schema.node import Node, load_node


@strawberry.enum
class SearchableType(Enum):
    CONTACT = "CONTACT"
    RECORD = "RECORD"
    DOCUMENT = "DOCUMENT"


@strawberry.type
class SearchHit:
    node: Node
    score: float
    snippet: str | None = strawberry.field(description="Matching text as HTML: the stored text HTML-escaped (it is never markup), the matched terms in <mark>...</mark>, the only tags. Safe to render as HTML.")


@strawberry.type
class SearchQueries:
    @strawberry.field(description='Ranked full-text search across contacts, records and documents. Words must all match; "a phrase" in quotes matches in order; word* matches by prefix. Only types the caller may read.')
    async def search(self, info: Info, query: str, types: list[SearchableType] | None = None, first: int | None = 20
                     ) -> list[SearchHit]:
        async with info.context.db() as s:
            hits = await service.search(s, info.context.principal, query, [t.value for t in types or []] or None,
                                       20 if first is None else first)
        out = []
        for hit in hits:
            node = await load_node(info, hit.type_name, hit.id)
            if node is not None:
                out.append(SearchHit(node=node, score=hit.score, snippet=hit.snippet))
        return out
