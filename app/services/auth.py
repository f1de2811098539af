"""Identity: sign-up, login, rotating refresh tokens, request authentication, API keys.

Look-ups that come before the workspace is known run in a system session (a request's credential
check on an autocommit connection, one round trip); everything else in the caller's tenant session
like any other domain.
"""

from __future__ import annotations

import asyncio
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from app import security
from app.config import Settings
from app.db.engine import Database
from app.db.models import ApiKey, Member, RefreshToken, User, Workspace
from app.pubsub import publish_api_key_change
from app.ratelimit import FailureBudget
from app.services import effects, ids
from app.services.access import ALL_SCOPES, ROLE_SCOPES, WILDCARD, Principal, covers
from app.services.errors import Forbidden, Invalid, Problem, Unauthenticated, not_found
from app.services.pagination import Page, PageArgs, SortKey, paginate
from app.services.validation import check_email, check_text, normalise_email, problems
from app.services.workspaces import new_workspace

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
PASSWORD_RULE = (f"at least {MIN_PASSWORD} and at most {MAX_PASSWORD} characters, not only whitespace, "
                 "and no control characters")
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)
API_KEY_REFUSED = "Invalid, revoked or expired API key"  # one answer, whether refused offline or after a look-up


@dataclass(frozen=True)
class Session:
    """What signUp, login and refreshToken hand back."""

    user: User
    access_token: str
    refresh_token: str
    expires_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


async def _issue(s: AsyncSession, settings: Settings, user: User, family_id: uuid.UUID) -> Session:
    assert settings.jwt_secret
    access, expires = security.issue_access_token(settings.jwt_secret, user.id, settings.access_token_ttl)
    refresh = security.new_refresh_token()
    s.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=security.sha256(refresh),
            expires_at=_now() + timedelta(seconds=settings.refresh_token_ttl),
        )
    )
    return Session(user=user, access_token=access, refresh_token=refresh, expires_at=expires)


async def _activate_invitations(s: AsyncSession, user_id: uuid.UUID) -> None:
    activated = await s.execute(update(Member).where(Member.user_id == user_id, Member.status == "INVITED").values(
        status="ACTIVE", invitation_token_hash=None
    ))
    if activated.rowcount:  # type: ignore[attr-defined]
        effects.credentials_changed(s)


async def sign_up(
    s: AsyncSession, settings: Settings, *, email: str, password: str, name: str | None, workspace_name: str,
    invitation_token: str | None = None,
) -> Session:
    """A new account with a workspace of its own. An address that was invited but never signed
    up is claimed only with its invitation token (else anyone could take the invited role).
    `s` is a system session: the account is no tenant's yet."""
    email = normalise_email(email)
    found = problems(
        check_email(email, ("input", "email")),
        check_password(password, ("input", "password")),
        check_text(name, ("input", "name"), required=False),
        check_text(workspace_name, ("input", "workspaceName")),
    )
    if found:
        raise Invalid(*found)
    password_hash = await asyncio.to_thread(security.hash_password, password)  # ~0.2 s: no lock held
    user = await s.scalar(select(User).options(undefer(User.password_hash)).where(User.email == email).with_for_update())
    invitation = None
    if user is not None and user.password_hash is None and invitation_token:
        invitation = await s.scalar(select(Member).where(
            Member.user_id == user.id, Member.status == "INVITED",
            Member.invitation_token_hash == security.sha256(invitation_token),
        ))
    if user is not None and invitation is None:
        raise Invalid(Problem("An account with this email already exists", "DUPLICATE", ("input", "email")))
    if user is None:
        user = User(email=email)
        s.add(user)
    user.name = name.strip() if name else user.name
    user.password_hash = password_hash
    await s.flush()
    await new_workspace(s, user.id, workspace_name.strip())
    if invitation is not None:
        invitation.status, invitation.invitation_token_hash = "ACTIVE", None
        effects.credentials_changed(s)  # the invited membership is now active
    return await _issue(s, settings, user, uuid.uuid4())


