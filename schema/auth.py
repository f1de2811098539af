"""Sign-up, login, tokens, the viewer, and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.db import models
from app.ratelimit import FailureBudget
from app.services import auth as service
from app.services.access import Principal
from app.services.errors import Unauthenticated
from schema.context import Context, Info
from schema.errors import UserError
from schema.mutations import Payload, run_mutation
from schema.node import Node, global_id, node_loader, uuid_of
from schema.pagination import Connection, page_args
from schema.workspaces import User, Workspace


@strawberry.type
class ApiKey(Node):
    id: strawberry.ID
    name: str
    prefix: str = strawberry.field(
        description="First characters of the key, for recognising it; the full key is only ever returned once."
    )
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: models.ApiKey) -> ApiKey:
        return cls(
            id=global_id("ApiKey", row.id), name=row.name, prefix=row.prefix, scopes=list(row.scopes),
            created_at=row.created_at, last_used_at=row.last_used_at, expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )


node_loader("ApiKey", service.api_keys_by_id, ApiKey.of)


@strawberry.type
class Viewer:
    _principal: strawberry.Private[Principal]

    @strawberry.field
    def scopes(self) -> list[str]:
        return sorted(self._principal.scopes)

    @strawberry.field
    async def user(self, info: Info) -> User | None:
        if self._principal.user_id is None:
            return None
        return User.of(await service.user(info.context.services.db, self._principal.user_id))

    @strawberry.field(description="Set when the request authenticated with an API key.")
    async def api_key(self, info: Info) -> ApiKey | None:
        if self._principal.api_key_id is None:
            return None
        row = await info.context.loaders.load(service.api_keys_by_id, self._principal.api_key_id)
        return ApiKey.of(row) if row else None

    @strawberry.field
    async def workspaces(self, info: Info) -> list[Workspace]:
        rows = await service.viewer_workspaces(info.context.services.db, self._principal)
        return [Workspace.of(w, role) for w, role in rows]


def viewer_of(info: Info) -> Viewer:
    p = info.context.principal
    if not p.authenticated:
        raise Unauthenticated("Authentication required")
    return Viewer(_principal=p)


@strawberry.input
class SignUpInput:
    email: str
    password: str = strawberry.field(description=f"The password: {service.PASSWORD_RULE}.")
    name: str | None = None
    workspace_name: str
    invitation_token: str | None = strawberry.field(
        default=None, description="Claims an invitation made to this address before it had an account."
    )


@strawberry.input
class LoginInput:
    email: str
    password: str


@strawberry.type
class AuthPayload(Payload):
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: datetime | None = None
    viewer: Viewer | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, outcome: service.Session) -> AuthPayload:
        return cls(
            access_token=outcome.access_token, refresh_token=outcome.refresh_token, expires_at=outcome.expires_at,
            viewer=Viewer(_principal=Principal(user_id=outcome.user.id)),
        )


@strawberry.input
class CreateApiKeyInput:
    name: str
    scopes: list[str]
    expires_at: datetime | None = None


@strawberry.type
class ApiKeySecretPayload(Payload):
    api_key: ApiKey | None = None
    secret: str | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, outcome: tuple[models.ApiKey, str]) -> ApiKeySecretPayload:
        return cls(api_key=ApiKey.of(outcome[0]), secret=outcome[1])


@strawberry.type
class ApiKeyPayload(Payload):
    api_key: ApiKey | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, key: models.ApiKey) -> ApiKeyPayload:
        return cls(api_key=ApiKey.of(key))


@strawberry.type
class AuthQueries:
    @strawberry.field
    def viewer(self, info: Info) -> Viewer:
        return viewer_of(info)

    @strawberry.field
    async def api_keys(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
    ) -> Connection[ApiKey]:
        async with info.context.db() as s:
            page = await service.list_api_keys(s, info.context.principal, page_args(first, after, last, before))
        return Connection.of(page, ApiKey.of)


@strawberry.type
class AuthMutations:
    @strawberry.mutation
    async def sign_up(self, info: Info, input: SignUpInput) -> AuthPayload:
        settings = info.context.services.settings
        return await run_mutation(info, AuthPayload, lambda s: service.sign_up(
            s, settings, email=input.email, password=input.password, name=input.name,
            workspace_name=input.workspace_name, invitation_token=input.invitation_token,
        ), system=True)

    @strawberry.mutation
    async def login(self, info: Info, input: LoginInput) -> AuthPayload:
        ctx = info.context
        return await run_mutation(info, AuthPayload, lambda s: service.login(
            s, ctx.services.settings, email=input.email, password=input.password, **_failure_budget(ctx)
        ), system=True)

    @strawberry.mutation
    async def refresh_token(self, info: Info, refresh_token: str) -> AuthPayload:
        ctx = info.context
        return await run_mutation(info, AuthPayload, lambda s: service.refresh(
            s, ctx.services.settings, refresh_token, **_failure_budget(ctx)
        ), system=True)

    @strawberry.mutation(description="The payload's secret is the only time the full key is returned.")
    async def create_api_key(self, info: Info, input: CreateApiKeyInput) -> ApiKeySecretPayload:
        p = info.context.principal
        return await run_mutation(info, ApiKeySecretPayload, lambda s: service.create_api_key(
            s, p, name=input.name, scopes=input.scopes, expires_at=input.expires_at
        ))

    @strawberry.mutation
    async def rotate_api_key(self, info: Info, id: strawberry.ID) -> ApiKeySecretPayload:
        p = info.context.principal
        return await run_mutation(info, ApiKeySecretPayload, lambda s: service.rotate_api_key(s, p, uuid_of(id, "ApiKey")))

    @strawberry.mutation
    async def revoke_api_key(self, info: Info, id: strawberry.ID) -> ApiKeyPayload:
        p = info.context.principal
        return await run_mutation(info, ApiKeyPayload, lambda s: service.revoke_api_key(s, p, uuid_of(id, "ApiKey")))


def _failure_budget(ctx: Context) -> dict[str, Any]:
    """What the login and refresh services count failed attempts against, and where from."""
    client = ctx.request.client
    return {"failures": FailureBudget.of(ctx.services.redis, ctx.services.settings),
            "client": client.host if client else "unknown"}
