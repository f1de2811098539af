"""Errors services raise; each maps to one `extensions.code` or to mutation `userErrors`."""

from __future__ import annotations

from dataclasses import dataclass


class ServiceError(Exception):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthenticated(ServiceError):
    code = "UNAUTHENTICATED"


class Forbidden(ServiceError):
    code = "FORBIDDEN"


class NotFound(ServiceError):
    code = "NOT_FOUND"


class BadInput(ServiceError):
    code = "BAD_USER_INPUT"


class TooComplex(ServiceError):
    """A question past the work a server grants one request; the message says what to narrow."""

    code = "QUERY_TOO_COMPLEX"


class RateLimited(ServiceError):
    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Problem:
    """One expected failure of a mutation; `code` is one of the contract's UserError codes."""

    message: str
    code: str = "INVALID"
    field: tuple[str, ...] | None = None


class Invalid(ServiceError):
    """A mutation refused with reasons the caller can act on; nothing was written."""

    code = "BAD_USER_INPUT"

    def __init__(self, *problems: Problem) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = list(problems)


def not_found(what: str, field: tuple[str, ...] | None = ("id",)) -> Invalid:
    """The same answer for an id that does not exist and one of another workspace."""
    return Invalid(Problem(f"{what} not found", "NOT_FOUND", field))
