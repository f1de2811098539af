"""The app role loses what requests never need: refresh tokens, Alembic's version table, and
the blanket grant on every future table.

Revision ID: 0007
Revises: 0001
Create Date: 2026-11-22

0001 granted the app role every table of the schema, and every table created later. Requests
never touch `refresh_tokens` (sign-up, login and refresh run as the owner) nor
`alembic_version`; each migration since grants its own tables by name. So a statement that
somehow ran as the app role can no longer read token hashes or rewrite the migration state.
"""

from alembic import op
from tenancy import APP_ROLE

revision = "0007"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f"REVOKE ALL ON refresh_tokens, alembic_version FROM {APP_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON refresh_tokens, alembic_version TO {APP_ROLE}")
