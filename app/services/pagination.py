"""Keyset pagination over any SELECT: Relay's first/after/last/before in SQL.

The cursor holds the row's sort-key values (ties broken by id), so a page starts strictly after
the previous one's last row: inserts and deletes never repeat or skip a row across pages. The
total count is a separate statement, run only when a client asks for it.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Integer, Select, and_, false, func, inspect, literal_column, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.services.errors import BadInput

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class PageArgs:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None

    @property
    def backward(self) -> bool:
        return self.last is not None or (self.before is not None and self.first is None)

    @property
    def size(self) -> int:
        """The page size, once the arguments are known to make sense."""
        if self.first is not None and self.last is not None:
            raise BadInput("Pass either first or last, not both")
        for name, value in (("first", self.first), ("last", self.last)):
            if value is not None and not 0 <= value <= MAX_PAGE_SIZE:
                raise BadInput(f"{name} must be between 0 and {MAX_PAGE_SIZE}, got {value}")
        size = self.last if self.backward else self.first
        return DEFAULT_PAGE_SIZE if size is None else size


@dataclass(frozen=True)
class SortKey:
    """One ORDER BY term; `value` reads it back from a result row for the cursor."""

    expr: ColumnElement[Any]
    value: Callable[[Any], Any]
    descending: bool = False
    nullable: bool = False


@dataclass
class Page(Generic[T]):
    items: list[T]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool
    count: Callable[[], Awaitable[int]]

    @property
    def start_cursor(self) -> str | None:
        return self.cursors[0] if self.cursors else None

    @property
    def end_cursor(self) -> str | None:
        return self.cursors[-1] if self.cursors else None


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"id": str(value)}
    if isinstance(value, float):  # its exact bits: the SQL planner writes the same (float8send)
        return {"f": struct.pack(">d", value).hex()}
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if "dt" in value:
            return datetime.fromisoformat(value["dt"])
        if "id" in value:
            return uuid.UUID(value["id"])
        if "f" in value:
            return struct.unpack(">d", bytes.fromhex(value["f"]))[0]
        raise ValueError("unknown cursor value")
    return value


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps([_to_json(v) for v in values], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, width: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = [_from_json(v) for v in json.loads(base64.urlsafe_b64decode(padded.encode()))]
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, struct.error) as exc:
        raise BadInput("Invalid cursor") from exc
    if len(values) != width:
        raise BadInput("Invalid cursor: it belongs to another ordering")
    return values


def _beyond(key: SortKey, value: Any, descending: bool) -> ColumnElement[bool]:
    """Rows strictly after `value` in this key's order (NULLs sort as the largest value)."""
    if value is None:  # only NULLs come after NULL in ascending order, none in descending
        return key.expr.is_not(None) if descending else false()
    after = key.expr < value if descending else key.expr > value
    return after if descending or not key.nullable else or_(after, key.expr.is_(None))


def _equal(key: SortKey, value: Any) -> ColumnElement[bool]:
    return key.expr.is_(None) if value is None else key.expr == value


def after_condition(keys: Sequence[SortKey], values: Sequence[Any], reverse: bool = False) -> ColumnElement[bool]:
    """(k1 > v1) OR (k1 = v1 AND k2 > v2) OR ..., each key in its own direction."""
    terms = []
    for i, key in enumerate(keys):
        prefix = [_equal(k, v) for k, v in zip(keys[:i], values[:i], strict=True)]
        terms.append(and_(*prefix, _beyond(key, values[i], key.descending != reverse)))
    return or_(*terms)


def order_terms(keys: Sequence[SortKey], reverse: bool) -> list[Any]:
    out = []
    for key in keys:
        descending = key.descending != reverse
        term = key.expr.desc() if descending else key.expr.asc()
        out.append(term.nulls_first() if descending else term.nulls_last())
    return out


def window(stmt: Select[Any], keys: Sequence[SortKey], args: PageArgs) -> Select[Any]:
    """`stmt` narrowed to one page (plus one row, to tell whether more follow), fetch order."""
    size, query = args.size, stmt
    if args.after is not None:
        query = query.where(after_condition(keys, decode_cursor(args.after, len(keys))))
    if args.before is not None:
        query = query.where(after_condition(keys, decode_cursor(args.before, len(keys)), reverse=True))
    return query.order_by(*order_terms(keys, reverse=args.backward)).limit(written(size + 1))


def written(n: int) -> ColumnElement[int]:
    """A page size as a literal of the statement, not a bound parameter: PostgreSQL estimates a
    bound LIMIT as a tenth of the rows, so a prepared statement's generic plan looks dear and the
    statement is planned afresh on every run (psycopg prepares what runs five times)."""
    return literal_column(str(int(n)), Integer)


def page_of(
    rows: list[Any], keys: Sequence[SortKey], args: PageArgs, count: Callable[[], Awaitable[int]], cursors: bool = True
) -> Page[Any]:
    """The page of the rows `window` fetched, in page order; `cursors=False` leaves them out, for
    a caller that shows none."""
    has_next_page, has_previous_page = page_flags(len(rows), args)
    rows = rows[:args.size]
    if args.backward:
        rows.reverse()
    return Page(
        items=rows,
        cursors=[encode_cursor([k.value(row) for k in keys]) for row in rows] if cursors else [],
        has_next_page=has_next_page,
        has_previous_page=has_previous_page,
        count=count,
    )


