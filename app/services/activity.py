"""Activity: what happened with a contact, and the intelligence kept from it.

`record_activities` is the one write path (recordActivity and activity imports). Event ids are
deterministic from (workspace, contact, type, resourceId) and the same (contact, type,
resourceId) is stored once, so recording an event again changes nothing. Each new event updates
the contact's stored facts by deltas (per-thread reply figures are recomputed for the threads it
touches only) and the derived edges of the conversations it belongs to.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import ActivityEvent, Contact, ContactIntelligence, ContactThread, ConversationParticipant, Relationship
from app.services import contacts, effects, filters, ids, relationships
from app.services.access import Principal
from app.services.batch import ItemOutcome
from app.services.errors import BadInput, Invalid, Problem
from app.services.intelligence import CONTACT_TYPES, MESSAGE_TYPES, RECEIVED, SENT, thread_replies
from app.services.pagination import Page, PageArgs, SortKey, paginate
from app.services.validation import check_email, normalise_email

READ, WRITE = contacts.READ, contacts.WRITE
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
ID_NAMESPACE = uuid.UUID("5b0c1e9e-3f5a-4c1e-9a57-0c7e1d2a9b61")
CALENDAR = "calendar_event.created"
TIMELINE = [
    SortKey(ActivityEvent.occurred_at, lambda e: e.occurred_at, descending=True),
    SortKey(ActivityEvent.id, lambda e: e.id, descending=True),
]


def event_id(ws: uuid.UUID, contact_id: uuid.UUID, type_: str, resource_id: str) -> uuid.UUID:
    return uuid.uuid5(ID_NAMESPACE, f"{ws}/{contact_id}/{type_}/{resource_id}")


# ---------------------------------------------------------------- reading


def timeline_query(ws: uuid.UUID, contact_ids: Sequence[uuid.UUID], types: Sequence[str] | None, since: datetime | None) -> Any:
    query = select(ActivityEvent).where(ActivityEvent.workspace_id == ws, ActivityEvent.contact_id.in_(contact_ids))
    if types:
        filters.check_list(types, ("types",))
        query = query.where(ActivityEvent.type.in_(list(types)))
    if since is not None:
        query = query.where(ActivityEvent.occurred_at >= since)
    return query


async def list_activity(
    s: AsyncSession, p: Principal, contact_id: uuid.UUID, args: PageArgs, *,
    types: Sequence[str] | None = None, since: datetime | None = None,
) -> Page[ActivityEvent]:
    """Newest first."""
    ws = p.require(READ)
    return await paginate(s, timeline_query(ws, [contact_id], types, since), TIMELINE, args)


async def first_activity_pages(s: AsyncSession, p: Principal, keys: list[tuple[Any, ...]]) -> dict[Any, Page[ActivityEvent]]:
    """Loader fetch: the first page of many contacts' timelines; key (contact, types, since, size)."""
    ws = p.require(READ)
    out: dict[Any, Page[ActivityEvent]] = {}
    groups: dict[tuple[Any, ...], list[uuid.UUID]] = defaultdict(list)
    for contact_id, types, since, size in keys:
        groups[(types, since, size)].append(contact_id)
    for (types, since, size), contact_ids in groups.items():
        pages = await relationships.first_pages(
            s, ActivityEvent, timeline_query(ws, contact_ids, types, since), ActivityEvent.contact_id, TIMELINE, size,
            lambda e: e.contact_id, contact_ids,
        )
        out.update({(c, types, since, size): page for c, page in pages.items()})
    return out


async def count_activity(s: AsyncSession, p: Principal, keys: list[tuple[Any, ...]]) -> dict[Any, int]:
    """Loader fetch: timeline sizes; key (contact, types, since)."""
    ws = p.require(READ)
    out: dict[Any, int] = {}
    groups: dict[tuple[Any, ...], list[uuid.UUID]] = defaultdict(list)
    for contact_id, types, since in keys:
        groups[(types, since)].append(contact_id)
    for (types, since), contact_ids in groups.items():
        query = timeline_query(ws, contact_ids, types, since).with_only_columns(
            ActivityEvent.contact_id, func.count()
        ).group_by(ActivityEvent.contact_id)
        found = dict((await s.execute(query)).all())
        out.update({(c, types, since): found.get(c, 0) for c in contact_ids})
    return out


async def events_by_id(s: AsyncSession, p: Principal, event_ids: list[uuid.UUID]) -> dict[uuid.UUID, ActivityEvent]:
    ws = p.require(READ)
    rows = await s.scalars(select(ActivityEvent).where(ActivityEvent.workspace_id == ws, ActivityEvent.id.in_(event_ids)))
    return {e.id: e for e in rows}


