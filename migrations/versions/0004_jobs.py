"""Jobs: background work (imports, source syncs, recomputes), its payload and per-item outcomes.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-22

The broker message carries only a job id: everything else lives here, so any worker can take
any job and a crash loses nothing. `checkpoint` is the number of items done; a batch's upserts,
its item outcomes and the new checkpoint commit together.
"""

from alembic import op
from tenancy import APP_ROLE, enable_tenant_rls

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None

TENANT_TABLES = ("jobs", "job_payload_chunks", "job_items")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE jobs (
          id uuid PRIMARY KEY,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          kind text NOT NULL CHECK (kind IN ('IMPORT', 'SYNC_SOURCE', 'RECOMPUTE_RELATIONSHIPS', 'EXPORT')),
          status text NOT NULL CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
          source_id uuid REFERENCES sources(id) ON DELETE SET NULL,
          created_by_id uuid REFERENCES members(id) ON DELETE SET NULL,
          user_id uuid REFERENCES users(id) ON DELETE SET NULL,
          api_key_id uuid REFERENCES api_keys(id) ON DELETE SET NULL,
          retry_of_id uuid REFERENCES jobs(id) ON DELETE SET NULL,
          target text,
          adapter text,
          object_type_id uuid,
          params jsonb NOT NULL DEFAULT '{}'::jsonb,
          payload_job_id uuid,
          payload_format text,
          total integer,
          processed integer NOT NULL DEFAULT 0,
          successful integer NOT NULL DEFAULT 0,
          failed integer NOT NULL DEFAULT 0,
          skipped integer NOT NULL DEFAULT 0,
          counts jsonb NOT NULL DEFAULT '{}'::jsonb,
          checkpoint integer NOT NULL DEFAULT 0,
          cancel_requested boolean NOT NULL DEFAULT false,
          attempts integer NOT NULL DEFAULT 0,
          error text,
          message_id text,
          enqueued_at timestamptz,
          heartbeat_at timestamptz,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          started_at timestamptz,
          finished_at timestamptz
        );
        CREATE INDEX ix_jobs_created ON jobs (workspace_id, created_at, id);
        CREATE INDEX ix_jobs_unfinished ON jobs (status, heartbeat_at) WHERE status IN ('PENDING', 'RUNNING');
        CREATE TABLE job_payload_chunks (
          job_id uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          seq integer NOT NULL,
          data bytea NOT NULL,
          PRIMARY KEY (job_id, seq)
        );
        CREATE TABLE job_items (
          job_id uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          idx integer NOT NULL,
          remote_id text,
          status text NOT NULL CHECK (status IN ('SUCCESS', 'FAILED', 'SKIPPED')),
          outcome text NOT NULL CHECK (outcome IN ('CREATED', 'UPDATED', 'SKIPPED', 'DELETED', 'FAILED')),
          node_type text,
          node_id uuid,
          error text,
          PRIMARY KEY (job_id, idx)
        );
        CREATE INDEX ix_job_items_status ON job_items (job_id, status, idx);
        """
    )
    for table in TENANT_TABLES:
        enable_tenant_rls(table)
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TENANT_TABLES)} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP TABLE job_items, job_payload_chunks, jobs")