def check_password(password: str, field: tuple[str, ...]) -> Problem | None:
    """PASSWORD_RULE: a password of spaces guards nothing, and a NUL or an escape is either a
    paste gone wrong or a password no login form can type again (a lone surrogate, which is
    not UTF-8, cannot even be hashed)."""
    if MIN_PASSWORD <= len(password) <= MAX_PASSWORD and password.strip() and not any(
        unicodedata.category(c) in ("Cc", "Cs") for c in password
    ):
        return None
    return Problem(f"password must be {PASSWORD_RULE}", "INVALID", field)


async def login(
    s: AsyncSession, settings: Settings, *, email: str, password: str, failures: FailureBudget, client: str
) -> Session:
    """Argon2 takes ~0.2 s of CPU by design: it runs in a thread, with no connection held (the
    look-up's transaction ends before). Wrong passwords count against the address and the email
    (`FailureBudget`): past either budget a login is refused before the look-up and the hash.
    `s` is a system session. A login activates the user's pending invitations."""
    email = normalise_email(email)
    account = f"email:{security.sha256(email)[:32]}"  # no addresses in Redis keys
    standing = await failures.check(account, client)
    user = await s.scalar(select(User).options(undefer(User.password_hash)).where(User.email == email))
    if user is not None:
        s.expunge(user)
    await s.rollback()  # nothing written yet: the connection goes back to the pool
    if not await asyncio.to_thread(security.verify_password, user.password_hash if user else None, password) or user is None:
        await failures.failed(account, client)
        raise Invalid(Problem("Invalid email or password", "INVALID", ("input",)))
    await failures.succeeded(account, standing)
    await _activate_invitations(s, user.id)
    return await _issue(s, settings, user, uuid.uuid4())


async def refresh(s: AsyncSession, settings: Settings, token: str, *, failures: FailureBudget, client: str) -> Session:
    """Single use: a spent token presented again revokes every token of its family. Refused
    tokens count against the address: past its budget, nothing is looked up. `s` is a system
    session."""
    await failures.check(None, client)
    try:
        return await _refresh(s, settings, token)
    except Invalid:
        await failures.failed(None, client)
        raise


async def _refresh(s: AsyncSession, settings: Settings, token: str) -> Session:
    rejected = Invalid(Problem("Invalid or expired refresh token", "INVALID", ("refreshToken",)))
    row = await s.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == security.sha256(token)).with_for_update()
    )
    if row is None or row.revoked_at is not None or row.expires_at <= _now():
        raise rejected
    if row.used_at is not None:
        await s.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == row.family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
        await s.commit()  # the revocation must stick though the call is refused
        raise rejected
    row.used_at = _now()
    user = await s.get_one(User, row.user_id)
    return await _issue(s, settings, user, row.family_id)


