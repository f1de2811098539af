"""Foundation: users, workspaces, members, refresh tokens, API keys, sources; the app role and RLS.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Request transactions run as the app role (NOLOGIN, NOBYPASSRLS, not an owner). Tenant tables
have FORCE ROW LEVEL SECURITY with two policies: the app role sees only the rows of the
workspace set in `app.workspace_id` for the transaction (none when it is unset), and the owner
that ran this migration (auth look-ups, maintenance) sees all.
"""

from alembic import op
from tenancy import APP_ROLE, enable_tenant_rls

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TENANT_TABLES = ("members", "api_keys", "sources")


def upgrade() -> None:
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            CREATE ROLE {APP_ROLE} NOLOGIN NOBYPASSRLS;
          END IF;
        END $$;
        """
    )
    # A non-superuser owner needs membership to SET ROLE; a superuser has it already.
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            EXECUTE format('GRANT %I TO %I', '{APP_ROLE}', current_user);
          END IF;
        END $$;
        """
    )

    op.execute(
        """
        CREATE TABLE users (
          id uuid PRIMARY KEY,
          email text NOT NULL UNIQUE CHECK (email = lower(email)),
          name text,
          password_hash text,
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE workspaces (
          id uuid PRIMARY KEY,
          name text NOT NULL,
          slug text NOT NULL UNIQUE,
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE members (
          id uuid PRIMARY KEY,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
          role text NOT NULL CHECK (role IN ('OWNER', 'ADMIN', 'MEMBER', 'VIEWER')),
          status text NOT NULL CHECK (status IN ('INVITED', 'ACTIVE')),
          created_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (workspace_id, user_id)
        );
        CREATE INDEX ix_members_user ON members (user_id);
        CREATE TABLE refresh_tokens (
          id uuid PRIMARY KEY,
          user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
          family_id uuid NOT NULL,
          token_hash text NOT NULL UNIQUE,
          expires_at timestamptz NOT NULL,
          used_at timestamptz,
          revoked_at timestamptz,
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ix_refresh_tokens_family ON refresh_tokens (family_id);
        CREATE TABLE api_keys (
          id uuid PRIMARY KEY,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          name text NOT NULL,
          prefix text NOT NULL,
          key_hash text NOT NULL UNIQUE,
          scopes text[] NOT NULL,
          created_by_id uuid REFERENCES members(id) ON DELETE SET NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          last_used_at timestamptz,
          expires_at timestamptz,
          revoked_at timestamptz
        );
        CREATE TABLE sources (
          id uuid PRIMARY KEY,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          name text NOT NULL,
          display_name text NOT NULL,
          provider text NOT NULL
            CHECK (provider IN ('API', 'FILE', 'IMAP', 'GOOGLE_WORKSPACE', 'MICROSOFT_365')),
          status text NOT NULL CHECK (status IN ('ACTIVE', 'PAUSED', 'ERROR')),
          config jsonb NOT NULL DEFAULT '{}'::jsonb,
          credentials_encrypted bytea,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          last_sync_started_at timestamptz,
          last_sync_finished_at timestamptz,
          last_sync_status_message text,
          UNIQUE (workspace_id, name)
        );
        """
    )
    # Keyset pagination orders by (created_at, id) within a workspace.
    op.execute("CREATE INDEX ix_sources_created ON sources (workspace_id, created_at, id)")
    op.execute("CREATE INDEX ix_api_keys_created ON api_keys (workspace_id, created_at, id)")
    op.execute("CREATE INDEX ix_members_created ON members (workspace_id, created_at, id)")

    for table in TENANT_TABLES:
        enable_tenant_rls(table)

    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}")
    op.execute(f"REVOKE ALL ON alembic_version FROM {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP TABLE sources, api_keys, refresh_tokens, members, workspaces, users")
