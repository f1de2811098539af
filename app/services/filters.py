"""Filter conditions compiled to SQL once, for every entity.

Conditions arrive as any object with the attributes of the contract's filter inputs (eq, neq,
in_, contains, starts_with, is_null, gt, gte, lt, lte), and trees with and_/or_/not_; an entity
declares which of its attributes compile how, in a `FieldMap`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, and_, not_, or_, true

from app.services import ids

FieldMap = dict[str, Callable[[Any], ColumnElement[bool]]]


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


def compile_filter(f: Any, fields: FieldMap) -> ColumnElement[bool]:
    """AND of every condition set on `f`, with its and/or/not sub-filters."""
    terms: list[ColumnElement[bool]] = []
    for name, build in fields.items():
        value = getattr(f, name, None)
        if value is not None:
            terms.append(build(value))
    for sub in getattr(f, "and_", None) or []:
        terms.append(compile_filter(sub, fields))
    if getattr(f, "or_", None):
        terms.append(or_(*(compile_filter(sub, fields) for sub in f.or_)))
    if getattr(f, "not_", None) is not None:
        terms.append(not_(compile_filter(f.not_, fields)))
    return and_(true(), *terms)
