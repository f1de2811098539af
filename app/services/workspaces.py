"""Workspaces and their members. The last OWNER can neither leave nor be demoted."""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

from sqlalchemy import Select, exists, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import security
from app.db.models import Member, User, Workspace
from app.services import effects
from app.services.access import ADMIN_SCOPE, ROLE_SCOPES, Principal, covers
from app.services.errors import Invalid, Problem, not_found
from app.services.pagination import Page, PageArgs, SortKey, paginate
from app.services.validation import check_email, check_text, normalise_email, problems

MEMBER_ORDER = [SortKey(Member.created_at, lambda m: m.created_at), SortKey(Member.id, lambda m: m.id)]


def _slug(name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "workspace"
    return f"{base}-{secrets.token_hex(3)}"


async def new_workspace(s: AsyncSession, owner_id: uuid.UUID, name: str) -> Workspace:
    """A workspace with `owner_id` as its OWNER; `s` must be allowed to write members of it."""
    workspace = Workspace(id=uuid.uuid4(), name=name, slug=_slug(name))
    s.add(workspace)
    await s.flush()
    s.add(Member(workspace_id=workspace.id, user_id=owner_id, role="OWNER", status="ACTIVE"))
    await s.flush()
    return workspace


async def create_workspace(s: AsyncSession, p: Principal, name: str) -> Workspace:
    """`s` is a system session: the new workspace is no tenant's yet. Once committed, a user's
    only workspace is no longer the only one (which requests without a workspace header chose)."""
    user_id = p.require_user()
    found = problems(check_text(name, ("input", "name")))
    if found:
        raise Invalid(*found)
    workspace = await new_workspace(s, user_id, name.strip())
    effects.credentials_changed(s)
    return workspace


async def current_workspace(s: AsyncSession, p: Principal) -> Workspace:
    return await s.get_one(Workspace, p.require_workspace())


async def visible_workspaces(s: AsyncSession, p: Principal, ids: list[uuid.UUID]) -> dict[uuid.UUID, Workspace]:
    """Only the request's own workspace is reachable by id through a tenant session."""
    if p.workspace_id is None or p.workspace_id not in ids:
        return {}
    return {p.workspace_id: await s.get_one(Workspace, p.workspace_id)}


async def list_members(s: AsyncSession, p: Principal, args: PageArgs) -> Page[Member]:
    return await paginate(s, *members_query(p), args)


def members_query(p: Principal) -> tuple[Select[Any], list[SortKey]]:
    return select(Member).where(Member.workspace_id == members_visible(p)), MEMBER_ORDER


async def members_by_id(s: AsyncSession, p: Principal, member_ids: list[uuid.UUID]) -> dict[uuid.UUID, Member]:
    ws = members_visible(p)
    rows = await s.scalars(select(Member).where(Member.workspace_id == ws, Member.id.in_(member_ids)))
    return {m.id: m for m in rows}


async def users_of_workspace(s: AsyncSession, p: Principal, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, User]:
    """Users are visible to their fellow members (and to themselves), nobody else."""
    ws = members_visible(p)
    rows = await s.scalars(
        select(User).join(Member, Member.user_id == User.id).where(Member.workspace_id == ws, User.id.in_(user_ids))
    )
    found = {u.id: u for u in rows}
    if p.user_id in user_ids and p.user_id not in found:
        found[p.user_id] = await s.get_one(User, p.user_id)
    return found


def _check_role_change(p: Principal, target_role: str, new_role: str | None) -> None:
    """An ADMIN manages ADMINs and below; only an OWNER touches or grants OWNER; nobody (an API
    key with workspace:admin included) grants a role with scopes it does not hold itself."""
    if p.role != "OWNER" and "OWNER" in (target_role, new_role):
        raise Invalid(Problem("Only an OWNER can manage owners", "FORBIDDEN", ("role",)))
    if new_role is not None and not covers(p.scopes, ROLE_SCOPES[new_role]):
        raise Invalid(Problem(f"Granting {new_role} needs the scopes it carries", "FORBIDDEN", ("role",)))


def is_member_sql(user_id: Any, ws: Any) -> Any:
    """Whether the user `user_id` (a uuid or a column) is a member of `ws`: users are visible to
    the members of a workspace they belong to."""
    return exists().where(Member.user_id == user_id, Member.workspace_id == ws)


def members_visible(p: Principal) -> uuid.UUID:
    """Members and their emails are for users of the workspace, and for API keys that
    administer it, not for every integration's key."""
    ws = p.require_workspace()
    if p.user_id is None:
        p.require(ADMIN_SCOPE)
    return ws


async def _member(s: AsyncSession, ws: uuid.UUID, member_id: uuid.UUID | None) -> Member:
    member = await s.scalar(select(Member).where(Member.id == member_id, Member.workspace_id == ws)) if member_id else None
    if member is None:
        raise not_found("Member")
    return member


async def _is_last_owner(s: AsyncSession, member: Member) -> bool:
    if member.role != "OWNER":
        return False
    owners = await s.scalar(
        select(func.count()).select_from(Member).where(
            Member.workspace_id == member.workspace_id, Member.role == "OWNER", Member.status == "ACTIVE"
        )
    )
    return (owners or 0) <= 1


async def invite_member(s: AsyncSession, p: Principal, *, email: str, role: str) -> tuple[Member, str | None]:
    """Invites an existing user (active on their next login), or creates a password-less one
    and returns the token that claims it: signing up with the address alone does not."""
    ws = p.require(ADMIN_SCOPE)
    email = normalise_email(email)
    found = problems(check_email(email, ("input", "email")))
    if found:
        raise Invalid(*found)
    _check_role_change(p, "MEMBER", role)
    user = await s.scalar(select(User).where(User.email == email))
    if user is None:  # the columns the app role may write: no password hash
        user_id, claimable = uuid.uuid4(), True
        await s.execute(insert(User).values(id=user_id, email=email))
    elif await s.scalar(select(Member.id).where(Member.workspace_id == ws, Member.user_id == user.id)):
        raise Invalid(Problem("This user is already a member", "DUPLICATE", ("input", "email")))
    else:
        user_id, claimable = user.id, not user.has_password
    token = security.new_refresh_token() if claimable else None
    member = Member(workspace_id=ws, user_id=user_id, role=role, status="INVITED",
                    invitation_token_hash=security.sha256(token) if token else None)
    s.add(member)
    await s.flush()
    return member, token


async def update_member_role(s: AsyncSession, p: Principal, member_id: uuid.UUID | None, role: str) -> Member:
    member = await _member(s, p.require(ADMIN_SCOPE), member_id)
    _check_role_change(p, member.role, role)
    if role != "OWNER" and await _is_last_owner(s, member):
        raise Invalid(Problem("The last owner cannot be demoted", "CONFLICT", ("role",)))
    member.role = role
    await s.flush()
    effects.credentials_changed(s)
    return member


async def remove_member(s: AsyncSession, p: Principal, member_id: uuid.UUID | None) -> uuid.UUID:
    """Admins remove others; anyone may leave, except the last owner."""
    ws = p.require_workspace()
    member = await _member(s, ws, member_id)
    if member.id != p.member_id:
        p.require(ADMIN_SCOPE)
        _check_role_change(p, member.role, None)
    if await _is_last_owner(s, member):
        raise Invalid(Problem("The last owner cannot be removed", "CONFLICT", ("id",)))
    await s.delete(member)
    await s.flush()
    effects.credentials_changed(s)
    return member.id