def _parse_workspace_header(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        found = ids.decode_as(value, "Workspace")
        if found is None:
            raise Forbidden("Unknown workspace") from None
        return found


async def authenticate(
    db: Database, settings: Settings, *, authorization: str | None, api_key: str | None, workspace: str | None
) -> Principal:
    """The principal of a request's credentials; anonymous without any. Bad ones raise."""
    principal, _ = await identify(db, settings, authorization=authorization, api_key=api_key, workspace=workspace)
    return principal


async def identify(
    db: Database, settings: Settings, *, authorization: str | None, api_key: str | None, workspace: str | None
) -> tuple[Principal, datetime | None]:
    """`authenticate`, and when the credential stops working by itself (an access token's expiry,
    an API key's expiresAt; None for never, or anonymous)."""
    return await look_up(db, present(settings, authorization=authorization, api_key=api_key), workspace)


@dataclass(frozen=True)
class Presented:
    """A credential as far as it can be checked without a look-up."""

    identity: str  # what its failures count against: an API key's visible prefix, a token's user
    guessable: bool  # anyone can make one that passes the offline checks (an API key, not a signed token)
    api_key: str | None = None
    user_id: uuid.UUID | None = None
    expires_at: datetime | None = None


def present(settings: Settings, *, authorization: str | None, api_key: str | None) -> Presented | None:
    """What a request's credential claims, checked offline (None: anonymous). A malformed or
    mistyped API key (its checksum) and a token with a bad signature or past its expiry raise
    here: refusing them costs no look-up, so guessing at random costs the database nothing."""
    if api_key:
        return _presented_key(api_key)
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("Authorization must be 'Bearer <access token>'")
    if token.startswith(security.API_KEY_PREFIX):
        return _presented_key(token)
    assert settings.jwt_secret
    found = security.read_access_token(settings.jwt_secret, token.strip())
    if found is None:
        raise Unauthenticated("Invalid or expired access token")
    user_id, expires_at = found
    return Presented(identity=f"user:{user_id}", guessable=False, user_id=user_id, expires_at=expires_at)


def _presented_key(secret: str) -> Presented:
    secret = secret.strip()
    if not security.well_formed_api_key(secret):
        raise Unauthenticated(API_KEY_REFUSED)
    return Presented(identity=f"key:{security.api_key_prefix(secret)}", guessable=True, api_key=secret)


async def look_up(
    db: Database, presented: Presented | None, workspace: str | None
) -> tuple[Principal, datetime | None]:
    """The principal of a presented credential, from the database, and when it stops working by itself."""
    workspace_id = _parse_workspace_header(workspace)
    if presented is None:
        return Principal(), None
    if presented.api_key is not None:
        return await _authenticate_key(db, presented.api_key, workspace_id)
    assert presented.user_id is not None
    return await _authenticate_user(db, presented.user_id, workspace_id), presented.expires_at


# Every request runs one of these, as plain SQL on a connection in autocommit (Database.lookup).
_MEMBERSHIPS = "select id, workspace_id, role from members where user_id = %(user_id)s and status = 'ACTIVE' limit 2"
_MEMBERSHIP_IN = ("select id, workspace_id, role from members"
                  " where user_id = %(user_id)s and status = 'ACTIVE' and workspace_id = %(workspace_id)s")
_KEY = "select id, workspace_id, scopes, revoked_at, expires_at, last_used_at from api_keys where key_hash = %(key_hash)s"
_TOUCH_KEY = "update api_keys set last_used_at = %(now)s where id = %(id)s"


async def _authenticate_user(db: Database, user_id: uuid.UUID, workspace_id: uuid.UUID | None) -> Principal:
    if workspace_id is None:
        rows = await db.lookup(_MEMBERSHIPS, {"user_id": user_id})
    else:
        rows = await db.lookup(_MEMBERSHIP_IN, {"user_id": user_id, "workspace_id": workspace_id})
    if workspace_id is not None and not rows:
        raise Forbidden("Unknown workspace")
    if len(rows) != 1:  # none, or several and no header to choose: user-level requests only
        return Principal(user_id=user_id)
    member_id, ws, role = rows[0]
    return Principal(user_id=user_id, workspace_id=ws, member_id=member_id, role=role, scopes=ROLE_SCOPES[role])


async def _authenticate_key(db: Database, secret: str, workspace_id: uuid.UUID | None) -> tuple[Principal, datetime | None]:
    found = await db.lookup(_KEY, {"key_hash": security.sha256(secret)})
    key = found[0] if found else None
    now = _now()
    if key is None or key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        raise Unauthenticated(API_KEY_REFUSED)
    if workspace_id is not None and workspace_id != key.workspace_id:
        raise Forbidden("Unknown workspace")
    if key.last_used_at is None or now - key.last_used_at > API_KEY_TOUCH_INTERVAL:
        await db.lookup(_TOUCH_KEY, {"now": now, "id": key.id})  # kept to the minute: no write on every request
    return Principal(api_key_id=key.id, workspace_id=key.workspace_id, scopes=frozenset(key.scopes)), key.expires_at


async def viewer_workspaces(db: Database, p: Principal) -> list[tuple[Workspace, str | None]]:
    """Every workspace the principal may select, with the role in it: a user's active
    memberships, an API key's own workspace (no role)."""
    async with db.system() as s:
        if p.user_id is not None:
            query = (
                select(Workspace, Member.role)
                .join(Member, Member.workspace_id == Workspace.id)
                .where(Member.user_id == p.user_id, Member.status == "ACTIVE")
                .order_by(Workspace.created_at, Workspace.id)
            )
        elif p.workspace_id is not None:
            query = select(Workspace, null()).where(Workspace.id == p.workspace_id)
        else:
            return []
        return [(w, role) for w, role in (await s.execute(query)).all()]


# ---------------------------------------------------------------- API keys

ADMIN = "workspace:admin"
API_KEY_ORDER = [SortKey(ApiKey.created_at, lambda k: k.created_at), SortKey(ApiKey.id, lambda k: k.id)]


def _check_scopes(p: Principal, scopes: list[str]) -> list[Problem]:
    unknown = sorted(set(scopes) - ALL_SCOPES - {WILDCARD})
    if unknown:
        return [Problem(f"Unknown scopes: {', '.join(unknown)}", "INVALID", ("input", "scopes"))]
    if not scopes:
        return [Problem("At least one scope is required", "REQUIRED", ("input", "scopes"))]
    if not covers(p.scopes, set(scopes)):
        return [Problem("A key cannot have scopes its creator lacks", "FORBIDDEN", ("input", "scopes"))]
    return []


async def list_api_keys(s: AsyncSession, p: Principal, args: PageArgs) -> Page[ApiKey]:
    ws = p.require(ADMIN)
    return await paginate(s, select(ApiKey).where(ApiKey.workspace_id == ws), API_KEY_ORDER, args)


async def create_api_key(
    s: AsyncSession, p: Principal, *, name: str, scopes: list[str], expires_at: datetime | None
) -> tuple[ApiKey, str]:
    ws = p.require(ADMIN)
    found = problems(check_text(name, ("input", "name"))) + _check_scopes(p, scopes)
    if expires_at is not None and expires_at <= _now():
        found.append(Problem("expiresAt must be in the future", "INVALID", ("input", "expiresAt")))
    if found:
        raise Invalid(*found)
    secret, prefix = security.new_api_key()
    key = ApiKey(
        workspace_id=ws, name=name.strip(), prefix=prefix, key_hash=security.sha256(secret),
        scopes=sorted(set(scopes)), created_by_id=p.member_id, expires_at=expires_at,
    )
    s.add(key)
    await s.flush()
    return key, secret


async def _get_key(s: AsyncSession, ws: uuid.UUID, key_id: uuid.UUID | None) -> ApiKey:
    key = await s.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.workspace_id == ws)) if key_id else None
    if key is None:
        raise not_found("API key")
    return key


