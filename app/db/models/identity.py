"""Users, workspaces, members, refresh tokens and API keys."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Computed, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models.base import Base, created_timestamp, primary_key


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = primary_key()
    email: Mapped[str] = mapped_column(unique=True)
    name: Mapped[str | None]
    """Unset for a user who was invited and has not signed up yet. Loaded only when asked for
    (`undefer`), by the owner's sessions: the app role may not read it (migration 0008)."""
    password_hash: Mapped[str | None] = mapped_column(deferred=True, deferred_raiseload=True)
    has_password: Mapped[bool] = mapped_column(Computed("password_hash IS NOT NULL"))
    created_at: Mapped[datetime] = created_timestamp()


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[uuid.UUID] = primary_key()
    name: Mapped[str]
    slug: Mapped[str] = mapped_column(unique=True)
    created_at: Mapped[datetime] = created_timestamp()


class Member(Base):
    __tablename__ = "members"

    id: Mapped[uuid.UUID] = primary_key()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str]
    "INVITED until the user's first login, then ACTIVE."
    status: Mapped[str]
    "SHA-256 of the token that claims a password-less invited account (see auth.sign_up)."
    invitation_token_hash: Mapped[str | None]
    created_at: Mapped[datetime] = created_timestamp()


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = primary_key()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    "Every token rotated from one login shares the family; reuse of a spent one revokes it."
    family_id: Mapped[uuid.UUID]
    token_hash: Mapped[str] = mapped_column(unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_timestamp()


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = primary_key()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str]
    prefix: Mapped[str]
    key_hash: Mapped[str] = mapped_column(unique=True)
    scopes: Mapped[list[str]]
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_timestamp()
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
