"""Relationships: typed, weighted edges between any two nodes of a workspace.

Endpoints are stored as (type name, uuid); each node type registers how to fetch its live rows
(`register_endpoint`), which checks that an endpoint exists and loads the other end of an edge.
Manual edges carry the weight they were given. Derived edges (shared_thread,
shared_calendar_event) are kept from activity between contacts that share a conversation, and
weigh by their counts and recency when read. same_company / same_domain edges are not stored:
they are computed on read, weigh 0, and appear only where their kinds are asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
import uuid
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement, Select, and_, any_, case, cast, delete, distinct, false, func, literal, null, or_, select, text, true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.types import DateTime, Text

from app.db.models import Contact, ContactIntelligence, ConversationParticipant, Relationship
from app.services import contacts, effects, filters, ids
from app.services.access import Principal
from app.services.errors import BadInput, Invalid, Problem, RateLimited, TooComplex, not_found
from app.services.intelligence import edge_weight
from app.services.pagination import Page, PageArgs, SortKey, encode_cursor, paginate, written

READ, WRITE = contacts.READ, contacts.WRITE
DERIVED = frozenset({"shared_thread", "shared_calendar_event"})
VIRTUAL = frozenset({"same_company", "same_domain"})
KIND = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
DEFAULT_MANUAL_WEIGHT = 0.5
PUBLIC_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com", "msn.com", "icloud.com",
    "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.com", "gmx.de", "mail.com", "yandex.ru", "qq.com",
    "163.com", "web.de",
})

Fetch = Callable[[AsyncSession, Principal, list[uuid.UUID]], Awaitable[dict[uuid.UUID, Any]]]
_ENDPOINTS: dict[str, Fetch] = {}


def register_endpoint(type_name: str, fetch: Fetch) -> None:
    """`fetch(session, principal, uuids) -> {uuid: live row}` of a node type edges may join."""
    _ENDPOINTS[type_name] = fetch


def endpoint_fetch(type_name: str) -> Fetch | None:
    return _ENDPOINTS.get(type_name)


def endpoint_types() -> tuple[str, ...]:
    """The node types an edge may join."""
    return tuple(_ENDPOINTS)


register_endpoint("Contact", contacts.live_contacts_by_id)

# The weight a row has when read: derived edges by counts and recency, others as stored.
def weight_sql(r: Any) -> ColumnElement[float]:
    """The weight of the row whose columns are `r` (the model, or a table alias's `.c`)."""
    return case(
        (r.kind.in_(DERIVED), func.ctx_edge_weight(r.shared_thread_count + r.shared_calendar_count, r.last_seen_at)),
        else_=r.weight,
    )


WEIGHT = weight_sql(Relationship)


def weight_of(row: Relationship, now: datetime) -> float:
    """As WEIGHT, in Python, for a row already loaded."""
    if row.kind in DERIVED:
        return edge_weight(row.shared_thread_count + row.shared_calendar_count, row.last_seen_at, now)
    return 0.0 if row.kind in VIRTUAL else row.weight


# ---------------------------------------------------------------- pages of many parents at once


def _ordered(keys: Sequence[SortKey]) -> list[Any]:
    return [
        (k.expr.desc().nulls_first() if k.descending else k.expr.asc().nulls_last()) for k in keys
    ]


async def first_pages(
    s: AsyncSession, entity: Any, stmt: Select[Any], owner: ColumnElement[Any], keys: Sequence[SortKey], size: int,
    owner_of: Callable[[Any], Any] | None, parents: Iterable[Any],
) -> dict[Any, Page[Any]]:
    """The first `size` rows of `stmt` for each parent, in one statement (a window per parent);
    cursors are those `paginate` reads, so later pages come from it."""
    ranked = stmt.add_columns(
        owner.label("_owner"), func.row_number().over(partition_by=owner, order_by=_ordered(keys)).label("_rn")
    ).subquery("ranked")
    row_entity = aliased(entity, ranked)
    result = await s.execute(
        select(row_entity, ranked.c._owner).where(ranked.c._rn <= written(size + 1)).order_by(ranked.c._owner, ranked.c._rn)
    )
    grouped: dict[Any, list[Any]] = defaultdict(list)
    for row, parent in result:
        grouped[parent].append(row)
    pages: dict[Any, Page[Any]] = {}
    for parent in parents:
        rows = grouped.get(parent, [])
        items = rows[:size]
        pages[parent] = Page(
            items=items, cursors=[encode_cursor([k.value(r) for k in keys]) for r in items],
            has_next_page=len(rows) > size, has_previous_page=False, count=_unset_count,
        )
    return pages


async def _unset_count() -> int:
    raise RuntimeError("the schema layer sets the count of a batched page")


# ---------------------------------------------------------------- edges of nodes (Contact.relationships...)


def _uuid_list(values: Sequence[uuid.UUID]) -> Any:
    return cast(list(values), ARRAY(UUID(as_uuid=True)))


def _virtual(ws: uuid.UUID, kind: str, owners: Any) -> Select[Any]:
    """same_company / same_domain edges of the owner contacts, as relationship-shaped rows."""
    a, b = aliased(Contact), aliased(Contact)
    if kind == "same_company":
        key_a, key_b = func.lower(a.company), func.lower(b.company)
        present = a.company.is_not(None)
    else:
        key_a, key_b = func.split_part(a.email, "@", 2), func.split_part(b.email, "@", 2)
        present = and_(a.email.is_not(None), key_a.not_in(PUBLIC_MAIL_DOMAINS))
    low, high = func.least(cast(a.id, Text), cast(b.id, Text)), func.greatest(cast(a.id, Text), cast(b.id, Text))
    return (
        select(
            cast(func.md5(literal(kind) + low + high), UUID(as_uuid=True)).label("id"), a.workspace_id,
            literal(kind).label("kind"), literal("Contact").label("source_type"), a.id.label("source_id"),
            literal("Contact").label("target_type"), b.id.label("target_id"), literal(0.0).label("weight"),
            literal(0).label("shared_thread_count"), literal(0).label("shared_calendar_count"),
            cast(null(), DateTime(timezone=True)).label("last_seen_at"), true().label("is_active"),
            cast(literal("{}"), JSONB).label("metadata"), func.greatest(a.created_at, b.created_at).label("created_at"),
            owners.c.id.label("owner"),
        )
        .select_from(owners)
        .join(a, a.id == owners.c.id)
        .join(b, and_(b.workspace_id == a.workspace_id, key_b == key_a, b.id != a.id, b.deleted_at.is_(None)))
        .where(a.workspace_id == ws, a.deleted_at.is_(None), present)
    )


def touching(node_type: str, owner: Any, direction: str) -> ColumnElement[bool]:
    """Stored edges with `owner` (a uuid or uuid column) of `node_type` at the end(s) `direction` names."""
    R = Relationship
    touches = []
    if direction in ("OUTGOING", "BOTH"):
        touches.append(and_(R.source_type == node_type, R.source_id == owner))
    if direction in ("INCOMING", "BOTH"):
        touches.append(and_(R.target_type == node_type, R.target_id == owner))
    return or_(*touches)


def stored_kinds(kinds: Sequence[str] | None) -> ColumnElement[bool]:
    """Stored edges of the kinds asked for (all without any; virtual kinds are not stored)."""
    if not kinds:
        return true()
    filters.check_list(kinds, ("kinds",))
    wanted = [k for k in kinds if k not in VIRTUAL]
    return Relationship.kind.in_(wanted) if wanted else false()


def node_edges(ws: uuid.UUID, node_type: str, owners: Sequence[uuid.UUID], direction: str, kinds: Sequence[str] | None) -> tuple[Any, Any, Any]:
    """(entity, owner column, statement) of the edges of `owners` (nodes of `node_type`)."""
    o = func.unnest(_uuid_list(owners)).table_valued("id").render_derived(name="o")
    R = Relationship
    columns = [c for c in R.__table__.c]
    stored = (select(*columns, o.c.id.label("owner")).select_from(o).join(R, touching(node_type, o.c.id, direction))
              .where(R.workspace_id == ws, stored_kinds(kinds)))
    wanted = set(kinds or [])
    parts: list[Any] = [stored]
    if node_type == "Contact":
        parts += [_virtual(ws, kind, o) for kind in sorted(VIRTUAL & wanted)]
    edges = union_all(*parts).subquery("edges") if len(parts) > 1 else stored.subquery("edges")
    entity = aliased(Relationship, edges)
    return entity, edges.c.owner, select(entity)


def other_end(r: Any, owner: tuple[str, Any] | None) -> tuple[ColumnElement[str], ColumnElement[Any]]:
    """(type, id) of the end of edge `r` (its columns) that is not `owner` (a node's type and id
    column, when its edges are listed); the target when there is no owner."""
    owner_is_target = and_(r.target_type == owner[0], r.target_id == owner[1]) if owner is not None else false()
    return (case((owner_is_target, r.source_type), else_=r.target_type),
            case((owner_is_target, r.source_id), else_=r.target_id))


def stored_edges(ws: uuid.UUID, node_type: str, owner: Any, direction: str, kinds: Sequence[str] | None
                 ) -> tuple[Select[Any], list[SortKey]]:
    """The stored edges of one node (`owner` a uuid or a uuid column), and their order: a
    node's relationships without the virtual kinds, which are computed (see `node_edges`)."""
    R = Relationship
    stmt = select(R).where(R.workspace_id == ws, touching(node_type, owner, direction), stored_kinds(kinds))
    return stmt, _edge_keys(R)


def _edge_keys(entity: Any) -> list[SortKey]:
    return [SortKey(entity.created_at, lambda r: r.created_at), SortKey(entity.id, lambda r: r.id)]


async def node_relationships(
    s: AsyncSession, p: Principal, node_type: str, node_id: uuid.UUID, args: PageArgs, *,
    direction: str = "BOTH", kinds: Sequence[str] | None = None,
) -> Page[Relationship]:
    """One node's edges, oldest first."""
    ws = p.require(READ)
    entity, owner, stmt = node_edges(ws, node_type, [node_id], direction, kinds)
    return await paginate(s, stmt, _edge_keys(entity), args)


async def first_relationship_pages(s: AsyncSession, p: Principal, keys: list[tuple[Any, ...]]) -> dict[Any, Page[Relationship]]:
    """Loader fetch: first pages of many nodes' edges; key (type, id, direction, kinds, size)."""
    ws = p.require(READ)
    groups: dict[tuple[Any, ...], list[uuid.UUID]] = defaultdict(list)
    for node_type, node_id, direction, kinds, size in keys:
        groups[(node_type, direction, kinds, size)].append(node_id)
    out: dict[Any, Page[Relationship]] = {}
    for (node_type, direction, kinds, size), node_ids in groups.items():
        entity, owner, stmt = node_edges(ws, node_type, node_ids, direction, kinds)
        pages = await first_pages(s, entity, stmt, owner, _edge_keys(entity), size, None, node_ids)
        out.update({(node_type, n, direction, kinds, size): page for n, page in pages.items()})
    return out


async def count_relationships(s: AsyncSession, p: Principal, keys: list[tuple[Any, ...]]) -> dict[Any, int]:
    """Loader fetch: how many edges each node has; key (type, id, direction, kinds)."""
    ws = p.require(READ)
    groups: dict[tuple[Any, ...], list[uuid.UUID]] = defaultdict(list)
    for node_type, node_id, direction, kinds in keys:
        groups[(node_type, direction, kinds)].append(node_id)
    out: dict[Any, int] = {}
    for (node_type, direction, kinds), node_ids in groups.items():
        _, owner, _ = node_edges(ws, node_type, node_ids, direction, kinds)
        found = dict((await s.execute(select(owner, func.count()).group_by(owner))).all())
        out.update({(node_type, n, direction, kinds): found.get(n, 0) for n in node_ids})
    return out


async def relationships_by_id(s: AsyncSession, p: Principal, rel_ids: list[uuid.UUID]) -> dict[uuid.UUID, Relationship]:
    ws = p.require(READ)
    rows = await s.scalars(select(Relationship).where(Relationship.workspace_id == ws, Relationship.id.in_(rel_ids)))
    return {r.id: r for r in rows}


# ---------------------------------------------------------------- the relationships query


def _node_filter(f: Any) -> ColumnElement[bool]:
    """IDFilter on either endpoint, for ids of any node type."""
    R = Relationship

    def touching(global_ids: Sequence[str]) -> ColumnElement[bool]:
        terms = []
        for gid in global_ids:
            type_name, id_ = ids.decode(gid)
            terms.append(or_(and_(R.source_type == type_name, R.source_id == id_),
                             and_(R.target_type == type_name, R.target_id == id_)))
        return or_(false(), *terms)

    terms: list[ColumnElement[bool]] = []
    if f.eq is not None:
        terms.append(touching([f.eq]))
    if f.in_ is not None:
        terms.append(touching(f.in_))
    if f.is_null is not None:
        terms.append(false() if f.is_null else true())
    return and_(true(), *terms)


FILTER_FIELDS: filters.FieldMap = {
    "kind": filters.string(Relationship.kind),
    "node_id": _node_filter,
    "weight": filters.comparable(WEIGHT),
    "is_active": lambda flag: Relationship.is_active.is_(bool(flag)),
    "last_seen_at": filters.comparable(Relationship.last_seen_at),
}
SORTS = {
    "WEIGHT": (WEIGHT, lambda r: r.weight, False),  # read back per request: see list_relationships
    "CREATED_AT": (Relationship.created_at, lambda r: r.created_at, False),
    "LAST_SEEN_AT": (Relationship.last_seen_at, lambda r: r.last_seen_at, True),
}


async def list_relationships(
    s: AsyncSession, p: Principal, args: PageArgs, *, where: Any = None, order: Sequence[tuple[str, bool]] | None = None,
) -> Page[Relationship]:
    """Stored edges (manual and derived), strongest first by default."""
    query, keys = relationships_query(p, where=where, order=order)
    return await paginate(s, query, keys, args)


def relationships_query(p: Principal, *, where: Any = None, order: Sequence[tuple[str, bool]] | None = None
                        ) -> tuple[Select[Any], list[SortKey]]:
    """The stored edges a list shows, unordered, and the sort keys of `order`."""
    ws = p.require(READ)
    query = select(Relationship).where(Relationship.workspace_id == ws)
    if where is not None:
        query = query.where(filters.compile_filter(where, FILTER_FIELDS))
    order = list(order or [("WEIGHT", True)])
    keys: list[SortKey] = []
    for name, desc in order:
        expr, value, nullable = SORTS[name]
        if name == "WEIGHT":
            now = datetime.now(UTC)
            value = lambda r, now=now: weight_of(r, now)  # noqa: E731 - read back as SQL computed it
        keys.append(SortKey(expr, value, descending=desc, nullable=nullable))
    keys.append(SortKey(Relationship.id, lambda r: r.id, descending=keys[-1].descending))
    return query, keys


# ---------------------------------------------------------------- writing


@dataclass
class EdgeDraft:
    path: tuple[str, ...]
    source: tuple[str, uuid.UUID] | None
    target: tuple[str, uuid.UUID] | None
    kind: str
    weight: float
    metadata: dict[str, Any]


def _endpoint(gid: str, path: tuple[str, ...], problems: list[Problem]) -> tuple[str, uuid.UUID] | None:
    try:
        type_name, id_ = ids.decode(gid)
    except BadInput:
        type_name, id_ = "", uuid.UUID(int=0)
    if type_name not in _ENDPOINTS:
        problems.append(Problem("Node not found", "NOT_FOUND", path))
        return None
    return type_name, id_


def _check_kind(kind: Any, path: tuple[str, ...]) -> Problem | None:
    if not isinstance(kind, str) or not KIND.match(kind):
        return Problem("kind must be lower-case letters, digits and _ (e.g. works_with)", "INVALID", path)
    if kind in DERIVED | VIRTUAL:
        return Problem(f"{kind} edges are derived from activity, not created by hand", "INVALID", path)
    return None


def _check_weight(weight: Any, path: tuple[str, ...]) -> Problem | None:
    if not isinstance(weight, int | float) or math.isnan(weight) or not 0 <= weight <= 1:
        return Problem("weight must be between 0 and 1", "INVALID", path)
    return None


async def create_relationships(s: AsyncSession, p: Principal, inputs: list[dict[str, Any]], path: tuple[str, ...]) -> list[Relationship]:
    """All or nothing: every input's problems are reported, under `path` + its index when
    several. Inputs: sourceId, targetId (global ids of any registered node type), kind, weight, metadata."""
    ws = p.require(WRITE)
    if not inputs:
        raise Invalid(Problem("Give at least one relationship", "REQUIRED", path))
    if too_many := filters.list_problem(inputs, path):
        raise Invalid(too_many)
    problems: list[Problem] = []
    drafts: list[EdgeDraft] = []
    for i, item in enumerate(inputs):
        at = (*path, str(i)) if len(inputs) > 1 or path == ("inputs",) else path
        found: list[Problem] = []
        source = _endpoint(item["sourceId"], (*at, "sourceId"), found)
        target = _endpoint(item["targetId"], (*at, "targetId"), found)
        kind = item.get("kind")
        weight = DEFAULT_MANUAL_WEIGHT if item.get("weight") is None else item["weight"]
        metadata = item.get("metadata") or {}
        found += [x for x in (_check_kind(kind, (*at, "kind")), _check_weight(weight, (*at, "weight"))) if x]
        if not isinstance(metadata, dict):
            found.append(Problem("metadata must be a JSON object", "INVALID", (*at, "metadata")))
        if source and source == target:
            found.append(Problem("A relationship joins two different nodes", "INVALID", (*at, "targetId")))
        problems += found
        drafts.append(EdgeDraft(at, source, target, kind, float(weight), metadata))
    wanted: dict[str, set[uuid.UUID]] = defaultdict(set)
    for d in drafts:
        for end in (d.source, d.target):
            if end:
                wanted[end[0]].add(end[1])
    live: set[tuple[str, uuid.UUID]] = set()
    for type_name, node_ids in wanted.items():
        live |= {(type_name, k) for k in await _ENDPOINTS[type_name](s, p, list(node_ids))}
    for d in drafts:
        for end, key in ((d.source, "sourceId"), (d.target, "targetId")):
            if end and end not in live:
                problems.append(Problem("Node not found", "NOT_FOUND", (*d.path, key)))
    if problems:
        raise Invalid(*problems)
    keys = [(d.source[0], d.source[1], d.target[0], d.target[1], d.kind) for d in drafts]  # type: ignore[index]
    R = Relationship
    existing = {
        (r.source_type, r.source_id, r.target_type, r.target_id, r.kind): r.id
        for r in await s.scalars(select(R).where(R.workspace_id == ws, R.kind.in_({k[4] for k in keys}),
                                                 R.source_id.in_({k[1] for k in keys})))
    }
    seen: set[tuple[Any, ...]] = set()
    for d, key in zip(drafts, keys, strict=True):
        if key in existing:
            problems.append(Problem(f"This relationship already exists: {ids.encode('Relationship', existing[key])}",
                                    "DUPLICATE", (*d.path, "kind")))
        elif key in seen:
            problems.append(Problem("The same relationship is given twice", "DUPLICATE", (*d.path, "kind")))
        seen.add(key)
    if problems:
        raise Invalid(*problems)
    rows = [
        {"id": uuid.uuid4(), "workspace_id": ws, "kind": d.kind, "source_type": k[0], "source_id": k[1],
         "target_type": k[2], "target_id": k[3], "weight": d.weight, "metadata": d.metadata}
        for d, k in zip(drafts, keys, strict=True)
    ]
    try:
        async with s.begin_nested():
            await s.execute(insert(Relationship.__table__).values(rows))
    except IntegrityError:  # created concurrently
        raise Invalid(Problem("This relationship already exists", "DUPLICATE", path)) from None
    created = {r.id: r for r in await s.scalars(select(R).where(R.workspace_id == ws, R.id.in_([r["id"] for r in rows])))}
    for row in rows:
        effects.event(s, "relationship.created", "Relationship", row["id"])
    return [created[r["id"]] for r in rows]


async def _get(s: AsyncSession, ws: uuid.UUID, rel_id: uuid.UUID | None) -> Relationship:
    row = await s.scalar(select(Relationship).where(
        Relationship.workspace_id == ws, Relationship.id == rel_id
    ).with_for_update()) if rel_id else None
    if row is None:
        raise not_found("Relationship")
    return row


async def update_relationship(s: AsyncSession, p: Principal, rel_id: uuid.UUID | None, data: dict[str, Any]) -> Relationship:
    """kind and weight of derived edges follow activity: only isActive and metadata change there."""
    row = await _get(s, p.require(WRITE), rel_id)
    problems: list[Problem] = []
    if row.kind in DERIVED and (data.get("kind") is not None or data.get("weight") is not None):
        problems.append(Problem("A derived relationship's kind and weight follow activity", "INVALID", ("input",)))
    if data.get("kind") is not None:
        problems += [x for x in [_check_kind(data["kind"], ("input", "kind"))] if x]
    if data.get("weight") is not None:
        problems += [x for x in [_check_weight(data["weight"], ("input", "weight"))] if x]
    if data.get("metadata") is not None and not isinstance(data["metadata"], dict):
        problems.append(Problem("metadata must be a JSON object", "INVALID", ("input", "metadata")))
    if problems:
        raise Invalid(*problems)
    if data.get("kind") is not None:
        row.kind = data["kind"]
    if data.get("weight") is not None:
        row.weight = float(data["weight"])
    if data.get("isActive") is not None:
        row.is_active = bool(data["isActive"])
    if data.get("metadata") is not None:
        row.metadata_ = data["metadata"]
    try:
        async with s.begin_nested():
            await s.flush()
    except IntegrityError:
        raise Invalid(Problem("A relationship of this kind already joins these nodes", "DUPLICATE", ("input", "kind"))) from None
    effects.event(s, "relationship.updated", "Relationship", row.id)
    return row


async def delete_relationship(s: AsyncSession, p: Principal, rel_id: uuid.UUID | None) -> uuid.UUID:
    row = await _get(s, p.require(WRITE), rel_id)
    await s.delete(row)
    await s.flush()
    effects.event(s, "relationship.deleted", "Relationship", row.id)
    return row.id


# ---------------------------------------------------------------- derived edges, kept from activity


async def add_sightings(s: AsyncSession, ws: uuid.UUID, sightings: dict[tuple[str, str], dict[uuid.UUID, datetime]]) -> None:
    """Contacts seen in conversations (kind, conversation id) at given times: pairs meeting in a
    conversation for the first time count it once; every pair there is seen at its latest time."""
    keys = list(sightings)
    rows = (await s.execute(text(
        "SELECT kind, conversation, contact_id, last_seen_at FROM conversation_participants "
        "WHERE workspace_id = :ws AND (kind, conversation) IN (SELECT * FROM unnest(CAST(:kinds AS text[]), CAST(:convs AS text[])))"
    ), {"ws": ws, "kinds": [k for k, _ in keys], "convs": [c for _, c in keys]})).all()
    before: dict[tuple[str, str], dict[uuid.UUID, datetime]] = defaultdict(dict)
    for kind, conversation, contact_id, seen in rows:
        before[(kind, conversation)][contact_id] = seen
    participants, edges = [], {}
    for key, seen in sightings.items():
        old = before[key]
        everyone = {**old}
        for contact_id, at in seen.items():
            everyone[contact_id] = max(at, old.get(contact_id, at))
            participants.append({"workspace_id": ws, "kind": key[0], "conversation": key[1],
                                 "contact_id": contact_id, "last_seen_at": everyone[contact_id]})
        latest = max(everyone.values())
        members = sorted(everyone)
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                new = a not in old or b not in old
                if not new and latest <= max(old.values()):
                    continue
                edge = edges.setdefault((a, b, key[0]), {"count": 0, "last": latest})
                edge["count"] += int(new)
                edge["last"] = max(edge["last"], latest)
    if participants:
        table = ConversationParticipant.__table__
        stmt = insert(table).values(participants)
        await s.execute(stmt.on_conflict_do_update(
            index_elements=["workspace_id", "kind", "conversation", "contact_id"],
            set_={"last_seen_at": func.greatest(table.c.last_seen_at, stmt.excluded.last_seen_at)},
        ))
    if edges:
        await _upsert_derived(s, ws, [
            {"a": a, "b": b, "kind": kind, "count": e["count"], "last": e["last"]} for (a, b, kind), e in edges.items()
        ])


async def _upsert_derived(s: AsyncSession, ws: uuid.UUID, edges: list[dict[str, Any]]) -> None:
    R = Relationship.__table__
    stmt = insert(R).values([
        {"id": uuid.uuid4(), "workspace_id": ws, "kind": e["kind"], "source_type": "Contact", "source_id": e["a"],
         "target_type": "Contact", "target_id": e["b"], "weight": 0.0,
         "shared_thread_count": e["count"] if e["kind"] == "shared_thread" else 0,
         "shared_calendar_count": e["count"] if e["kind"] == "shared_calendar_event" else 0,
         "last_seen_at": e["last"]}
        for e in edges
    ])
    await s.execute(stmt.on_conflict_do_update(
        index_elements=["workspace_id", "source_type", "source_id", "target_type", "target_id", "kind"],
        set_={
            "shared_thread_count": R.c.shared_thread_count + stmt.excluded.shared_thread_count,
            "shared_calendar_count": R.c.shared_calendar_count + stmt.excluded.shared_calendar_count,
            "last_seen_at": func.greatest(R.c.last_seen_at, stmt.excluded.last_seen_at),
        },
    ))


async def move_endpoints(s: AsyncSession, ws: uuid.UUID, node_type: str, survivor: uuid.UUID, merged: list[uuid.UUID]) -> None:
    """For a merge: manual edges of the merged nodes now join the survivor (a duplicate or a
    loop is dropped); a contact's derived edges are rebuilt from its conversations."""
    R = Relationship
    touching = or_(and_(R.source_type == node_type, R.source_id.in_(merged)),
                   and_(R.target_type == node_type, R.target_id.in_(merged)))
    mine = or_(and_(R.source_type == node_type, R.source_id == survivor),
               and_(R.target_type == node_type, R.target_id == survivor))
    rows = list(await s.scalars(select(R).where(R.workspace_id == ws, or_(touching, mine), R.kind.not_in(DERIVED))))
    taken = {(r.source_type, r.source_id, r.target_type, r.target_id, r.kind) for r in rows
             if not (r.source_id in merged or r.target_id in merged)}
    for r in rows:
        if r.source_id not in merged and r.target_id not in merged:
            continue
        source = survivor if r.source_type == node_type and r.source_id in merged else r.source_id
        target = survivor if r.target_type == node_type and r.target_id in merged else r.target_id
        key = (r.source_type, source, r.target_type, target, r.kind)
        if key in taken or (r.source_type == r.target_type and source == target):
            await s.delete(r)
        else:
            r.source_id, r.target_id = source, target
            taken.add(key)
    await s.flush()
    if node_type != "Contact":
        return
    await s.execute(delete(R).where(R.workspace_id == ws, R.kind.in_(DERIVED), or_(touching, mine)))
    await s.execute(text(
        """
        INSERT INTO relationships (id, workspace_id, kind, source_type, source_id, target_type, target_id,
                                   weight, shared_thread_count, shared_calendar_count, last_seen_at)
        SELECT gen_random_uuid(), :ws, p.kind, 'Contact', least(p.contact_id, q.contact_id), 'Contact',
               greatest(p.contact_id, q.contact_id), 0,
               count(*) FILTER (WHERE p.kind = 'shared_thread'),
               count(*) FILTER (WHERE p.kind = 'shared_calendar_event'),
               max(greatest(p.last_seen_at, q.last_seen_at))
        FROM conversation_participants p
        JOIN conversation_participants q ON q.workspace_id = p.workspace_id AND q.kind = p.kind
             AND q.conversation = p.conversation AND q.contact_id <> p.contact_id
        WHERE p.workspace_id = :ws AND p.contact_id = :survivor
        GROUP BY p.kind, least(p.contact_id, q.contact_id), greatest(p.contact_id, q.contact_id)
        """
    ), {"ws": ws, "survivor": survivor})


# ---------------------------------------------------------------- the contact graph
#
# Graph questions are answered by PostgreSQL, hop by hop: each hop is one statement over the
# relationships touching the frontier, and Python only keeps the frontier (at most one row per
# contact reached). Every statement reads at most the relationship rows the question's budget
# has left (a LIMIT), so neither the event loop nor the database does unbounded work, and a
# question past its budget is refused with what to narrow.


@dataclass(frozen=True)
class GraphLimits:
    """What one graph question may cost (the CTXGRAPH_GRAPH_* settings)."""

    edges: int = 250_000
    "relationship rows read by a walk or a path search"
    nodes: int = 10_000
    "contacts a walk or a path search reaches"
    seconds: float = 5.0
    "wall time, checked before each statement (each is bounded by the rows left)"
    returned_edges: int = 5_000
    "relationship rows among the contacts relationshipGraph returns"
    concurrency: int = 1
    "graph questions one process answers at once"

    @classmethod
    def of(cls, settings: Any) -> GraphLimits:
        return cls(edges=settings.graph_budget_edges, nodes=settings.graph_budget_nodes,
                   seconds=settings.graph_budget_ms / 1000, returned_edges=settings.graph_max_edges,
                   concurrency=settings.graph_concurrency)


WAITING_PER_TURN = 8


@dataclass
class _Turns:
    slots: asyncio.Semaphore
    waiting: int = 0


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turns] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def _turn(limits: GraphLimits) -> AsyncIterator[None]:
    """Graph questions of one process take turns: each keeps a database core busy for up to its
    budget, so on a small machine several at once would slow every other tenant's requests (and
    each other) instead of finishing sooner. The line is bounded: past WAITING_PER_TURN waiting
    questions a turn, the next is refused at once, to be retried."""
    turns = _turns.get(asyncio.get_running_loop())
    if turns is None:
        turns = _turns[asyncio.get_running_loop()] = _Turns(asyncio.Semaphore(limits.concurrency))
    if turns.waiting >= WAITING_PER_TURN * limits.concurrency:
        raise RateLimited("This server is busy with other graph questions; try again shortly", 1)
    turns.waiting += 1
    try:
        await turns.slots.acquire()
    finally:
        turns.waiting -= 1
    try:
        yield
    finally:
        turns.slots.release()


