"""Documents: inline content or a URL fetched by a worker, plain-text extraction, sha256 dedup
within a workspace, versions, links to any node, soft delete, chunks for search.

Every write, from a mutation or an import, goes through `save_documents`. A url document is
stored PENDING with a message to `app.jobs.documents.fetch_document` sent once it has committed
(`app.services.effects`), and the actor moves it through PROCESSING to READY or FAILED (with the
reason).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Document, DocumentChunk, DocumentLink, DocumentVersion, Source
from app.services import effects, extract, filters, ids, relationships
from app.services.access import Principal
from app.services.batch import ItemOutcome
from app.services.errors import Invalid, Problem, not_found
from app.services.object_types import live_node_ids
from app.services.pagination import ChildPages, Page, PageArgs, SortKey, paginate
from app.services.validation import check_text

READ, WRITE = "documents:read", "documents:write"
MAX_TITLE, MAX_URL, MAX_TAGS, MAX_TAG = 500, 2000, 50, 100
MAX_CONTENT = 5_000_000
FETCH_ACTOR = "fetch_document"
"The actor (app.jobs.documents) that fetches a url document stored PENDING, sent once it is committed."
KEEP: Any = object()


@dataclass
class DocDraft:
    """One document to write: new (`current` None) or a change to `current`; KEEP leaves a value."""

    path: tuple[str, ...]
    title: Any = KEEP
    raw: Any = KEEP
    "Inline content as given (extracted per content_type), or KEEP."
    url: Any = KEEP
    content_type: str = "text/plain"
    tags: Any = KEEP
    metadata: Any = KEEP
    source_id: uuid.UUID | None = None
    remote_id: str | None = None
    author_id: uuid.UUID | None = None
    links: list[tuple[str, uuid.UUID]] = field(default_factory=list)
    current: Document | None = None
    problems: list[Problem] = field(default_factory=list)
    text: str | None = None
    hash: str | None = None


@dataclass
class SavedDoc:
    document: Document | None
    "CREATED, UPDATED, SKIPPED (unchanged, or `deduplicated` onto another document) or FAILED."
    outcome: str
    deduplicated: bool = False
    problems: list[Problem] = field(default_factory=list)
    "True when the document now waits for its url to be fetched."
    fetch: bool = False


def check_url(url: Any, path: tuple[str, ...]) -> Problem | None:
    if not isinstance(url, str) or len(url) > MAX_URL:
        return Problem(f"url must be an http(s) URL of at most {MAX_URL} characters", "INVALID", path)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Problem("Only http(s) URLs can be fetched", "INVALID", path)
    return None


def _check(dr: DocDraft) -> None:
    p = dr.path
    if dr.current is None and dr.title is KEEP:
        dr.title = None
    if dr.title is not KEEP:
        bad = check_text(dr.title, (*p, "title"), max_length=MAX_TITLE)
        if bad:
            dr.problems.append(bad)
    if dr.current is None and (dr.raw is KEEP or dr.raw is None) == (dr.url is KEEP or dr.url is None):
        dr.problems.append(Problem("Give exactly one of content or url", "INVALID", (*p, "content")))
    if dr.current is not None and dr.raw not in (KEEP, None) and dr.url not in (KEEP, None):
        dr.problems.append(Problem("Give content or url, not both", "INVALID", (*p, "content")))
    if dr.url not in (KEEP, None):
        bad = check_url(dr.url, (*p, "url"))
        if bad:
            dr.problems.append(bad)
    if dr.raw not in (KEEP, None):
        if dr.content_type not in extract.CONTENT_TYPES:
            dr.problems.append(Problem(f"contentType must be one of {', '.join(extract.CONTENT_TYPES)}", "INVALID",
                                       (*p, "contentType")))
        elif not isinstance(dr.raw, str) or len(dr.raw) > MAX_CONTENT:
            dr.problems.append(Problem(f"content must be text of at most {MAX_CONTENT} characters", "INVALID",
                                       (*p, "content")))
        else:
            dr.text = extract.extract(dr.raw, dr.content_type)
            if not dr.text:
                dr.problems.append(Problem("content has no text", "REQUIRED", (*p, "content")))
            dr.hash = extract.content_hash(dr.text)
    if dr.tags not in (KEEP, None) and (
        not isinstance(dr.tags, list) or len(dr.tags) > MAX_TAGS
        or not all(isinstance(t, str) and 0 < len(t.strip()) <= MAX_TAG for t in dr.tags)
    ):
        dr.problems.append(Problem(f"tags: at most {MAX_TAGS} non-empty strings of at most {MAX_TAG} characters",
                                   "INVALID", (*p, "tags")))
    if dr.metadata not in (KEEP, None) and not isinstance(dr.metadata, dict):
        dr.problems.append(Problem("metadata must be a JSON object", "INVALID", (*p, "metadata")))


def _tags(tags: Any) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in tags or []))


async def _live_by_hash(s: AsyncSession, ws: uuid.UUID, hashes: list[str]) -> dict[str, Document]:
    if not hashes:
        return {}
    rows = await s.scalars(select(Document).where(Document.workspace_id == ws, Document.deleted_at.is_(None),
                                                  Document.content_hash.in_(hashes)))
    return {d.content_hash: d for d in rows if d.content_hash}


def _chunk_rows(ws: uuid.UUID, document_id: uuid.UUID, title: str, text: str) -> list[dict[str, Any]]:
    return [{"id": uuid.uuid4(), "workspace_id": ws, "document_id": document_id, "ordinal": i, "content": c,
             "heading": title if i == 0 else ""} for i, c in enumerate(extract.chunks(text))]


def _check_each(drafts: list[DocDraft]) -> None:
    """Run in a thread: extracting a large HTML or markdown body is seconds of pure-Python CPU."""
    for dr in drafts:
        _check(dr)


async def save_documents(s: AsyncSession, ws: uuid.UUID, actor: uuid.UUID | None,
                         drafts: list[DocDraft]) -> list[SavedDoc]:
    """Validate and write a batch; one bad draft fails only itself. Bulk statements throughout."""
    await asyncio.to_thread(_check_each, drafts)
    existing = await _live_by_hash(s, ws, [dr.hash for dr in drafts if dr.hash and not dr.problems])
    now = datetime.now(UTC)
    results: list[SavedDoc] = []
    inserts, updates, versions, chunk_rows, rechunked, links = [], [], [], [], [], []
    for dr in drafts:
        if dr.problems:
            results.append(SavedDoc(None, "FAILED", problems=dr.problems))
            continue
        cur = dr.current
        other = existing.get(dr.hash) if dr.hash else None
        if other is not None and (cur is None or other.id != cur.id):
            if cur is None:
                links += [(other.id, t, i) for t, i in dr.links]
                results.append(SavedDoc(other, "SKIPPED", deduplicated=True))
                continue
            results.append(SavedDoc(None, "FAILED", problems=[Problem(
                f"Document {ids.encode('Document', other.id)} already has this content", "DUPLICATE",
                (*dr.path, "content"))]))
            continue
        title = cur.title if dr.title is KEEP else dr.title.strip()
        tags = cur.tags if dr.tags is KEEP and cur else _tags(None if dr.tags is KEEP else dr.tags)
        metadata = cur.metadata_ if dr.metadata is KEEP and cur else (
            {} if dr.metadata in (KEEP, None) else dr.metadata)
        new_content = dr.text is not None and (cur is None or dr.hash != cur.content_hash)
        new_url = dr.url not in (KEEP, None) and (cur is None or dr.url != cur.url or cur.content_hash is None
                                                   and cur.status == "FAILED")
        doc_id = cur.id if cur else uuid.uuid4()
        values: dict[str, Any] = {"id": doc_id, "title": title, "tags": tags, "metadata_": metadata, "updated_at": now}
        if new_content:
            values.update(content=dr.text, content_hash=dr.hash, status="READY", error=None, content_type=dr.content_type,
                          url=None if cur is None else (cur.url if dr.url is KEEP else dr.url))
        elif new_url:
            values.update(url=dr.url, content=None, content_hash=None, status="PENDING", error=None)
        changed = new_content or new_url
        if cur is not None and not changed and (title, tags, metadata) == (cur.title, cur.tags, cur.metadata_):
            links += [(cur.id, t, i) for t, i in dr.links]
            results.append(SavedDoc(cur, "SKIPPED"))
            continue
        version = (cur.version + 1 if changed else cur.version) if cur else 1
        values["version"] = version
        if cur is None:
            inserts.append({**values, "workspace_id": ws, "content_type": values.get("content_type", "text/plain"),
                            "source_id": dr.source_id, "remote_id": dr.remote_id, "author_id": dr.author_id,
                            "created_by_id": actor, "created_at": now})
        else:
            updates.append(values)
        if changed:
            versions.append({"id": uuid.uuid4(), "workspace_id": ws, "document_id": doc_id, "version": version,
                             "title": title, "url": values.get("url"), "content": values.get("content"),
                             "content_hash": values.get("content_hash"), "created_at": now})
        if new_content or new_url or (cur is not None and title != cur.title):
            rechunked.append(doc_id)
            text = dr.text if new_content else (None if new_url else None)
            if text is not None:
                chunk_rows += _chunk_rows(ws, doc_id, title, text)
        if dr.hash:
            existing[dr.hash] = Document(id=doc_id)  # a later duplicate in the batch dedups onto this one
        links += [(doc_id, t, i) for t, i in dr.links]
        results.append(SavedDoc(None, "UPDATED" if cur else "CREATED", fetch=bool(new_url)))
    if inserts:
        await s.execute(insert(Document), inserts)
    if updates:
        await s.execute(update(Document), updates)
    if versions:
        await s.execute(insert(DocumentVersion), versions)
    retitled = [u["id"] for u in updates if u["id"] in rechunked and "content" not in u]
    if rechunked:
        await s.execute(delete(DocumentChunk).where(DocumentChunk.workspace_id == ws,
                                                    DocumentChunk.document_id.in_([r for r in rechunked
                                                                                   if r not in retitled])))
    if chunk_rows:
        await s.execute(insert(DocumentChunk), chunk_rows)
    for doc_id in retitled:  # a new title only: the first chunk's heading follows it
        title = next(u["title"] for u in updates if u["id"] == doc_id)
        await s.execute(update(DocumentChunk).where(DocumentChunk.workspace_id == ws, DocumentChunk.document_id == doc_id,
                                                    DocumentChunk.ordinal == 0).values(heading=title))
    if links:
        await s.execute(pg_insert(DocumentLink).values([
            {"workspace_id": ws, "document_id": d, "node_type": t, "node_id": i} for d, t, i in links
        ]).on_conflict_do_nothing())
    written = [r["id"] for r in inserts] + [u["id"] for u in updates]
    if written:
        fresh = {d.id: d for d in await s.scalars(
            select(Document).where(Document.workspace_id == ws, Document.id.in_(written))
            .execution_options(populate_existing=True))}
        order = iter(written_in_order(inserts, updates, results))
        for result in results:
            if result.outcome in ("CREATED", "UPDATED"):
                result.document = fresh[next(order)]
    for result in results:
        if result.document is not None:
            effects.written(s, "document", result.outcome, "Document", result.document.id)
            if result.fetch:
                effects.message(s, FETCH_ACTOR, str(result.document.id), str(ws))
    return results


def written_in_order(inserts: list[dict[str, Any]], updates: list[dict[str, Any]], results: list[SavedDoc]) -> list[Any]:
    """The ids of written documents in the order of their results."""
    created, updated = iter(r["id"] for r in inserts), iter(u["id"] for u in updates)
    return [next(created) if r.outcome == "CREATED" else next(updated)
            for r in results if r.outcome in ("CREATED", "UPDATED")]


def _one(saved: SavedDoc) -> tuple[Document, bool]:
    if saved.outcome == "FAILED":
        raise Invalid(*saved.problems)
    assert saved.document is not None
    return saved.document, saved.deduplicated


async def _links(s: AsyncSession, ws: uuid.UUID, node_ids: Sequence[str], path: tuple[str, ...]
                 ) -> list[tuple[str, uuid.UUID]]:
    if too_many := filters.list_problem(node_ids, path):
        raise Invalid(too_many)
    live = await live_node_ids(s, ws, node_ids)
    bad = [Problem("No such node in this workspace", "NOT_FOUND", (*path, str(i)))
           for i, n in enumerate(node_ids) if n not in live]
    if bad:
        raise Invalid(*bad)
    return [ids.decode(n) for n in dict.fromkeys(node_ids)]


async def _check_author(s: AsyncSession, ws: uuid.UUID, author_id: uuid.UUID | None, path: tuple[str, ...]) -> None:
    if author_id is None or not await live_node_ids(s, ws, [ids.encode("Contact", author_id)]):
        raise not_found("Contact", path)


async def create_document(
    s: AsyncSession, p: Principal, *, title: str, content: str | None = None, url: str | None = None,
    content_type: str | None = "text/plain", source_id: uuid.UUID | None = None, source_given: bool = False,
    remote_id: str | None = None, tags: list[str] | None = None, metadata: Any = None,
    author_id: uuid.UUID | None = None, author_given: bool = False, link_to: Sequence[str] = (),
) -> tuple[Document, bool]:
    """(document, deduplicated: the same content was there already and is returned)."""
    ws = p.require(WRITE)
    if source_given and (source_id is None or not await s.scalar(
        select(Source.id).where(Source.id == source_id, Source.workspace_id == ws)
    )):
        raise not_found("Source", ("input", "sourceId"))
    if author_given:
        await _check_author(s, ws, author_id, ("input", "authorId"))
    if remote_id is not None and await s.scalar(select(Document.id).where(
        Document.workspace_id == ws, Document.source_id.is_not_distinct_from(source_id), Document.remote_id == remote_id
    )):
        raise Invalid(Problem(f"A document with remoteId {remote_id!r} already exists for this source", "CONFLICT",
                              ("input", "remoteId")))
    links = await _links(s, ws, link_to, ("input", "linkTo"))
    draft = DocDraft(("input",), title, content if content is not None else KEEP, url if url is not None else KEEP,
                     content_type or "text/plain", tags, metadata, source_id, remote_id, author_id, links)
    return _one((await save_documents(s, ws, p.member_id, [draft]))[0])


async def _get(s: AsyncSession, ws: uuid.UUID, document_id: uuid.UUID | None, *, field: tuple[str, ...] = ("id",)
               ) -> Document:
    query = select(Document).where(Document.id == document_id, Document.workspace_id == ws,
                                   Document.deleted_at.is_(None)).with_for_update()
    document = await s.scalar(query) if document_id else None
    if document is None:
        raise not_found("Document", field)
    return document


async def update_document(
    s: AsyncSession, p: Principal, document_id: uuid.UUID | None, *, title: Any = KEEP, content: Any = KEEP,
    url: Any = KEEP, tags: Any = KEEP, metadata: Any = KEEP,
) -> Document:
    """New content (or a new url, fetched again) makes a new version; metadata-only changes do not.
    Content keeps the document's content type."""
    ws = p.require(WRITE)
    document = await _get(s, ws, document_id)
    content_type = document.content_type if document.content_type in extract.CONTENT_TYPES else "text/plain"
    draft = DocDraft(("input",), title, content, url, content_type, tags, metadata, current=document)
    saved, _ = _one((await save_documents(s, ws, p.member_id, [draft]))[0])
    return saved