def page_flags(fetched: int, args: PageArgs) -> tuple[bool, bool]:
    """(hasNextPage, hasPreviousPage) of a page for which `window` fetched `fetched` rows (one
    more than the page holds when there is more in its direction)."""
    more = fetched > args.size
    if args.backward:
        return args.before is not None, more
    return more, args.after is not None


async def paginate(session: AsyncSession, stmt: Select[Any], keys: Sequence[SortKey], args: PageArgs) -> Page[Any]:
    """One page of `stmt`'s single-entity rows, in `keys` order (the last key must be unique)."""
    query = window(stmt, keys, args)
    rows = list((await session.scalars(query)).all()) if args.size else []

    async def count() -> int:
        return int(await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0)

    return page_of(rows, keys, args, count)


def _row_keyset(keys: Sequence[SortKey], args: PageArgs) -> tuple[ColumnElement[bool], PageArgs] | None:
    """For one non-null key plus the id, both in the same direction (every single ordering):
    the cursor's position as a row comparison, which an index starts at, and the page arguments
    without the cursor. The keyset condition of `paginate` is an OR that PostgreSQL can only
    filter with, so deep pages would scan everything before them."""
    cursor = args.after if args.after is not None else args.before
    if cursor is None or args.after is not None and args.before is not None or len(keys) != 2 \
            or any(k.nullable for k in keys):
        return None
    values = decode_cursor(cursor, len(keys))
    if None in values:
        return None
    row, at = tuple_(keys[0].expr, keys[1].expr), tuple_(*values)
    condition = row < at if keys[0].descending != (args.before is not None) else row > at
    size = args.size
    return condition, PageArgs(first=None if args.backward else size, last=size if args.backward else None)


async def paginate_indexed(s: AsyncSession, stmt: Select[Any], keys: Sequence[SortKey], args: PageArgs) -> Page[Any]:
    """`paginate`, with a page after (or before) a cursor started where an index on (key, id)
    is at that cursor, when the ordering allows it (see `_row_keyset`): deep pages cost what
    the first one does."""
    keyset = _row_keyset(keys, args)
    if keyset is None:
        return await paginate(s, stmt, keys, args)
    page = await paginate(s, stmt.where(keyset[0]), keys, keyset[1])

    async def count() -> int:  # of the whole filtered set, not of what follows the cursor
        return int(await s.scalar(select(func.count()).select_from(stmt.subquery())) or 0)

    page.count = count
    if args.after is not None:
        page.has_previous_page = True
    else:
        page.has_next_page = True
    return page


ChildQuery = Callable[[uuid.UUID, list[Any]], tuple[Select[Any], ColumnElement[Any], list[SortKey]]]


@dataclass(frozen=True)
class ChildPages:
    """A connection nested under many parents (Record.history, Document.versions...): the first
    pages, and the counts, of all of an operation's parents come in one statement each, so a
    nested query's statement count does not grow with its rows.

    `query(workspace_id, parent_ids)` returns the SELECT of the child entity, the column naming
    each row's parent, and the sort keys (the last one unique).
    """

    scope: str
    query: ChildQuery

    async def page(self, s: AsyncSession, p: Any, parent: Any, args: PageArgs) -> Page[Any]:
        """One parent's page: for `after`/`before` cursors, which only make sense one at a time."""
        stmt, _, keys = self.query(p.require(self.scope), [parent])
        return await paginate(s, stmt, keys, args)

    async def first_pages(self, s: AsyncSession, p: Any, keys: list[tuple[Any, int]]) -> dict[tuple[Any, int], Page[Any]]:
        """Loader fetch: key (parent, page size) -> that parent's first page."""
        ws = p.require(self.scope)
        by_size: dict[int, list[Any]] = {}
        for parent, size in keys:
            by_size.setdefault(size, []).append(parent)
        out: dict[tuple[Any, int], Page[Any]] = {}
        for size, parents in by_size.items():
            stmt, parent_column, sort = self.query(ws, parents)
            entity = stmt.column_descriptions[0]["entity"]
            key = inspect(entity).primary_key[0]
            ranked = stmt.with_only_columns(
                key.label("child_key"), parent_column.label("parent_key"),
                func.row_number().over(partition_by=parent_column, order_by=order_terms(sort, False)).label("child_rank"),
            ).subquery("ranked")
            rows = await s.execute(
                select(entity, ranked.c.parent_key).join(ranked, key == ranked.c.child_key)
                .where(ranked.c.child_rank <= written(size + 1)).order_by(ranked.c.parent_key, ranked.c.child_rank)
            )
            grouped: dict[Any, list[Any]] = {}
            for row, parent in rows:
                grouped.setdefault(parent, []).append(row)
            for parent in parents:
                found = grouped.get(parent, [])
                items = found[:size]
                out[(parent, size)] = Page(
                    items=items, cursors=[encode_cursor([k.value(r) for k in sort]) for r in items],
                    has_next_page=len(found) > size, has_previous_page=False, count=_count_unknown,
                )
        return out

    async def counts(self, s: AsyncSession, p: Any, parents: list[Any]) -> dict[Any, int]:
        """Loader fetch: parent -> how many children it has."""
        stmt, parent_column, _ = self.query(p.require(self.scope), parents)
        grouped = stmt.with_only_columns(parent_column, func.count()).group_by(parent_column).order_by(None)
        found: dict[Any, int] = {parent: count for parent, count in await s.execute(grouped)}
        return {parent: found.get(parent, 0) for parent in parents}


async def _count_unknown() -> int:
    raise RuntimeError("a batched page's count comes from ChildPages.counts")
