from tests.conftest import Account, Api


async def test_sign_up_and_viewer(api: Api, alice: Account) -> None:
    data = await api.data("{ viewer { user { email } scopes workspaces { name viewerRole } } workspace { name } }", **alice.auth)
    assert data["viewer"]["user"]["email"] == alice.email
    assert data["viewer"]["workspaces"] == [{"name": "Alice Co", "viewerRole": "OWNER"}]
    assert data["workspace"]["name"] == "Alice Co"
