"""Workspaces, users and members."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import datetime
from enum import Enum

import strawberry

from app.db import models
from app.services import workspaces as service
from schema import plan
from schema.context import Info
from schema.errors import UserError
from schema.mutations import Payload, run_mutation
from schema.node import Node, global_id, node_loader, register_node, uuid_of
from schema.pagination import Connection, page_args


@strawberry.enum
class MemberRole(Enum):
    OWNER = "OWNER"
    ADMIN = "ADMIN"
    MEMBER = "MEMBER"
    VIEWER = "VIEWER"


@strawberry.type
class User(Node):
    id: strawberry.ID
    email: str
    name: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: models.User) -> User:
        return cls(id=global_id("User", row.id), email=row.email, name=row.name, created_at=row.created_at)


@strawberry.type
class Workspace(Node):
    id: strawberry.ID
    name: str
    slug: str
    created_at: datetime
    viewer_role: MemberRole | None

    @classmethod
    def of(cls, row: models.Workspace, role: str | None) -> Workspace:
        return cls(
            id=global_id("Workspace", row.id), name=row.name, slug=row.slug, created_at=row.created_at,
            viewer_role=MemberRole(role) if role else None,
        )


@strawberry.type
class Member(Node):
    id: strawberry.ID
    role: MemberRole
    status: str
    created_at: datetime
    _user_id: strawberry.Private[object]

    @strawberry.field
    async def user(self, info: Info) -> User:
        return User.of(await info.context.loaders.load(service.users_of_workspace, self._user_id))

    @classmethod
    def of(cls, row: models.Member) -> Member:
        return cls(
            id=global_id("Member", row.id), role=MemberRole(row.role), status=row.status,
            created_at=row.created_at, _user_id=row.user_id,
        )


node_loader("Member", service.members_by_id, Member.of)
node_loader("User", service.users_of_workspace, User.of)


plan.declare(User, models.User.__table__, scope=service.members_visible, visible=lambda row, ws: service.is_member_sql(row.c.id, ws))
plan.declare(Member, models.Member.__table__, scope=service.members_visible,
             user=plan.Reference(lambda row, scope: row.c.user_id, "User"))
plan.declare_root("members", Member, lambda p, a: service.members_query(p))
async def _load_workspace(info: Info, id_: object) -> Workspace | None:
    row = await info.context.loaders.load(service.visible_workspaces, id_)
    return Workspace.of(row, info.context.principal.role) if row else None


register_node("Workspace", _load_workspace)


@strawberry.input
class CreateWorkspaceInput:
    name: str


@strawberry.input
class InviteMemberInput:
    email: str
    role: MemberRole


@strawberry.type
class WorkspacePayload(Payload):
    workspace: Workspace | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, workspace: models.Workspace) -> WorkspacePayload:
        return cls(workspace=Workspace.of(workspace, "OWNER"))


@strawberry.type
class MemberPayload(Payload):
    member: Member | None = None
    invitation_token: str | None = strawberry.field(default=None, description=(
        "Set when inviting an address with no account yet: the invitee signs up with it "
        "(SignUpInput.invitationToken) to claim the invitation. Shown once."
    ))
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, outcome: models.Member | tuple[models.Member, str | None]) -> MemberPayload:
        member, token = outcome if isinstance(outcome, tuple) else (outcome, None)
        return cls(member=Member.of(member), invitation_token=token)


@strawberry.type
class DeletePayload(Payload):
    deleted_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def of(cls, deleted_id: strawberry.ID) -> DeletePayload:
        return cls(deleted_id=deleted_id)


async def deleted(type_name: str, deleting: Awaitable[uuid.UUID]) -> strawberry.ID:
    """What a delete service answers (the row's uuid) as the DeletePayload's global id."""
    return strawberry.ID(global_id(type_name, await deleting))


@strawberry.type
class WorkspaceQueries:
    @strawberry.field(description="The workspace this request is scoped to.")
    async def workspace(self, info: Info) -> Workspace:
        async with info.context.db() as s:
            row = await service.current_workspace(s, info.context.principal)
        return Workspace.of(row, info.context.principal.role)

    @strawberry.field
    async def members(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
    ) -> Connection[Member]:
        async with info.context.db() as s:
            page = await service.list_members(s, info.context.principal, page_args(first, after, last, before))
        return Connection.of(page, Member.of)


@strawberry.type
class WorkspaceMutations:
    @strawberry.mutation
    async def create_workspace(self, info: Info, input: CreateWorkspaceInput) -> WorkspacePayload:
        p = info.context.principal
        return await run_mutation(info, WorkspacePayload, lambda s: service.create_workspace(s, p, input.name), system=True)

    @strawberry.mutation
    async def invite_member(self, info: Info, input: InviteMemberInput) -> MemberPayload:
        p = info.context.principal
        return await run_mutation(info, MemberPayload, lambda s: service.invite_member(
            s, p, email=input.email, role=input.role.value
        ))

    @strawberry.mutation
    async def update_member_role(self, info: Info, id: strawberry.ID, role: MemberRole) -> MemberPayload:
        p = info.context.principal
        return await run_mutation(info, MemberPayload, lambda s: service.update_member_role(
            s, p, uuid_of(id, "Member"), role.value
        ))

    @strawberry.mutation
    async def remove_member(self, info: Info, id: strawberry.ID) -> DeletePayload:
        p = info.context.principal
        return await run_mutation(info, DeletePayload, lambda s: deleted(
            "Member", service.remove_member(s, p, uuid_of(id, "Member"))
        ))
