"""Records of user-defined object types: validated fields, RFC 7396 merge patches, versions,
soft delete, typed custom-field filters and ordering.

Every write, from a mutation or an import, goes through `save_records`: it validates a batch of
drafts, writes them with bulk statements, records one version per changed record, and mirrors
the scalar custom values into `record_values`, whose btree indexes serve the typed filters and
the ordering by custom fields (see migration 0003 for why not expression or GIN indexes).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, exists, false, insert, not_, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import ObjectType, Record, RecordValue, RecordVersion, Source
from app.services import effects, filters, ids, relationships
from app.services.access import Principal
from app.services.batch import ItemOutcome
from app.services.errors import BadInput, Invalid, Problem, not_found
from app.services.object_types import (
    AT_ABSENT, COLUMN_OF, NUM_ABSENT, READ, WRITE, BadValue, FieldDef, definitions, finite_json, get_object_type,
    live_node_ids, normalise, search_text, typed_value, value_rows,
)
from app.services.pagination import ChildPages, Page, PageArgs, SortKey, paginate, paginate_indexed
from app.services.validation import check_text

MAX_NAME = 500
KEEP: Any = object()
"`display_name=KEEP`: leave it as it is."


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge key by key (null deletes), anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


@dataclass
class Draft:
    """One record to write: a new one (`current` None) or a change to `current`."""

    path: tuple[str, ...]
    name: str | None
    patch: dict[str, Any] | None
    display_name: Any = KEEP
    source_id: uuid.UUID | None = None
    remote_id: str | None = None
    current: Record | None = None
    "created, updated or reverted."
    action: str = "created"
    "The patch is the whole new set of fields (a revert), not a merge patch."
    replace: bool = False
    problems: list[Problem] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Saved:
    record: Record | None
    "CREATED, UPDATED or SKIPPED (nothing changed); FAILED with `problems`."
    outcome: str
    problems: list[Problem] = field(default_factory=list)


def _check(ot: ObjectType, draft: Draft) -> None:
    """Fills `draft.fields` (current fields patched and normalised) and `draft.problems`."""
    defs = definitions(ot)
    at = (*draft.path, "fields")
    if draft.name is not None or draft.current is None:
        bad = check_text(draft.name, (*draft.path, "name"), max_length=MAX_NAME)
        if bad:
            draft.problems.append(bad)
    if draft.display_name not in (KEEP, None):
        bad = check_text(draft.display_name, (*draft.path, "displayName"), max_length=MAX_NAME, required=False)
        if bad:
            draft.problems.append(bad)
    if draft.patch is not None and not isinstance(draft.patch, dict):
        draft.problems.append(Problem("fields must be a JSON object", "INVALID", at))
        return
    base = {} if draft.replace or draft.current is None else draft.current.fields
    merged = merge_patch(base, draft.patch or {})
    out: dict[str, Any] = {}
    for name, value in merged.items():
        d = defs.get(name)
        if d is None:
            draft.problems.append(Problem(f"Unknown field {name!r} for {ot.name}", "INVALID", (*at, name)))
            continue
        try:
            out[name] = normalise(d, value)
        except BadValue as exc:
            draft.problems.append(Problem(f"{d.label or name} {exc}", "INVALID", (*at, name)))
    for d in defs.values():
        if d.required and merged.get(d.name) is None:
            deleting = draft.current is not None and draft.current.fields.get(d.name) is not None
            message = f"{d.label or d.name} is required" + (" and cannot be deleted" if deleting else "")
            draft.problems.append(Problem(message, "REQUIRED", (*at, d.name)))
    draft.fields = out


async def _check_references(s: AsyncSession, ws: uuid.UUID, ot: ObjectType, drafts: list[Draft]) -> None:
    refs = [d for d in definitions(ot).values() if d.field_type == "REFERENCE"]
    wanted = [dr.fields[d.name] for dr in drafts for d in refs if d.name in dr.fields]
    if not wanted:
        return
    live = await live_node_ids(s, ws, wanted)
    for dr in drafts:
        for d in refs:
            if d.name in dr.fields and dr.fields[d.name] not in live:
                dr.problems.append(Problem(f"{d.label or d.name}: no such node in this workspace", "INVALID",
                                           (*dr.path, "fields", d.name)))


def _changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


async def save_records(s: AsyncSession, ws: uuid.UUID, actor: uuid.UUID | None, ot: ObjectType,
                       drafts: list[Draft]) -> list[Saved]:
    """Validate and write a batch; one bad draft fails only itself. Bulk statements throughout."""
    for dr in drafts:
        _check(ot, dr)
    await _check_references(s, ws, ot, [dr for dr in drafts if not dr.problems])
    now = datetime.now(UTC)
    results: list[Saved] = []
    inserts, updates, versions, written = [], [], [], []
    for dr in drafts:
        if dr.problems:
            results.append(Saved(None, "FAILED", dr.problems))
            continue
        cur = dr.current
        name = (dr.name if dr.name is not None else cur.name if cur else "").strip()
        display = (cur.display_name if cur else None) if dr.display_name is KEEP else dr.display_name
        if cur is not None and (name, display, dr.fields) == (cur.name, cur.display_name, cur.fields):
            results.append(Saved(cur, "SKIPPED"))
            continue
        record_id = cur.id if cur else uuid.uuid4()
        version = cur.version + 1 if cur else 1
        values = {"id": record_id, "name": name, "display_name": display, "fields": dr.fields, "version": version,
                  "search_text": search_text(ot, dr.fields), "updated_at": now}
        if cur is None:
            inserts.append({**values, "workspace_id": ws, "object_type_id": ot.id, "source_id": dr.source_id,
                            "remote_id": dr.remote_id, "created_by_id": actor, "created_at": now})
        else:
            updates.append(values)
        versions.append({"id": uuid.uuid4(), "workspace_id": ws, "record_id": record_id, "version": version,
                         "action": dr.action, "name": name, "display_name": display, "fields": dr.fields,
                         "changed_fields": _changed_fields(cur.fields if cur else {}, dr.fields),
                         "changed_by_id": actor, "created_at": now})
        written.append((record_id, dr.fields))
        results.append(Saved(None, "UPDATED" if cur else "CREATED"))
    if inserts:
        await s.execute(insert(Record), inserts)
    if updates:
        await s.execute(update(Record), updates)
    if versions:
        await s.execute(insert(RecordVersion), versions)
        await s.execute(delete(RecordValue).where(RecordValue.workspace_id == ws,
                                                  RecordValue.record_id.in_([r for r, _ in written])))
        rows = [row for record_id, fields in written for row in value_rows(ws, ot, record_id, fields)]
        if rows:
            await s.execute(insert(RecordValue), rows)
        fresh = await s.scalars(select(Record).where(Record.workspace_id == ws,
                                                     Record.id.in_([r for r, _ in written]))
                                .execution_options(populate_existing=True))
        by_id = {r.id: r for r in fresh}
        ids_iter = iter(written)
        for result in results:
            if result.outcome in ("CREATED", "UPDATED"):
                result.record = by_id[next(ids_iter)[0]]
                effects.written(s, "record", result.outcome, "Record", result.record.id)
    return results


def _one(saved: Saved) -> Record:
    if saved.outcome == "FAILED":
        raise Invalid(*saved.problems)
    assert saved.record is not None
    return saved.record


async def _source(s: AsyncSession, ws: uuid.UUID, source_id: uuid.UUID | None) -> uuid.UUID:
    if source_id is None or not await s.scalar(select(Source.id).where(Source.id == source_id,
                                                                       Source.workspace_id == ws)):
        raise not_found("Source", ("input", "sourceId"))
    return source_id


def _by_remote(ot_id: uuid.UUID, source_id: uuid.UUID | None, remote_ids: Sequence[str]) -> Select[Any]:
    return select(Record).where(Record.object_type_id == ot_id, Record.source_id.is_not_distinct_from(source_id),
                                Record.remote_id.in_(list(remote_ids)))


async def create_record(
    s: AsyncSession, p: Principal, *, object_type_id: uuid.UUID | None, name: str, fields: Any,
    display_name: str | None = None, source_id: uuid.UUID | None = None, source_given: bool = False,
    remote_id: str | None = None,
) -> Record:
    ws = p.require(WRITE)
    ot = await get_object_type(s, ws, object_type_id, field=("input", "objectTypeId"))
    if source_given:
        source_id = await _source(s, ws, source_id)
    if remote_id is not None:
        if not remote_id.strip() or len(remote_id) > MAX_NAME:
            raise Invalid(Problem("remoteId must be 1 to 500 characters", "INVALID", ("input", "remoteId")))
        if await s.scalar(_by_remote(ot.id, source_id, [remote_id]).with_only_columns(Record.id)):
            raise Invalid(Problem(f"A record with remoteId {remote_id!r} already exists for this source",
                                  "CONFLICT", ("input", "remoteId")))
    if not isinstance(fields, dict):
        raise Invalid(Problem("fields must be a JSON object", "INVALID", ("input", "fields")))
    draft = Draft(("input",), name, fields, display_name, source_id, remote_id)
    return _one((await save_records(s, ws, p.member_id, ot, [draft]))[0])


async def _get(s: AsyncSession, ws: uuid.UUID, record_id: uuid.UUID | None, *, live: bool | None = True) -> Record:
    query = select(Record).where(Record.id == record_id, Record.workspace_id == ws).with_for_update()
    record = await s.scalar(query) if record_id else None
    if record is None or (live is True and record.deleted_at) or (live is False and not record.deleted_at):
        raise not_found("Record")
    return record


async def update_record(
    s: AsyncSession, p: Principal, record_id: uuid.UUID | None, *, name: str | None = None,
    display_name: Any = KEEP, fields: Any = None,
) -> Record:
    """`fields` is an RFC 7396 merge patch; no change at all makes no new version."""
    ws = p.require(WRITE)
    record = await _get(s, ws, record_id)
    ot = await get_object_type(s, ws, record.object_type_id)
    if fields is not None and not isinstance(fields, dict):
        raise Invalid(Problem("fields must be a JSON object", "INVALID", ("input", "fields")))
    draft = Draft(("input",), name, fields, display_name, current=record, action="updated")
    return _one((await save_records(s, ws, p.member_id, ot, [draft]))[0])


async def revert_record(s: AsyncSession, p: Principal, record_id: uuid.UUID | None, version: int) -> Record:
    """A new version with the name and fields of `version`, checked against today's schema."""
    ws = p.require(WRITE)
    record = await _get(s, ws, record_id)
    old = await s.scalar(select(RecordVersion).where(RecordVersion.workspace_id == ws,
                                                     RecordVersion.record_id == record.id,
                                                     RecordVersion.version == version))
    if old is None:
        raise Invalid(Problem(f"Version {version} not found", "NOT_FOUND", ("version",)))
    ot = await get_object_type(s, ws, record.object_type_id)
    draft = Draft(("version",), old.name, old.fields, old.display_name, current=record, action="reverted", replace=True)
    saved = (await save_records(s, ws, p.member_id, ot, [draft]))[0]
    if saved.outcome == "FAILED":
        raise Invalid(*(Problem(f"Version {version} no longer fits the object type: {x.message}", x.code, ("version",))
                        for x in saved.problems))
    return _one(saved)


