"""Object types: user-defined schemas of records, and the validation of field values against them.

A schema change is refused while existing records would violate it (a newly required field
some record lacks, a type or options that existing values do not fit); the refusal says how
many records are in the way. Removing a field drops its values.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, exists, func, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Document, ObjectType, Record, RecordValue, Source
from app.services import effects, ids
from app.services.access import Principal
from app.services.errors import Invalid, Problem, not_found
from app.services.pagination import Page, PageArgs, SortKey, paginate
from app.services.validation import EMAIL, MACHINE_NAME, check_text, normalise_email, problems

READ, WRITE = "records:read", "records:write"
FIELD_TYPES = (
    "STRING", "TEXT", "INT", "FLOAT", "BOOLEAN", "DATE", "DATETIME", "EMAIL", "URL", "SELECT", "MULTI_SELECT",
    "JSON", "REFERENCE",
)
MAX_FIELDS = 100
MAX_OPTIONS = 200
MAX_STRING, MAX_TEXT, MAX_URL, MAX_OPTION = 500, 100_000, 1000, 200
MAX_SAFE_INT = 2**53
"Absent values sort as the largest (see migration 0003): ordering keys are never NULL."
NUM_ABSENT = math.inf
AT_ABSENT = datetime.max.replace(tzinfo=UTC)
"Where each type's values are mirrored in record_values; the other types are filtered on the jsonb."
COLUMN_OF = {
    "INT": "num", "FLOAT": "num", "DATE": "at", "DATETIME": "at", "STRING": "txt", "EMAIL": "txt", "URL": "txt",
    "SELECT": "txt", "REFERENCE": "txt", "BOOLEAN": "txt",
}
TEXT_TYPES = ("STRING", "TEXT", "EMAIL", "URL", "SELECT", "MULTI_SELECT")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$")
"""A field name is a key of the record's JSON, bound as a parameter wherever SQL uses it, and the
last part of a dotted CSV mapping (fields.openedAt): GraphQL-style, as the API's own names are."""
FIELD_NAME = re.compile(r"(?!__)[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True)
class FieldDef:
    name: str
    field_type: str
    label: str | None = None
    required: bool = False
    options: tuple[str, ...] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "fieldType": self.field_type, "label": self.label, "required": self.required,
                "options": list(self.options) if self.options is not None else None}

    @classmethod
    def of(cls, raw: dict[str, Any]) -> FieldDef:
        options = raw.get("options")
        return cls(raw["name"], raw["fieldType"], raw.get("label"), bool(raw.get("required")),
                   tuple(options) if options is not None else None)


def definitions(ot: ObjectType) -> dict[str, FieldDef]:
    return {d.name: d for d in map(FieldDef.of, ot.field_definitions)}


# ---------------------------------------------------------------- values


class BadValue(ValueError):
    """A value that does not fit its field; the message is shown to the user."""


