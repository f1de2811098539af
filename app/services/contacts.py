"""Contacts: the people a workspace deals with.

Every write of a contact (createContact, updateContact, an import item, a contact created for an
unknown address by recordActivity) goes through `write_contacts` (an import batch through its two
steps, `check_import` then `write_checked`): one batch of drafts, validated and de-duplicated
together, written with a fixed number of set-based statements. Emails are normalised and unique among
live contacts (primary and secondary addresses alike); (source, remoteId) is unique among all.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Select, and_, case, cast, extract, func, literal, literal_column, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import with_expression
from sqlalchemy.types import Text

from app.db.models import Contact, ContactIntelligence, Member, Source
from app.services import effects, filters, ids
from app.services.access import Principal
from app.services.batch import ItemOutcome, json_text
from app.services.errors import BadInput, Invalid, Problem, not_found
from app.services.pagination import Page, PageArgs, SortKey, paginate
from app.services.validation import check_email, check_text, normalise_email

READ, WRITE = "contacts:read", "contacts:write"
TEXT_FIELDS = {
    "phone": "phone", "title": "title", "company": "company", "city": "city", "state": "state",
    "contactType": "contact_type", "status": "status",
}
Mode = Literal["create", "update", "upsert"]


# ---------------------------------------------------------------- reading


def _tags(f: Any) -> Any:
    """StringFilter over the tag list: a contact matches when any of its tags does."""
    col = Contact.tags
    joined = func.array_to_string(col, "\x1f")
    terms = []
    if f.eq is not None:
        terms.append(col.op("@>", is_comparison=True)(cast([f.eq], ARRAY(Text))))
    if f.neq is not None:
        terms.append(~col.op("@>", is_comparison=True)(cast([f.neq], ARRAY(Text))))
    if f.in_ is not None:
        terms.append(col.op("&&", is_comparison=True)(cast(list(f.in_), ARRAY(Text))))
    if f.contains is not None:
        terms.append(joined.ilike(f"%{filters._like_escape(f.contains)}%", escape="\\"))
    if f.starts_with is not None:
        terms.append(("\x1f" + joined).ilike(f"%\x1f{filters._like_escape(f.starts_with)}%", escape="\\"))
    if f.is_null is not None:
        terms.append(func.cardinality(col) == 0 if f.is_null else func.cardinality(col) > 0)
    return and_(literal(True), *terms)


FILTER_FIELDS: filters.FieldMap = {
    "id": filters.global_id(Contact.id, "Contact"),
    "full_name": filters.string(Contact.full_name),
    "email": filters.string(Contact.email),
    "company": filters.string(Contact.company),
    "city": filters.string(Contact.city),
    "state": filters.string(Contact.state),
    "contact_type": filters.string(Contact.contact_type),
    "status": filters.string(Contact.status),
    "tags": _tags,
    "source_id": filters.global_id(Contact.source_id, "Source"),
    "owner_id": filters.global_id(Contact.owner_id, "Member"),
    "created_at": filters.comparable(Contact.created_at),
    "updated_at": filters.comparable(Contact.updated_at),
    "last_contact_at": filters.comparable(ContactIntelligence.last_contact_at),
}

_MESSAGES = func.coalesce(ContactIntelligence.sent_count, 0) + func.coalesce(ContactIntelligence.received_count, 0)
# Strength decays at the same rate for everyone, so ordering by it is ordering by this
# time-invariant key: ln(frequency) + (last contact in 90-day units) * ln 2. No messages: lowest.
STRENGTH_KEY = case(
    (and_(_MESSAGES > 0, ContactIntelligence.last_contact_at.is_not(None)),
     func.ln(func.least(1.0, func.ln(_MESSAGES + 1) / func.ln(50.0)))
     + extract("epoch", ContactIntelligence.last_contact_at) / (86400.0 * 90.0) * func.ln(2.0)),
    else_=-1e15,
)
SORTS: dict[str, tuple[Any, Callable[[Contact], Any], bool]] = {
    "FULL_NAME": (Contact.full_name, lambda c: c.full_name, False),
    "CREATED_AT": (Contact.created_at, lambda c: c.created_at, False),
    "UPDATED_AT": (Contact.updated_at, lambda c: c.updated_at, False),
    "LAST_CONTACT_AT": (ContactIntelligence.last_contact_at, lambda c: c.sort_last_contact_at, True),
    "STRENGTH": (STRENGTH_KEY, lambda c: c.sort_strength, False),
}


def sort_keys(order: Sequence[tuple[str, bool]] | None) -> list[SortKey]:
    """(field, descending) pairs, ties broken by id; default oldest first."""
    keys = [
        SortKey(SORTS[name][0], SORTS[name][1], descending=desc, nullable=SORTS[name][2])
        for name, desc in (order or [("CREATED_AT", False)])
    ]
    return [*keys, SortKey(Contact.id, lambda c: c.id, descending=keys[-1].descending)]


def live(ws: uuid.UUID) -> Any:
    return and_(Contact.workspace_id == ws, Contact.deleted_at.is_(None))


def contacts_query(
    p: Principal, *, where: Any = None, order: Sequence[tuple[str, bool]] | None = None, search: str | None = None,
    entity: bool = True,
) -> Select[Any]:
    """The contacts a list shows, unordered: ORM entities, or (`entity=False`) the table's columns
    plus the sort values the entities carry as `sort_last_contact_at`/`sort_strength`."""
    ws = p.require(READ)
    names = {name for name, _ in order or []}
    query: Select[Any] = select(Contact) if entity else select(*Contact.__table__.c)
    query = query.where(Contact.workspace_id == ws)
    if not (where is not None and getattr(where, "include_deleted", False)):
        query = query.where(Contact.deleted_at.is_(None))
    if names & {"LAST_CONTACT_AT", "STRENGTH"} or _mentions(where, "last_contact_at"):
        query = query.outerjoin(ContactIntelligence, ContactIntelligence.contact_id == Contact.id)
        sort_values = (ContactIntelligence.last_contact_at, STRENGTH_KEY)
        if entity:
            query = query.options(*(with_expression(a, v) for a, v in
                                    zip((Contact.sort_last_contact_at, Contact.sort_strength), sort_values, strict=True)))
        else:
            query = query.add_columns(sort_values[0].label("sort_last_contact_at"), sort_values[1].label("sort_strength"))
    if where is not None:
        query = query.where(filters.compile_filter(where, FILTER_FIELDS))
    if search is not None and search.strip():
        query = query.where(
            literal_column("contacts.search_vector").op("@@")(func.websearch_to_tsquery("simple", search))
        )
    return query


async def list_contacts(
    s: AsyncSession, p: Principal, args: PageArgs, *, where: Any = None,
    order: Sequence[tuple[str, bool]] | None = None, search: str | None = None,
) -> Page[Contact]:
    query = contacts_query(p, where=where, order=order, search=search)
    return await paginate(s, query, sort_keys(order), args)


def _mentions(f: Any, name: str) -> bool:
    if f is None:
        return False
    if getattr(f, name, None) is not None:
        return True
    subs = [*(getattr(f, "and_", None) or []), *(getattr(f, "or_", None) or []), getattr(f, "not_", None)]
    return any(_mentions(sub, name) for sub in subs)


async def contacts_by_id(s: AsyncSession, p: Principal, contact_ids: list[uuid.UUID]) -> dict[uuid.UUID, Contact]:
    """Contacts of the workspace, soft-deleted ones included (node() shows them with deletedAt)."""
    ws = p.require(READ)
    rows = await s.scalars(select(Contact).where(Contact.workspace_id == ws, Contact.id.in_(contact_ids)))
    return {row.id: row for row in rows}


async def live_contacts_by_id(s: AsyncSession, p: Principal, contact_ids: list[uuid.UUID]) -> dict[uuid.UUID, Contact]:
    return {k: c for k, c in (await contacts_by_id(s, p, contact_ids)).items() if c.deleted_at is None}


async def contacts_by_address(s: AsyncSession, ws: uuid.UUID, addresses: Sequence[str]) -> dict[str, Contact]:
    """Live contacts owning each (normalised) address, primary or secondary."""
    wanted = sorted({normalise_email(a) for a in addresses})
    if not wanted:
        return {}
    rows = await s.scalars(select(Contact).where(
        live(ws), or_(Contact.email.in_(wanted), Contact.emails.op("&&")(cast(wanted, ARRAY(Text))))
    ))
    found: dict[str, Contact] = {}
    for row in rows:
        for address in (row.email, *row.emails):
            if address in wanted:
                found.setdefault(address, row)
    return found


# ---------------------------------------------------------------- writing


@dataclass
class Draft:
    """One contact write, parsed from contract-shaped (camelCase) input."""

    index: int
    path: tuple[str, ...]
    values: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    target_id: uuid.UUID | None = None
    remote_id: str | None = None
    delete: bool = False


def _ref(draft: Draft, item: dict[str, Any], key: str, type_name: str, column: str) -> None:
    value = item.get(key)
    if value is None:
        if key in item:
            draft.values[column] = None
        return
    try:
        found = ids.decode_as(str(value), type_name)
    except BadInput:
        found = None
    if found is None:
        draft.problems.append(Problem(f"{type_name} not found", "NOT_FOUND", (*draft.path, key)))
    draft.values[column] = found


def _text_list(draft: Draft, item: dict[str, Any], key: str) -> list[str] | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        draft.problems.append(Problem(f"{key} must be a list of strings", "INVALID", (*draft.path, key)))
        return None
    too_long = filters.list_problem(value, (*draft.path, key))
    if too_long is not None:
        draft.problems.append(Problem(f"{key}: {too_long.message}", too_long.code, too_long.field))
        return None
    return value


def parse(item: dict[str, Any], path: tuple[str, ...], index: int = 0, *, partial: bool = False) -> Draft:
    """Validates and normalises one input; with `partial`, absent keys stay unchanged."""
    draft = Draft(index=index, path=path)
    if not isinstance(item, dict):
        draft.problems.append(Problem("An item must be a JSON object", "INVALID", path or None))
        return draft
    v = draft.values
    if not partial or "fullName" in item:
        name = item.get("fullName")
        problem = check_text(name if isinstance(name, str) else None, (*path, "fullName"))
        if problem:
            draft.problems.append(problem)
        else:
            v["full_name"] = name.strip()
    if "email" in item or not partial:
        email = item.get("email")
        if email is None or (isinstance(email, str) and not email.strip()):
            v["email"] = None
        elif not isinstance(email, str) or check_email(address := normalise_email(email), (*path, "email")):
            draft.problems.append(Problem(f"{email!r} is not a valid email address", "INVALID", (*path, "email")))
        else:
            v["email"] = address
    emails = _text_list(draft, item, "emails")
    if emails is not None:
        normalised: list[str] = []
        for i, e in enumerate(emails):
            problem = check_email(address := normalise_email(e), (*path, "emails", str(i)))
            if problem:
                draft.problems.append(problem)
            elif address not in normalised:
                normalised.append(address)
        v["emails"] = normalised
    elif not partial:
        v["emails"] = []
    for key, column in TEXT_FIELDS.items():
        if key in item or not partial:
            value = item.get(key)
            if value is not None and not isinstance(value, str):
                draft.problems.append(Problem(f"{key} must be a string", "INVALID", (*path, key)))
            elif value is not None and len(value) > 500:
                draft.problems.append(Problem(f"{key} must be at most 500 characters", "INVALID", (*path, key)))
            else:
                v[column] = value.strip() or None if isinstance(value, str) else None
    tags = _text_list(draft, item, "tags")
    if tags is not None:
        v["tags"] = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
    elif not partial:
        v["tags"] = []
    if "customFields" in item or not partial:
        custom = item.get("customFields")
        if custom is not None and not isinstance(custom, dict):
            draft.problems.append(Problem("customFields must be a JSON object", "INVALID", (*path, "customFields")))
        else:
            v["custom_fields"] = custom or {}
    _ref(draft, item, "ownerId", "Member", "owner_id")
    if not partial:
        _ref(draft, item, "sourceId", "Source", "source_id")
        remote = item.get("remoteId")
        if remote is not None:
            if not isinstance(remote, str | int) or not str(remote).strip():
                draft.problems.append(Problem("remoteId must be a non-empty string", "INVALID", (*path, "remoteId")))
            else:
                draft.remote_id = v["remote_id"] = str(remote).strip()
    return draft


async def _check_references(s: AsyncSession, ws: uuid.UUID, drafts: list[Draft]) -> None:
    """Owner and source must be of this workspace (a foreign id is just not found)."""
    for column, model, key in (("owner_id", Member, "ownerId"), ("source_id", Source, "sourceId")):
        wanted = {d.values[column] for d in drafts if d.values.get(column)}
        if not wanted:
            continue
        found = set(await s.scalars(select(model.id).where(model.workspace_id == ws, model.id.in_(wanted))))
        for d in drafts:
            if d.values.get(column) and d.values[column] not in found:
                d.problems.append(Problem(f"{model.__name__} not found", "NOT_FOUND", (*d.path, key)))


def _duplicate(contact_id: uuid.UUID, path: tuple[str, ...], what: str) -> Problem:
    gid = ids.encode("Contact", contact_id)
    return Problem(f"A contact with this {what} already exists: {gid}", "DUPLICATE", path)


"The columns a write sets; a draft gives some or all of them."
WRITABLE = (
    "full_name", "email", "emails", "phone", "title", "company", "city", "state", "tags", "contact_type", "status",
    "custom_fields", "owner_id", "source_id", "remote_id",
)
"A new contact's values for the columns its draft does not give."
BLANK: dict[str, Any] = {**dict.fromkeys(WRITABLE), "emails": [], "tags": [], "custom_fields": {}}
_SQL_TYPES = {"emails": "text[]", "tags": "text[]", "custom_fields": "jsonb", "owner_id": "uuid", "source_id": "uuid"}
# A batch travels as one jsonb parameter unpacked server-side: one statement per batch whatever
# its size, and nothing per row on the Python side but building a dict.
# Rows leave out their empty values (a missing key reads as NULL, put back to '{}' here).
_ROWS = "jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(id uuid, deleted boolean, {})".format(
    ", ".join(f"{c} {_SQL_TYPES.get(c, 'text')}" for c in WRITABLE)
)
_VALUES = {c: f"coalesce(x.{c}, '{{}}')" if BLANK[c] is not None else f"x.{c}" for c in WRITABLE}
_INSERT = text(
    f"INSERT INTO contacts (id, workspace_id, {', '.join(WRITABLE)}, created_at, updated_at) "
    f"SELECT x.id, CAST(:ws AS uuid), {', '.join(_VALUES.values())}, :now, :now FROM {_ROWS}"
)
_UPDATE = text(
    f"UPDATE contacts AS c SET {', '.join(f'{c} = {v}' for c, v in _VALUES.items())}, "
    f"deleted_at = CASE WHEN x.deleted THEN CAST(:now AS timestamptz) END, updated_at = :now "
    f"FROM {_ROWS} WHERE c.workspace_id = CAST(:ws AS uuid) AND c.id = x.id"
)
_CURRENT = select(Contact.id, Contact.deleted_at, *(getattr(Contact, c) for c in WRITABLE))
"The rows of a batch's (source, remoteId) keys, locked; [source is None]."
_BY_REMOTE = [
    text(
        f"SELECT c.* FROM jsonb_array_elements_text(CAST(:remotes AS jsonb)) AS k(remote_id) CROSS JOIN LATERAL ("
        f" SELECT id, deleted_at, {', '.join(WRITABLE)} FROM contacts WHERE workspace_id = CAST(:ws AS uuid)"
        f" AND {source} AND remote_id = k.remote_id LIMIT 1 FOR UPDATE) AS c"
    )
    for source in ("source_id = CAST(:source AS uuid)", "source_id IS NULL")
]


"An existing contact a draft writes over: its id, deleted_at and WRITABLE columns."
Current = dict[str, Any]


# Primary addresses: the live-email unique index is probed once per key (LATERAL ... LIMIT 1), a
# plan that does not depend on statistics, which lag far behind during a large import.
# Secondary addresses: `&&` is not leakproof, so under row-level security only a SECURITY DEFINER
# function (the workspace of the transaction, as the policies) reaches the partial GIN index of
# live secondary addresses (migrations/versions/0006_import_throughput.py).
_ADDRESS_OWNERS = text(
    "WITH k AS (SELECT jsonb_array_elements_text(CAST(:addresses AS jsonb)) AS address)"
    " SELECT true, k.address, c.id FROM k CROSS JOIN LATERAL ("
    "  SELECT id FROM contacts WHERE workspace_id = CAST(:ws AS uuid) AND deleted_at IS NULL AND email = k.address"
    "  LIMIT 1) AS c"
    " UNION ALL"
    " SELECT false, a.address, o.contact_id FROM ctxgraph_secondary_owners(ARRAY(SELECT address FROM k)) AS o"
    " CROSS JOIN LATERAL unnest(o.emails) AS a(address) WHERE a.address IN (SELECT address FROM k)"
)


async def _address_owners(s: AsyncSession, ws: uuid.UUID, addresses: set[str]) -> dict[str, uuid.UUID]:
    """The live contact owning each address, primary or secondary: one statement for a batch."""
    if not addresses:
        return {}
    primary: dict[str, uuid.UUID] = {}
    secondary: dict[str, uuid.UUID] = {}
    for is_primary, address, contact_id in await s.execute(_ADDRESS_OWNERS, {"ws": ws, "addresses": json_text(sorted(addresses))}):
        (primary if is_primary else secondary).setdefault(address, contact_id)
    return {**secondary, **primary}


async def _check_emails(s: AsyncSession, ws: uuid.UUID, drafts: list[Draft], current: dict[int, Current]) -> None:
    """Each address belongs to one live contact: against the workspace, and within the batch."""
    def addresses(d: Draft) -> list[tuple[str, str]]:
        row = current.get(d.index)
        primary = d.values.get("email", row["email"] if row else None)
        secondary = d.values.get("emails", row["emails"] if row else [])
        return [(primary, "email")] * bool(primary) + [(e, "emails") for e in secondary if e != primary]

    pending = [(d, addresses(d)) for d in drafts if not d.problems and not d.delete]
    owners = await _address_owners(s, ws, {a for _, found in pending for a, _ in found})
    claimed: dict[str, uuid.UUID] = {}
    for d, found in pending:
        self_id = d.target_id
        for address, key in found:
            other = owners.get(address)
            owner = other if other is not None and other != self_id else claimed.get(address)
            if owner is not None and owner != self_id:
                d.problems.append(_duplicate(owner, (*d.path, key), "email"))
                break
        else:
            for address, _ in found:
                claimed.setdefault(address, self_id)  # type: ignore[arg-type]


async def _current_rows(s: AsyncSession, ws: uuid.UUID, drafts: list[Draft], mode: Mode) -> dict[int, Current]:
    """The existing rows the drafts write over, locked, by draft index; a draft whose key is
    missing ("update"), repeated in the batch, or taken ("create") gets its problem."""
    current: dict[int, Current] = {}
    if mode == "update":
        targets = [d.target_id for d in drafts if d.target_id]
        rows = {r["id"]: r for r in (await s.execute(
            _CURRENT.where(live(ws), Contact.id.in_(targets)).with_for_update()
        )).mappings()}
        for d in drafts:
            if d.target_id in rows:
                current[d.index] = rows[d.target_id]
            else:
                d.problems = [not_found("Contact").problems[0]]
        return current
    keyed = [d for d in drafts if d.remote_id is not None and not d.problems]
    by_source: dict[uuid.UUID | None, set[str]] = {}
    for d in keyed:
        by_source.setdefault(d.values.get("source_id"), set()).add(d.remote_id)  # type: ignore[arg-type]
    existing: dict[tuple[Any, str | None], Current] = {}
    for source, remotes in by_source.items():
        rows = await s.execute(_BY_REMOTE[source is None], {"ws": ws, "source": source, "remotes": json_text(sorted(remotes))})
        existing.update({(r["source_id"], r["remote_id"]): r for r in rows.mappings()})
    seen: set[tuple[Any, str | None]] = set()
    for d in keyed:
        key = (d.values.get("source_id"), d.remote_id)
        if key in seen:
            d.problems.append(Problem("The same remoteId appears twice in the batch", "DUPLICATE", (*d.path, "remoteId")))
        seen.add(key)
        row = existing.get(key)
        if row is not None and mode == "create":
            d.problems.append(_duplicate(row["id"], (*d.path, "remoteId"), "remoteId"))
        elif row is not None:
            current[d.index] = row
            d.target_id = row["id"]
    return current


"What a write did to one draft: outcome, the contact's id (none when FAILED), problems."
Saved = tuple[str, uuid.UUID | None, list[Problem]]
Result = tuple[str, Contact | None, list[Problem]]


async def write_contacts(
    s: AsyncSession, ws: uuid.UUID, drafts: list[Draft], mode: Mode, *, source_id: uuid.UUID | None = None,
) -> list[Saved]:
    """Writes a batch with a fixed number of statements whatever its size: one outcome per draft,
    "CREATED"|"UPDATED"|"SKIPPED"|"DELETED"|"FAILED" (SKIPPED: nothing to change).

    "create" refuses an existing (source, remoteId); "upsert" updates it (and a `delete` draft
    soft-deletes it); "update" writes the draft's `target_id`, which must be live.
    """
    current = await _check(s, ws, drafts, mode, source_id)
    return await _apply(s, ws, drafts, current)


async def _check(
    s: AsyncSession, ws: uuid.UUID, drafts: list[Draft], mode: Mode, source_id: uuid.UUID | None,
) -> dict[int, Current]:
    """Checks the drafts against the workspace and each other; the existing rows they write
    over, locked, by draft index."""
    if source_id is not None:
        for d in drafts:
            d.values["source_id"] = source_id
    await _check_references(s, ws, [d for d in drafts if not d.problems])
    current = await _current_rows(s, ws, drafts, mode)
    for d in drafts:
        if d.target_id is None and not d.delete:
            d.target_id = uuid.uuid4()
    await _check_emails(s, ws, drafts, current)
    return current


async def save_contacts(
    s: AsyncSession, ws: uuid.UUID, drafts: list[Draft], mode: Mode, *, source_id: uuid.UUID | None = None,
) -> list[Result]:
    """`write_contacts`, answering with the contacts as they now are."""
    saved = await write_contacts(s, ws, drafts, mode, source_id=source_id)
    written = [contact_id for _, contact_id, _ in saved if contact_id]
    rows = {c.id: c for c in await s.scalars(
        select(Contact).where(Contact.workspace_id == ws, Contact.id.in_(written)).execution_options(populate_existing=True)
    )} if written else {}
    return [(outcome, rows.get(contact_id) if contact_id else None, problems) for outcome, contact_id, problems in saved]


def _plan(d: Draft, row: Current | None) -> tuple[str, dict[str, Any] | None]:
    """The draft's outcome and the full row to write (None: nothing to write)."""
    if d.problems:
        return "FAILED", None
    if d.delete:
        if row is None or row["deleted_at"] is not None:
            return "SKIPPED", None
        return "DELETED", _row({c: row[c] for c in WRITABLE}, row["id"], deleted=True)
    if row is None:
        return "CREATED", _row(d.values, d.target_id)
    if row["deleted_at"] is None and all(row[k] == v for k, v in d.values.items()):
        return "SKIPPED", None
    return "UPDATED", _row({**{c: row[c] for c in WRITABLE}, **d.values}, row["id"])