@dataclass
class Budget:
    """The work left to one question; `narrow` says how the caller can ask for less."""

    limits: GraphLimits
    narrow: str
    edges: int = 0
    nodes: int = 0
    started: float = field(default_factory=time.monotonic)

    def rows_left(self) -> int:
        return self.limits.edges - self.edges

    def spend(self, edges: int, nodes: int) -> None:
        self.edges += edges
        self.nodes += nodes
        if self.edges > self.limits.edges:
            raise TooComplex(f"this question reads more than {self.limits.edges:,} relationships: {self.narrow}")
        if self.nodes > self.limits.nodes:
            raise TooComplex(f"this question reaches more than {self.limits.nodes:,} contacts: {self.narrow}")

    def check_time(self) -> None:
        if time.monotonic() - self.started > self.limits.seconds:
            raise TooComplex(f"this question takes longer than {self.limits.seconds:g} s: {self.narrow}")


@dataclass
class GraphEdge:
    source: uuid.UUID
    target: uuid.UUID
    kinds: list[str]
    weight: float
    last_seen_at: datetime | None


@dataclass
class Graph:
    nodes: list[Contact]
    edges: list[GraphEdge]


@dataclass
class Path:
    contacts: list[Contact]
    edges: list[GraphEdge]
    strength: float


