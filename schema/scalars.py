"""Scalars of the contract (DateTime, JSON, Upload) and what every input value must be.

Client input reaches PostgreSQL and the JSON encoders, which cannot take everything JSON and
GraphQL can say: PostgreSQL text holds no NUL, a lone UTF-16 surrogate cannot be encoded, and
orjson writes neither integers beyond 64 bits nor JSON nested deeper than 255 levels. So input
is refused where it enters, with the place named, instead of failing as an internal error
later: `read_json` for the JSON a client sends (request bodies, GET parameters, multipart parts,
WebSocket messages), `TextInputs` for the strings of variables and literals, and the JSON
scalar for its own values.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import strawberry
from graphql import GraphQLError, StringValueNode, ValidationRule, ValueNode, value_from_ast_untyped
from graphql.language import ArgumentNode, ObjectFieldNode, VariableDefinitionNode
from strawberry.extensions import SchemaExtension
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON

MAX_JSON_DEPTH = 64
MIN_INT64, MAX_INT64 = -(2**63), 2**63 - 1
BAD_INPUT = {"code": "BAD_USER_INPUT"}


def _serialize(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("DateTime must be an ISO 8601 string")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("DateTime must carry a time zone (e.g. a trailing Z)")
    return parsed.astimezone(UTC)


DateTime = strawberry.scalar(
    name="DateTime",
    description='ISO 8601 in UTC, e.g. "2026-05-06T14:23:00Z"; as input, any offset (converted to UTC).',
    specified_by_url="https://www.rfc-editor.org/rfc/rfc3339",
    serialize=_serialize,
    parse_value=_parse,
)


# --- Text --------------------------------------------------------------------------------


def text_problem(text: str) -> str | None:
    """Why PostgreSQL could not store `text`, or None. (`isprintable`-style checks would refuse
    legitimate text; these two are the only characters a text column or UTF-8 cannot take.)"""
    if "\x00" in text:
        return "text cannot contain NUL characters (U+0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text cannot contain lone surrogates (U+D800 to U+DFFF); send characters, not UTF-16 halves"
    return None


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every (place, string) in a JSON-like value, keys included (a key is named by its object's path)."""
    if isinstance(value, str):
        yield f"'{path}'", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"'{path}' (a key)", str(key)
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}.{index}")


def _surely_storable(variables: dict[str, Any]) -> bool:
    """A fast screen of all the variables at once, so that a 10 MB inline payload costs no walk
    in Python: orjson refuses lone surrogates and writes NUL as the escape \\u0000 (a false alarm,
    as a literal backslash-u0000 also shows that way, only costs the walk)."""
    try:
        return b"\\u0000" not in orjson.dumps(variables)
    except (orjson.JSONEncodeError, TypeError):  # a lone surrogate, or an upload among the values
        return False


def variable_text_errors(variables: dict[str, Any] | None) -> list[GraphQLError]:
    """The first unstorable string of each variable, named as graphql-core names coercion errors."""
    if not variables or _surely_storable(variables):
        return []
    errors = []
    for name, value in variables.items():
        for place, text in _strings(value, name):
            problem = text_problem(text)
            if problem is not None:
                errors.append(GraphQLError(f"Variable '${name}' got invalid value at {place}: {problem}", extensions=BAD_INPUT))
                break
    return errors


class TextLiteralsRule(ValidationRule):
    """Refuses string literals (of any type: String, ID, JSON, DateTime...) that could not be stored."""

    def enter_string_value(self, node: StringValueNode, _key: Any, parent: Any, _path: Any, ancestors: Any) -> None:
        problem = text_problem(node.value)
        if problem is not None:
            self.report_error(GraphQLError(f"{_literal_place([*ancestors, parent])}: {problem}", node, extensions=BAD_INPUT))


def _literal_place(ancestors: Any) -> str:
    """'Argument 'input' has an invalid value at 'input.tags'', from the literal's ancestors."""
    names = [a.name.value for a in ancestors if isinstance(a, (ArgumentNode, ObjectFieldNode))]
    variable = next((a.variable.name.value for a in ancestors if isinstance(a, VariableDefinitionNode)), None)
    if variable is not None:
        return f"Variable '${variable}' has an invalid default value" + (f" at '{'.'.join(names)}'" if names else "")
    if not names:
        return "A string literal is invalid"
    return f"Argument '{names[0]}' has an invalid value at '{'.'.join(names)}'"


class TextInputs(SchemaExtension):
    """Refuses, before anything runs, an operation whose variables or literals carry a string
    that cannot be stored. Checking the request's values once here covers every argument of
    every type, which graphql-core's String (a reserved type that cannot be replaced) could not."""

    def on_operation(self) -> Iterator[None]:
        ec = self.execution_context
        ec.validation_rules = (*ec.validation_rules, TextLiteralsRule)
        yield

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        if not ec.pre_execution_errors:
            errors = variable_text_errors(ec.variables)
            if errors:
                ec.pre_execution_errors = errors
        yield


