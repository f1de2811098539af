"""Sources: the channels data arrives through. Credentials are sealed at rest, never returned."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Source
from app.security import Vault
from app.services import filters
from app.services.access import Principal
from app.services.errors import Invalid, Problem, not_found
from app.services.pagination import Page, PageArgs, SortKey, paginate
from app.services.validation import check_text, problems

READ, WRITE = "sources:read", "sources:write"
"""A lower-case slug (imap-acme, crm_eu): what a machine name was (letters, digits and _,
starting with a letter, at most 63) and hyphens, as names of mailboxes and hosts have them."""
SOURCE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
PROVIDERS = ("API", "FILE", "IMAP", "GOOGLE_WORKSPACE", "MICROSOFT_365")

FILTER_FIELDS: filters.FieldMap = {
    "id": filters.global_id(Source.id, "Source"),
    "name": filters.string(Source.name),
    "display_name": filters.string(Source.display_name),
    "provider": filters.one_of(Source.provider),
    "status": filters.one_of(Source.status),
    "created_at": filters.comparable(Source.created_at),
    "updated_at": filters.comparable(Source.updated_at),
}
SORT_COLUMNS = {"NAME": Source.name, "CREATED_AT": Source.created_at, "UPDATED_AT": Source.updated_at}


def sort_keys(order: Sequence[tuple[str, bool]] | None) -> list[SortKey]:
    """(field, descending) pairs, ties broken by id; default oldest first."""
    keys = [
        SortKey(SORT_COLUMNS[field], lambda s, f=field: getattr(s, SORT_COLUMNS[f].key), descending=desc)
        for field, desc in (order or [("CREATED_AT", False)])
    ]
    return [*keys, SortKey(Source.id, lambda s: s.id, descending=keys[-1].descending if keys else False)]


async def list_sources(
    s: AsyncSession, p: Principal, args: PageArgs, *, where: Any = None, order: Sequence[tuple[str, bool]] | None = None
) -> Page[Source]:
    return await paginate(s, *sources_query(p, where=where, order=order), args)


def sources_query(p: Principal, *, where: Any = None, order: Sequence[tuple[str, bool]] | None = None
                  ) -> tuple[Select[Any], list[SortKey]]:
    ws = p.require(READ)
    query = select(Source).where(Source.workspace_id == ws)
    if where is not None:
        query = query.where(filters.compile_filter(where, FILTER_FIELDS))
    return query, sort_keys(order)


async def sources_by_id(s: AsyncSession, p: Principal, ids: list[uuid.UUID]) -> dict[uuid.UUID, Source]:
    ws = p.require(READ)
    rows = await s.scalars(select(Source).where(Source.workspace_id == ws, Source.id.in_(ids)))
    return {row.id: row for row in rows}


def _check_config(config: Any, credentials: Any) -> list[Problem]:
    out = []
    if config is not None and not isinstance(config, dict):
        out.append(Problem("config must be a JSON object", "INVALID", ("input", "config")))
    if credentials is not None and not isinstance(credentials, dict):
        out.append(Problem("credentials must be a JSON object", "INVALID", ("input", "credentials")))
    return out


async def _get(s: AsyncSession, ws: uuid.UUID, source_id: uuid.UUID | None, *, lock: bool = False) -> Source:
    query = select(Source).where(Source.id == source_id, Source.workspace_id == ws)
    source = await s.scalar(query.with_for_update() if lock else query) if source_id else None
    if source is None:
        raise not_found("Source")
    return source


async def create_source(
    s: AsyncSession, p: Principal, vault: Vault, *, name: str, display_name: str, provider: str,
    config: Any = None, credentials: Any = None,
) -> Source:
    ws = p.require(WRITE)
    found = problems(check_text(display_name, ("input", "displayName")))
    if not isinstance(name, str) or not SOURCE_NAME.fullmatch(name):
        found.append(Problem("name must be a lower-case slug: letters, digits, - and _, starting with a letter, "
                             "at most 63 characters (e.g. imap-acme)", "INVALID", ("input", "name")))
    if provider not in PROVIDERS:
        found.append(Problem(f"Unknown provider {provider}", "INVALID", ("input", "provider")))
    found += _check_config(config, credentials)
    if found:
        raise Invalid(*found)
    if await s.scalar(select(Source.id).where(Source.workspace_id == ws, Source.name == name)):
        raise Invalid(Problem(f"A source named {name!r} already exists", "CONFLICT", ("input", "name")))
    source = Source(
        id=uuid.uuid4(), workspace_id=ws, name=name, display_name=display_name.strip(), provider=provider,
        status="ACTIVE", config=config or {}, credentials_encrypted=vault.seal(credentials) if credentials else None,
    )
    s.add(source)
    try:
        async with s.begin_nested():
            await s.flush()
    except IntegrityError:  # a concurrent create of the same name won the race
        raise Invalid(Problem(f"A source named {name!r} already exists", "CONFLICT", ("input", "name"))) from None
    return source


async def update_source(
    s: AsyncSession, p: Principal, vault: Vault, source_id: uuid.UUID | None, *,
    display_name: str | None = None, config: Any = None, credentials: Any = None,
) -> Source:
    """Only what is given changes; `name` is immutable. Credentials are replaced whole."""
    source = await _get(s, p.require(WRITE), source_id, lock=True)
    found = problems(check_text(display_name, ("input", "displayName"))) if display_name is not None else []
    found += _check_config(config, credentials)
    if found:
        raise Invalid(*found)
    if display_name is not None:
        source.display_name = display_name.strip()
    if config is not None:
        source.config = config
    if credentials is not None:
        source.credentials_encrypted = vault.seal(credentials) if credentials else None
    await s.flush()
    await s.refresh(source)
    return source


async def delete_source(s: AsyncSession, p: Principal, source_id: uuid.UUID | None) -> uuid.UUID:
    source = await _get(s, p.require(WRITE), source_id, lock=True)
    await s.delete(source)
    await s.flush()
    return source.id


async def set_paused(s: AsyncSession, p: Principal, source_id: uuid.UUID | None, paused: bool) -> Source:
    """Pausing stops syncs; resuming a source in ERROR makes it ACTIVE again too."""
    source = await _get(s, p.require(WRITE), source_id, lock=True)
    source.status = "PAUSED" if paused else "ACTIVE"
    await s.flush()
    await s.refresh(source)
    return source