async def intelligence_of(s: AsyncSession, p: Principal, contact_ids: list[uuid.UUID]) -> dict[uuid.UUID, ContactIntelligence]:
    """Loader fetch: the stored facts of each contact (missing: no activity yet)."""
    ws = p.require(READ)
    rows = await s.scalars(select(ContactIntelligence).where(
        ContactIntelligence.workspace_id == ws, ContactIntelligence.contact_id.in_(contact_ids)
    ))
    return {r.contact_id: r for r in rows}


# ---------------------------------------------------------------- writing


@dataclass
class Draft:
    index: int
    path: tuple[str, ...]
    problems: list[Problem] = field(default_factory=list)
    contact_id: uuid.UUID | None = None
    address: str | None = None
    values: dict[str, Any] = field(default_factory=dict)


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed.astimezone(UTC) if parsed.tzinfo else None
        except (ValueError, OverflowError):  # OverflowError: before year 1 or after 9999 in UTC
            return None
    return None


def parse(item: Any, path: tuple[str, ...], index: int = 0) -> Draft:
    """A RecordActivityInput in contract (camelCase) names."""
    d = Draft(index=index, path=path)
    if not isinstance(item, dict):
        d.problems.append(Problem("An item must be a JSON object", "INVALID", path or None))
        return d
    contact_ref, address = item.get("contactId"), item.get("address")
    if (contact_ref is None) == (address is None):
        d.problems.append(Problem("Give exactly one of contactId or address", "REQUIRED", (*path, "contactId")))
    elif contact_ref is not None:
        try:
            d.contact_id = ids.decode_as(str(contact_ref), "Contact")
        except BadInput:
            d.contact_id = None
        if d.contact_id is None:
            d.problems.append(Problem("Contact not found", "NOT_FOUND", (*path, "contactId")))
    elif not isinstance(address, str) or check_email(normalise_email(address), (*path, "address")):
        d.problems.append(Problem(f"{address!r} is not a valid email address", "INVALID", (*path, "address")))
    else:
        d.address = normalise_email(address)
    type_ = item.get("type")
    if not isinstance(type_, str) or not EVENT_TYPE.match(type_):
        d.problems.append(Problem("type must look like message.sent or note.added", "INVALID", (*path, "type")))
    resource = item.get("resourceId")
    if resource is None or not str(resource).strip():
        d.problems.append(Problem("resourceId must not be empty", "REQUIRED", (*path, "resourceId")))
    occurred = _datetime(item.get("occurredAt"))
    if occurred is None:
        d.problems.append(Problem("occurredAt must be an ISO 8601 time with a zone", "INVALID", (*path, "occurredAt")))
    metadata = item.get("metadata") or {}
    if not isinstance(metadata, dict):
        d.problems.append(Problem("metadata must be a JSON object", "INVALID", (*path, "metadata")))
        metadata = {}
    participants = item.get("participants") or []
    if not isinstance(participants, list) or not all(isinstance(x, str) for x in participants):
        d.problems.append(Problem("participants must be a list of strings", "INVALID", (*path, "participants")))
        participants = []
    elif too_many := filters.list_problem(participants, (*path, "participants")):
        d.problems.append(too_many)
        participants = []
    if metadata.get("participants") and isinstance(metadata["participants"], list):  # calendar attendees
        participants = [*participants, *(x for x in metadata["participants"] if isinstance(x, str))]
    summary = item.get("summary")
    if summary is not None and not isinstance(summary, str):
        d.problems.append(Problem("summary must be a string", "INVALID", (*path, "summary")))
    thread = metadata.get("threadId")
    d.values = {
        "type": type_, "resource_id": str(resource).strip() if resource is not None else None,
        "occurred_at": occurred, "summary": summary,
        "participants": list(dict.fromkeys(normalise_email(x) for x in participants if x.strip())),
        "metadata_": metadata, "thread_id": str(thread) if thread is not None and type_ in MESSAGE_TYPES else None,
    }
    return d


Result = tuple[str, ActivityEvent | None, list[Problem]]


