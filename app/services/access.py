"""Who is asking: a user (with a role) or an API key (with scopes), in one workspace.

Users get scopes from their role, so every check is a scope check: VIEWER reads, MEMBER reads
and writes, ADMIN and OWNER also administer (`workspace:admin` covers members and API keys).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.services.errors import BadInput, Forbidden, Unauthenticated

DOMAINS = ("contacts", "records", "documents", "sources", "jobs")
READ_SCOPES = frozenset(f"{d}:read" for d in DOMAINS)
WRITE_SCOPES = frozenset(f"{d}:write" for d in DOMAINS)
ADMIN_SCOPE = "workspace:admin"
ALL_SCOPES = READ_SCOPES | WRITE_SCOPES | {ADMIN_SCOPE}
WILDCARD = "*"

ROLES = ("VIEWER", "MEMBER", "ADMIN", "OWNER")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "VIEWER": READ_SCOPES,
    "MEMBER": READ_SCOPES | WRITE_SCOPES,
    "ADMIN": frozenset({WILDCARD}),
    "OWNER": frozenset({WILDCARD}),
}


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None
    member_id: uuid.UUID | None = None
    role: str | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None or self.api_key_id is not None

    @property
    def rate_key(self) -> str | None:
        """Requests are counted per API key or per user."""
        if self.api_key_id:
            return f"key:{self.api_key_id}"
        return f"user:{self.user_id}" if self.user_id else None

    def can(self, scope: str) -> bool:
        return WILDCARD in self.scopes or scope in self.scopes

    def require_user(self) -> uuid.UUID:
        if self.user_id is None:
            if self.api_key_id is not None:
                raise Forbidden("This operation needs a user; API keys cannot perform it")
            raise Unauthenticated("Authentication required")
        return self.user_id

    def require_workspace(self) -> uuid.UUID:
        if not self.authenticated:
            raise Unauthenticated("Authentication required")
        if self.workspace_id is None:
            raise BadInput("No workspace selected: send the X-Workspace-Id header")
        return self.workspace_id

    def require(self, scope: str) -> uuid.UUID:
        """The workspace id, once the principal is known to hold `scope` in it."""
        workspace_id = self.require_workspace()
        if not self.can(scope):
            raise Forbidden(f"Missing scope {scope}")
        return workspace_id


ANONYMOUS = Principal()


def covers(granted: frozenset[str], wanted: set[str] | frozenset[str]) -> bool:
    return WILDCARD in granted or set(wanted) <= granted
