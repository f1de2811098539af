"""Expected failures of mutations, as the payloads' `userErrors`; the rest are GraphQL errors with
`extensions.code` (see `schema.extensions.ErrorPolicy`)."""

from __future__ import annotations

import strawberry

from app.services.errors import Problem


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