async def delete_document(s: AsyncSession, p: Principal, document_id: uuid.UUID | None) -> Document:
    ws = p.require(WRITE)
    document = await _get(s, ws, document_id)
    document.deleted_at = datetime.now(UTC)
    await s.flush()
    await s.refresh(document)
    effects.event(s, "document.deleted", "Document", document.id)
    return document


async def link_document(s: AsyncSession, p: Principal, document_id: uuid.UUID | None, node_id: str,
                        linked: bool) -> Document:
    """Link (or unlink) a document and any live node of the workspace; both are idempotent."""
    ws = p.require(WRITE)
    document = await _get(s, ws, document_id, field=("documentId",))
    if linked:
        (type_name, target), = await _links(s, ws, [node_id], ("nodeId",))
        if (type_name, target) == ("Document", document.id):
            raise Invalid(Problem("A document cannot be linked to itself", "INVALID", ("nodeId",)))
        await s.execute(pg_insert(DocumentLink).values(workspace_id=ws, document_id=document.id, node_type=type_name,
                                                       node_id=target).on_conflict_do_nothing())
    else:
        type_name, target = ids.decode(node_id)
        await s.execute(delete(DocumentLink).where(DocumentLink.workspace_id == ws,
                                                   DocumentLink.document_id == document.id,
                                                   DocumentLink.node_type == type_name, DocumentLink.node_id == target))
    effects.event(s, "document.updated", "Document", document.id)
    return document