def _pairs(rows: Iterable[Any], now: datetime) -> dict[tuple[uuid.UUID, uuid.UUID], GraphEdge]:
    """Edges merged per contact pair: kinds together; weight the largest of the derived weight
    (shared threads and calendar events counted together) and the manual ones. `rows` are
    relationships, or rows with their columns."""
    grouped: dict[tuple[uuid.UUID, uuid.UUID], list[Any]] = defaultdict(list)
    for r in rows:
        grouped[(min(r.source_id, r.target_id), max(r.source_id, r.target_id))].append(r)
    out = {}
    for (a, b), edges in grouped.items():
        derived = [e for e in edges if e.kind in DERIVED]
        seen = [e.last_seen_at for e in edges if e.last_seen_at is not None]
        weights = [e.weight for e in edges if e.kind not in DERIVED | VIRTUAL]
        if derived:
            n = sum(e.shared_thread_count + e.shared_calendar_count for e in derived)
            weights.append(edge_weight(n, max((e.last_seen_at for e in derived if e.last_seen_at), default=None), now))
        out[(a, b)] = GraphEdge(a, b, sorted({e.kind for e in edges}), round(max(weights, default=0.0), 4),
                                max(seen) if seen else None)
    return out


CONTACT_EDGE = and_(Relationship.source_type == "Contact", Relationship.target_type == "Contact", Relationship.is_active)
EDGE_COLUMNS = (Relationship.source_id, Relationship.target_id, Relationship.kind, Relationship.weight,
                Relationship.shared_thread_count, Relationship.shared_calendar_count, Relationship.last_seen_at)


