"""Errors that mean PostgreSQL or Redis is unreachable, not that the request was wrong.

Clients get them as 503 with `Retry-After` and `extensions.code` SERVICE_UNAVAILABLE (HTTP), a
SERVICE_UNAVAILABLE error (GraphQL results), or close code 1013 "Try Again Later" (WebSockets),
and succeed again once the server answers: nothing needs a restart. Only errors of the
connection or the server's availability count; a statement timeout or a constraint violation is
the request's own outcome and is treated as before.
"""

from __future__ import annotations

import psycopg
import redis.exceptions
from sqlalchemy import exc as sa_exc

CODE = "SERVICE_UNAVAILABLE"
MESSAGE = "The service is temporarily unavailable (its database or message broker cannot be reached); retry shortly"
RETRY_AFTER_SECONDS = 5
TRY_AGAIN_LATER = 1013
"""WebSocket close code (RFC 6455's registry) for "the server cannot serve you now": graphql-ws and
Apollo's clients reconnect after it, while they give up after 1011 and after 4xxx codes."""

# SQLSTATE classes of an unavailable server: 08 connection exception, 53 insufficient resources
# (too many connections), 57P operator intervention (shutdown, crash, starting up).
_UNAVAILABLE_STATES = ("08", "53", "57P")


def is_outage(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from, says a backing server is unreachable."""
    seen = 0
    while error is not None and seen < 5:
        if _unreachable(error):
            return True
        error, seen = error.__cause__, seen + 1
    return False


def _unreachable(error: BaseException) -> bool:
    if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return True
    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(error, sa_exc.DBAPIError):
        return error.connection_invalidated or (error.orig is not None and _unreachable(error.orig))
    if isinstance(error, psycopg.OperationalError):
        state = error.sqlstate
        return state is None or state.startswith(_UNAVAILABLE_STATES)  # None: raised by the client, no server reply
    return False
