"""Ranked full-text search across contacts, records and documents."""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Any

import strawberry

from app.services import relationships as relationship_service
from app.services import search as service
from app.services.access import Principal
from schema import plan
from schema.context import Info
from schema.node import Node, load_node
from schema.plan.encode import NotPlannable


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


def _hits(p: Principal, a: dict[str, Any]) -> Any:
    types = [t.value for t in a.get("types") or []] or None
    if not all(p.can(service.TYPES[t]) for t in types or service.TYPES):
        raise NotPlannable("a search by a caller who may not read every type asked for")  # the statement would be theirs
    first = a.get("first")
    return service.search_query(p, a["query"], types, 20 if first is None else first)


plan.declare(
    SearchHit,
    node=plan.Reference(lambda row, scope: row.c.id, type_of=lambda row, scope: row.c.type_name,
                        types=relationship_service.endpoint_types),
    score=plan.Computed(lambda row, scope: row.c.rank),
    snippet=plan.Computed(lambda row, scope: service.snippet_html_sql(row.c.snippet)),
)
plan.declare_root_list("search", SearchHit, _hits)


@strawberry.type
class SearchQueries:
    @strawberry.field(description='Ranked full-text search across contacts, records and documents. Words must all match; "a phrase" in quotes matches in order; word* matches by prefix. Only types the caller may read. Best first, ties by type and id. '
                      f'When more than {service.CANDIDATES_PER_TYPE:,} rows of one type match, only {service.CANDIDATES_PER_TYPE:,} of them are ranked: the first its index yields, not the best, so that a common word costs what a rare one does; add words to narrow such a search.')
    async def search(self, info: Info, query: str, types: list[SearchableType] | None = None, first: int | None = 20
                     ) -> list[SearchHit]:
        async with info.context.db() as s:
            hits = await service.search(s, info.context.principal, query, [t.value for t in types or []] or None,
                                       20 if first is None else first)
        # Loaded together, so that each type's loader fetches its hits in one batch.
        nodes = await asyncio.gather(*(load_node(info, hit.type_name, hit.id) for hit in hits))
        return [SearchHit(node=node, score=hit.score, snippet=hit.snippet)
                for hit, node in zip(hits, nodes, strict=True) if node is not None]
