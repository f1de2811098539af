"""Running a mutation, the same way for every one of them: the service call in one transaction,
its effects once committed (`app.services.effects`), and its payload.

An `Invalid` (an expected failure: validation, conflict, not found) rolls the transaction back
and answers the payload's `userErrors`; any other error rolls back and propagates, as a GraphQL
error with its code (see `schema.extensions.ErrorPolicy`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Self, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.services import effects
from app.services.errors import Invalid
from schema.context import Context, Info
from schema.errors import UserError


class Payload:
    """What every mutation payload type is: built by `of` from what its service call returned,
    or refused with the user errors alone."""

    @classmethod
    def of(cls, result: Any) -> Self:
        raise NotImplementedError(f"{cls.__name__}.of")

    @classmethod
    def refused(cls, refusal: Invalid) -> Self:
        return cls(user_errors=[UserError.of(p) for p in refusal.problems])  # type: ignore[call-arg]


P = TypeVar("P", bound=Payload)


async def run_mutation(
    info: Info, payload: type[P], call: Callable[[AsyncSession], Awaitable[Any]], *, system: bool = False,
) -> P:
    """`payload.of(await call(session))`, the session's transaction committed and its effects run.

    The session is the operation's (scoped to the caller's workspace), or with `system` a
    session of its own as the owner, for the mutations that precede any workspace: sign-up,
    login, refreshing a token, a new workspace."""
    context = info.context
    try:
        if system:
            async with context.services.db.system() as session:
                result = await _committed(context, session, call)
        else:
            async with context.db() as session:
                result = await _committed(context, session, call)
    except Invalid as refusal:
        return payload.refused(refusal)
    return payload.of(result)


async def _committed(context: Context, session: AsyncSession, call: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
    try:
        result = await call(session)
        await effects.commit(session, context.services)
    except BaseException:
        await session.rollback()
        raise
    return result