def _edge_filter(min_weight: float | None, kinds: Sequence[str] | None) -> ColumnElement[bool]:
    terms = [CONTACT_EDGE]
    if min_weight is not None:
        terms.append(WEIGHT >= min_weight)
    if kinds:
        terms.append(Relationship.kind.in_(list(kinds)))
    return and_(*terms)


async def _ranked_contacts(s: AsyncSession, ws: uuid.UUID, candidates: Sequence[uuid.UUID] | None,
                           limit: int, keep: uuid.UUID | None) -> list[Contact]:
    """The strongest `limit` live contacts (of `candidates`, if given), `keep` first."""
    query = select(Contact).outerjoin(ContactIntelligence, ContactIntelligence.contact_id == Contact.id).where(
        contacts.live(ws)
    )
    if candidates is not None:
        query = query.where(Contact.id == any_(_uuid_list(candidates)))
    first = case((Contact.id == keep, 0), else_=1) if keep else literal(1)
    return list(await s.scalars(query.order_by(first, contacts.STRENGTH_KEY.desc(), Contact.id).limit(limit)))


CLIQUE_MAX = 25


def _virtual_edges(nodes: list[Contact], kinds: Sequence[str]) -> list[Relationship]:
    """same_company / same_domain edges among the returned nodes: every pair of a small group,
    but a star around its strongest member once a group passes CLIQUE_MAX, since a clique grows
    quadratically (1,000 colleagues would be ~500,000 edges)."""
    out = []
    for kind in sorted(VIRTUAL & set(kinds)):
        by_key: dict[str, list[Contact]] = defaultdict(list)
        for c in nodes:
            key = (c.company or "").strip().lower() if kind == "same_company" else (c.email or "").partition("@")[2]
            if key and key not in (PUBLIC_MAIL_DOMAINS if kind == "same_domain" else ()):
                by_key[key].append(c)
        for group in by_key.values():
            pairs = ((a, b) for i, a in enumerate(group) for b in group[i + 1:]) if len(group) <= CLIQUE_MAX \
                else ((group[0], b) for b in group[1:])
            for a, b in pairs:
                out.append(Relationship(kind=kind, source_id=a.id, target_id=b.id, weight=0.0,
                                        shared_thread_count=0, shared_calendar_count=0, last_seen_at=None))
    return out


