"""Ranked full-text search over contacts, records and document chunks (PostgreSQL full text).

Query syntax: words must all match (stemmed, English); "a quoted phrase" matches in order;
`word*` matches by prefix. Records and chunks are matched through the SECURITY DEFINER
functions of migration 0003, so that their GIN indexes are used under row-level security.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal, literal_column, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Document, DocumentChunk, Record
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


@dataclass(frozen=True)
class Hit:
    type_name: str
    id: uuid.UUID
    score: float
    snippet: str | None


async def _record_hits(s: AsyncSession, ws: uuid.UUID, q: ColumnElement[Any], limit: int) -> list[Hit]:
    matches = func.ctxgraph_record_matches(q).table_valued("record_id", "rank").alias("m")
    top = (select(matches.c.record_id, matches.c.rank).join(Record, Record.id == matches.c.record_id)
           .where(Record.workspace_id == ws, Record.deleted_at.is_(None))
           .order_by(matches.c.rank.desc(), matches.c.record_id).limit(limit).subquery())
    text = Record.name + literal("\n") + Record.search_text
    rows = await s.execute(
        select(top.c.record_id, top.c.rank, _headline(text, q))
        .join(Record, Record.id == top.c.record_id).where(Record.workspace_id == ws)
    )
    return [Hit("Record", rid, float(rank), snippet_html(snippet)) for rid, rank, snippet in rows]


async def _document_hits(s: AsyncSession, ws: uuid.UUID, q: ColumnElement[Any], limit: int) -> list[Hit]:
    """A document ranks by its best chunk; the snippet comes from that chunk."""
    matches = func.ctxgraph_chunk_matches(q).table_valued("chunk_id", "document_id", "rank").alias("m")
    best = (select(matches.c.chunk_id, matches.c.document_id, matches.c.rank)
            .ext(distinct_on(matches.c.document_id))
            .join(Document, Document.id == matches.c.document_id)
            .where(Document.workspace_id == ws, Document.deleted_at.is_(None))
            .order_by(matches.c.document_id, matches.c.rank.desc()).subquery())
    top = select(best).order_by(best.c.rank.desc(), best.c.document_id).limit(limit).subquery()
    text = DocumentChunk.heading + literal("\n") + DocumentChunk.content
    rows = await s.execute(
        select(top.c.document_id, top.c.rank, _headline(text, q))
        .join(DocumentChunk, DocumentChunk.id == top.c.chunk_id).where(DocumentChunk.workspace_id == ws)
    )
    return [Hit("Document", did, float(rank), snippet_html(snippet)) for did, rank, snippet in rows]


async def _contact_hits(s: AsyncSession, ws: uuid.UUID, q: ColumnElement[Any], limit: int) -> list[Hit]:
    """Contacts are the contacts domain's table: matched on their names, emails, company and title."""
    from app.db.models import Contact

    text = func.concat_ws(" ", Contact.full_name, Contact.email, Contact.company, Contact.title, Contact.city)
    vector = func.setweight(func.to_tsvector("english", Contact.full_name), literal_column("'A'")).op("||")(
        func.to_tsvector("english", text))
    rank = func.ts_rank_cd(vector, q, 1).label("rank")
    rows = await s.execute(
        select(Contact.id, rank, _headline(text, q))
        .where(Contact.workspace_id == ws, Contact.deleted_at.is_(None), vector.op("@@")(q))
        .order_by(rank.desc(), Contact.id).limit(limit)
    )
    return [Hit("Contact", cid, float(r), snippet_html(snippet)) for cid, r, snippet in rows]


async def search(s: AsyncSession, p: Principal, text: str, types: Sequence[str] | None, first: int) -> list[Hit]:
    """The best `first` hits of the types asked for (all by default) that the caller may read,
    best first; live rows of the caller's workspace only."""
    ws = p.require_workspace()
    if not 0 <= first <= MAX_HITS:
        raise BadInput(f"first must be between 0 and {MAX_HITS}")
    wanted = [t for t in (types or list(TYPES)) if p.can(TYPES[t])]
    if types and not wanted:
        p.require(TYPES[types[0]])  # raises FORBIDDEN: nothing asked for is readable
    q = tsquery(text)
    finders = {"RECORD": _record_hits, "DOCUMENT": _document_hits, "CONTACT": _contact_hits}
    hits: list[Hit] = []
    for type_name in dict.fromkeys(wanted):
        if first:
            hits += await finders[type_name](s, ws, q, first)
    hits.sort(key=lambda h: (-h.score, h.type_name, h.id))
    return hits[:first]