async def rotate_api_key(s: AsyncSession, p: Principal, key_id: uuid.UUID | None) -> tuple[ApiKey, str]:
    """A new secret for the same key; the old one stops working at once."""
    key = await _get_key(s, p.require(ADMIN), key_id)
    if key.revoked_at is not None:
        raise Invalid(Problem("A revoked key cannot be rotated", "CONFLICT", ("id",)))
    if not covers(p.scopes, set(key.scopes)):
        raise Invalid(Problem("A key cannot have scopes its rotator lacks", "FORBIDDEN", ("id",)))
    secret, key.prefix = security.new_api_key()
    key.key_hash = security.sha256(secret)
    await s.flush()
    _key_changed(s, key.id)
    return key, secret


async def revoke_api_key(s: AsyncSession, p: Principal, key_id: uuid.UUID | None) -> ApiKey:
    key = await _get_key(s, p.require(ADMIN), key_id)
    if key.revoked_at is None:
        key.revoked_at = _now()
        await s.flush()
    _key_changed(s, key.id)
    return key


def _key_changed(s: AsyncSession, key_id: uuid.UUID) -> None:
    """Once committed, requests with the key's old secret look it up afresh and its open sockets
    (on any API process) re-authenticate."""
    effects.credentials_changed(s)
    effects.on_commit(s, lambda surroundings: publish_api_key_change(surroundings.redis, key_id))



async def api_keys_by_id(s: AsyncSession, p: Principal, key_ids: list[uuid.UUID]) -> dict[uuid.UUID, ApiKey]:
    """A key sees itself; other keys need workspace:admin."""
    ws = p.require_workspace()
    if not p.can(ADMIN):
        key_ids = [k for k in key_ids if k == p.api_key_id]
    rows = await s.scalars(select(ApiKey).where(ApiKey.workspace_id == ws, ApiKey.id.in_(key_ids)))
    return {k.id: k for k in rows}


async def user(db: Database, user_id: uuid.UUID) -> User:
    async with db.system() as s:
        return await s.get_one(User, user_id)