async def _resolve_contacts(s: AsyncSession, ws: uuid.UUID, drafts: list[Draft]) -> None:
    """contactId must be a live contact; an unknown address becomes a new contact."""
    by_id = [d.contact_id for d in drafts if d.contact_id and not d.problems]
    live = set(await s.scalars(select(Contact.id).where(contacts.live(ws), Contact.id.in_(by_id)))) if by_id else set()
    for d in drafts:
        if d.contact_id and d.contact_id not in live:
            d.problems.append(Problem("Contact not found", "NOT_FOUND", (*d.path, "contactId")))
    wanted = [d for d in drafts if d.address and not d.problems]
    known = await contacts.contacts_by_address(s, ws, [d.address for d in wanted if d.address])
    unknown = sorted({d.address for d in wanted if d.address not in known})
    if unknown:
        made = await contacts.save_contacts(
            s, ws, [contacts.parse({"fullName": a, "email": a}, (), i) for i, a in enumerate(unknown)], "create"
        )
        known.update({a: c for a, (_, c, _) in zip(unknown, made, strict=True) if c is not None})
    for d in wanted:
        contact = known.get(d.address or "")
        if contact is None:
            d.problems.append(Problem("Could not create a contact for this address", "CONFLICT", (*d.path, "address")))
        else:
            d.contact_id = contact.id


async def record_activities(s: AsyncSession, ws: uuid.UUID, drafts: list[Draft]) -> list[Result]:
    """("CREATED"|"SKIPPED"|"FAILED", event, problems) per draft; SKIPPED: already recorded."""
    await _resolve_contacts(s, ws, drafts)
    ok = [d for d in drafts if not d.problems]
    rows: dict[uuid.UUID, dict[str, Any]] = {}
    for d in ok:
        assert d.contact_id is not None
        id_ = event_id(ws, d.contact_id, d.values["type"], d.values["resource_id"])
        rows.setdefault(id_, {**d.values, "id": id_, "workspace_id": ws, "contact_id": d.contact_id})
        d.values["id"] = id_
    created: set[uuid.UUID] = set()
    if rows:
        await _lock_intelligence(s, ws, sorted({r["contact_id"] for r in rows.values()}))
        table = ActivityEvent.__table__
        stmt = insert(table).values([
            {**{k: v for k, v in r.items() if k != "metadata_"}, "metadata": r["metadata_"]} for r in rows.values()
        ]).on_conflict_do_nothing(index_elements=["workspace_id", "contact_id", "type", "resource_id"]).returning(table.c.id)
        created = set((await s.execute(stmt)).scalars())
    events = {e.id: e for e in await s.scalars(select(ActivityEvent).where(
        ActivityEvent.workspace_id == ws, ActivityEvent.id.in_(list(rows))
    ))} if rows else {}
    new_events = [events[i] for i in created]
    if new_events:
        await _apply_facts(s, ws, new_events)
        await _apply_conversations(s, ws, new_events)
    results: list[Result] = []
    first_seen: set[uuid.UUID] = set()
    for d in drafts:
        if d.problems:
            results.append(("FAILED", None, d.problems))
            continue
        id_ = d.values["id"]
        fresh = id_ in created and id_ not in first_seen
        first_seen.add(id_)
        results.append(("CREATED" if fresh else "SKIPPED", events.get(id_), []))
        if fresh:
            effects.event(s, "activity.recorded", "ActivityEvent", id_)
    return results


async def record_activity(s: AsyncSession, p: Principal, data: dict[str, Any]) -> ActivityEvent:
    """Recording the same event again returns the stored one."""
    ws = p.require(WRITE)
    outcome, event, problems = (await record_activities(s, ws, [parse(data, ("input",))]))[0]
    if outcome == "FAILED":
        raise Invalid(*problems)
    assert event is not None
    return event


async def import_activity(
    s: AsyncSession, p: Principal, items: list[dict[str, Any]], source_id: uuid.UUID | None, start_index: int = 0,
) -> list[ItemOutcome]:
    """Items are RecordActivityInputs; an event already recorded is SKIPPED. (`source_id` is
    accepted for symmetry with the other imports: event identity does not depend on it.)"""
    ws = p.require(WRITE)
    drafts = [parse(item, (), start_index + i) for i, item in enumerate(items)]
    results = await record_activities(s, ws, drafts)
    return [
        ItemOutcome(
            index=d.index, outcome=outcome,  # type: ignore[arg-type]
            remote_id=d.values.get("resource_id"),
            node=("ActivityEvent", event.id) if event is not None else None,
            error="; ".join(f"{'.'.join(pr.field)}: {pr.message}" if pr.field else pr.message for pr in problems) or None,
        )
        for d, (outcome, event, problems) in zip(drafts, results, strict=True)
    ]


async def _lock_intelligence(s: AsyncSession, ws: uuid.UUID, contact_ids: list[uuid.UUID]) -> None:
    """Serialises concurrent activity of the same contacts: their facts change by deltas."""
    await s.execute(insert(ContactIntelligence.__table__).values(
        [{"contact_id": c, "workspace_id": ws} for c in contact_ids]
    ).on_conflict_do_nothing())
    await s.execute(select(ContactIntelligence.contact_id).where(
        ContactIntelligence.workspace_id == ws, ContactIntelligence.contact_id.in_(contact_ids)
    ).order_by(ContactIntelligence.contact_id).with_for_update())


