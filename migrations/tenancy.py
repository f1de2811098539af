"""Row-level security for tenant tables, shared by the revisions.

Revisions run this code as it is today on every fresh database, so change it only by adding:
what an old revision did must stay what it does.
"""

import os

from alembic import op

APP_ROLE = os.environ.get("CTXGRAPH_APP_ROLE", "ctxgraph_app")
"The transaction's workspace; NULL (so no row matches) when unset or reset to ''."
WORKSPACE_OF_TRANSACTION = "nullif(current_setting('app.workspace_id', true), '')::uuid"


def enable_tenant_rls(table: str) -> None:
    """The second wall behind the service layer's own `workspace_id` filters: the app role sees
    and writes only the transaction's workspace; the owner running migrations sees all."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} TO {APP_ROLE} "
        f"USING (workspace_id = {WORKSPACE_OF_TRANSACTION}) "
        f"WITH CHECK (workspace_id = {WORKSPACE_OF_TRANSACTION})"
    )
    op.execute(f"CREATE POLICY owner_access ON {table} TO CURRENT_USER USING (true) WITH CHECK (true)")
    op.execute(f"CREATE INDEX ix_{table}_workspace ON {table} (workspace_id)")