async def _hop(s: AsyncSession, ws: uuid.UUID, frontier: Sequence[uuid.UUID], edge_filter: ColumnElement[bool],
               budget: Budget) -> set[uuid.UUID]:
    """The live contacts one edge away from `frontier`, in one statement that reads at most the
    relationship rows the budget has left (and one more, to tell that it ran out)."""
    R = Relationship
    ends = _uuid_list(frontier)
    other = case((R.source_id == any_(ends), R.target_id), else_=R.source_id)
    incident = select(other.label("other")).where(
        R.workspace_id == ws, or_(R.source_id == any_(ends), R.target_id == any_(ends)), edge_filter,
    ).limit(budget.rows_left() + 1).cte("incident")
    read = select(func.count()).select_from(incident).scalar_subquery()
    reached = select(func.array_agg(distinct(incident.c.other))).select_from(
        incident.join(Contact, and_(Contact.id == incident.c.other, contacts.live(ws)))
    ).scalar_subquery()
    rows, found = (await s.execute(select(read, reached))).one()
    budget.spend(rows, 0)
    return set(found or ())


async def _walk(s: AsyncSession, ws: uuid.UUID, focus: uuid.UUID, depth: int, edge_filter: ColumnElement[bool],
                budget: Budget) -> list[uuid.UUID]:
    """The contacts within `depth` hops of `focus`, breadth first: each contact is expanded once,
    at its least depth (a recursive CTE over (id, depth) walks every path again at every depth)."""
    seen, frontier = {focus}, [focus]
    for _ in range(depth):
        if not frontier:
            break
        budget.check_time()
        frontier = list(await _hop(s, ws, frontier, edge_filter, budget) - seen)
        budget.spend(0, len(frontier))
        seen.update(frontier)
    return list(seen)


