"""Merging duplicate contacts into one: every domain that points at a contact moves over to the
survivor, in one transaction (the mutation's). The order is this module's to know: contacts
first (the rows merged), then what refers to them, domain by domain."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Contact
from app.services import activity, contacts, documents, effects, relationships
from app.services.access import Principal


async def merge_contacts(s: AsyncSession, p: Principal, contact_ids: list[uuid.UUID | None]) -> Contact:
    """Merges into the first: emails, tags, empty fields, activity, relationships, document links
    and authorship move over; the others are soft-deleted."""
    survivor, merged = await contacts.merge_rows(s, p, contact_ids)
    ws = survivor.workspace_id
    await activity.move_activity(s, ws, survivor.id, merged)
    await relationships.move_endpoints(s, ws, "Contact", survivor.id, merged)
    await documents.move_contact_links(s, ws, survivor.id, merged)
    await s.refresh(survivor)
    effects.event(s, "contact.updated", "Contact", survivor.id)
    for contact_id in merged:
        effects.event(s, "contact.deleted", "Contact", contact_id)
    return survivor
