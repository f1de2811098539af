"""Invitations are claimed with a token: a password-less invited account is no longer claimable
by whoever signs up first with its email address.

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE members ADD COLUMN invitation_token_hash text")
    op.execute("CREATE UNIQUE INDEX ix_members_invitation_token ON members (invitation_token_hash)")


def downgrade() -> None:
    op.execute("ALTER TABLE members DROP COLUMN invitation_token_hash")
