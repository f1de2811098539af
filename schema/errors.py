"""Mutation outcomes: expected failures become `userErrors`, nothing written; the rest are
GraphQL errors with `extensions.code` (see `schema.extensions.ErrorPolicy`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from app.services.errors import Invalid, Problem
from schema.context import Info

T = TypeVar("T")


@strawberry.type(description="An expected failure of a mutation (validation, conflict, not found). Unexpected failures are GraphQL errors.")
class UserError:
    field: list[str] | None = strawberry.field(
        description='Path to the input field at fault, e.g. ["input", "fields", "priority"].'
    )
    message: str
    code: str = strawberry.field(
        description="Stable, machine-readable: INVALID, REQUIRED, NOT_FOUND, CONFLICT, DUPLICATE, FORBIDDEN, LIMIT."
    )

    @classmethod
    def of(cls, problem: Problem) -> UserError:
        return cls(field=list(problem.field) if problem.field else None, message=problem.message, code=problem.code)


async def mutate(info: Info, action: Callable[[AsyncSession], Awaitable[T]]) -> T | list[UserError]:
    """Runs `action` in the operation's session and commits it; on `Invalid`, rolls back and
    returns the user errors. Other errors roll back and propagate."""
    context = info.context
    async with context.db() as session:
        try:
            result = await action(session)
            await session.commit()
        except Invalid as refused:
            await session.rollback()
            return [UserError.of(p) for p in refused.problems]
        except BaseException:
            await session.rollback()
            raise
    await context.run_after_commit()
    return result


async def refused(action: Awaitable[T]) -> T | list[UserError]:
    """For mutations whose service manages its own transaction (sign-up, login, ...)."""
    try:
        return await action
    except Invalid as refusal:
        return [UserError.of(p) for p in refusal.problems]