def _too_many_edges(nodes: int, cap: int) -> TooComplex:
    return TooComplex(f"the {nodes:,} contacts of this graph have more than {cap:,} edges among them: "
                      "lower limit or depth, raise minWeight, or name kinds")


async def _stored_edges_among(s: AsyncSession, ws: uuid.UUID, node_ids: list[uuid.UUID], min_weight: float | None,
                              kinds: Sequence[str] | None, cap: int) -> list[Any]:
    """The relationship rows among `node_ids`, refused past `cap` (a dense neighbourhood of 1,000
    contacts has up to ~500,000): PostgreSQL counts at most cap + 1 of them and sends them only
    when they fit, so a refusal costs the loop nothing."""
    R = Relationship
    members = _uuid_list(node_ids)
    among = select(*EDGE_COLUMNS).where(
        R.workspace_id == ws, R.source_id == any_(members), R.target_id == any_(members), _edge_filter(min_weight, kinds),
    ).limit(cap + 1).cte("among")
    total = select(func.count().label("total")).select_from(among).cte("total")
    rows = (await s.execute(select(total.c.total, *among.c).select_from(
        total.outerjoin(among, total.c.total <= cap)
    ))).all()
    if rows[0].total > cap:
        raise _too_many_edges(len(node_ids), cap)
    return [r for r in rows if r.source_id is not None]


