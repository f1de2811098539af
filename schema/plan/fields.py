"""How a GraphQL type's fields come from SQL: the declarations the planner compiles.

Each object type declares itself once, next to its Strawberry class (`declare(Contact, ...)`):
its table, the scope a reader needs, which of its rows are visible, and, for each field the
columns do not answer by name, where the value comes from. A plain field whose Python name is a
column of the table needs no declaration; `id` is the global id of the row. A field that cannot be
planned says so with its reason: a query touching it is answered by the resolvers instead (and
counted, see `schema.plan.runner`).

The planner (schema.plan.compiler) walks an operation's selection over these declarations and
builds one SQL statement that returns the response JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Select, Table, true

from app.services.access import Principal
from app.services.pagination import ChildPages, SortKey

Row = Any
"The FromClause (table alias or subquery) of the row a field is read from: `row.c.name`."


@dataclass(frozen=True)
class Scope:
    """What a declaration may use besides the row: the caller (with the workspace as a bound
    parameter, see `schema.plan.compiler.WORKSPACE`), the node whose connection lists this row
    (an edge's `other` end is relative to it), and the rows of the enclosing queries, which
    every subquery correlates to."""

    principal: Principal
    owner: tuple[str, Any] | None = None
    enclosing: tuple[FromClause, ...] = ()

    @property
    def workspace(self) -> Any:
        return self.principal.workspace_id

    def under(self, type_name: str, id_: Any) -> Scope:
        return dataclasses.replace(self, owner=(type_name, id_))

    def within(self, row: FromClause) -> Scope:
        return dataclasses.replace(self, enclosing=(*self.enclosing, row))


@dataclass(frozen=True)
class Column:
    """The value of a column (by default the one named like the field)."""

    name: str


@dataclass(frozen=True)
class Computed:
    """A SQL expression over the row (a derived figure, a weight), encoded as the field's type."""

    sql: Callable[[Row, Scope], ColumnElement[Any]]


@dataclass(frozen=True)
class Embedded:
    """An object that is not a node (ContactIntelligence): its fields are declared on `type_name`
    and read from the row `join(row, scope)` selects, which may be empty (its columns then NULL)."""

    join: Callable[[Row, Scope], FromClause]


@dataclass(frozen=True)
class Reference:
    """Another node, by its uuid: of one type, or (an edge's end) of the type a column names,
    one of `types()`."""

    id: Callable[[Row, Scope], ColumnElement[Any]]
    type_name: str | None = None
    type_of: Callable[[Row, Scope], ColumnElement[Any]] | None = None
    types: Callable[[], Sequence[str]] = tuple


@dataclass(frozen=True)
class Children:
    """A connection under the row: `rows(row, scope, arguments)` is the service's query of the
    children (unordered) and its sort keys (the last one unique), as the resolver pages it."""

    rows: Callable[[Row, Scope, dict[str, Any]], tuple[Select[Any], Sequence[SortKey]]]

    @classmethod
    def of(cls, pages: ChildPages) -> Children:
        """The connection a service pages with `ChildPages` (its first pages batched per parent)."""
        def rows(row: Row, scope: Scope, arguments: dict[str, Any]) -> tuple[Select[Any], Sequence[SortKey]]:
            stmt, _, keys = pages.query(scope.workspace, [row.c.id])
            return stmt, keys

        return cls(rows)


@dataclass(frozen=True)
class Unplanned:
    """A field the planner does not build, and why."""

    reason: str


Field = Column | Computed | Embedded | Reference | Children | Unplanned


@dataclass(frozen=True)
class TypePlan:
    name: str
    table: FromClause | None
    "None for an embedded object type, whose rows come from the field embedding it."
    fields: dict[str, Field]
    scope: str | Callable[[Principal], Any] | None
    "What a reader must hold: a scope, or a rule of the service that raises for others."
    visible: Callable[[Row, Any], ColumnElement[bool]]
    "The rows of a workspace (`row`, workspace id) that `node(id)` and references show."

    def field(self, python_name: str) -> Field | None:
        declared = self.fields.get(python_name)
        if declared is not None:
            return declared
        if self.table is not None and python_name in self.table.c:
            return Column(python_name)
        return None


@dataclass(frozen=True)
class RootConnection:
    """A root field answering a connection: `rows(principal, arguments)` as the service lists
    them. A list whose query depends on stored rows (a type's custom fields) reads them first,
    `load(session, principal, arguments)`, and passes them to `rows` as a third argument; the
    statement then holds only while `guard(loaded, arguments, scope)` is true of the database (it
    is checked by the same statement, and a plan found stale is compiled again)."""

    type_name: str
    rows: Callable[..., tuple[Select[Any], Sequence[SortKey]]]
    load: Callable[[Any, Principal, dict[str, Any]], Awaitable[Any]] | None = None
    guard: Callable[[Any, dict[str, Any], Scope], ColumnElement[bool]] | None = None


@dataclass(frozen=True)
class RootList:
    """A root field answering a list of `type_name` objects: `rows(principal, arguments)` is the
    service's statement of their rows (None: no rows), with a `position` column giving the order."""

    type_name: str
    rows: Callable[[Principal, dict[str, Any]], Select[Any] | None]


TYPES: dict[str, TypePlan] = {}
ROOTS: dict[str, RootConnection | RootList] = {}


def _graphql_name(cls: type) -> str:
    definition = getattr(cls, "__strawberry_definition__", None)
    return definition.name if definition is not None else cls.__name__


def _workspace_rows(row: Row, ws: Any) -> ColumnElement[bool]:
    return row.c.workspace_id == ws


def _anywhere(row: Row, ws: Any) -> ColumnElement[bool]:
    return true()


def declare(
    cls: type, table: Table | None = None, *, scope: str | Callable[[Principal], Any] | None = None,
    visible: Callable[[Row, Any], ColumnElement[bool]] | None = None, **fields: Field,
) -> None:
    """Declares how the Strawberry type `cls` is read from SQL; `fields` by Python field name.
    Without a table, `cls` is embedded in another type's rows (see `Embedded`)."""
    name = _graphql_name(cls)
    if table is None:
        TYPES[name] = TypePlan(name, None, dict(fields), scope, _anywhere)
    else:
        TYPES[name] = TypePlan(name, table, dict(fields), scope, visible or _workspace_rows)


def declare_root_list(name: str, cls: type, rows: Callable[[Principal, dict[str, Any]], Select[Any] | None]) -> None:
    """Declares the root field `name` (Python name) as a list of `cls` (see RootList)."""
    ROOTS[name] = RootList(_graphql_name(cls), rows)


def declare_root(
    name: str, cls: type, rows: Callable[..., tuple[Select[Any], Sequence[SortKey]]], *,
    load: Callable[[Any, Principal, dict[str, Any]], Awaitable[Any]] | None = None,
    guard: Callable[[Any, dict[str, Any], Scope], ColumnElement[bool]] | None = None,
) -> None:
    """Declares the root field `name` (Python name) as a connection of `cls` (see RootConnection)."""
    ROOTS[name] = RootConnection(_graphql_name(cls), rows, load, guard)
