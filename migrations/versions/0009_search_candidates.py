"""Search ranks a bounded set of candidates per type, each found through an index.

Revision ID: 0009
Revises: 0003, 0006
Create Date: 2026-11-23

`search` ranked every match: a common word meant `ts_rank_cd` over thousands of records and
chunks (each chunk's vector detoasted), and contacts had no index at all for it: their
English, name-weighted vector was computed on the fly for every live contact of the workspace
(10,000 contacts: over 100 ms a request, whatever the word).

Contacts now store that vector (`ranked_vector`, exactly the expression `search` computed, beside
`search_vector`, the 'simple' one the contact list's `search:` filter reads) with a GIN index of
live contacts. Three SECURITY DEFINER functions, like those of 0003 (`@@` is not leakproof, so
under row-level security the app role's planner may not use a GIN index), return at most `cap`
live matches of the transaction's workspace, in the order the index yields them (the bitmap
scan stops at `cap`), and rank only those. Their bodies are planned without the query's value
(a parameter), so the planner cannot tell how selective it is and could prefer a scan of the
table; `enable_seqscan = off` inside the functions leaves it the word's GIN index or the
workspace's btree (a small workspace in a large table is cheaper through the latter), both
bounded by what they find, where a scan grows with every tenant's rows. The workspace is read
once per call (an InitPlan), not once per row.
The functions of 0003 stay: the lists' `search:` filters want every match.

Ranking a chunk reads its whole vector, about 1.5 kB: stored out of line (TOAST), that is an
index look-up and more pages per candidate, twice the cost of the rank itself. Chunk vectors are
now kept in the row (`STORAGE MAIN`; a chunk's row stays well under a page). This changes the
chunks written from now on; existing ones keep their out-of-line vectors until rewritten.
"""

from alembic import op
from tenancy import APP_ROLE, WORKSPACE_OF_TRANSACTION

revision = "0009"
down_revision = ("0003", "0006")
branch_labels = None
depends_on = None

FUNCTIONS = ("ctxgraph_contact_candidates(tsquery, integer)", "ctxgraph_record_candidates(tsquery, integer)",
             "ctxgraph_chunk_candidates(tsquery, integer)")


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE contacts ADD COLUMN ranked_vector tsvector GENERATED ALWAYS AS (
          setweight(to_tsvector('english', full_name), 'A')
          || to_tsvector('english', full_name || ' ' || coalesce(email, '') || ' ' || coalesce(company, '') || ' '
                                    || coalesce(title, '') || ' ' || coalesce(city, ''))
        ) STORED;
        CREATE INDEX ix_contacts_live_ranked ON contacts USING gin (ranked_vector) WHERE deleted_at IS NULL;
        ALTER TABLE document_chunks ALTER COLUMN search_vector SET STORAGE MAIN;
        """
    )
    settings = "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET enable_seqscan = off"
    op.execute(
        f"""
        CREATE FUNCTION ctxgraph_contact_candidates(q tsquery, cap integer)
        RETURNS TABLE (contact_id uuid, rank real) {settings} AS $$
          SELECT c.id, ts_rank_cd(c.ranked_vector, q, 1)
          FROM contacts c
          WHERE c.ranked_vector @@ q AND c.deleted_at IS NULL AND c.workspace_id = (SELECT {WORKSPACE_OF_TRANSACTION})
          LIMIT cap
        $$;
        CREATE FUNCTION ctxgraph_record_candidates(q tsquery, cap integer)
        RETURNS TABLE (record_id uuid, rank real) {settings} AS $$
          SELECT r.id, ts_rank_cd(r.search_vector, q, 1)
          FROM records r
          WHERE r.search_vector @@ q AND r.deleted_at IS NULL AND r.workspace_id = (SELECT {WORKSPACE_OF_TRANSACTION})
          LIMIT cap
        $$;
        CREATE FUNCTION ctxgraph_chunk_candidates(q tsquery, cap integer)
        RETURNS TABLE (chunk_id uuid, document_id uuid, rank real) {settings} AS $$
          SELECT c.id, c.document_id, ts_rank_cd(c.search_vector, q, 1)
          FROM document_chunks c JOIN documents d ON d.id = c.document_id
          WHERE c.search_vector @@ q AND d.deleted_at IS NULL AND c.workspace_id = (SELECT {WORKSPACE_OF_TRANSACTION})
          LIMIT cap
        $$;
        REVOKE ALL ON FUNCTION {", ".join(FUNCTIONS)} FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION {", ".join(FUNCTIONS)} TO {APP_ROLE};
        """
    )


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {', '.join(FUNCTIONS)}")
    op.execute("ALTER TABLE document_chunks ALTER COLUMN search_vector SET STORAGE EXTENDED")
    op.execute("ALTER TABLE contacts DROP COLUMN ranked_vector")  # drops its index too
