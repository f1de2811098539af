"""Object types, records (with versions and typed field values), documents (versions, chunks, links).

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-22

Why custom fields are indexed through `record_values` and not expression or GIN indexes on the
jsonb: under row-level security, PostgreSQL uses a user's condition as an index condition only
if every function in it is LEAKPROOF, and the jsonb operators (`->`, `@>`, `?`) and `numeric`
comparisons are not: with RLS on, an expression or GIN index on `records.fields` is never used
for a filter (checked with EXPLAIN as the app role). So every scalar custom value is mirrored into
one typed row per (record, field): numbers and dates in float8/timestamptz columns, short strings
in text; their comparison operators are leakproof, so btree indexes on (object_type_id, field,
value, record_id) serve both typed filters and keyset ordering at any depth. Absent values are
stored as the largest value (+Infinity, 9999-12-31) so that ordering keys are never NULL.

Full-text search has the same problem (`@@` is not leakproof): the GIN indexes are reached
through SECURITY DEFINER functions owned by the table owner, which apply the tenant predicate of
the policies themselves (`app.workspace_id` of the transaction, failing closed when unset).
"""

from alembic import op
from tenancy import APP_ROLE, WORKSPACE_OF_TRANSACTION, enable_tenant_rls

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None

TENANT_TABLES = (
    "object_types", "records", "record_versions", "record_values",
    "documents", "document_versions", "document_chunks", "document_links",
)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE object_types (
          id uuid PRIMARY KEY,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          name text NOT NULL,
          display_name text NOT NULL,
          source_id uuid REFERENCES sources(id) ON DELETE SET NULL,
          field_definitions jsonb NOT NULL DEFAULT '[]'::jsonb,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (workspace_id, name)
        );
        CREATE INDEX ix_object_types_created ON object_types (workspace_id, created_at, id);

        CREATE TABLE records (
          id uuid PRIMARY KEY,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          object_type_id uuid NOT NULL REFERENCES object_types(id) ON DELETE RESTRICT,
          source_id uuid REFERENCES sources(id) ON DELETE SET NULL,
          remote_id text,
          name text NOT NULL,
          display_name text,
          fields jsonb NOT NULL DEFAULT '{}'::jsonb,
          version integer NOT NULL DEFAULT 1,
          search_text text NOT NULL DEFAULT '',
          search_vector tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('english', name || ' ' || coalesce(display_name, '')), 'A')
            || setweight(to_tsvector('english', search_text), 'B')
          ) STORED,
          created_by_id uuid REFERENCES members(id) ON DELETE SET NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          deleted_at timestamptz
        );
        CREATE UNIQUE INDEX ux_records_remote ON records (object_type_id, source_id, remote_id)
          WHERE remote_id IS NOT NULL;
        CREATE INDEX ix_records_type_created ON records (workspace_id, object_type_id, created_at, id);
        CREATE INDEX ix_records_type_updated ON records (workspace_id, object_type_id, updated_at, id);
        CREATE INDEX ix_records_type_name ON records (workspace_id, object_type_id, name, id);
        CREATE INDEX ix_records_created ON records (workspace_id, created_at, id);
        CREATE INDEX ix_records_search ON records USING gin (search_vector);

        CREATE TABLE record_values (
          record_id uuid NOT NULL REFERENCES records(id) ON DELETE CASCADE,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          object_type_id uuid NOT NULL,
          field text NOT NULL,
          num double precision,
          at timestamptz,
          txt text,
          PRIMARY KEY (record_id, field)
        );
        CREATE INDEX ix_record_values_num ON record_values (object_type_id, field, num, record_id);
        CREATE INDEX ix_record_values_at ON record_values (object_type_id, field, at, record_id);
        CREATE INDEX ix_record_values_txt ON record_values (object_type_id, field, txt, record_id);

        CREATE TABLE record_versions (
          id uuid PRIMARY KEY,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          record_id uuid NOT NULL REFERENCES records(id) ON DELETE CASCADE,
          version integer NOT NULL,
          action text NOT NULL,
          name text NOT NULL,
          display_name text,
          fields jsonb NOT NULL,
          changed_fields text[] NOT NULL DEFAULT '{}',
          changed_by_id uuid REFERENCES members(id) ON DELETE SET NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (record_id, version)
        );

        CREATE TABLE documents (
          id uuid PRIMARY KEY,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          title text NOT NULL,
          content_type text NOT NULL,
          url text,
          content text,
          content_hash text,
          status text NOT NULL CHECK (status IN ('PENDING', 'PROCESSING', 'READY', 'FAILED')),
          error text,
          tags text[] NOT NULL DEFAULT '{}',
          metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
          version integer NOT NULL DEFAULT 1,
          source_id uuid REFERENCES sources(id) ON DELETE SET NULL,
          remote_id text,
          author_id uuid,
          created_by_id uuid REFERENCES members(id) ON DELETE SET NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          deleted_at timestamptz
        );
        CREATE UNIQUE INDEX ux_documents_hash ON documents (workspace_id, content_hash)
          WHERE content_hash IS NOT NULL AND deleted_at IS NULL;
        CREATE UNIQUE INDEX ux_documents_remote ON documents (workspace_id, source_id, remote_id)
          WHERE remote_id IS NOT NULL;
        CREATE INDEX ix_documents_created ON documents (workspace_id, created_at, id);
        CREATE INDEX ix_documents_updated ON documents (workspace_id, updated_at, id);
        CREATE INDEX ix_documents_title ON documents (workspace_id, title, id);

        CREATE TABLE document_versions (
          id uuid PRIMARY KEY,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          document_id uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
          version integer NOT NULL,
          title text NOT NULL,
          url text,
          content text,
          content_hash text,
          created_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (document_id, version)
        );

        CREATE TABLE document_chunks (
          id uuid PRIMARY KEY,
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          document_id uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
          ordinal integer NOT NULL,
          content text NOT NULL,
          -- the document's title on the first chunk, so that it weighs in (class A) once
          heading text NOT NULL DEFAULT '',
          search_vector tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('english', heading), 'A') || setweight(to_tsvector('english', content), 'B')
          ) STORED,
          UNIQUE (document_id, ordinal)
        );
        CREATE INDEX ix_document_chunks_search ON document_chunks USING gin (search_vector);

        CREATE TABLE document_links (
          workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
          document_id uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
          node_type text NOT NULL,
          node_id uuid NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (document_id, node_type, node_id)
        );
        CREATE INDEX ix_document_links_node ON document_links (workspace_id, node_type, node_id);
        """
    )
    for table in TENANT_TABLES:
        enable_tenant_rls(table)

    # Index-assisted full-text matching for the app role (see the module docstring): the
    # workspace comes from the transaction, exactly as in the policies.
    op.execute(
        f"""
        CREATE FUNCTION ctxgraph_record_matches(q tsquery)
        RETURNS TABLE (record_id uuid, rank real)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
          SELECT r.id, ts_rank_cd(r.search_vector, q, 1)
          FROM records r
          WHERE r.search_vector @@ q AND r.workspace_id = {WORKSPACE_OF_TRANSACTION}
        $$;
        CREATE FUNCTION ctxgraph_chunk_matches(q tsquery)
        RETURNS TABLE (chunk_id uuid, document_id uuid, rank real)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
          SELECT c.id, c.document_id, ts_rank_cd(c.search_vector, q, 1)
          FROM document_chunks c
          WHERE c.search_vector @@ q AND c.workspace_id = {WORKSPACE_OF_TRANSACTION}
        $$;
        REVOKE ALL ON FUNCTION ctxgraph_record_matches(tsquery), ctxgraph_chunk_matches(tsquery) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION ctxgraph_record_matches(tsquery), ctxgraph_chunk_matches(tsquery) TO {APP_ROLE};
        """
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TENANT_TABLES)} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION ctxgraph_record_matches(tsquery), ctxgraph_chunk_matches(tsquery)")
    op.execute(f"DROP TABLE {', '.join(reversed(TENANT_TABLES))}")