async def _live_in_order(s: AsyncSession, p: Principal, node_ids: list[uuid.UUID]) -> list[Contact]:
    found = await contacts.live_contacts_by_id(s, p, node_ids)
    return [found[i] for i in node_ids if i in found]


async def relationship_graph(
    s: AsyncSession, p: Principal, *, focus: uuid.UUID | None, depth: int, min_weight: float | None,
    kinds: Sequence[str] | None, limit: int, limits: GraphLimits = GraphLimits(),
) -> Graph:
    """The contacts within `depth` hops of `focus` (or all), the strongest `limit` of them, and
    the edges between those: one statement per hop, one for the ranked nodes, one for the edges."""
    ws = p.require(READ)
    if not 0 <= depth <= 6:
        raise BadInput("depth must be between 0 and 6")
    if not 1 <= limit <= 1000:
        raise BadInput("limit must be between 1 and 1000")
    if focus is not None and not (await contacts.live_contacts_by_id(s, p, [focus])):
        return Graph([], [])
    async with _turn(limits):
        candidates: list[uuid.UUID] | None = None
        if focus is not None:
            budget = Budget(limits, "lower depth, raise minWeight, or name kinds")
            candidates = await _walk(s, ws, focus, depth, _edge_filter(min_weight, kinds), budget)
        nodes = await _ranked_contacts(s, ws, candidates, limit, focus)
        if not nodes:
            return Graph([], [])
        stored = await _stored_edges_among(s, ws, [c.id for c in nodes], min_weight, kinds, limits.returned_edges)
    edges = list(_pairs(stored + (_virtual_edges(nodes, kinds) if kinds else []), datetime.now(UTC)).values())
    if len(edges) > limits.returned_edges:
        raise _too_many_edges(len(nodes), limits.returned_edges)
    return Graph(nodes, edges)


