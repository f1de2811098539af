"""Ranked full-text search over contacts, records and document chunks (PostgreSQL full text).

Query syntax: words must all match (stemmed, English); "a quoted phrase" matches in order;
`word*` matches by prefix. Each type is matched through a SECURITY DEFINER function of
migration 0009, so that its GIN index is used under row-level security, and only the first
`CANDIDATES_PER_TYPE` matches the index yields are ranked; snippets are made for the hits
returned alone. (The lists' `search:` filters use the unbounded functions of 0003.)
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import UUID, ColumnElement, Select, and_, case, func, literal, null, select, union_all
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Contact, DocumentChunk, Record
from app.services.access import Principal
from app.services.errors import BadInput

MAX_QUERY = 500
MAX_HITS = 100
# ts_headline marks the terms with two private-use characters, removed from the text beforehand,
# so that the snippet can be HTML-escaped whole and only those become <mark> tags: stored text is
# never markup (a document may hold `<img src=x onerror=...>`), and a browser renders snippets.
_START, _STOP = "\ue000", "\ue001"
SNIPPET_OPTIONS = f"StartSel={_START}, StopSel={_STOP}, MaxWords=30, MinWords=12, MaxFragments=2, FragmentDelimiter=\" … \""
TYPES = {"CONTACT": "contacts:read", "RECORD": "records:read", "DOCUMENT": "documents:read"}
_TOKEN = re.compile(r'"([^"]*)"|(\S+)')


def tsquery(text: str) -> ColumnElement[Any]:
    """The tsquery of a search string (see the module docstring); empty -> BAD_USER_INPUT."""
    if len(text) > MAX_QUERY:
        raise BadInput(f"A search is at most {MAX_QUERY} characters")
    parts: list[ColumnElement[Any]] = []
    plain: list[str] = []
    for phrase, word in _TOKEN.findall(text):
        if phrase:
            parts.append(func.phraseto_tsquery("english", phrase))
        elif word.endswith("*"):
            lexemes = re.findall(r"\w+", word)
            plain += lexemes[:-1]
            if lexemes:
                parts.append(func.to_tsquery("english", literal(lexemes[-1]) + ":*"))
        else:
            plain.append(word)
    if plain:
        parts.append(func.plainto_tsquery("english", " ".join(plain)))
    if not parts:
        raise BadInput("The search is empty")
    query = parts[0]
    for part in parts[1:]:
        query = query.op("&&")(part)
    return query


def _headline(text: ColumnElement[Any], q: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.ts_headline("english", func.translate(text, _START + _STOP, ""), q, SNIPPET_OPTIONS)


def snippet_html(headline: str | None) -> str | None:
    """The headline as HTML: its text escaped, its marked terms in <mark> tags."""
    if headline is None:
        return None
    return html.escape(headline, quote=True).replace(_START, "<mark>").replace(_STOP, "</mark>")


def record_ids_matching(text: str) -> Select[Any]:
    matches = func.ctxgraph_record_matches(tsquery(text)).table_valued("record_id", "rank")
    return select(matches.c.record_id)


def document_ids_matching(text: str) -> Select[Any]:
    matches = func.ctxgraph_chunk_matches(tsquery(text)).table_valued("chunk_id", "document_id", "rank")
    return select(matches.c.document_id)


CANDIDATES_PER_TYPE = 500
"""Matches of one type that a search ranks: the first its index yields, not the best. A word
that matches more rows is ranked within these only, so that a common word costs what a rare one
does, whatever the size of the workspace. Ranking costs about 2-4 µs a candidate (a chunk's
vector is 1.5 kB): at 500 a common word over every type takes PostgreSQL about 5-8 ms, at 1,000
about 8-13 (bench/search.py, 2-core VM)."""


@dataclass(frozen=True)
class Hit:
    type_name: str
    id: uuid.UUID
    score: float
    snippet: str | None


def _candidates(function: Any, q: ColumnElement[Any], *columns: str) -> Any:
    """The ranked candidates of one of migration 0009's functions, as a table."""
    return function(q, CANDIDATES_PER_TYPE).table_valued(*columns, "rank")


def _row_hits(type_name: str, function: Any, id_column: str) -> Callable[[ColumnElement[Any], int], Select[Any]]:
    """The best `first` candidates of a type whose rows are its hits (contacts, records)."""
    def hits(q: ColumnElement[Any], first: int) -> Select[Any]:
        m = _candidates(function, q, id_column)
        return select(literal(type_name).label("type_name"), m.c[id_column].label("id"),
                      null().cast(UUID).label("chunk_id"), m.c.rank
                      ).order_by(m.c.rank.desc(), m.c[id_column]).limit(first)
    return hits