async def set_deleted(s: AsyncSession, p: Principal, record_id: uuid.UUID | None, deleted: bool) -> Record:
    """Soft delete, or restore a soft-deleted record."""
    ws = p.require(WRITE)
    record = await _get(s, ws, record_id, live=deleted)
    record.deleted_at = datetime.now(UTC) if deleted else None
    await s.flush()
    await s.refresh(record)
    effects.event(s, "record.deleted" if deleted else "record.restored", "Record", record.id)
    return record


# ---------------------------------------------------------------- import


def _remote_of(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    remote = item.get("remoteId", item.get("id"))
    return str(remote) if remote is not None else None


async def import_records(
    s: AsyncSession, p: Principal, object_type_id: uuid.UUID, items: list[dict[str, Any]],
    source_id: uuid.UUID | None, start_index: int = 0,
) -> list[ItemOutcome]:
    """Upsert items `{id | remoteId, name, displayName, fields, deleted}` by (source, remote id):
    new -> CREATED, changed -> UPDATED (fields merge as in updateRecord), unchanged -> SKIPPED,
    `deleted: true` -> soft delete (DELETED); a bad item -> FAILED with its error."""
    ws = p.require(WRITE)
    ot = await get_object_type(s, ws, object_type_id, field=("objectTypeId",))
    remotes = [_remote_of(item) for item in items]
    current = {r.remote_id: r for r in await s.scalars(
        _by_remote(ot.id, source_id, [r for r in remotes if r is not None]).with_for_update()
    )} if any(remotes) else {}
    outcomes: dict[int, ItemOutcome] = {}
    drafts: dict[int, Draft] = {}
    deletions: list[tuple[int, Record]] = []
    seen: set[str] = set()
    for i, (item, remote) in enumerate(zip(items, remotes, strict=True)):
        index = start_index + i
        if not isinstance(item, dict) or remote is None:
            outcomes[i] = ItemOutcome(index, "FAILED", remote, error="An item must be an object with an id")
            continue
        if remote in seen:
            outcomes[i] = ItemOutcome(index, "FAILED", remote, error=f"id {remote!r} appears twice in the batch")
            continue
        seen.add(remote)
        cur = current.get(remote)
        if item.get("deleted") is True:
            if cur is None or cur.deleted_at is not None:
                outcomes[i] = ItemOutcome(index, "SKIPPED", remote, ("Record", cur.id) if cur else None)
            else:
                deletions.append((i, cur))
            continue
        display = item["displayName"] if "displayName" in item else KEEP
        drafts[i] = Draft((), item.get("name"), item.get("fields") or {}, display, source_id, remote, cur,
                          "updated" if cur else "created")
    saved = await save_records(s, ws, p.member_id, ot, list(drafts.values()))
    now = datetime.now(UTC)
    for (i, dr), result in zip(drafts.items(), saved, strict=True):
        index, remote = start_index + i, dr.remote_id
        if result.outcome == "FAILED":
            error = "; ".join(f"{'.'.join(x.field or ())}: {x.message}" if x.field else x.message
                              for x in result.problems)
            outcomes[i] = ItemOutcome(index, "FAILED", remote, error=error)
            continue
        record = result.record
        assert record is not None
        if record.deleted_at is not None:  # a re-imported item comes back, as restoreRecord brings it
            record.deleted_at = None
            outcome = "UPDATED"
            effects.event(s, "record.restored", "Record", record.id)
        else:
            outcome = result.outcome
        outcomes[i] = ItemOutcome(index, outcome, remote, ("Record", record.id))  # type: ignore[arg-type]
    for i, record in deletions:
        record.deleted_at = now
        outcomes[i] = ItemOutcome(start_index + i, "DELETED", record.remote_id, ("Record", record.id))
        effects.event(s, "record.deleted", "Record", record.id)
    await s.flush()
    return [outcomes[i] for i in range(len(items))]


# ---------------------------------------------------------------- reads


async def records_by_id(s: AsyncSession, p: Principal, keys: list[uuid.UUID]) -> dict[uuid.UUID, Record]:
    """Deleted records too: `node(id)` shows them with their deletedAt."""
    ws = p.require(READ)
    return {r.id: r for r in await s.scalars(select(Record).where(Record.workspace_id == ws, Record.id.in_(keys)))}


def _value_exists(ot: ObjectType, d: FieldDef, condition: Callable[[Any], ColumnElement[bool]]) -> ColumnElement[bool]:
    """EXISTS a mirrored value of field `d` of the record meeting `condition(value_table)`."""
    v = RecordValue.__table__.alias("v")
    return exists().where(v.c.record_id == Record.id, v.c.object_type_id == ot.id, v.c.field == d.name, condition(v))


def _typed(d: FieldDef, value: Any, op: str) -> Any:
    """A filter operand in the column's type; a wrong type is the caller's mistake."""
    try:
        normal = normalise(d, value)
    except BadValue as exc:
        raise BadInput(f"Filter on {d.name} ({op}): the value {exc}") from None
    typed = typed_value(d, normal)
    assert typed is not None
    return typed[1]


def _field_condition(ot: ObjectType, defs: dict[str, FieldDef], c: Any) -> ColumnElement[bool]:
    """One FieldCondition: on record_values when the type is mirrored there, else on the jsonb."""
    d = defs.get(c.field)
    if d is None:
        raise BadInput(f"Unknown field {c.field!r} for {ot.name}")
    column = COLUMN_OF.get(d.field_type)
    terms: list[Any] = []
    if column is None:
        return _json_condition(d, c)
    absent = {"num": NUM_ABSENT, "at": AT_ABSENT, "txt": None}[column]
    if c.contains is not None:
        if column != "txt":
            raise BadInput(f"contains applies to text fields, not {d.field_type} ({d.name})")
        pattern = f"%{filters._like_escape(c.contains)}%"
        terms.append(lambda v: v.c.txt.ilike(pattern, escape="\\"))
    for op, fn in (("eq", "__eq__"), ("gt", "__gt__"), ("gte", "__ge__"), ("lt", "__lt__"), ("lte", "__le__")):
        value = getattr(c, op)
        if value is not None:
            operand = _typed(d, value, op)
            terms.append(lambda v, fn=fn, operand=operand: getattr(v.c[column], fn)(operand))
            if op in ("gt", "gte") and absent is not None:
                terms.append(lambda v: v.c[column] < absent)
    if c.in_ is not None:
        operands = [_typed(d, x, "in") for x in c.in_]
        terms.append(lambda v: v.c[column].in_(operands))
    present: list[ColumnElement[bool]] = []
    if c.is_null is not None:
        is_absent = (lambda v: v.c[column].is_(None)) if absent is None else (lambda v: v.c[column] == absent)
        terms.append(is_absent if c.is_null else (lambda v: not_(is_absent(v))))
    out = [_value_exists(ot, d, t) for t in terms]
    if c.neq is not None:
        operand = _typed(d, c.neq, "neq")
        present.append(not_(_value_exists(ot, d, lambda v: v.c[column] == operand)))
    return and_(true(), *out, *present)


def _json_condition(d: FieldDef, c: Any) -> ColumnElement[bool]:
    """TEXT, JSON and MULTI_SELECT conditions, on the record's jsonb (no index: use search for text)."""
    if any(getattr(c, op) is not None for op in ("gt", "gte", "lt", "lte")):
        raise BadInput(f"Comparisons do not apply to {d.field_type} fields ({d.name})")
    for op in ("eq", "neq", "in_"):
        if not finite_json(getattr(c, op)):
            raise BadInput(f"Filter on {d.name} ({filters.camel(op)}): the value must be JSON: numbers must be finite")
    terms: list[ColumnElement[bool]] = []
    value = Record.fields[d.name]
    if c.eq is not None:
        terms.append(Record.fields.contains({d.name: c.eq}))
    if c.neq is not None:
        terms.append(not_(Record.fields.contains({d.name: c.neq})))
    if c.in_ is not None:
        terms.append(or_(false(), *(Record.fields.contains({d.name: x}) for x in c.in_)))
    if c.contains is not None:
        if d.field_type == "MULTI_SELECT":
            terms.append(Record.fields.contains({d.name: [c.contains]}))
        elif d.field_type == "TEXT":
            terms.append(value.astext.ilike(f"%{filters._like_escape(c.contains)}%", escape="\\"))
        else:
            raise BadInput(f"contains does not apply to JSON fields ({d.name})")
    if c.is_null is not None:
        has = Record.fields.has_key(d.name)
        terms.append(not_(has) if c.is_null else has)
    return and_(true(), *terms)


def field_map(ot: ObjectType | None) -> filters.FieldMap:
    def custom(conditions: list[Any]) -> ColumnElement[bool]:
        if ot is None:
            raise BadInput("Filtering on custom fields needs objectTypeId")
        defs = definitions(ot)
        return and_(true(), *(_field_condition(ot, defs, c) for c in conditions))

    return {
        "name": filters.string(Record.name),
        "remote_id": filters.string(Record.remote_id),
        "source_id": filters.global_id(Record.source_id, "Source"),
        "created_at": filters.comparable(Record.created_at),
        "updated_at": filters.comparable(Record.updated_at),
        "fields": custom,
    }


SORT_COLUMNS = {"NAME": Record.name, "CREATED_AT": Record.created_at, "UPDATED_AT": Record.updated_at}


@dataclass(frozen=True)
class Order:
    """One ordering term: a built-in `field`, or a `custom_field` of the object type."""

    field: str | None = None
    custom_field: str | None = None
    descending: bool = False


def _custom_key(stmt: Select[Any], ot: ObjectType, d: FieldDef, descending: bool) -> tuple[Select[Any], SortKey]:
    column = COLUMN_OF.get(d.field_type)
    if column is None:
        raise BadInput(f"Records cannot be ordered by a {d.field_type} field ({d.name})")
    o = RecordValue.__table__.alias()  # anonymous: the same field twice, or long names, never collide
    stmt = stmt.join(o, and_(o.c.record_id == Record.id, o.c.object_type_id == ot.id, o.c.field == d.name))

    def value(record: Record) -> Any:
        typed = typed_value(d, record.fields.get(d.name))
        assert typed is not None
        return typed[1]

    return stmt, SortKey(o.c[column], value, descending=descending, nullable=column == "txt")


async def list_records(
    s: AsyncSession, p: Principal, args: PageArgs, *, object_type_id: uuid.UUID | None = None,
    object_type_given: bool = False, where: Any = None, order: Sequence[Order] = (), search: str | None = None,
) -> Page[Record]:
    """Live records (all with `includeDeleted`), default oldest first, ties broken by id."""
    ot = await object_type_of(s, p, object_type_id) if object_type_given else None
    if object_type_given and ot is None:
        return Page([], [], False, False, _zero)
    stmt, keys = records_query(p, ot, where=where, order=order, search=search)
    return await paginate_indexed(s, stmt, keys, args)


async def object_type_of(s: AsyncSession, p: Principal, object_type_id: uuid.UUID | None) -> ObjectType | None:
    """The workspace's object type of that id (None: there is none, the list is empty)."""
    ws = p.require(READ)
    return await s.scalar(select(ObjectType).where(ObjectType.id == object_type_id, ObjectType.workspace_id == ws))


def records_query(p: Principal, ot: ObjectType | None, *, object_type_given: bool = False, where: Any = None,
                  order: Sequence[Order] = (), search: str | None = None) -> tuple[Select[Any], list[SortKey]]:
    """The records a list shows (of `ot`, or of every type; none when a type was asked for that
    the workspace does not have), unordered, and the sort keys of `order`; custom fields are
    `ot`'s, as it was read."""
    ws = p.require(READ)
    stmt = select(Record).where(Record.workspace_id == ws)
    if ot is not None:
        stmt = stmt.where(Record.object_type_id == ot.id)
    elif object_type_given:
        stmt = stmt.where(false())
    if not getattr(where, "include_deleted", None):
        stmt = stmt.where(Record.deleted_at.is_(None))
    if where is not None:
        stmt = stmt.where(filters.compile_filter(where, field_map(ot)))
    if search is not None:
        from app.services.search import record_ids_matching

        stmt = stmt.where(Record.id.in_(record_ids_matching(search)))
    keys: list[SortKey] = []
    for o in order or [Order("CREATED_AT")]:
        if o.custom_field is not None:
            if ot is None:
                raise BadInput("Ordering by a custom field needs objectTypeId")
            d = definitions(ot).get(o.custom_field)
            if d is None:
                raise BadInput(f"Unknown field {o.custom_field!r} for {ot.name}")
            stmt, key = _custom_key(stmt, ot, d, o.descending)
        elif o.field in SORT_COLUMNS:
            column = SORT_COLUMNS[o.field]
            key = SortKey(column, lambda r, k=column.key: getattr(r, k), descending=o.descending)
        else:
            raise BadInput("Each order term needs field or customField")
        keys.append(key)
    # One custom ordering: ties broken by the value row's record_id (the same id), so that the
    # ORDER BY is exactly the order of its index.
    tie = keys[0].expr.table.c.record_id if len(keys) == 1 and order and order[0].custom_field else Record.id
    keys.append(SortKey(tie, lambda r: r.id, descending=keys[-1].descending))
    return stmt, keys


async def _zero() -> int:
    return 0


def _history_of(ws: uuid.UUID, record_ids: list[uuid.UUID]) -> tuple[Any, Any, list[SortKey]]:
    stmt = select(RecordVersion).where(RecordVersion.workspace_id == ws, RecordVersion.record_id.in_(record_ids))
    return stmt, RecordVersion.record_id, [SortKey(RecordVersion.version, lambda v: v.version, descending=True)]


"Record.history: newest version first."
HISTORY = ChildPages(READ, _history_of)


async def records_referencing(s: AsyncSession, p: Principal, args: PageArgs, type_name: str, node_id: uuid.UUID
                              ) -> Page[Record]:
    """Live records whose REFERENCE fields name a node (Contact.records), oldest first."""
    ws = p.require(READ)
    refs = select(RecordValue.record_id).where(RecordValue.workspace_id == ws,
                                               RecordValue.txt == ids.encode(type_name, node_id))
    stmt = select(Record).where(Record.workspace_id == ws, Record.deleted_at.is_(None), Record.id.in_(refs))
    keys = [SortKey(Record.created_at, lambda r: r.created_at), SortKey(Record.id, lambda r: r.id)]
    return await paginate(s, stmt, keys, args)


async def live_records_by_id(s: AsyncSession, p: Principal, keys: list[uuid.UUID]) -> dict[uuid.UUID, Record]:
    ws = p.require(READ)
    rows = await s.scalars(select(Record).where(Record.workspace_id == ws, Record.id.in_(keys),
                                                Record.deleted_at.is_(None)))
    return {r.id: r for r in rows}


relationships.register_endpoint("Record", live_records_by_id)