# One layer of the hop-bounded shortest path on -ln(weight): from each frontier contact (with the
# cost of its best path of exactly the previous number of hops) across every contact edge (kinds
# merged per pair as `_pairs` does), the cheapest arrival at each live contact, below :bound.
LAYER = text("""
WITH frontier AS (
  SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:costs AS float8[])) AS f(id, cost)
), incident AS MATERIALIZED (
  SELECT source_id, target_id, kind, weight, shared_thread_count + shared_calendar_count AS n, last_seen_at
  FROM relationships
  WHERE workspace_id = :ws AND source_type = 'Contact' AND target_type = 'Contact' AND is_active
    AND (source_id = ANY(CAST(:ids AS uuid[])) OR target_id = ANY(CAST(:ids AS uuid[])))
    AND (CAST(:goal AS uuid) IS NULL OR source_id = CAST(:goal AS uuid) OR target_id = CAST(:goal AS uuid))
  LIMIT :rows
), pairs AS (
  SELECT least(source_id, target_id) AS a, greatest(source_id, target_id) AS b,
         round(greatest(coalesce(max(weight) FILTER (WHERE kind <> ALL(CAST(:derived AS text[]))), 0),
                        ctx_edge_weight(CAST(sum(n) FILTER (WHERE kind = ANY(CAST(:derived AS text[]))) AS integer),
                                        max(last_seen_at) FILTER (WHERE kind = ANY(CAST(:derived AS text[])))))::numeric,
               4)::float8 AS w
  FROM incident GROUP BY 1, 2
), steps AS (
  SELECT p.b AS node, f.id AS via, f.cost - ln(p.w) AS cost FROM pairs p JOIN frontier f ON f.id = p.a WHERE p.w > 0
  UNION ALL
  SELECT p.a, f.id, f.cost - ln(p.w) FROM pairs p JOIN frontier f ON f.id = p.b WHERE p.w > 0
)
SELECT (SELECT count(*) FROM incident), array_agg(best.node), array_agg(best.via), array_agg(best.cost)
FROM (SELECT DISTINCT ON (node) node, via, cost FROM steps WHERE cost < :bound ORDER BY node, cost, via) best
JOIN contacts c ON c.id = best.node AND c.workspace_id = :ws AND c.deleted_at IS NULL
""")
EPSILON = 1e-12
Label = tuple[float, uuid.UUID | None]


async def _layer(s: AsyncSession, ws: uuid.UUID, frontier: dict[uuid.UUID, float], bound: float,
                 goal: uuid.UUID | None, budget: Budget) -> dict[uuid.UUID, Label]:
    """{contact: (cost, previous contact)} one hop further (only into `goal`, if given)."""
    result = await s.execute(LAYER, {
        "ws": ws, "ids": list(frontier), "costs": list(frontier.values()), "goal": goal, "bound": bound,
        "rows": budget.rows_left() + 1, "derived": sorted(DERIVED),
    })
    rows, nodes, vias, costs = result.one()
    budget.spend(rows, 0)
    return dict(zip(nodes or (), zip(costs or (), vias or ())))


async def _cheapest_chain(s: AsyncSession, ws: uuid.UUID, start: uuid.UUID, goal: uuid.UUID, max_depth: int,
                          budget: Budget) -> list[uuid.UUID] | None:
    """The contacts of the cheapest chain of at most `max_depth` edges, by layers: layer h keeps,
    per contact, the cheapest arrival in exactly h hops, and only if it beats every arrival in
    fewer hops (otherwise any chain through it is beaten by one through the earlier arrival).
    Costs are >= 0, so the best chain never repeats a contact. Once the goal is reached, nothing
    costlier is followed; the last layer reads only edges into the goal."""
    best: dict[uuid.UUID, float] = {start: 0.0}
    layers: list[dict[uuid.UUID, Label]] = [{start: (0.0, None)}]
    frontier, bound = {start: 0.0}, math.inf
    for hop in range(1, max_depth + 1):
        if not frontier:
            break
        budget.check_time()
        arrivals = await _layer(s, ws, frontier, bound, goal if hop == max_depth else None, budget)
        kept = {n: label for n, label in arrivals.items() if label[0] < best.get(n, math.inf) - EPSILON}
        budget.spend(0, len(kept.keys() - best.keys()))
        best.update((n, label[0]) for n, label in kept.items())
        layers.append(kept)
        if goal in kept:
            bound = kept[goal][0]
        frontier = {n: cost for n, (cost, _) in kept.items() if n != goal and cost < bound}
    reached = [h for h, layer in enumerate(layers) if goal in layer]
    if not reached:
        return None
    chain, hop = [goal], min(reached, key=lambda h: layers[h][goal][0])
    while hop > 0:
        chain.append(layers[hop][chain[-1]][1])  # type: ignore[arg-type]
        hop -= 1
    return chain[::-1]


async def introduction_path(s: AsyncSession, p: Principal, start: uuid.UUID | None, goal: uuid.UUID | None,
                            max_depth: int, limits: GraphLimits = GraphLimits()) -> Path | None:
    """The chain of at most `max_depth` edges from `start` to `goal` whose weights have the
    largest product (the shortest path on -ln(weight)), searched by PostgreSQL one hop a
    statement; then the chain's edges as the graph shows them."""
    ws = p.require(READ)
    if not 1 <= max_depth <= 6:
        raise BadInput("maxDepth must be between 1 and 6")
    found = await contacts.live_contacts_by_id(s, p, [i for i in (start, goal) if i])
    if start not in found or goal not in found:
        return None
    assert start is not None and goal is not None
    if start == goal:
        return Path([found[start]], [], 1.0)
    async with _turn(limits):
        chain = await _cheapest_chain(s, ws, start, goal, max_depth, Budget(limits, "lower maxDepth"))
    if chain is None:
        return None
    R = Relationship
    links = list(zip(chain, chain[1:]))
    rows = await s.execute(select(*EDGE_COLUMNS).where(R.workspace_id == ws, CONTACT_EDGE, or_(*(
        or_(and_(R.source_id == a, R.target_id == b), and_(R.source_id == b, R.target_id == a)) for a, b in links
    ))))
    pairs = _pairs(rows, datetime.now(UTC))
    edges = [pairs[(min(a, b), max(a, b))] for a, b in links]
    cost = 0.0
    for edge in edges:
        cost -= math.log(edge.weight)
    return Path(await _live_in_order(s, p, chain), edges, round(math.exp(-cost), 6))