def _row(values: dict[str, Any], contact_id: uuid.UUID | None, *, deleted: bool = False) -> dict[str, Any]:
    """A row for _INSERT / _UPDATE, without its empty values (they read back as NULL or '{}')."""
    row = {k: v for k, v in values.items() if v}
    row["id"] = contact_id
    if deleted:
        row["deleted"] = True
    return row


Write = tuple[Draft, dict[str, Any], bool]
"A planned write: the draft, its row, and whether the row is new."


async def _apply(s: AsyncSession, ws: uuid.UUID, drafts: list[Draft], current: dict[int, Current]) -> list[Saved]:
    now = datetime.now(UTC)
    outcomes: dict[int, tuple[str, list[Problem]]] = {}
    writes: list[Write] = []
    for d in drafts:
        outcome, values = _plan(d, current.get(d.index))
        outcomes[d.index] = (outcome, d.problems)
        if values is not None:
            writes.append((d, values, outcome == "CREATED"))
    try:
        async with s.begin_nested():
            await _write(s, ws, now, writes)
    except IntegrityError:  # a concurrent write took an email or remoteId first
        taken = "A contact with this email or remoteId already exists"
        if len(writes) == 1:
            raise Invalid(Problem(taken, "DUPLICATE", writes[0][0].path or None)) from None
        for write in writes:
            try:
                async with s.begin_nested():
                    await _write(s, ws, now, [write])
            except IntegrityError:
                outcomes[write[0].index] = ("FAILED", [Problem(taken, "DUPLICATE", write[0].path or None)])
    saved = [
        (outcomes[d.index][0], d.target_id if outcomes[d.index][0] != "FAILED" else None, outcomes[d.index][1])
        for d in drafts
    ]
    for outcome, contact_id, _ in saved:
        effects.written(s, "contact", outcome, "Contact", contact_id)
    return saved


