from tests.conftest import Account, Api


async def test_sign_up_and_viewer(api: Api, alice: Account) -> None:
    data = await api.data("{ viewer { user { email } scopes workspaces { name viewerRole } } workspace { name } }", **alice.auth)
    assert data["viewer"]["user"]["email"] == alice.email
    assert data["viewer"]["workspaces"] == [{"name": "Alice Co", "viewerRole": "OWNER"}]
    assert data["workspace"]["name"] == "Alice Co"


async def test_sql_counter_sees_the_statements_of_a_request(api: Api, alice: Account, sql) -> None:  # type: ignore[no-untyped-def]
    with sql:
        await api.data("{ sources(first: 5) { edges { node { id } } } }", **alice.auth)
    assert any("FROM sources" in s for s in sql.statements)