def format_datetime(value: datetime) -> str:
    """The one stored form of a DATETIME: UTC, microseconds only when there are some, `Z`."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_datetime(value: Any) -> datetime:
    if not isinstance(value, str) or not _DATETIME.fullmatch(value):
        raise BadValue("must be an ISO 8601 date-time with a time zone, e.g. 2026-05-06T14:23:00Z")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadValue(f"is not a valid date-time: {exc}") from None
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is a time before year 1 in UTC
        raise BadValue("is out of range") from None
    if parsed >= AT_ABSENT:
        raise BadValue("is out of range")
    return parsed


def parse_date(value: Any) -> date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise BadValue("must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise BadValue(f"is not a valid date: {exc}") from None


def _number(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadValue("must be a number")
    return value


def normalise(d: FieldDef, value: Any) -> Any:
    """The stored form of `value` for field `d` (never None); raises BadValue. REFERENCE values
    are only checked for form here: that they name a live node is `check_references`' job."""
    t = d.field_type
    if t in ("STRING", "TEXT"):
        limit = MAX_STRING if t == "STRING" else MAX_TEXT
        if not isinstance(value, str):
            raise BadValue("must be a string")
        if len(value) > limit:
            raise BadValue(f"must be at most {limit} characters")
        return value
    if t == "INT":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadValue("must be an integer")
        if abs(value) > MAX_SAFE_INT:
            raise BadValue(f"must be between -{MAX_SAFE_INT} and {MAX_SAFE_INT}")
        return value
    if t == "FLOAT":
        return _number(value)
    if t == "BOOLEAN":
        if not isinstance(value, bool):
            raise BadValue("must be true or false")
        return value
    if t == "DATE":
        return parse_date(value).isoformat()
    if t == "DATETIME":
        return format_datetime(parse_datetime(value))
    if t == "EMAIL":
        if not isinstance(value, str) or len(value) > 254 or not EMAIL.match(value.strip()):
            raise BadValue("must be an email address")
        return normalise_email(value)
    if t == "URL":
        if not isinstance(value, str) or len(value) > MAX_URL:
            raise BadValue(f"must be an http(s) URL of at most {MAX_URL} characters")
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadValue("must be an http(s) URL")
        return value.strip()
    if t == "SELECT":
        if not isinstance(value, str) or value not in (d.options or ()):
            raise BadValue(f"must be one of {', '.join(d.options or ())}")
        return value
    if t == "MULTI_SELECT":
        if not isinstance(value, list) or not all(isinstance(v, str) and v in (d.options or ()) for v in value):
            raise BadValue(f"must be a list of {', '.join(d.options or ())}")
        return list(dict.fromkeys(value))
    if t == "REFERENCE":
        if not isinstance(value, str):
            raise BadValue("must be the id of a node")
        try:
            ids.decode(value)
        except Exception:  # noqa: BLE001 - any malformed id is the same bad value
            raise BadValue("must be the id of a node") from None
        return value
    if not finite_json(value):
        raise BadValue("must be JSON: numbers must be finite")
    return value  # JSON: anything else


def finite_json(value: Any) -> bool:
    """Whether a JSON value holds no NaN or infinity (a GraphQL literal 1e400 is one), which
    JSON and jsonb cannot store."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(map(finite_json, value.values()))
    if isinstance(value, list):
        return all(map(finite_json, value))
    return True


def typed_value(d: FieldDef, value: Any) -> tuple[str, Any] | None:
    """(record_values column, value) of a stored value, absent values as the largest; None for
    types that are not mirrored."""
    column = COLUMN_OF.get(d.field_type)
    if column == "num":
        return column, NUM_ABSENT if value is None else float(value)
    if column == "at":
        if value is None:
            return column, AT_ABSENT
        if d.field_type == "DATE":
            return column, datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        return column, parse_datetime(value)
    if column == "txt":
        return column, None if value is None else ("true" if value is True else "false" if value is False else str(value))
    return None


def value_rows(ws: uuid.UUID, ot: ObjectType, record_id: uuid.UUID, fields: dict[str, Any]) -> list[dict[str, Any]]:
    """The record_values rows of one record: one per mirrored field, absent ones too."""
    rows = []
    for d in definitions(ot).values():
        typed = typed_value(d, fields.get(d.name))
        if typed is not None:
            row = {"record_id": record_id, "workspace_id": ws, "object_type_id": ot.id, "field": d.name,
                   "num": None, "at": None, "txt": None}
            row[typed[0]] = typed[1]
            rows.append(row)
    return rows


def search_text(ot: ObjectType, fields: dict[str, Any]) -> str:
    """The text-like values of a record, for its full-text vector."""
    out = []
    for d in definitions(ot).values():
        value = fields.get(d.name)
        if d.field_type in TEXT_TYPES and value is not None:
            out.append(" ".join(value) if isinstance(value, list) else str(value))
    return "\n".join(out)


async def live_node_ids(s: AsyncSession, ws: uuid.UUID, refs: Iterable[str]) -> set[str]:
    """Which of the global ids `refs` name a live node of the workspace (a record, document,
    contact or source); others, malformed ones and other workspaces' alike, are not."""
    from app.db import models

    tables: dict[str, Any] = {"Record": Record, "Document": Document, "Source": Source}
    if hasattr(models, "Contact"):
        tables["Contact"] = models.Contact
    wanted: dict[str, dict[uuid.UUID, str]] = {}
    for ref in set(refs):
        try:
            type_name, id_ = ids.decode(ref)
        except Exception:  # noqa: BLE001
            continue
        if type_name in tables:
            wanted.setdefault(type_name, {})[id_] = ref
    found: set[str] = set()
    for type_name, by_id in wanted.items():
        model = tables[type_name]
        query = select(model.id).where(model.workspace_id == ws, model.id.in_(list(by_id)))
        if hasattr(model, "deleted_at"):
            query = query.where(model.deleted_at.is_(None))
        found.update(by_id[i] for i in await s.scalars(query))
    return found