async def _write(s: AsyncSession, ws: uuid.UUID, now: datetime, writes: list[Write]) -> None:
    for statement, new in ((_INSERT, True), (_UPDATE, False)):
        rows = [values for _, values, is_new in writes if is_new is new]
        if rows:
            await s.execute(statement, {"ws": ws, "now": now, "rows": json_text(rows)})


def _one(results: list[Result]) -> Contact:
    outcome, contact, problems = results[0]
    if outcome == "FAILED":
        raise Invalid(*problems)
    assert contact is not None
    return contact


async def create_contact(s: AsyncSession, p: Principal, data: dict[str, Any]) -> Contact:
    """`data` is a CreateContactInput in contract (camelCase) names."""
    ws = p.require(WRITE)
    return _one(await save_contacts(s, ws, [parse(data, ("input",))], "create"))


async def update_contact(s: AsyncSession, p: Principal, contact_id: uuid.UUID | None, data: dict[str, Any]) -> Contact:
    """Only the keys present change; null clears a field (fullName cannot be cleared)."""
    ws = p.require(WRITE)
    draft = parse(data, ("input",), partial=True)
    draft.target_id = contact_id or uuid.UUID(int=0)
    return _one(await save_contacts(s, ws, [draft], "update"))


def _import_draft(item: Any, index: int) -> Draft:
    """An import item as a draft: `id` is accepted for remoteId, `deleted: true` soft-deletes."""
    if not isinstance(item, dict):
        return parse(item, (), index)
    remote = item.get("remoteId", item.get("id"))
    if item.get("deleted") is True:
        draft = Draft(index=index, path=(), remote_id=str(remote) if remote is not None else None, delete=True)
        if remote is None:
            draft.problems.append(Problem("A deleted item needs its remoteId", "REQUIRED", ("remoteId",)))
        return draft
    payload = {k: v for k, v in item.items() if k not in ("id", "deleted", "sourceId")}
    if remote is not None:
        payload["remoteId"] = remote
    return parse(payload, (), index)


