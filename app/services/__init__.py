"""Domain services: the rules and the SQL, one module per domain. They know nothing of GraphQL.

Each function takes an `AsyncSession` (scoped to the caller's workspace, see `app.db.engine`)
and the caller's `Principal`; expected failures raise `Invalid` (mutation userErrors), the rest
raise the other `ServiceError`s, which the API maps to GraphQL error codes. What a write
changes outside PostgreSQL (workspace events, job messages, the credentials epoch) it registers
on the session with `effects`, to happen once the caller's transaction has committed.
"""