# ---------------------------------------------------------------- object types


def parse_definitions(raw: Sequence[dict[str, Any]], path: tuple[str, ...]) -> tuple[list[FieldDef], list[Problem]]:
    """Definitions as given (name, fieldType, label, required, options), and what is wrong with them."""
    found: list[Problem] = []
    if len(raw) > MAX_FIELDS:
        found.append(Problem(f"At most {MAX_FIELDS} fields", "LIMIT", path))
    out, seen = [], set()
    for i, item in enumerate(raw):
        at = (*path, str(i))
        name, field_type = item.get("name") or "", item.get("fieldType")
        if not isinstance(name, str) or not FIELD_NAME.fullmatch(name):
            found.append(Problem(f"Field name {name!r} must be letters, digits and _ (not starting with a digit or __, "
                                 "at most 63), e.g. openedAt or opened_at", "INVALID", (*at, "name")))
        elif name in seen:
            found.append(Problem(f"Field {name!r} is defined twice", "DUPLICATE", (*at, "name")))
        seen.add(name)
        if field_type not in FIELD_TYPES:
            found.append(Problem(f"Unknown field type {field_type!r}", "INVALID", (*at, "fieldType")))
        options = item.get("options")
        if field_type in ("SELECT", "MULTI_SELECT"):
            if not options:
                found.append(Problem(f"A {field_type} field needs options", "REQUIRED", (*at, "options")))
            elif len(options) > MAX_OPTIONS or len(set(options)) != len(options) or any(
                not o or len(o) > MAX_OPTION for o in options
            ):
                found.append(Problem(f"Options must be distinct, non-empty, at most {MAX_OPTIONS} of at most "
                                     f"{MAX_OPTION} characters", "INVALID", (*at, "options")))
        elif options is not None:
            found.append(Problem("Only SELECT and MULTI_SELECT fields have options", "INVALID", (*at, "options")))
        label = item.get("label")
        if label is not None and len(label) > 200:
            found.append(Problem("label must be at most 200 characters", "INVALID", (*at, "label")))
        out.append(FieldDef(name, field_type or "", label, bool(item.get("required")),
                            tuple(options) if options is not None else None))
    return out, found


async def get_object_type(s: AsyncSession, ws: uuid.UUID, id_: uuid.UUID | None, *,
                          field: tuple[str, ...] = ("id",), lock: bool = False) -> ObjectType:
    query = select(ObjectType).where(ObjectType.id == id_, ObjectType.workspace_id == ws)
    ot = await s.scalar(query.with_for_update() if lock else query) if id_ else None
    if ot is None:
        raise not_found("Object type", field)
    return ot


async def list_object_types(s: AsyncSession, p: Principal, args: PageArgs) -> Page[ObjectType]:
    ws = p.require(READ)
    keys = [SortKey(ObjectType.created_at, lambda o: o.created_at), SortKey(ObjectType.id, lambda o: o.id)]
    return await paginate(s, select(ObjectType).where(ObjectType.workspace_id == ws), keys, args)


async def object_type_by_name(s: AsyncSession, p: Principal, name: str) -> ObjectType | None:
    ws = p.require(READ)
    return await s.scalar(select(ObjectType).where(ObjectType.workspace_id == ws, ObjectType.name == name))


async def object_types_by_id(s: AsyncSession, p: Principal, keys: list[uuid.UUID]) -> dict[uuid.UUID, ObjectType]:
    ws = p.require(READ)
    rows = await s.scalars(select(ObjectType).where(ObjectType.workspace_id == ws, ObjectType.id.in_(keys)))
    return {o.id: o for o in rows}