def _error(problems: list[Problem]) -> str | None:
    if not problems:
        return None
    return "; ".join(f"{'.'.join(pr.field)}: {pr.message}" if pr.field else pr.message for pr in problems) or None


def import_drafts(items: list[Any], start_index: int = 0) -> list[Draft]:
    """An import batch's items as drafts, new contacts' ids drawn: all the work of an import that
    needs no database (the worker does it a batch ahead, while PostgreSQL writes the previous one)."""
    drafts = [_import_draft(item, start_index + i) for i, item in enumerate(items)]
    for d in drafts:
        d.values["remote_id"] = d.remote_id
        if not d.delete:
            d.target_id = uuid.uuid4()  # an existing contact's id replaces it
    return drafts


def import_keys(drafts: list[Draft]) -> set[str]:
    """What an import batch looks up: its remoteIds (one source per job) and its addresses."""
    keys: set[str] = set()
    for d in drafts:
        if d.remote_id is not None:
            keys.add(d.remote_id)
        if d.values.get("email"):
            keys.add(d.values["email"])
        keys.update(d.values.get("emails", ()))
    return keys


@dataclass
class CheckedImport:
    """An import batch checked against the workspace, the rows it writes over locked.

    `keys` are the addresses of the rows it writes over: with its `import_keys`, all its write
    changes. A batch sharing none of them reads the same whether this one is written or not.
    """

    drafts: list[Draft]
    current: dict[int, Current]
    keys: set[str]