def _document_hits(q: ColumnElement[Any], first: int) -> Select[Any]:
    """A document ranks by its best chunk; the snippet comes from that chunk."""
    m = _candidates(func.ctxgraph_chunk_candidates, q, "chunk_id", "document_id")
    best = (select(m.c.document_id, m.c.chunk_id, m.c.rank).ext(distinct_on(m.c.document_id))
            .order_by(m.c.document_id, m.c.rank.desc(), m.c.chunk_id).subquery("best_chunks"))
    return select(literal("Document").label("type_name"), best.c.document_id.label("id"), best.c.chunk_id,
                  best.c.rank).order_by(best.c.rank.desc(), best.c.document_id).limit(first)


_HITS = {
    "CONTACT": _row_hits("Contact", func.ctxgraph_contact_candidates, "contact_id"),
    "RECORD": _row_hits("Record", func.ctxgraph_record_candidates, "record_id"),
    "DOCUMENT": _document_hits,
}


def _snippet_text(ws: uuid.UUID, hits: Any) -> tuple[ColumnElement[Any], list[tuple[Any, ColumnElement[bool]]]]:
    """The text each hit's snippet is taken from, and the outer joins that reach it: a contact's
    matched fields, a record's name and text, a document's matching chunk."""
    contact_text = func.concat_ws(" ", Contact.full_name, Contact.email, Contact.company, Contact.title, Contact.city)
    record_text = Record.name + literal("\n") + Record.search_text
    chunk_text = DocumentChunk.heading + literal("\n") + DocumentChunk.content
    joins = [
        (Contact, and_(hits.c.type_name == "Contact", Contact.id == hits.c.id, Contact.workspace_id == ws)),
        (Record, and_(hits.c.type_name == "Record", Record.id == hits.c.id, Record.workspace_id == ws)),
        (DocumentChunk, and_(DocumentChunk.id == hits.c.chunk_id, DocumentChunk.workspace_id == ws)),
    ]
    text = case((hits.c.type_name == "Contact", contact_text), (hits.c.type_name == "Record", record_text),
                else_=chunk_text)
    return text, joins


async def search(s: AsyncSession, p: Principal, text: str, types: Sequence[str] | None, first: int) -> list[Hit]:
    """The best `first` hits of the types asked for (all by default) that the caller may read,
    best first (ties by type and id); live rows of the caller's workspace only."""
    statement = search_query(p, text, types, first)
    if statement is None:
        return []
    rows = await s.execute(statement.order_by(statement.selected_columns.position))
    return [Hit(type_name, id_, float(rank), snippet_html(snippet)) for type_name, id_, rank, snippet, _ in rows]


def search_query(p: Principal, text: str, types: Sequence[str] | None, first: int) -> Select[Any] | None:
    """The hits' statement: (type_name, id, rank, snippet as ts_headline marks it, position);
    None when there can be none.

    One statement: each type's best `first` of its ranked candidates, the best `first` of those,
    and the snippets of these alone."""
    ws = p.require_workspace()
    if not 0 <= first <= MAX_HITS:
        raise BadInput(f"first must be between 0 and {MAX_HITS}")
    wanted = [t for t in (types or list(TYPES)) if p.can(TYPES[t])]
    if types and not wanted:
        p.require(TYPES[types[0]])  # raises FORBIDDEN: nothing asked for is readable
    q = tsquery(text)
    if not first or not wanted:
        return None
    per_type = [_HITS[t](q, first).subquery() for t in dict.fromkeys(wanted)]
    every = union_all(*(select(hits) for hits in per_type)).subquery("hits")
    best = select(every).order_by(every.c.rank.desc(), every.c.type_name, every.c.id).limit(first).subquery("best")
    snippet_text, joins = _snippet_text(ws, best)
    position = func.row_number().over(order_by=(best.c.rank.desc(), best.c.type_name, best.c.id))
    statement = select(best.c.type_name, best.c.id, best.c.rank, _headline(snippet_text, q).label("snippet"),
                       position.label("position")).select_from(best)
    for table, on in joins:
        statement = statement.outerjoin(table, on)
    return statement


def snippet_html_sql(headline: Any) -> Any:
    """`snippet_html` in SQL: html.escape's five characters, then the marks."""
    out = headline
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#x27;"),
                         (_START, "<mark>"), (_STOP, "</mark>")):
        out = func.replace(out, literal(char), literal(entity))
    return out