# ---------------------------------------------------------------- fetching (the worker's side)


async def begin_fetch(s: AsyncSession, ws: uuid.UUID, document_id: uuid.UUID) -> str | None:
    """PENDING -> PROCESSING; the url to fetch, or None when there is nothing to do (gone, done)."""
    document = await s.scalar(select(Document).where(Document.id == document_id, Document.workspace_id == ws,
                                                     Document.deleted_at.is_(None)).with_for_update())
    if document is None or document.status not in ("PENDING", "PROCESSING") or not document.url:
        return None
    document.status = "PROCESSING"
    await s.flush()
    return document.url


async def finish_fetch(s: AsyncSession, ws: uuid.UUID, document_id: uuid.UUID, *, body: str | None = None,
                       content_type: str | None = None, error: str | None = None) -> Document | None:
    """PROCESSING -> READY with the extracted text, or FAILED with `error` (also when the text is
    empty or another document already has it)."""
    document = await s.scalar(select(Document).where(Document.id == document_id, Document.workspace_id == ws,
                                                     Document.deleted_at.is_(None)).with_for_update())
    if document is None or document.status != "PROCESSING":
        return None
    if error is None and body is not None and content_type is not None:
        text = await asyncio.to_thread(extract.extract, body, content_type)
        digest = extract.content_hash(text)
        other = (await _live_by_hash(s, ws, [digest])).get(digest)
        if not text:
            error = "The page has no text"
        elif other is not None and other.id != document.id:
            error = f"Same content as document {ids.encode('Document', other.id)}"
        else:
            document.content, document.content_hash, document.content_type = text, digest, content_type
            document.status, document.error = "READY", None
            await s.execute(update(DocumentVersion).where(
                DocumentVersion.workspace_id == ws, DocumentVersion.document_id == document.id,
                DocumentVersion.version == document.version).values(content=text, content_hash=digest))
            await s.execute(delete(DocumentChunk).where(DocumentChunk.workspace_id == ws,
                                                        DocumentChunk.document_id == document.id))
            rows = _chunk_rows(ws, document.id, document.title, text)
            if rows:
                await s.execute(insert(DocumentChunk), rows)
    if error is not None:
        document.status, document.error = "FAILED", error
    await s.flush()
    await s.refresh(document)
    effects.event(s, "document.updated", "Document", document.id)
    return document


