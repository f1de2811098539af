"""Relationship intelligence, as DESIGN.md defines it: pure functions over stored facts.

What depends on "now" (daysSinceContact, health, strength, edge weights) is computed when read,
from facts that do not go stale; the facts are kept incrementally by `app.services.activity`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Float, Integer, and_, case, cast, extract, func, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.types import Numeric

from app.db.models import ContactIntelligence

SENT, RECEIVED = "message.sent", "message.received"
"Events that count as being in contact (first/last contact, preferred hours)."
CONTACT_TYPES = frozenset({SENT, RECEIVED, "calendar_event.created", "call.logged"})
MESSAGE_TYPES = frozenset({SENT, RECEIVED})
HALF_LIFE_DAYS = 90.0


def rounded(value: float, places: int) -> float:
    """`value` rounded as PostgreSQL rounds `value::numeric` (15 significant digits, then half
    away from zero), so that a figure computed in SQL and one computed here are the same float."""
    return float(Decimal(f"{value:.15g}").quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP))


def edge_weight(n: int, last_seen: datetime | None, now: datetime) -> float:
    """min(1, ln(n+1)/ln(50)) x 0.5^(days since last seen / 90), 4 decimals (as SQL ctx_edge_weight)."""
    if n <= 0 or last_seen is None:
        return 0.0
    days = max(0.0, (now - last_seen).total_seconds() / 86400.0)
    return rounded(min(1.0, math.log(n + 1) / math.log(50)) * 0.5 ** (days / HALF_LIFE_DAYS), 4)


def thread_replies(events: Iterable[tuple[str, datetime]]) -> tuple[int, float]:
    """(answered received messages, sum of answer delays in hours) of one thread: a received
    message is answered by the first sent message after it."""
    ordered = sorted(events, key=lambda e: e[1])
    answered, hours = 0, 0.0
    waiting: list[datetime] = []
    for kind, at in ordered:
        if kind == RECEIVED:
            waiting.append(at)
        elif kind == SENT:
            done = [w for w in waiting if w < at]
            answered += len(done)
            hours += sum((at - w).total_seconds() / 3600.0 for w in done)
            waiting = [w for w in waiting if w >= at]
    return answered, hours


@dataclass(frozen=True)
class Figures:
    sent_count: int
    received_count: int
    first_contact_at: datetime | None
    last_contact_at: datetime | None
    last_sent_at: datetime | None
    last_received_at: datetime | None
    days_since_contact: int | None
    reply_rate: float | None
    avg_response_time_hours: float | None
    preferred_contact_hours: list[int]
    thread_count: int
    communication_pattern: str | None
    health: str
    strength: float


def figures(row: ContactIntelligence | None, now: datetime) -> Figures:
    """The contract's ContactIntelligence from the stored facts (None: no activity yet)."""
    if row is None:
        return Figures(0, 0, None, None, None, None, None, None, None, [], 0, None, "NEW", 0.0)
    sent, received = row.sent_count, row.received_count
    last = row.last_contact_at
    days = (now - last).days if last is not None else None
    pattern = None
    if sent + received:
        share = sent / (sent + received)
        pattern = "INITIATOR" if share > 0.6 else "RESPONDER" if share < 0.4 else "BALANCED"
    if row.first_contact_at is None or (now - row.first_contact_at).total_seconds() < 14 * 86400:
        health = "NEW"
    else:
        idle = (now - last).total_seconds() / 86400 if last else 0
        health = "DORMANT" if idle > 90 else "AT_RISK" if idle > 30 else "STRONG"
    hours = sorted((h for h, c in enumerate(row.hour_counts) if c > 0), key=lambda h: (-row.hour_counts[h], h))[:3]
    return Figures(
        sent_count=sent, received_count=received, first_contact_at=row.first_contact_at, last_contact_at=last,
        last_sent_at=row.last_sent_at, last_received_at=row.last_received_at, days_since_contact=days,
        reply_rate=rounded(row.reply_count / received, 4) if received else None,
        avg_response_time_hours=rounded(row.response_hours_total / row.reply_count, 2) if row.reply_count else None,
        preferred_contact_hours=hours, thread_count=row.thread_count, communication_pattern=pattern,
        health=health, strength=edge_weight(sent + received, last, now),
    )


def facts_row(contact_id: Any, ws: Any) -> Any:
    """The facts of the contact `contact_id` (a uuid or a column), or one row of NULLs when it
    has none, which `figures_sql` reads as `figures(None)`."""
    facts = ContactIntelligence.__table__
    one = select(literal_column("1").label("one")).subquery("one")
    return select(*facts.c).select_from(
        one.outerjoin(facts, and_(facts.c.contact_id == contact_id, facts.c.workspace_id == ws)))


def _round_sql(value: Any, places: int) -> Any:
    return cast(func.round(cast(value, Numeric), places), Float)


def figures_sql(i: Any) -> dict[str, Any]:
    """`figures` in SQL, over the columns `i` of a contact's facts row (all NULL when the
    contact has none), by Figures field: the planner reads intelligence in the same statement."""
    sent, received = func.coalesce(i.sent_count, 0), func.coalesce(i.received_count, 0)
    replies = func.coalesce(i.reply_count, 0)
    messages = sent + received
    share = cast(sent, Float) / cast(func.nullif(messages, 0), Float)
    since_first = extract("epoch", func.now() - i.first_contact_at)
    idle_days = func.coalesce(extract("epoch", func.now() - i.last_contact_at) / 86400, 0)
    hour = func.unnest(i.hour_counts).table_valued("count", with_ordinality="at").render_derived(name="h")
    top = (select((hour.c.at - 1).label("hour"), hour.c.count).where(hour.c.count > 0)
           .order_by(hour.c.count.desc(), hour.c.at).limit(3).subquery("top"))
    ordered = aggregate_order_by(top.c.hour, top.c.count.desc(), top.c.hour)
    hours = select(func.coalesce(func.json_agg(ordered), literal_column("'[]'::json"))).select_from(top).scalar_subquery()
    return {
        "sent_count": sent,
        "received_count": received,
        "first_contact_at": i.first_contact_at,
        "last_contact_at": i.last_contact_at,
        "last_sent_at": i.last_sent_at,
        "last_received_at": i.last_received_at,
        "days_since_contact": cast(func.floor(extract("epoch", func.now() - i.last_contact_at) / 86400), Integer),
        "reply_rate": case((received > 0, _round_sql(cast(replies, Float) / cast(func.nullif(received, 0), Float), 4))),
        "avg_response_time_hours": case((replies > 0, _round_sql(i.response_hours_total / cast(func.nullif(replies, 0), Float), 2))),
        "preferred_contact_hours": hours,
        "thread_count": func.coalesce(i.thread_count, 0),
        "communication_pattern": case((messages == 0, None), (share > 0.6, "INITIATOR"), (share < 0.4, "RESPONDER"),
                                      else_="BALANCED"),
        "health": case((and_(i.first_contact_at.is_not(None), since_first >= 14 * 86400),
                        case((idle_days > 90, "DORMANT"), (idle_days > 30, "AT_RISK"), else_="STRONG")), else_="NEW"),
        "strength": func.ctx_edge_weight(messages, i.last_contact_at),
    }