async def check_import(
    s: AsyncSession, p: Principal, drafts: list[Draft], source_id: uuid.UUID | None,
) -> CheckedImport:
    """The first step of `write_import`: its reads."""
    current = await _check(s, p.require(WRITE), drafts, "upsert", source_id)
    return CheckedImport(drafts, current, {e for row in current.values() for e in (row["email"], *row["emails"]) if e})


async def write_checked(s: AsyncSession, p: Principal, checked: CheckedImport) -> list[ItemOutcome]:
    """The second step of `write_import`: its writes."""
    saved = await _apply(s, p.require(WRITE), checked.drafts, checked.current)
    return [
        ItemOutcome(d.index, outcome, d.remote_id, ("Contact", contact_id) if contact_id else None,  # type: ignore[arg-type]
                    _error(problems))
        for d, (outcome, contact_id, problems) in zip(checked.drafts, saved, strict=True)
    ]


async def write_import(
    s: AsyncSession, p: Principal, drafts: list[Draft], source_id: uuid.UUID | None,
) -> list[ItemOutcome]:
    """Upserts `import_drafts` by (source, remoteId) under createContact's rules; re-importing an
    unchanged item is SKIPPED."""
    return await write_checked(s, p, await check_import(s, p, drafts, source_id))


async def import_contacts(
    s: AsyncSession, p: Principal, items: list[dict[str, Any]], source_id: uuid.UUID | None, start_index: int = 0,
) -> list[ItemOutcome]:
    """The import of a batch of raw items, in one call."""
    return await write_import(s, p, import_drafts(items, start_index), source_id)