_ADD_FACTS = text(
    """
    UPDATE contact_intelligence SET
      sent_count = sent_count + :sent, received_count = received_count + :received,
      first_contact_at = least(first_contact_at, :first), last_contact_at = greatest(last_contact_at, :last),
      last_sent_at = greatest(last_sent_at, :last_sent), last_received_at = greatest(last_received_at, :last_received),
      reply_count = reply_count + :replies, response_hours_total = response_hours_total + :hours,
      hour_counts = (SELECT array_agg(a + b ORDER BY i)
                     FROM unnest(hour_counts, CAST(:hour_counts AS integer[])) WITH ORDINALITY AS t(a, b, i)),
      thread_count = thread_count + :threads
    WHERE workspace_id = :ws AND contact_id = :contact
    """
)


def _zero(ws: uuid.UUID, contact: uuid.UUID) -> dict[str, Any]:
    return {
        "ws": ws, "contact": contact, "sent": 0, "received": 0, "first": None, "last": None, "last_sent": None,
        "last_received": None, "replies": 0, "hours": 0.0, "hour_counts": [0] * 24, "threads": 0,
    }


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


async def _apply_facts(s: AsyncSession, ws: uuid.UUID, events: list[ActivityEvent]) -> None:
    """Adds the new events to their contacts' facts; the threads they touch are recomputed."""
    deltas: dict[uuid.UUID, dict[str, Any]] = {}
    for e in events:
        d = deltas.setdefault(e.contact_id, _zero(ws, e.contact_id))
        if e.type == SENT:
            d["sent"] += 1
            d["last_sent"] = _later(d["last_sent"], e.occurred_at)
        elif e.type == RECEIVED:
            d["received"] += 1
            d["last_received"] = _later(d["last_received"], e.occurred_at)
        if e.type in CONTACT_TYPES:
            d["first"] = e.occurred_at if d["first"] is None or e.occurred_at < d["first"] else d["first"]
            d["last"] = _later(d["last"], e.occurred_at)
            d["hour_counts"][e.occurred_at.astimezone(UTC).hour] += 1
    threads = sorted({(e.contact_id, e.thread_id) for e in events if e.thread_id and e.type in MESSAGE_TYPES})
    if threads:
        before = {(t.contact_id, t.thread_id): t for t in await s.scalars(select(ContactThread).where(
            ContactThread.workspace_id == ws, tuple_(ContactThread.contact_id, ContactThread.thread_id).in_(threads)
        ))}
        messages: dict[tuple[uuid.UUID, str], list[tuple[str, datetime]]] = defaultdict(list)
        for contact_id, thread_id, type_, at in (await s.execute(
            select(ActivityEvent.contact_id, ActivityEvent.thread_id, ActivityEvent.type, ActivityEvent.occurred_at).where(
                ActivityEvent.workspace_id == ws, ActivityEvent.type.in_(MESSAGE_TYPES),
                tuple_(ActivityEvent.contact_id, ActivityEvent.thread_id).in_(threads),
            )
        )):
            messages[(contact_id, thread_id)].append((type_, at))
        upserts = []
        for key in threads:
            replies, hours = thread_replies(messages[key])
            old = before.get(key)
            d = deltas[key[0]]
            d["replies"] += replies - (old.reply_count if old else 0)
            d["hours"] += hours - (old.response_hours_total if old else 0.0)
            d["threads"] += 0 if old else 1
            upserts.append({"workspace_id": ws, "contact_id": key[0], "thread_id": key[1],
                            "reply_count": replies, "response_hours_total": hours})
        stmt = insert(ContactThread.__table__).values(upserts)
        await s.execute(stmt.on_conflict_do_update(
            index_elements=["contact_id", "thread_id"],
            set_={"reply_count": stmt.excluded.reply_count, "response_hours_total": stmt.excluded.response_hours_total},
        ))
    await s.execute(_ADD_FACTS, list(deltas.values()))


def _conversation(e: ActivityEvent) -> tuple[str, str] | None:
    if e.type in MESSAGE_TYPES and e.thread_id:
        return ("shared_thread", e.thread_id)
    if e.type == CALENDAR:
        return ("shared_calendar_event", e.resource_id)
    return None


