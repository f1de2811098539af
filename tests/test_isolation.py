"""Another workspace's data is indistinguishable from data that does not exist, and PostgreSQL
row-level security holds even when the service layer would not."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import psycopg
import pytest

from tests.conftest import Account, Api

MUTATIONS_BY_ID = {
    "Source": [
        'updateSource(id: $id, input: {displayName: "x"}) { source { id } userErrors { code field message } }',
        "deleteSource(id: $id) { deletedId userErrors { code field message } }",
        "pauseSource(id: $id) { source { id } userErrors { code field message } }",
        "resumeSource(id: $id) { source { id } userErrors { code field message } }",
    ],
    "ApiKey": [
        "rotateApiKey(id: $id) { secret userErrors { code field message } }",
        "revokeApiKey(id: $id) { apiKey { id } userErrors { code field message } }",
    ],
    "Member": [
        "updateMemberRole(id: $id, role: VIEWER) { member { id } userErrors { code field message } }",
        "removeMember(id: $id) { deletedId userErrors { code field message } }",
    ],
}


def missing_id(type_name: str) -> str:
    return base64.b64encode(f"{type_name}:{uuid.uuid4()}".encode()).decode()


@pytest.fixture
async def alices_things(api: Api, alice: Account) -> dict[str, str]:
    source = await api.data('mutation { createSource(input: {name: "private", displayName: "P", provider: API}) { source { id } } }',
                            **alice.auth)
    key = await api.data('mutation { createApiKey(input: {name: "k", scopes: ["*"]}) { apiKey { id } } }', **alice.auth)
    invited = await api.data(f'mutation {{ inviteMember(input: {{email: "m-{uuid.uuid4().hex[:6]}@example.com", role: MEMBER}}) {{ member {{ id }} }} }}',
                             **alice.auth)
    return {
        "Source": source["createSource"]["source"]["id"],
        "ApiKey": key["createApiKey"]["apiKey"]["id"],
        "Member": invited["inviteMember"]["member"]["id"],
        "User": alice.user_id,
        "Workspace": alice.workspace_id,
    }


async def test_foreign_ids_read_as_missing(api: Api, alice: Account, bob: Account, alices_things: dict[str, str]) -> None:
    for type_name, foreign in alices_things.items():
        query = "query($id: ID!) { node(id: $id) { id } nodes(ids: [$id]) { id } }"
        assert await api.data(query, {"id": foreign}, **bob.auth) == {"node": None, "nodes": [None]}, type_name
        assert await api.data(query, {"id": missing_id(type_name)}, **bob.auth) == {"node": None, "nodes": [None]}
        # Alice herself sees them all.
        assert (await api.data(query, {"id": foreign}, **alice.auth))["node"] == {"id": foreign}

    lists = "{ sources { totalCount } apiKeys { totalCount } members { totalCount edges { node { user { email } } } } }"
    seen = await api.data(lists, **bob.auth)
    assert seen["sources"]["totalCount"] == 0 and seen["apiKeys"]["totalCount"] == 0
    assert [e["node"]["user"]["email"] for e in seen["members"]["edges"]] == [bob.email]
    by_filter = await api.data("query($id: ID!) { sources(filter: {id: {eq: $id}}) { totalCount } }",
                               {"id": alices_things["Source"]}, **bob.auth)
    assert by_filter["sources"]["totalCount"] == 0


async def test_foreign_ids_in_mutations_are_not_found_and_change_nothing(
    api: Api, alice: Account, bob: Account, alices_things: dict[str, str]
) -> None:
    for type_name, mutations in MUTATIONS_BY_ID.items():
        for mutation in mutations:
            document = f"mutation($id: ID!) {{ result: {mutation} }}"
            foreign = (await api.data(document, {"id": alices_things[type_name]}, **bob.auth))["result"]
            missing = (await api.data(document, {"id": missing_id(type_name)}, **bob.auth))["result"]
            assert foreign == missing, mutation
            assert foreign["userErrors"][0]["code"] == "NOT_FOUND"
    after = await api.data("{ sources { edges { node { displayName status } } } apiKeys { edges { node { revokedAt } } } }",
                           **alice.auth)
    assert after["sources"]["edges"] == [{"node": {"displayName": "P", "status": "ACTIVE"}}]
    assert after["apiKeys"]["edges"] == [{"node": {"revokedAt": None}}]
    members = await api.data("{ members { totalCount } }", **alice.auth)
    assert members["members"]["totalCount"] == 2


def tenant_tables(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "select table_name from information_schema.columns where table_schema = 'public' "
        "and column_name = 'workspace_id' order by table_name"
    ).fetchall()
    return [r[0] for r in rows]


async def test_every_tenant_table_forces_row_level_security(settings: Any, alices_things: dict[str, str]) -> None:
    with psycopg.connect(settings.database_url) as conn:
        tables = tenant_tables(conn)
        assert {"members", "api_keys", "sources"} <= set(tables)
        for table in tables:
            enabled, forced = conn.execute(
                "select relrowsecurity, relforcerowsecurity from pg_class where relname = %s", (table,)
            ).fetchone()
            assert enabled and forced, table


async def test_app_role_without_a_workspace_sees_no_rows(settings: Any, alice: Account, alices_things: dict[str, str]) -> None:
    workspace = uuid.UUID(base64.b64decode(alice.workspace_id).decode().split(":")[1])
    with psycopg.connect(settings.database_url) as conn:
        tables = tenant_tables(conn)
        assert all(conn.execute(f"select count(*) from {t}").fetchone()[0] >= 0 for t in tables)
        assert conn.execute("select count(*) from sources").fetchone()[0] >= 1  # the owner sees them
        conn.execute(f"set role {settings.app_role}")
        for table in tables:
            assert conn.execute(f"select count(*) from {table}").fetchone()[0] == 0, table
        conn.rollback()

        with conn.transaction():
            conn.execute(f"set local role {settings.app_role}")
            conn.execute("select set_config('app.workspace_id', %s, true)", (str(workspace),))
            assert conn.execute("select count(*) from sources").fetchone()[0] == 1
            assert {r[0] for r in conn.execute("select workspace_id from members")} == {workspace}
        # The setting was transaction-local: the next transaction sees nothing again.
        conn.execute(f"set role {settings.app_role}")
        assert conn.execute("select count(*) from sources").fetchone()[0] == 0
        conn.rollback()

        # Writing into another workspace is refused by the policy's WITH CHECK.
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute(f"set local role {settings.app_role}")
            conn.execute("select set_config('app.workspace_id', %s, true)", (str(workspace),))
            conn.execute(
                "insert into sources (id, workspace_id, name, display_name, provider, status) "
                "values (gen_random_uuid(), gen_random_uuid(), 'x', 'x', 'API', 'ACTIVE')"
            )


async def test_app_role_cannot_bypass_rls(settings: Any) -> None:
    with psycopg.connect(settings.database_url) as conn:
        super_, bypass = conn.execute(
            "select rolsuper, rolbypassrls from pg_roles where rolname = %s", (settings.app_role,)
        ).fetchone()
        assert not super_ and not bypass
        owners = {r[0] for r in conn.execute("select tableowner from pg_tables where schemaname = 'public'")}
        assert settings.app_role not in owners
        for table in ("refresh_tokens", "alembic_version"):  # never a request's to read or write
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(f"set local role {settings.app_role}")
                conn.execute(f"select count(*) from {table}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():  # nor password hashes
            conn.execute(f"set local role {settings.app_role}")
            conn.execute("select password_hash from users")
        with conn.transaction():  # the rest of a user, yes: members are shown with theirs
            conn.execute(f"set local role {settings.app_role}")
            assert conn.execute("select id, email, name, has_password, created_at from users limit 1").fetchall()


async def test_a_planned_read_runs_scoped_and_leaves_nothing_behind(app: Any, alice: Account, alices_things: dict[str, str]) -> None:
    """Database.read (the planner's one round trip) runs as the app role in the workspace, sees
    only that workspace's rows, and leaves the pooled connection as the owner with no workspace."""
    db = app.state.services.db
    workspace = uuid.UUID(base64.b64decode(alice.workspace_id).decode().split(":")[1])
    probe = "select current_user as who, current_setting('app.workspace_id') as ws, (select count(*) from sources) as n"
    for _ in range(8):  # past psycopg's prepare threshold too
        (row,) = await db.read(workspace, probe, {})
        assert (row.who, row.ws, row.n) == (app.state.services.settings.app_role, str(workspace), 1)
        (row,) = await db.read(uuid.uuid4(), probe, {})
        assert row.n == 0
        after = await db.lookup("select current_user as who, current_setting('app.workspace_id', true) as ws", {})
        assert (after[0].who, after[0].ws or "") != (app.state.services.settings.app_role, str(workspace))
        assert after[0].ws in (None, "")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # and it only reads
        await db.read(workspace, "delete from sources returning id", {})
    assert (await db.read(workspace, probe, {}))[0].n == 1