async def _get_for_update(s: AsyncSession, ws: uuid.UUID, contact_id: uuid.UUID | None) -> Contact:
    row = await s.scalar(
        select(Contact).where(Contact.workspace_id == ws, Contact.id == contact_id).with_for_update()
    ) if contact_id else None
    if row is None:
        raise not_found("Contact")
    return row


async def delete_contact(s: AsyncSession, p: Principal, contact_id: uuid.UUID | None) -> Contact:
    """Soft delete; deleting a deleted contact is refused as not found (it is not live)."""
    row = await _get_for_update(s, p.require(WRITE), contact_id)
    if row.deleted_at is not None:
        raise not_found("Contact")
    row.deleted_at = datetime.now(UTC)
    await s.flush()
    await s.refresh(row)
    effects.event(s, "contact.deleted", "Contact", row.id)
    return row


async def restore_contact(s: AsyncSession, p: Principal, contact_id: uuid.UUID | None) -> Contact:
    """Refused with DUPLICATE when a live contact has taken its email meanwhile."""
    ws = p.require(WRITE)
    row = await _get_for_update(s, ws, contact_id)
    if row.deleted_at is None:
        return row
    owners = await contacts_by_address(s, ws, [a for a in (row.email, *row.emails) if a])
    for other in owners.values():
        if other.id != row.id:
            raise Invalid(_duplicate(other.id, ("id",), "email"))
    row.deleted_at = None
    row.merged_into_id = None
    await s.flush()
    await s.refresh(row)
    effects.event(s, "contact.restored", "Contact", row.id)
    return row