# ---------------------------------------------------------------- import


async def import_documents(
    s: AsyncSession, p: Principal, items: list[dict[str, Any]], source_id: uuid.UUID | None, start_index: int = 0,
) -> list[ItemOutcome]:
    """Upsert GENERIC_JSON items `{id, title, content, contentType, metadata, tags, url, deleted}` by
    (source, remote id), dedup by content hash: new -> CREATED, changed -> UPDATED, unchanged or
    same content as another document -> SKIPPED, `deleted: true` -> soft delete (DELETED), bad ->
    FAILED. An item with a url and no content is stored PENDING, and fetched once committed
    (`app.jobs.documents.fetch_document`), as a document created with a url is."""
    ws = p.require(WRITE)
    remotes = [str(item.get("id")) if isinstance(item, dict) and item.get("id") is not None else None
               for item in items]
    current = {d.remote_id: d for d in await s.scalars(select(Document).where(
        Document.workspace_id == ws, Document.source_id.is_not_distinct_from(source_id),
        Document.remote_id.in_([r for r in remotes if r]), Document.deleted_at.is_(None)).with_for_update())}
    outcomes: dict[int, ItemOutcome] = {}
    drafts: dict[int, DocDraft] = {}
    now = datetime.now(UTC)
    for i, (item, remote) in enumerate(zip(items, remotes, strict=True)):
        index = start_index + i
        if remote is None:
            outcomes[i] = ItemOutcome(index, "FAILED", None, error="An item must be an object with an id")
            continue
        cur = current.get(remote)
        if item.get("deleted") is True:
            if cur is None:
                outcomes[i] = ItemOutcome(index, "SKIPPED", remote)
            else:
                cur.deleted_at = now
                outcomes[i] = ItemOutcome(index, "DELETED", remote, ("Document", cur.id))
                effects.event(s, "document.deleted", "Document", cur.id)
            continue
        content, url = item.get("content"), item.get("url")
        drafts[i] = DocDraft(
            (), item.get("title", KEEP if cur else None), content if content is not None else KEEP,
            url if content is None and url is not None else KEEP, item.get("contentType") or "text/plain",
            item.get("tags", KEEP), item.get("metadata", KEEP), source_id, remote, current=cur,
        )
    saved = await save_documents(s, ws, p.member_id, list(drafts.values()))
    for (i, dr), result in zip(drafts.items(), saved, strict=True):
        index = start_index + i
        if result.outcome == "FAILED":
            outcomes[i] = ItemOutcome(index, "FAILED", dr.remote_id, error="; ".join(
                f"{x.field[-1]}: {x.message}" if x.field else x.message for x in result.problems))
            continue
        assert result.document is not None
        outcomes[i] = ItemOutcome(index, result.outcome, dr.remote_id,  # type: ignore[arg-type]
                                  ("Document", result.document.id))
    await s.flush()
    return [outcomes[i] for i in range(len(items))]