async def _apply_conversations(s: AsyncSession, ws: uuid.UUID, events: list[ActivityEvent]) -> None:
    """Each contact in a thread or calendar event (the event's contact, and participants that are
    contacts) becomes a participant; new co-participants get their derived edge counted."""
    involved = [e for e in events if _conversation(e)]
    if not involved:
        return
    known = await contacts.contacts_by_address(s, ws, [a for e in involved for a in e.participants])
    sightings: dict[tuple[str, str], dict[uuid.UUID, datetime]] = defaultdict(dict)
    for e in involved:
        seen = sightings[_conversation(e)]  # type: ignore[index]
        for contact_id in {e.contact_id, *(known[a].id for a in e.participants if a in known)}:
            seen[contact_id] = _later(seen.get(contact_id), e.occurred_at)
    await relationships.add_sightings(s, ws, sightings)


async def move_activity(s: AsyncSession, ws: uuid.UUID, survivor: uuid.UUID, merged: list[uuid.UUID]) -> None:
    """For a merge: events and conversations move to the survivor (an event it has already is
    dropped), and its facts are rebuilt from its whole timeline."""
    mine = select(ActivityEvent.type, ActivityEvent.resource_id).where(
        ActivityEvent.workspace_id == ws, ActivityEvent.contact_id == survivor
    )
    await s.execute(delete(ActivityEvent).where(
        ActivityEvent.workspace_id == ws, ActivityEvent.contact_id.in_(merged),
        tuple_(ActivityEvent.type, ActivityEvent.resource_id).in_(mine),
    ))
    await s.execute(update(ActivityEvent).where(
        ActivityEvent.workspace_id == ws, ActivityEvent.contact_id.in_(merged)
    ).values(contact_id=survivor).execution_options(synchronize_session=False))
    await s.execute(text(
        """
        INSERT INTO conversation_participants (workspace_id, kind, conversation, contact_id, last_seen_at)
        SELECT workspace_id, kind, conversation, :survivor, max(last_seen_at)
        FROM conversation_participants WHERE workspace_id = :ws AND contact_id = ANY(:merged)
        GROUP BY workspace_id, kind, conversation
        ON CONFLICT (workspace_id, kind, conversation, contact_id)
        DO UPDATE SET last_seen_at = greatest(conversation_participants.last_seen_at, excluded.last_seen_at)
        """
    ), {"ws": ws, "survivor": survivor, "merged": merged})
    await s.execute(delete(ConversationParticipant).where(
        ConversationParticipant.workspace_id == ws, ConversationParticipant.contact_id.in_(merged)
    ))
    for model in (ContactThread, ContactIntelligence):
        await s.execute(delete(model).where(model.workspace_id == ws, model.contact_id.in_([survivor, *merged])))
    await rebuild_facts(s, ws, [survivor])


async def rebuild_facts(s: AsyncSession, ws: uuid.UUID, contact_ids: list[uuid.UUID]) -> None:
    """Recomputes contacts' facts from their whole timelines (merges, maintenance jobs)."""
    await s.execute(delete(ContactThread).where(ContactThread.workspace_id == ws, ContactThread.contact_id.in_(contact_ids)))
    await s.execute(delete(ContactIntelligence).where(
        ContactIntelligence.workspace_id == ws, ContactIntelligence.contact_id.in_(contact_ids)
    ))
    events = list(await s.scalars(select(ActivityEvent).where(
        ActivityEvent.workspace_id == ws, ActivityEvent.contact_id.in_(contact_ids)
    )))
    if events:
        await _lock_intelligence(s, ws, sorted({e.contact_id for e in events}))
        await _apply_facts(s, ws, events)


async def recompute_relationships(s: AsyncSession, p: Principal) -> dict[str, int]:
    """Rebuilds every derived edge and every contact's intelligence from the activity timeline
    (the RECOMPUTE_RELATIONSHIPS job): repairs drift, and applies changed rules to old data.
    Manual edges are left as they are."""
    ws = p.require("contacts:write")
    await s.execute(delete(Relationship).where(
        Relationship.workspace_id == ws, Relationship.kind.in_(relationships.DERIVED)
    ))
    await s.execute(delete(ConversationParticipant).where(ConversationParticipant.workspace_id == ws))
    contact_ids = list(await s.scalars(select(Contact.id).where(Contact.workspace_id == ws)))
    await rebuild_facts(s, ws, contact_ids)
    events = list(await s.scalars(select(ActivityEvent).where(ActivityEvent.workspace_id == ws)))
    await _apply_conversations(s, ws, events)
    derived = await s.scalar(select(func.count()).select_from(Relationship).where(
        Relationship.workspace_id == ws, Relationship.kind.in_(relationships.DERIVED)
    ))
    return {"contacts": len(contact_ids), "events": len(events), "derivedRelationships": int(derived or 0)}