MERGED_FIELDS = ("phone", "title", "company", "city", "state", "contact_type", "status", "owner_id", "source_id", "remote_id")


async def merge_rows(s: AsyncSession, p: Principal, contact_ids: list[uuid.UUID | None]) -> tuple[Contact, list[uuid.UUID]]:
    """The contacts' own part of a merge (`app.services.merge`): into the first, their emails,
    tags and the fields it lacks; the others are soft-deleted, marked merged into it. The
    survivor and the merged ids."""
    ws = p.require(WRITE)
    if len(contact_ids) < 2:
        raise Invalid(Problem("Give at least two contacts to merge", "INVALID", ("ids",)))
    if len(set(contact_ids)) != len(contact_ids):
        raise Invalid(Problem("The same contact is given twice", "INVALID", ("ids",)))
    rows = {c.id: c for c in await s.scalars(
        select(Contact).where(live(ws), Contact.id.in_([i for i in contact_ids if i])).order_by(Contact.id).with_for_update()
    )}
    missing = [Problem("Contact not found", "NOT_FOUND", ("ids", str(i))) for i, c in enumerate(contact_ids) if c not in rows]
    if missing:
        raise Invalid(*missing)
    survivor, others = rows[contact_ids[0]], [rows[i] for i in contact_ids[1:]]  # type: ignore[index]
    emails = [e for e in survivor.emails if e != survivor.email]
    custom = dict(survivor.custom_fields)
    for other in others:
        for e in (other.email, *other.emails):
            if e and e != survivor.email and e not in emails:
                emails.append(e)
        for name in MERGED_FIELDS:
            if getattr(survivor, name) is None and name != "remote_id":
                setattr(survivor, name, getattr(other, name))
        survivor.tags = list(dict.fromkeys([*survivor.tags, *other.tags]))
        custom = {**other.custom_fields, **custom}
    now = datetime.now(UTC)
    merged = [o.id for o in others]
    await s.execute(update(Contact).where(Contact.workspace_id == ws, Contact.id.in_(merged)).values(
        deleted_at=now, merged_into_id=survivor.id, updated_at=now
    ).execution_options(synchronize_session=False))
    if survivor.email is None and emails:
        survivor.email = emails.pop(0)
    survivor.emails = emails
    survivor.custom_fields = custom
    survivor.updated_at = now
    await s.flush()
    return survivor, merged