# ---------------------------------------------------------------- reads


async def documents_by_id(s: AsyncSession, p: Principal, keys: list[uuid.UUID]) -> dict[uuid.UUID, Document]:
    """Deleted documents too: `node(id)` shows them with their deletedAt."""
    ws = p.require(READ)
    rows = await s.scalars(select(Document).where(Document.workspace_id == ws, Document.id.in_(keys)))
    return {d.id: d for d in rows}


async def contents_by_id(s: AsyncSession, p: Principal, keys: list[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    """The (deferred) extracted text, only when a client asks for it."""
    ws = p.require(READ)
    rows = await s.execute(select(Document.id, Document.content).where(Document.workspace_id == ws,
                                                                       Document.id.in_(keys)))
    return {doc_id: content for doc_id, content in rows}


async def links_by_document(s: AsyncSession, p: Principal, keys: list[uuid.UUID]
                            ) -> dict[uuid.UUID, list[tuple[str, uuid.UUID]]]:
    ws = p.require(READ)
    rows = await s.execute(select(DocumentLink.document_id, DocumentLink.node_type, DocumentLink.node_id)
                           .where(DocumentLink.workspace_id == ws, DocumentLink.document_id.in_(keys))
                           .order_by(DocumentLink.created_at, DocumentLink.node_type, DocumentLink.node_id))
    out: dict[uuid.UUID, list[tuple[str, uuid.UUID]]] = {k: [] for k in keys}
    for doc_id, type_name, node_id in rows:
        out[doc_id].append((type_name, node_id))
    return out


FILTER_FIELDS: filters.FieldMap = {
    "title": filters.string(Document.title),
    "content_type": filters.string(Document.content_type),
    "status": filters.one_of(Document.status),
    "tags": lambda f: _tags_filter(f),
    "source_id": filters.global_id(Document.source_id, "Source"),
    "created_at": filters.comparable(Document.created_at),
}


def _tags_filter(f: Any) -> Any:
    """Any tag matching the StringFilter."""
    tag = func.unnest(Document.tags).column_valued("tag")
    return select(tag).where(filters.string(tag)(f)).exists()


SORT_COLUMNS = {"TITLE": Document.title, "CREATED_AT": Document.created_at, "UPDATED_AT": Document.updated_at}


def _keys(order: Sequence[tuple[str, bool]] | None) -> list[SortKey]:
    keys = [SortKey(SORT_COLUMNS[f], lambda d, k=SORT_COLUMNS[f].key: getattr(d, k), descending=desc)
            for f, desc in (order or [("CREATED_AT", True)])]
    return [*keys, SortKey(Document.id, lambda d: d.id, descending=keys[-1].descending)]


async def list_documents(
    s: AsyncSession, p: Principal, args: PageArgs, *, where: Any = None,
    order: Sequence[tuple[str, bool]] | None = None, search: str | None = None,
    linked_to: tuple[str, uuid.UUID] | None = None,
) -> Page[Document]:
    """Live documents (all with `includeDeleted`), newest first by default."""
    stmt, keys = documents_query(p, where=where, order=order, search=search, linked_to=linked_to)
    return await paginate(s, stmt, keys, args)


def documents_query(
    p: Principal, *, where: Any = None, order: Sequence[tuple[str, bool]] | None = None, search: str | None = None,
    linked_to: tuple[str, uuid.UUID] | None = None,
) -> tuple[Select[Any], list[SortKey]]:
    """The documents a list shows, unordered, and the sort keys of `order`."""
    ws = p.require(READ)
    stmt: Select[Any] = select(Document).where(Document.workspace_id == ws)
    if not getattr(where, "include_deleted", None):
        stmt = stmt.where(Document.deleted_at.is_(None))
    if where is not None:
        stmt = stmt.where(filters.compile_filter(where, FILTER_FIELDS))
    if search is not None:
        from app.services.search import document_ids_matching

        stmt = stmt.where(Document.id.in_(document_ids_matching(search)))
    if linked_to is not None:
        stmt = stmt.where(Document.id.in_(select(DocumentLink.document_id).where(
            DocumentLink.workspace_id == ws, DocumentLink.node_type == linked_to[0],
            DocumentLink.node_id == linked_to[1])))
    return stmt, _keys(order)


def _versions_of(ws: uuid.UUID, document_ids: list[uuid.UUID]) -> tuple[Any, Any, list[SortKey]]:
    stmt = select(DocumentVersion).where(DocumentVersion.workspace_id == ws, DocumentVersion.document_id.in_(document_ids))
    return stmt, DocumentVersion.document_id, [SortKey(DocumentVersion.version, lambda v: v.version, descending=True)]


def _linked_to(node_type: str) -> Any:
    def query(ws: uuid.UUID, node_ids: list[uuid.UUID]) -> tuple[Any, Any, list[SortKey]]:
        stmt = select(Document).join(DocumentLink, DocumentLink.document_id == Document.id).where(
            Document.workspace_id == ws, Document.deleted_at.is_(None), DocumentLink.workspace_id == ws,
            DocumentLink.node_type == node_type, DocumentLink.node_id.in_(node_ids),
        )
        return stmt, DocumentLink.node_id, _keys(None)

    return query


"Document.versions: newest first."
VERSIONS = ChildPages(READ, _versions_of)
"Contact.documents, Record.documents: the live documents linked to a node, newest first."
LINKED_TO = {node_type: ChildPages(READ, _linked_to(node_type)) for node_type in ("Contact", "Record")}


async def live_documents_by_id(s: AsyncSession, p: Principal, keys: list[uuid.UUID]) -> dict[uuid.UUID, Document]:
    ws = p.require(READ)
    rows = await s.scalars(select(Document).where(Document.workspace_id == ws, Document.id.in_(keys),
                                                  Document.deleted_at.is_(None)))
    return {d.id: d for d in rows}


relationships.register_endpoint("Document", live_documents_by_id)


async def move_contact_links(s: AsyncSession, ws: uuid.UUID, survivor: uuid.UUID, merged: list[uuid.UUID]) -> None:
    """A merge of contacts (`app.services.merge`): documents linked to, or written by, a merged
    contact now name the survivor (a document linked to several of them keeps one link)."""
    await s.execute(text(
        """
        INSERT INTO document_links (document_id, node_type, node_id, workspace_id)
        SELECT DISTINCT document_id, 'Contact', :survivor, workspace_id FROM document_links
        WHERE workspace_id = :ws AND node_type = 'Contact' AND node_id = ANY(:merged)
        ON CONFLICT DO NOTHING
        """
    ), {"ws": ws, "survivor": survivor, "merged": merged})
    await s.execute(delete(DocumentLink).where(
        DocumentLink.workspace_id == ws, DocumentLink.node_type == "Contact", DocumentLink.node_id.in_(merged)
    ))
    await s.execute(update(Document).where(Document.workspace_id == ws, Document.author_id.in_(merged)).values(
        author_id=survivor
    ).execution_options(synchronize_session=False))
