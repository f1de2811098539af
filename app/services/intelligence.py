"""Relationship intelligence, as DESIGN.md defines it: pure functions over stored facts.

What depends on "now" (daysSinceContact, health, strength, edge weights) is computed when read,
from facts that do not go stale; the facts are kept incrementally by `app.services.activity`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from app.db.models import ContactIntelligence

SENT, RECEIVED = "message.sent", "message.received"
"Events that count as being in contact (first/last contact, preferred hours)."
CONTACT_TYPES = frozenset({SENT, RECEIVED, "calendar_event.created", "call.logged"})
MESSAGE_TYPES = frozenset({SENT, RECEIVED})
HALF_LIFE_DAYS = 90.0


def edge_weight(n: int, last_seen: datetime | None, now: datetime) -> float:
    """min(1, ln(n+1)/ln(50)) x 0.5^(days since last seen / 90), 4 decimals (as SQL ctx_edge_weight)."""
    if n <= 0 or last_seen is None:
        return 0.0
    days = max(0.0, (now - last_seen).total_seconds() / 86400.0)
    return round(min(1.0, math.log(n + 1) / math.log(50)) * 0.5 ** (days / HALF_LIFE_DAYS), 4)


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
        reply_rate=round(row.reply_count / received, 4) if received else None,
        avg_response_time_hours=round(row.response_hours_total / row.reply_count, 2) if row.reply_count else None,
        preferred_contact_hours=hours, thread_count=row.thread_count, communication_pattern=pattern,
        health=health, strength=edge_weight(sent + received, last, now),
    )
