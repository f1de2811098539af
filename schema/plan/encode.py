"""The response's encodings written in SQL: JSON objects, global ids, DateTime, Float and
cursors exactly as the resolvers and `app.services.pagination` write them in Python."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, Integer, Numeric, String, Text, case, func, literal_column
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSON, UUID
from sqlalchemy.types import DateTime, TypeEngine

MAX_KEYS = 50
"json_build_object takes at most 100 arguments; larger objects are joined from parts."
_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")
MISSING = literal_column("'\"\\u0000\"'::json", JSON)
"""Stands where a non-null node is missing (an edge to something not visible): the resolvers answer
such a response (with their error), so the text is checked for it. Stored text cannot hold NUL,
so no user data is ever written as this escape."""
MISSING_TEXT = "\\u0000"


class NotPlannable(Exception):
    """The selection asks for something the planner does not build: the resolvers answer it."""


def name(value: str) -> Any:
    """A constant GraphQL name (a response key or a type name), never user input."""
    if not _NAME.match(value):
        raise NotPlannable(f"the name {value!r}")
    return literal_column(f"'{value}'", Text)


def json_object(pairs: Sequence[tuple[str, Any]]) -> Any:
    """A JSON object of `pairs` in order (json keeps the order; jsonb would sort the keys)."""
    if len(pairs) <= MAX_KEYS:
        return func.json_build_object(*(x for key, v in pairs for x in (name(key), v)), type_=JSON)
    parts = [json_object(pairs[i:i + MAX_KEYS]) for i in range(0, len(pairs), MAX_KEYS)]
    inner = [func.substr(sql_cast(p, Text), 2, func.length(sql_cast(p, Text)) - 2) for p in parts]
    joined = literal_column("'{'")
    for i, part in enumerate(inner):
        joined = joined.concat(part if i == 0 else literal_column("','").concat(part))
    return sql_cast(joined.concat(literal_column("'}'")), JSON)


def global_id(type_name: str, id_: Any) -> Any:
    """ids.encode in SQL: standard base64 of "Type:uuid"."""
    prefix = name(type_name).concat(literal_column("':'"))
    raw = func.encode(func.convert_to(prefix.concat(sql_cast(id_, Text)), literal_column("'UTF8'")), literal_column("'base64'"))
    return func.translate(raw, literal_column("E'\\n'"), literal_column("''"))


def _fraction(ts: Any) -> Any:
    """".ffffff" when the time has microseconds, as datetime.isoformat() writes it."""
    return case((func.date_trunc(literal_column("'second'"), ts) == ts, literal_column("''")),
                else_=literal_column("'.'").concat(func.to_char(ts, literal_column("'US'"))))


def datetime(ts: Any) -> Any:
    """The DateTime scalar: ISO 8601 in UTC with a trailing Z."""
    utc = func.timezone(literal_column("'UTC'"), ts)
    text = (func.to_char(utc, literal_column("'YYYY-MM-DD\"T\"HH24:MI:SS'"))
            .concat(_fraction(utc)).concat(literal_column("'Z'")))
    return case((ts.is_(None), None), else_=text)


def float_(value: Any) -> Any:
    """A Float as JSON that reads back as a float: PostgreSQL writes 1.0 as `1`, Python as `1.0`."""
    integral = (value == func.trunc(value)) & (func.abs(value) < literal_column("1e15"))
    return case((integral, sql_cast(sql_cast(sql_cast(value, Numeric), Text).concat(literal_column("'.0'")), JSON)),
                else_=func.to_json(value))


def _cursor_value(expr: Any) -> Any:
    """One sort value as `pagination._to_json` writes it, as JSON text."""
    kind: TypeEngine[Any] = expr.type
    if isinstance(kind, DateTime):
        iso = (func.to_char(expr, literal_column("'YYYY-MM-DD\"T\"HH24:MI:SS'")).concat(_fraction(expr))
               .concat(func.to_char(expr, literal_column("'TZH:TZM'"))))  # the session's zone, as psycopg reads it
        return literal_column("'{\"dt\":\"'").concat(iso).concat(literal_column("'\"}'"))
    if isinstance(kind, UUID):
        return literal_column("'{\"id\":\"'").concat(sql_cast(expr, Text)).concat(literal_column("'\"}'"))
    if isinstance(kind, Float | Numeric) and not isinstance(kind, Integer):
        return (literal_column("'{\"f\":\"'").concat(func.encode(func.float8send(sql_cast(expr, Float)), literal_column("'hex'")))
                .concat(literal_column("'\"}'")))
    if isinstance(kind, Integer | BigInteger | Boolean | String):
        return sql_cast(func.to_json(expr), Text)
    raise NotPlannable(f"a cursor over {kind!r}")


def cursor(values: Sequence[Any]) -> Any:
    """encode_cursor(values) in SQL: URL-safe base64 of the JSON array, unpadded. A NULL value is
    `null` (to_json(NULL) is NULL)."""
    raw: Any = literal_column("'['")
    for i, v in enumerate(values):
        item = func.coalesce(_cursor_value(v), literal_column("'null'"))
        raw = raw.concat(item if i == 0 else literal_column("','").concat(item))
    raw = raw.concat(literal_column("']'"))
    b64 = func.encode(func.convert_to(raw, literal_column("'UTF8'")), literal_column("'base64'"))
    return func.translate(b64, literal_column("E'+/=\\n'"), literal_column("'-_'"))