# --- JSON --------------------------------------------------------------------------------


class UnacceptableJson(json.JSONDecodeError):
    """JSON this API does not take; a JSONDecodeError, so that Strawberry's transports treat it
    as unparsable (400 over HTTP, close 4400 on a WebSocket)."""

    def __init__(self, message: str, document: str = "", position: int = 0) -> None:
        super().__init__(message, document, position)


def _int64(literal: str) -> int:
    value = int(literal) if len(literal) <= 20 else None  # int() of 4,300+ digits raises; 20 fit any int64
    if value is None or not MIN_INT64 <= value <= MAX_INT64:
        raise UnacceptableJson(f"integer {literal[:24]}{'...' if len(literal) > 24 else ''} is outside the 64-bit range")
    return value


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise UnacceptableJson(f"number {literal[:24]} is too large for a double")
    return value


def _no_constant(literal: str) -> None:
    raise UnacceptableJson(f"{literal} is not JSON")


_LONG_DIGITS = {bytes: re.compile(rb"[0-9]{19}"), str: re.compile(r"[0-9]{19}")}


def _may_pass_64_bits(data: str | bytes) -> bool:
    """Whether `data` has a run of digits long enough for an integer beyond 64 bits."""
    return _LONG_DIGITS[type(data)].search(data) is not None


def _containers(data: str | bytes) -> int:
    if isinstance(data, bytes):
        return data.count(b"[") + data.count(b"{")
    return data.count("[") + data.count("{")


def _nests_too_deep(value: Any) -> bool:
    """Whether containers nest deeper than MAX_JSON_DEPTH, walked level by level (no recursion)."""
    level = [value] if isinstance(value, (dict, list)) else []
    for _ in range(MAX_JSON_DEPTH):
        if not level:
            return False
        level = [child for item in level for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, (dict, list))]
    return bool(level)


def json_problem(value: Any) -> str | None:
    """Why a JSON value built from a GraphQL literal is not acceptable (too deep, a number out of
    range), or None. Iterative, so that no nesting makes it recurse."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return f"JSON may nest at most {MAX_JSON_DEPTH} levels deep"
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
        elif isinstance(item, int) and not isinstance(item, bool) and not MIN_INT64 <= item <= MAX_INT64:
            return "integers must be within the 64-bit range"
        elif isinstance(item, float) and not math.isfinite(item):
            return "numbers must be finite"
    return None


def read_json(data: str | bytes) -> Any:
    """The JSON a client sends: UTF-8, RFC 8259 (no NaN or Infinity), integers within 64 bits,
    at most MAX_JSON_DEPTH levels deep. Anything else raises UnacceptableJson saying why.

    orjson reads what surely qualifies (a tenth of the time); the stdlib parser the rest, since
    orjson turns integers beyond 64 bits into doubles silently and refuses a lone surrogate escape
    outright, where TextInputs can name the argument carrying it."""
    if not _may_pass_64_bits(data):
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the stdlib parser says why
        else:
            if _containers(data) > MAX_JSON_DEPTH and _nests_too_deep(value):
                raise UnacceptableJson(f"JSON may nest at most {MAX_JSON_DEPTH} levels deep")
            return value
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnacceptableJson(f"not valid UTF-8 at byte {exc.start}") from exc
    try:
        value = json.loads(data, parse_int=_int64, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError as exc:
        raise UnacceptableJson(f"JSON may nest at most {MAX_JSON_DEPTH} levels deep") from exc
    except UnacceptableJson:
        raise
    except json.JSONDecodeError as exc:
        raise UnacceptableJson(exc.msg, exc.doc, exc.pos) from exc
    if _containers(data) > MAX_JSON_DEPTH and _nests_too_deep(value):  # no walk for most requests
        raise UnacceptableJson(f"JSON may nest at most {MAX_JSON_DEPTH} levels deep")
    return value


def _parse_json_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Any:
    value = value_from_ast_untyped(node, variables)
    problem = json_problem(value)
    if problem is not None:
        raise GraphQLError(f"JSON cannot represent this value: {problem}", node)
    return value


JSONScalar = strawberry.scalar(
    name="JSON",
    description=(
        "The `JSON` scalar type represents JSON values as specified by "
        "[ECMA-404](https://ecma-international.org/wp-content/uploads/ECMA-404_2nd_edition_december_2017.pdf), "
        f"nested at most {MAX_JSON_DEPTH} levels deep, with integers within 64 bits, finite numbers, and "
        "strings without NUL characters or lone surrogates."
    ),
    specified_by_url="https://ecma-international.org/wp-content/uploads/ECMA-404_2nd_edition_december_2017.pdf",
    serialize=lambda v: v,
    parse_value=lambda v: v,  # variables arrive through read_json, which has checked them already
    parse_literal=_parse_json_literal,
)

SCALAR_MAP = {datetime: DateTime, JSON: JSONScalar}

__all__ = ["JSON", "SCALAR_MAP", "DateTime", "TextInputs", "Upload", "read_json"]
