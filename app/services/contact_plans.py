"""A contact list and what hangs off it, answered by one SQL statement that builds the JSON.

The GraphQL layer (schema.planner) describes the response it wants as a `Shape`: the keys of a
JSON object in order, each naming what goes there. This module turns it into one statement
over the same queries `list_contacts` and the relationship pages use (workspace filter, scopes,
filters, orders, cursors), so the answer is the one the resolvers would give, without building
an object per row and field. Cursors of the list itself are encoded in Python from the sort
values, exactly as `paginate` does; those of an edge page are encoded by PostgreSQL. Each node's
JSON goes into the response as PostgreSQL wrote it (`orjson.Fragment`), never parsed here.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, case, false, func, literal_column, or_, select, true
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.engine import Dialect
from sqlalchemy.types import Text

from app.db.engine import Database
from app.db.models import Contact, Relationship
from app.services import contacts, relationships
from app.services.access import Principal
from app.services.pagination import PageArgs, SortKey, encode_cursor, order_terms, page_flags, page_of, window, written


@dataclass(frozen=True)
class Out:
    """One key of a JSON object: `name` says what goes there ("=" for the constant `value`);
    for nested objects, `value` is their Shape (or an `EdgesPlan` for a contact's relationships)."""

    key: str
    name: str
    value: Any = None


Shape = tuple[Out, ...]


@dataclass(frozen=True)
class EdgesPlan:
    """Contact.relationships(direction, kinds, first): its first page, shaped as `shape`."""

    direction: str
    kinds: tuple[str, ...] | None
    first: int | None
    shape: Shape


CONTACT_FIELDS = {
    "id": "id", "fullName": "full_name", "email": "email", "emails": "emails", "phone": "phone", "title": "title",
    "company": "company", "city": "city", "state": "state", "tags": "tags", "contactType": "contact_type",
    "status": "status", "remoteId": "remote_id", "customFields": "custom_fields", "createdAt": "created_at",
    "updatedAt": "updated_at", "deletedAt": "deleted_at",
}
RELATIONSHIP_FIELDS = {
    "id": "id", "kind": "kind", "sharedThreadCount": "shared_thread_count", "sharedCalendarCount": "shared_calendar_count",
    "lastSeenAt": "last_seen_at", "isActive": "is_active", "metadata": "metadata", "createdAt": "created_at",
}
ENDS = ("source", "target", "other")
PAGE_INFO = ("hasNextPage", "hasPreviousPage", "startCursor", "endCursor")
TIMESTAMPS = {"created_at", "updated_at", "deleted_at", "last_seen_at"}
MAX_KEYS = 50  # json_build_object takes at most 100 arguments
_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")


class NotPlannable(Exception):
    """The shape asks for something this module does not build: answer it field by field."""


def _text(value: str) -> Any:
    """A constant string (a response key or type name: GraphQL names, never user input)."""
    if not _NAME.match(value):
        raise NotPlannable(value)
    return literal_column(f"'{value}'", Text)


def _object(pairs: Sequence[tuple[str, Any]]) -> Any:
    if len(pairs) > MAX_KEYS:
        raise NotPlannable("too many keys")
    return func.json_build_object(*(x for key, v in pairs for x in (_text(key), v)))


def _global_id(type_name: str, id_: Any) -> Any:
    """ids.encode in SQL: standard base64 of "Type:uuid"."""
    prefix = _text(type_name).concat(literal_column("':'"))
    raw = func.encode(func.convert_to(prefix.concat(func.cast(id_, Text)), literal_column("'UTF8'")), literal_column("'base64'"))
    return func.translate(raw, literal_column("E'\\n'"), literal_column("''"))


def _fraction(ts: Any) -> Any:
    """".ffffff" when the time has microseconds, as datetime.isoformat() writes it."""
    return case((func.date_trunc(literal_column("'second'"), ts) == ts, literal_column("''")),
                else_=literal_column("'.'").concat(func.to_char(ts, literal_column("'US'"))))


def _datetime(ts: Any) -> Any:
    """The DateTime scalar in SQL: ISO 8601 in UTC with a trailing Z."""
    utc = func.timezone(literal_column("'UTC'"), ts)
    text = (func.to_char(utc, literal_column("'YYYY-MM-DD\"T\"HH24:MI:SS'"))
            .concat(_fraction(utc)).concat(literal_column("'Z'")))
    return case((ts.is_(None), None), else_=text)


def _edge_cursor(created_at: Any, id_: Any) -> Any:
    """encode_cursor([created_at, id]) in SQL: the session's time zone, as psycopg reads it."""
    iso = (func.to_char(created_at, literal_column("'YYYY-MM-DD\"T\"HH24:MI:SS'")).concat(_fraction(created_at))
           .concat(func.to_char(created_at, literal_column("'TZH:TZM'"))))
    raw = (literal_column("'[{\"dt\":\"'").concat(iso).concat(literal_column("'\"},{\"id\":\"'"))
           .concat(func.cast(id_, Text)).concat(literal_column("'\"}]'")))
    b64 = func.encode(func.convert_to(raw, literal_column("'UTF8'")), literal_column("'base64'"))
    return func.translate(b64, literal_column("E'+/=\\n'"), literal_column("'-_'"))


def _column(type_name: str, fields: dict[str, str], row: Any, out: Out) -> Any:
    if out.name == "=":
        return _text(out.value)
    column = fields.get(out.name)
    if column is None:
        raise NotPlannable(out.name)
    if column == "id":
        return _global_id(type_name, row.id)
    value = row[column]
    return _datetime(value) if column in TIMESTAMPS else value


def _end(e: Any, owner: Any, which: str) -> tuple[Any, Any]:
    """(type, uuid) expressions of one end of edge row `e`; `other` is the end that is not `owner`."""
    if which != "other":
        return e.c[f"{which}_type"], e.c[f"{which}_id"]
    owner_is_target = and_(e.c.target_type == "Contact", e.c.target_id == owner)
    return (case((owner_is_target, e.c.source_type), else_=e.c.target_type),
            case((owner_is_target, e.c.source_id), else_=e.c.target_id))


def _edges(ws: uuid.UUID, outer: Any, owner: Any, plan: EdgesPlan) -> tuple[Any, Any]:
    """(connection JSON, "cannot tell" flag) of one contact's first page of edges, as
    `first_relationship_pages` + the Relationship resolvers give it."""
    if plan.kinds and set(plan.kinds) & relationships.VIRTUAL:
        raise NotPlannable("computed kinds")
    size = PageArgs(first=plan.first).size
    R = Relationship
    touching = and_(R.workspace_id == ws, relationships.touching("Contact", owner, plan.direction),
                    relationships.stored_kinds(plan.kinds))
    e = (select(*R.__table__.c, func.row_number().over(order_by=(R.created_at, R.id)).label("rn"))
         .where(touching).order_by(R.created_at, R.id).limit(written(size + 1)).correlate(outer).lateral("e"))
    joined, missing = e, []
    cursor = _edge_cursor(e.c.created_at, e.c.id)

    def node(shape: Shape) -> Any:
        nonlocal joined
        pairs = []
        for out in shape:
            if out.name not in ENDS:
                pairs.append((out.key, _column("Relationship", RELATIONSHIP_FIELDS, e.c, out)))
                continue
            end_type, end_id = _end(e, owner, out.name)
            o = Contact.__table__.alias()
            joined = joined.outerjoin(o, and_(o.c.workspace_id == ws, o.c.id == end_id, end_type == "Contact"))
            missing.append(o.c.id.is_(None))
            pairs.append((out.key, _object([(f.key, _column("Contact", CONTACT_FIELDS, o.c, f)) for f in out.value])))
        return _object(pairs)

    conn: list[tuple[str, Any]] = []
    edges_shape = next((o.value for o in plan.shape if o.name == "edges"), ())
    edge = _object([(o.key, cursor if o.name == "cursor" else node(o.value) if o.name == "node"
                     else _column("", {}, None, o)) for o in edges_shape])
    agg = select(
        func.json_agg(aggregate_order_by(edge, e.c.rn)).filter(e.c.rn <= written(size)).label("edges"),
        func.array_agg(aggregate_order_by(cursor, e.c.rn), type_=ARRAY(Text)).filter(e.c.rn <= written(size)).label("cursors"),
        func.count().label("n"),
        func.bool_or(or_(false(), *missing)).label("missing"),
    ).select_from(joined).lateral("r")
    cursors = agg.c.cursors
    page_info = {
        "hasNextPage": agg.c.n > size, "hasPreviousPage": literal_column("false"),
        "startCursor": cursors[1], "endCursor": cursors[func.array_length(cursors, 1)],
    }
    for out in plan.shape:
        if out.name == "edges":
            conn.append((out.key, func.coalesce(agg.c.edges, literal_column("'[]'::json"))))
        elif out.name == "pageInfo":
            conn.append((out.key, _object([(o.key, page_info[o.name] if o.name in page_info else _column("", {}, None, o))
                                           for o in out.value])))
        elif out.name == "totalCount":
            conn.append((out.key, select(func.count()).select_from(R).where(touching).correlate(outer).scalar_subquery()))
        else:
            conn.append((out.key, _column("", {}, None, out)))
    return (_object(conn), func.coalesce(agg.c.missing, False)), agg


WORKSPACE = uuid.uuid4()
"""Stands for the workspace in a prepared statement: a value of this process that no input can
name, so every bound parameter holding it is the workspace id, bound afresh per execution."""


@dataclass(frozen=True)
class Prepared:
    """A contact list's statement, built and compiled once for every operation of the same
    document and variables (schema.planner caches it): what is left per request is binding the
    workspace, one round trip, and shaping the rows."""

    sql: str
    params: dict[str, Any]
    workspace_params: tuple[tuple[str, Callable[[Any], Any] | None], ...]  # names, and the type's conversion
    keys: list[SortKey]
    args: PageArgs
    shape: Shape
    aggregated: bool
    "One row: the edges as one JSON array (no list cursor shown), `n` rows read, `missing`, `total`."


def prepare(
    dialect: Dialect, p: Principal, args: PageArgs, shape: Shape, *, where: Any = None,
    order: Sequence[tuple[str, bool]] | None = None, search: str | None = None,
) -> Prepared:
    """The contacts connection `shape` describes, over the same query `list_contacts` runs.
    Raises NotPlannable for a shape it cannot build, and the services' errors for bad input."""
    p = dataclasses.replace(p, workspace_id=WORKSPACE)
    ws = p.require(contacts.READ)
    if not args.size:
        raise NotPlannable("empty page")  # paginate reads nothing then
    keys = contacts.sort_keys(order)
    page = window(contacts.contacts_query(p, where=where, order=order, search=search, entity=False), keys, args)
    c = page.add_columns(func.row_number().over(order_by=order_terms(keys, args.backward)).label("rn")).subquery("c")

    node_shape = _node_shape(shape)
    aggregated = not _cursors(shape)  # then PostgreSQL builds the whole list: one row to read, nothing to shape per row
    values = [] if aggregated else [  # the sort values serve only to encode cursors
        c.c[name] for name in ("id", "full_name", "created_at", "updated_at", "sort_last_contact_at", "sort_strength")
        if name in c.c]
    columns: list[Any] = [*values, c.c.rn]
    from_: Any = c
    missing: list[Any] = []
    if node_shape is not None:
        pairs = []
        for out in node_shape:
            if out.name == "relationships":
                (json, flag), lateral = _edges(ws, c, c.c.id, out.value)
                from_ = from_.join(lateral, true())
                pairs.append((out.key, json))
                missing.append(flag)
            else:
                pairs.append((out.key, _column("Contact", CONTACT_FIELDS, c.c, out)))
        node = _object(pairs)
        columns.append((node if aggregated else func.cast(node, Text)).label("node"))
    stmt = select(*columns, or_(false(), *missing).label("missing")).select_from(from_)
    total = None
    if any(o.name == "totalCount" for o in shape):
        base = contacts.contacts_query(p, where=where, order=order, search=search, entity=False).order_by(None)
        total = select(func.count()).select_from(base.subquery()).scalar_subquery()
    if aggregated:
        rows = stmt.subquery("p")
        edges_shape = next((o.value for o in shape if o.name == "edges"), ())
        edge = _object([(o.key, rows.c.node if o.name == "node" else _column("", {}, None, o)) for o in edges_shape])
        in_page = rows.c.rn.desc() if args.backward else rows.c.rn  # a backward window reads its page from the end
        stmt = select(
            func.count().label("n"),
            func.cast(func.json_agg(aggregate_order_by(edge, in_page)).filter(rows.c.rn <= written(args.size)), Text).label("edges"),
            func.coalesce(func.bool_or(rows.c.missing), false()).label("missing"),
            (total if total is not None else literal_column("0")).label("total"),
        )
    else:
        stmt = stmt.order_by(c.c.rn)
        if total is not None:
            counted = select(total.label("total")).subquery("t")
            rows_of = stmt.lateral("p")
            stmt = select(counted.c.total, rows_of).select_from(counted.outerjoin(rows_of, true())).order_by(rows_of.c.rn)

    state = stmt.compile(dialect=dialect).construct_expanded_state()  # IN lists expanded, as execution does
    params, workspace = {}, []
    for name, value in state.parameters.items():
        convert = state.processors.get(name)
        if value == WORKSPACE:
            workspace.append((name, convert))
        else:
            params[name] = value if convert is None else convert(value)
    return Prepared(state.statement, params, tuple(workspace), keys, args, shape, aggregated)


async def contact_list(db: Database, p: Principal, plan: Prepared) -> dict[str, Any] | None:
    """The connection as `list_contacts` and the resolvers give it; None when an edge ends at
    something the statement cannot show (a record, a missing node).

    The compiled text runs as is in the workspace's scope (`Database.read`: one round trip); the
    rows it reads (uuids, times, numbers, text, booleans) are the values the driver gives
    SQLAlchemy too."""
    ws = p.require(contacts.READ)
    params = {**plan.params, **{name: ws if convert is None else convert(ws) for name, convert in plan.workspace_params}}
    rows = await db.read(ws, plan.sql, params)
    shape, keys, args = plan.shape, plan.keys, plan.args
    if plan.aggregated:
        (row,) = rows
        if row.missing:
            return None
        has_next, has_previous = page_flags(row.n, args)
        flags = {"hasNextPage": has_next, "hasPreviousPage": has_previous}
        return _shaped(shape, lambda: orjson.Fragment(row.edges or "[]"), flags.__getitem__, row.total)
    wants_total = any(o.name == "totalCount" for o in shape)
    total_count = rows[0].total if wants_total else None
    if wants_total:
        rows = [r for r in rows if r.rn is not None]
    if any(r.missing for r in rows):
        return None

    async def no_count() -> int:
        raise AssertionError("counted in the statement")

    edges = next((o for o in shape if o.name == "edges"), None)
    every = edges is not None and any(o.name == "cursor" for o in edges.value)
    result = page_of(rows, keys, args, no_count, cursors=every)  # encoding 50 cursors nobody reads is a tenth of a request

    def bound(i: int) -> str | None:
        """The page's first (0) or last (-1) cursor, for pageInfo."""
        if not result.items:
            return None
        return result.cursors[i] if every else encode_cursor([k.value(result.items[i]) for k in keys])

    def page_info(name: str) -> Any:
        if name in ("hasNextPage", "hasPreviousPage"):
            return result.has_next_page if name == "hasNextPage" else result.has_previous_page
        return bound(0 if name == "startCursor" else -1)

    def edge(row: Any, cursor: str | None) -> dict[str, Any]:
        return {o.key: cursor if o.name == "cursor" else orjson.Fragment(row.node) if o.name == "node" else _constant(o)
                for o in edges.value}  # type: ignore[union-attr]

    def all_edges() -> list[dict[str, Any]]:
        cursors = result.cursors if every else [None] * len(result.items)
        return [edge(r, cursor) for r, cursor in zip(result.items, cursors, strict=True)]

    return _shaped(shape, all_edges, page_info, total_count)


def _shaped(shape: Shape, edges: Callable[[], Any], page_info: Callable[[str], Any], total: int | None) -> dict[str, Any]:
    """The connection object: its keys in the shape's order."""
    out: dict[str, Any] = {}
    for o in shape:
        if o.name == "edges":
            out[o.key] = edges()
        elif o.name == "pageInfo":
            out[o.key] = {i.key: page_info(i.name) if i.name in PAGE_INFO else _constant(i) for i in o.value}
        elif o.name == "totalCount":
            out[o.key] = int(total or 0)
        else:
            out[o.key] = _constant(o)
    return out


def _cursors(shape: Shape) -> bool:
    """Whether the response shows a cursor of the list (an edge's, or pageInfo's first or last)."""
    return any(i.name in ("cursor", "startCursor", "endCursor") for o in shape if o.name in ("edges", "pageInfo") for i in o.value)


def _node_shape(shape: Shape) -> Shape | None:
    edges = next((o for o in shape if o.name == "edges"), None)
    return next((o.value for o in (edges.value if edges else ()) if o.name == "node"), None)


def _constant(out: Out) -> Any:
    if out.name != "=":
        raise NotPlannable(out.name)
    return out.value
