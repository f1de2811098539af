"""Contacts, activity, contact intelligence, relationships.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Contacts are soft-deleted; their primary email is unique among live contacts of a workspace and
(source, remote_id) is unique among all of them (imports upsert on it). Activity ids are
deterministic, and (contact, type, resource_id) is unique so recording an event twice is a no-op.
`contact_intelligence` and `contact_threads` hold the facts intelligence is derived from, kept
incrementally as activity arrives; `conversation_participants` remembers which contacts took
part in each thread / calendar event, from which the derived edges are maintained.
Relationships join any two nodes: endpoints are (type, uuid) pairs checked by the service.
"""

from alembic import op
from tenancy import APP_ROLE, enable_tenant_rls

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TENANT_TABLES = (
    "contacts", "activity_events", "contact_intelligence", "contact_threads", "conversation_participants",
    "relationships",
)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE contacts (
          id uuid PRIMARY KEY,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          full_name text NOT NULL CHECK (btrim(full_name) <> ''),
          email text CHECK (email = lower(email)),
          emails text[] NOT NULL DEFAULT '{}',
          phone text,
          title text,
          company text,
          city text,
          state text,
          tags text[] NOT NULL DEFAULT '{}',
          contact_type text,
          status text,
          owner_id uuid REFERENCES members(id) ON DELETE SET NULL,
          source_id uuid REFERENCES sources(id) ON DELETE SET NULL,
          remote_id text,
          custom_fields jsonb NOT NULL DEFAULT '{}'::jsonb,
          merged_into_id uuid REFERENCES contacts(id) ON DELETE SET NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          deleted_at timestamptz,
          search_vector tsvector GENERATED ALWAYS AS (
            to_tsvector('simple',
              coalesce(full_name, '') || ' ' || coalesce(email, '') || ' ' ||
              translate(coalesce(email, ''), '@.', '  ') || ' ' ||
              coalesce(company, '') || ' ' || coalesce(title, ''))
          ) STORED
        );
        CREATE UNIQUE INDEX ux_contacts_live_email ON contacts (workspace_id, email)
          WHERE deleted_at IS NULL AND email IS NOT NULL;
        CREATE UNIQUE INDEX ux_contacts_remote ON contacts (workspace_id, source_id, remote_id)
          NULLS NOT DISTINCT WHERE remote_id IS NOT NULL;
        CREATE INDEX ix_contacts_emails ON contacts USING gin (emails);
        CREATE INDEX ix_contacts_tags ON contacts USING gin (tags);
        CREATE INDEX ix_contacts_search ON contacts USING gin (search_vector);
        CREATE INDEX ix_contacts_created ON contacts (workspace_id, created_at, id);
        CREATE INDEX ix_contacts_updated ON contacts (workspace_id, updated_at, id);
        CREATE INDEX ix_contacts_name ON contacts (workspace_id, full_name, id);
        CREATE INDEX ix_contacts_company ON contacts (workspace_id, lower(company)) WHERE company IS NOT NULL;
        CREATE INDEX ix_contacts_domain ON contacts (workspace_id, split_part(email, '@', 2)) WHERE email IS NOT NULL;

        CREATE TABLE activity_events (
          id uuid PRIMARY KEY,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          contact_id uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
          type text NOT NULL,
          resource_id text NOT NULL,
          occurred_at timestamptz NOT NULL,
          summary text,
          participants text[] NOT NULL DEFAULT '{}',
          metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
          thread_id text,
          created_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (workspace_id, contact_id, type, resource_id)
        );
        CREATE INDEX ix_activity_timeline ON activity_events (workspace_id, contact_id, occurred_at DESC, id DESC);
        CREATE INDEX ix_activity_thread ON activity_events (workspace_id, contact_id, thread_id)
          WHERE thread_id IS NOT NULL;

        CREATE TABLE contact_intelligence (
          contact_id uuid PRIMARY KEY REFERENCES contacts(id) ON DELETE CASCADE,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          sent_count integer NOT NULL DEFAULT 0,
          received_count integer NOT NULL DEFAULT 0,
          first_contact_at timestamptz,
          last_contact_at timestamptz,
          last_sent_at timestamptz,
          last_received_at timestamptz,
          reply_count integer NOT NULL DEFAULT 0,
          response_hours_total double precision NOT NULL DEFAULT 0,
          hour_counts integer[] NOT NULL DEFAULT array_fill(0, ARRAY[24]),
          thread_count integer NOT NULL DEFAULT 0
        );
        CREATE INDEX ix_intelligence_last_contact ON contact_intelligence (workspace_id, last_contact_at);

        CREATE TABLE contact_threads (
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          contact_id uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
          thread_id text NOT NULL,
          reply_count integer NOT NULL DEFAULT 0,
          response_hours_total double precision NOT NULL DEFAULT 0,
          PRIMARY KEY (contact_id, thread_id)
        );

        CREATE TABLE conversation_participants (
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          kind text NOT NULL CHECK (kind IN ('shared_thread', 'shared_calendar_event')),
          conversation text NOT NULL,
          contact_id uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
          last_seen_at timestamptz NOT NULL,
          PRIMARY KEY (workspace_id, kind, conversation, contact_id)
        );
        CREATE INDEX ix_participants_contact ON conversation_participants (contact_id);

        CREATE TABLE relationships (
          id uuid PRIMARY KEY,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          kind text NOT NULL CHECK (btrim(kind) <> ''),
          source_type text NOT NULL,
          source_id uuid NOT NULL,
          target_type text NOT NULL,
          target_id uuid NOT NULL,
          weight double precision NOT NULL DEFAULT 0 CHECK (weight >= 0 AND weight <= 1),
          shared_thread_count integer NOT NULL DEFAULT 0,
          shared_calendar_count integer NOT NULL DEFAULT 0,
          last_seen_at timestamptz,
          is_active boolean NOT NULL DEFAULT true,
          metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
          created_at timestamptz NOT NULL DEFAULT now(),
          CHECK (NOT (source_type = target_type AND source_id = target_id)),
          UNIQUE (workspace_id, source_type, source_id, target_type, target_id, kind)
        );
        CREATE INDEX ix_relationships_source ON relationships (workspace_id, source_id, created_at, id);
        CREATE INDEX ix_relationships_target ON relationships (workspace_id, target_id, created_at, id);
        CREATE INDEX ix_relationships_created ON relationships (workspace_id, created_at, id);

        -- The DESIGN.md edge weight: min(1, ln(n+1)/ln(50)) * 0.5^(days since last seen / 90), 4 decimals.
        CREATE FUNCTION ctx_edge_weight(n integer, last_seen timestamptz) RETURNS double precision
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT CASE WHEN n IS NULL OR n <= 0 OR last_seen IS NULL THEN 0::double precision
            ELSE round((least(1.0, ln(n + 1) / ln(50))
                 * power(0.5, greatest(0, extract(epoch FROM now() - last_seen)) / 86400.0 / 90.0))::numeric, 4
                 )::double precision END
        $$;
        """
    )
    for table in TENANT_TABLES:
        enable_tenant_rls(table)
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TENANT_TABLES)} TO {APP_ROLE}")
    op.execute(f"GRANT EXECUTE ON FUNCTION ctx_edge_weight(integer, timestamptz) TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION ctx_edge_weight(integer, timestamptz)")
    op.execute(f"DROP TABLE {', '.join(reversed(TENANT_TABLES))}")