def unchanged_sql(ot: ObjectType | None, object_type_id: uuid.UUID | None, ws: Any, *, given: bool) -> Any:
    """Whether the object type a statement was compiled for is still as it was read: `ot`
    unchanged, or still no type of `object_type_id` (true when no type was asked for)."""
    if not given:
        return true()
    if ot is None:
        return ~exists().where(ObjectType.id == object_type_id, ObjectType.workspace_id == ws)
    return exists().where(ObjectType.id == ot.id, ObjectType.workspace_id == ws, ObjectType.updated_at == ot.updated_at)


def record_count_sql(object_type_id: Any, ws: Any) -> Any:
    """How many live records the type `object_type_id` (a uuid or a column) has, as SQL."""
    return (select(func.count()).select_from(Record)
            .where(Record.workspace_id == ws, Record.object_type_id == object_type_id, Record.deleted_at.is_(None))
            .scalar_subquery())


async def record_counts(s: AsyncSession, p: Principal, keys: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Live records per object type."""
    ws = p.require(READ)
    rows = await s.execute(
        select(Record.object_type_id, func.count())
        .where(Record.workspace_id == ws, Record.object_type_id.in_(keys), Record.deleted_at.is_(None))
        .group_by(Record.object_type_id)
    )
    counts = {k: 0 for k in keys}
    counts.update({ot_id: n for ot_id, n in rows.all()})
    return counts


async def create_object_type(
    s: AsyncSession, p: Principal, *, name: str, display_name: str, source_id: uuid.UUID | None = None,
    source_given: bool = False, field_definitions: Sequence[dict[str, Any]],
) -> ObjectType:
    ws = p.require(WRITE)
    found = problems(check_text(display_name, ("input", "displayName")))
    if not isinstance(name, str) or not MACHINE_NAME.fullmatch(name):
        found.append(Problem("name must be lower-case letters, digits and _ (starting with a letter, at most 63)",
                             "INVALID", ("input", "name")))
    defs, bad = parse_definitions(field_definitions, ("input", "fieldDefinitions"))
    found += bad
    if source_given and (source_id is None or not await s.scalar(
        select(Source.id).where(Source.id == source_id, Source.workspace_id == ws)
    )):
        found.append(Problem("Source not found", "NOT_FOUND", ("input", "sourceId")))
    if found:
        raise Invalid(*found)
    taken = Problem(f"An object type named {name!r} already exists", "CONFLICT", ("input", "name"))
    if await s.scalar(select(ObjectType.id).where(ObjectType.workspace_id == ws, ObjectType.name == name)):
        raise Invalid(taken)
    ot = ObjectType(id=uuid.uuid4(), workspace_id=ws, name=name, display_name=display_name.strip(),
                    source_id=source_id, field_definitions=[d.as_json() for d in defs])
    s.add(ot)
    try:
        async with s.begin_nested():
            await s.flush()
    except IntegrityError:
        raise Invalid(taken) from None
    effects.event(s, "object_type.created", "ObjectType", ot.id)
    return ot


async def _misfits(s: AsyncSession, ws: uuid.UUID, ot: ObjectType, d: FieldDef) -> int:
    """How many records (deleted ones too: they can be restored) hold a value of `d.name` that
    does not fit definition `d` as stored."""
    value = Record.fields[d.name]
    rows = await s.stream(select(value).where(
        Record.workspace_id == ws, Record.object_type_id == ot.id, Record.fields.has_key(d.name)
    ).execution_options(yield_per=5000))
    bad, refs = 0, []
    async for (v,) in rows:
        try:
            if normalise(d, v) != v:
                bad += 1
            elif d.field_type == "REFERENCE":
                refs.append(v)
        except BadValue:
            bad += 1
    if refs:
        live = await live_node_ids(s, ws, refs)
        bad += sum(1 for r in refs if r not in live)
    return bad


async def _check_evolution(s: AsyncSession, ws: uuid.UUID, ot: ObjectType, new: list[FieldDef]) -> list[Problem]:
    old = definitions(ot)
    found = []
    for i, d in enumerate(new):
        at = ("input", "fieldDefinitions", str(i))
        before = old.get(d.name)
        if d.required and (before is None or not before.required):
            lacking = await s.scalar(select(func.count()).where(
                Record.workspace_id == ws, Record.object_type_id == ot.id, ~Record.fields.has_key(d.name)
            ))
            if lacking:
                found.append(Problem(f"{lacking} record(s) have no value for {d.name!r}, which cannot become required",
                                     "CONFLICT", (*at, "required")))
        if before is not None and (before.field_type, before.options) != (d.field_type, d.options):
            misfits = await _misfits(s, ws, ot, d)
            if misfits:
                what = "fieldType" if before.field_type != d.field_type else "options"
                found.append(Problem(f"{misfits} record(s) have values of {d.name!r} that do not fit the new "
                                     f"{'type' if what == 'fieldType' else 'options'}", "CONFLICT", (*at, what)))
    return found


async def _rebuild_values(s: AsyncSession, ws: uuid.UUID, ot: ObjectType, names: list[str]) -> None:
    """Recompute the mirrored values of fields `names` of every record of `ot` in SQL."""
    from sqlalchemy import text

    await s.execute(delete(RecordValue).where(
        RecordValue.workspace_id == ws, RecordValue.object_type_id == ot.id, RecordValue.field.in_(names)
    ))
    defs = definitions(ot)
    for name in names:
        d = defs.get(name)
        column = COLUMN_OF.get(d.field_type) if d else None
        if d is None or column is None:
            continue
        expr = {
            "num": "coalesce((fields->>:f)::float8, 'Infinity')",
            "at": ("coalesce((fields->>:f)::date::timestamp AT TIME ZONE 'UTC', '9999-12-31 23:59:59.999999+00')"
                   if d.field_type == "DATE" else "coalesce((fields->>:f)::timestamptz, '9999-12-31 23:59:59.999999+00')"),
            "txt": "fields->>:f",
        }[column]
        await s.execute(text(
            f"INSERT INTO record_values (record_id, workspace_id, object_type_id, field, {column}) "
            f"SELECT id, workspace_id, object_type_id, :f, {expr} FROM records "
            f"WHERE workspace_id = :ws AND object_type_id = :ot"
        ), {"f": name, "ws": ws, "ot": ot.id})


async def update_object_type(
    s: AsyncSession, p: Principal, object_type_id: uuid.UUID | None, *, display_name: str | None = None,
    field_definitions: Sequence[dict[str, Any]] | None = None,
) -> ObjectType:
    """`field_definitions`, when given, replaces the schema (see the module docstring)."""
    ws = p.require(WRITE)
    ot = await get_object_type(s, ws, object_type_id, lock=True)
    found = problems(check_text(display_name, ("input", "displayName"))) if display_name is not None else []
    new: list[FieldDef] | None = None
    if field_definitions is not None:
        new, bad = parse_definitions(field_definitions, ("input", "fieldDefinitions"))
        found += bad or await _check_evolution(s, ws, ot, new)
    if found:
        raise Invalid(*found)
    if display_name is not None:
        ot.display_name = display_name.strip()
    if new is not None:
        old = definitions(ot)
        removed = [n for n in old if n not in {d.name for d in new}]
        changed = [d.name for d in new if old.get(d.name) != d and (
            old.get(d.name) is None or COLUMN_OF.get(old[d.name].field_type) != COLUMN_OF.get(d.field_type))]
        ot.field_definitions = [d.as_json() for d in new]
        for name in removed:
            await s.execute(update(Record).where(Record.workspace_id == ws, Record.object_type_id == ot.id,
                                                 Record.fields.has_key(name)).values(fields=Record.fields.op("-")(name)))
        if removed or changed:
            await _rebuild_values(s, ws, ot, removed + changed)
    await s.flush()
    await s.refresh(ot)
    effects.event(s, "object_type.updated", "ObjectType", ot.id)
    return ot


async def delete_object_type(s: AsyncSession, p: Principal, object_type_id: uuid.UUID | None) -> uuid.UUID:
    """Hard delete, refused while records (deleted ones too) exist."""
    ws = p.require(WRITE)
    ot = await get_object_type(s, ws, object_type_id, lock=True)
    count = await s.scalar(select(func.count()).where(Record.workspace_id == ws, Record.object_type_id == ot.id))
    if count:
        raise Invalid(Problem(f"{count} record(s) of this type exist; delete them first", "CONFLICT", ("id",)))
    await s.delete(ot)
    await s.flush()
    effects.event(s, "object_type.deleted", "ObjectType", ot.id)
    return ot.id
