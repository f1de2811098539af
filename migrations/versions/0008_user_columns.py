"""The app role reads users without their password hashes.

Revision ID: 0008
Revises: 0001
Create Date: 2026-11-22

Requests read users (a workspace's members) and create them (inviting an address with no
account), as the app role; only sign-up and login, as the owner, touch password hashes. The app
role now holds column privileges that leave `password_hash` out, and reads `has_password`, a
generated column, where it needs to know whether an account has been claimed.
"""

from alembic import op
from tenancy import APP_ROLE

revision = "0008"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE users ADD COLUMN has_password boolean GENERATED ALWAYS AS (password_hash IS NOT NULL) STORED")
    op.execute(f"REVOKE ALL ON users FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT (id, email, name, has_password, created_at) ON users TO {APP_ROLE}")
    op.execute(f"GRANT INSERT (id, email) ON users TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON users FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON users TO {APP_ROLE}")
    op.execute("ALTER TABLE users DROP COLUMN has_password")
