"""Filter conditions compiled to SQL once, for every entity.

Conditions arrive as any object with the attributes of the contract's filter inputs (eq, neq,
in_, contains, starts_with, is_null, gt, gte, lt, lte), and trees with and_/or_/not_; an entity
declares which of its attributes compile how, in a `FieldMap`. Every list in a filter holds at
most MAX_LIST values: beyond that a statement would pass PostgreSQL's 65,535 parameters, and a
list that long is a job for a search or an import, not a filter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, not_, or_, true

from app.services import ids
from app.services.errors import BadInput, Problem

FieldMap = dict[str, Callable[[Any], ColumnElement[bool]]]
MAX_LIST = 1000


def camel(name: str) -> str:
    """The contract's name of an input attribute: remote_id -> remoteId, in_ -> in."""
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part.title() for part in rest)


def check_list(values: Sequence[Any] | None, path: Sequence[str], limit: int = MAX_LIST) -> None:
    """A list argument of a query of at most `limit` values, else BAD_USER_INPUT naming it."""
    problem = list_problem(values, tuple(path), limit)
    if problem is not None:
        raise BadInput(f"{'.'.join(path)}: {problem.message}")


def list_problem(values: Sequence[Any] | None, path: tuple[str, ...], limit: int = MAX_LIST) -> Problem | None:
    """The same rule for a list in a mutation's input, as a user error."""
    if values is not None and len(values) > limit:
        return Problem(f"at most {limit:,} values, got {len(values):,}", "LIMIT", path)
    return None


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _is_null(column: ColumnElement[Any], flag: bool) -> ColumnElement[bool]:
    return column.is_(None) if flag else column.is_not(None)


def string(column: ColumnElement[Any]) -> Callable[[Any], ColumnElement[bool]]:
    """eq/neq/in are exact; contains and startsWith ignore case."""

    def build(f: Any) -> ColumnElement[bool]:
        terms: list[ColumnElement[bool]] = []
        if f.eq is not None:
            terms.append(column == f.eq)
        if f.neq is not None:
            terms.append(or_(column != f.neq, column.is_(None)))
        if f.in_ is not None:
            terms.append(column.in_(f.in_))
        if f.contains is not None:
            terms.append(column.ilike(f"%{_like_escape(f.contains)}%", escape="\\"))
        if f.starts_with is not None:
            terms.append(column.ilike(f"{_like_escape(f.starts_with)}%", escape="\\"))
        if f.is_null is not None:
            terms.append(_is_null(column, f.is_null))
        return and_(true(), *terms)

    return build


def comparable(column: ColumnElement[Any]) -> Callable[[Any], ColumnElement[bool]]:
    """For FloatFilter and DateTimeFilter."""

    def build(f: Any) -> ColumnElement[bool]:
        terms: list[ColumnElement[bool]] = []
        for attr, op in (("eq", "__eq__"), ("gt", "__gt__"), ("gte", "__ge__"), ("lt", "__lt__"), ("lte", "__le__")):
            value = getattr(f, attr)
            if value is not None:
                terms.append(getattr(column, op)(value))
        if f.is_null is not None:
            terms.append(_is_null(column, f.is_null))
        return and_(true(), *terms)

    return build


def global_id(column: ColumnElement[Any], type_name: str) -> Callable[[Any], ColumnElement[bool]]:
    """IDFilter on global ids: an id of another type, or of another workspace, matches nothing."""

    def build(f: Any) -> ColumnElement[bool]:
        terms: list[ColumnElement[bool]] = []
        if f.eq is not None:
            terms.append(column == ids.decode_as(f.eq, type_name))
        if f.in_ is not None:
            wanted = [u for u in (ids.decode_as(g, type_name) for g in f.in_) if u is not None]
            terms.append(column.in_(wanted))
        if f.is_null is not None:
            terms.append(_is_null(column, f.is_null))
        return and_(true(), *terms)

    return build


def one_of(column: ColumnElement[Any]) -> Callable[[Any], ColumnElement[bool]]:
    """A list of enum values: the row's value is any of them."""
    return lambda values: column.in_([getattr(v, "value", v) for v in values])


def compile_filter(f: Any, fields: FieldMap, path: tuple[str, ...] = ("filter",)) -> ColumnElement[bool]:
    """AND of every condition set on `f`, with its and/or/not sub-filters."""
    terms: list[ColumnElement[bool]] = []
    for name, build in fields.items():
        value = getattr(f, name, None)
        if value is not None:
            _check_lists(value, (*path, camel(name)))
            terms.append(build(value))
    check_list(getattr(f, "and_", None), (*path, "and"))
    check_list(getattr(f, "or_", None), (*path, "or"))
    for i, sub in enumerate(getattr(f, "and_", None) or []):
        terms.append(compile_filter(sub, fields, (*path, "and", str(i))))
    if getattr(f, "or_", None):
        terms.append(or_(*(compile_filter(sub, fields, (*path, "or", str(i))) for i, sub in enumerate(f.or_))))
    if getattr(f, "not_", None) is not None:
        terms.append(not_(compile_filter(f.not_, fields, (*path, "not"))))
    return and_(true(), *terms)


def _check_lists(condition: Any, path: tuple[str, ...]) -> None:
    """The condition's own list (a list of enum values, of custom-field conditions) and its `in`."""
    if isinstance(condition, list):
        check_list(condition, path)
        for i, item in enumerate(condition):
            check_list(getattr(item, "in_", None), (*path, str(i), "in"))
    else:
        check_list(getattr(condition, "in_", None), (*path, "in"))
