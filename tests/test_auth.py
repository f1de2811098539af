"""Sign-up, login, refresh-token rotation, API keys, scopes and roles, members."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import SIGN_UP, Account, Api, sign_up, unauthenticated

LOGIN = """
mutation($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) {
    accessToken refreshToken viewer { user { email } workspaces { name viewerRole } }
    userErrors { field message code }
  }
}
"""
REFRESH = """
mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken userErrors { code message } } }
"""
CREATE_KEY = """
mutation($input: CreateApiKeyInput!) {
  createApiKey(input: $input) { secret apiKey { id name prefix scopes lastUsedAt revokedAt } userErrors { field code message } }
}
"""
CREATE_SOURCE = """
mutation($name: String!) {
  createSource(input: {name: $name, displayName: "Src", provider: API}) { source { id name } userErrors { code message } }
}
"""
INVITE = """
mutation($email: String!, $role: MemberRole!) {
  inviteMember(input: {email: $email, role: $role}) {
    member { id role status user { email } } invitationToken userErrors { field code message }
  }
}
"""


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def test_sign_up_rejects_bad_input_and_writes_nothing(api: Api) -> None:
    email = f"x-{uuid.uuid4().hex[:8]}@example.com"
    data = await api.data(SIGN_UP, {"input": {"email": "not-an-email", "password": "short", "workspaceName": " "}})
    errors = data["signUp"]["userErrors"]
    assert {tuple(e["field"]) for e in errors} == {("input", "email"), ("input", "password"), ("input", "workspaceName")}
    assert data["signUp"]["accessToken"] is None
    # The same email can still sign up: nothing was written.
    first = await sign_up(api, email=email)
    again = await api.data(SIGN_UP, {"input": {"email": email.upper(), "password": "another password",
                                               "workspaceName": "W"}})
    assert again["signUp"]["userErrors"][0]["code"] == "DUPLICATE"
    assert first.email == email


async def test_login_with_right_and_wrong_password(api: Api, alice: Account) -> None:
    ok = (await api.data(LOGIN, {"email": alice.email.upper(), "password": alice.password}))["login"]
    assert ok["userErrors"] == [] and ok["accessToken"]
    assert ok["viewer"]["workspaces"] == [{"name": "Alice Co", "viewerRole": "OWNER"}]
    wrong = (await api.data(LOGIN, {"email": alice.email, "password": "wrong password"}))["login"]
    assert wrong["accessToken"] is None and wrong["userErrors"][0]["code"] == "INVALID"
    unknown = (await api.data(LOGIN, {"email": "nobody@example.com", "password": "whatever1"}))["login"]
    assert unknown["userErrors"][0]["message"] == wrong["userErrors"][0]["message"]


async def test_refresh_rotates_and_reuse_revokes_the_family(api: Api, alice: Account) -> None:
    first = (await api.data(REFRESH, {"t": alice.refresh_token}))["refreshToken"]
    assert first["userErrors"] == [] and first["refreshToken"] != alice.refresh_token
    second = (await api.data(REFRESH, {"t": first["refreshToken"]}))["refreshToken"]
    assert second["userErrors"] == []
    # The spent first token comes back: refused, and the whole family dies with it.
    reused = (await api.data(REFRESH, {"t": alice.refresh_token}))["refreshToken"]
    assert reused["accessToken"] is None and reused["userErrors"][0]["code"] == "INVALID"
    after = (await api.data(REFRESH, {"t": second["refreshToken"]}))["refreshToken"]
    assert after["accessToken"] is None
    # A new login starts a new family that works.
    login = (await api.data(LOGIN, {"email": alice.email, "password": alice.password}))["login"]
    assert (await api.data(REFRESH, {"t": login["refreshToken"]}))["refreshToken"]["userErrors"] == []


async def test_refreshed_access_token_works(api: Api, alice: Account) -> None:
    fresh = (await api.data(REFRESH, {"t": alice.refresh_token}))["refreshToken"]
    data = await api.data("{ viewer { user { email } } }", token=fresh["accessToken"])
    assert data["viewer"]["user"]["email"] == alice.email


async def test_bad_and_expired_tokens_are_refused_as_missing_ones_are(api: Api, settings: Any, alice: Account) -> None:
    """As application/json, a GraphQL error with status 200, as for a missing credential (so a
    client library reports both alike); as application/graphql-response+json, 401."""
    from app.security import issue_access_token

    response = await api.post("{ viewer { scopes } }", token="garbage")
    assert unauthenticated(response) and "data" not in response.json()
    strict = await api.post("{ viewer { scopes } }", token="garbage", headers={"accept": "application/graphql-response+json"})
    assert strict.status_code == 401 and strict.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    user_id = uuid.UUID(__import__("base64").b64decode(alice.user_id).decode().split(":")[1])
    expired, _ = issue_access_token(settings.jwt_secret, user_id, -5)
    assert unauthenticated(await api.post("{ viewer { scopes } }", token=expired))
    forged, _ = issue_access_token("another secret of at least thirty-two bytes", user_id, 300)
    assert unauthenticated(await api.post("{ viewer { scopes } }", token=forged))


async def test_anonymous_requests_cannot_read(api: Api) -> None:
    body = await api("{ sources { totalCount } }")
    assert codes(body) == ["UNAUTHENTICATED"]
    assert (await api("{ viewer { scopes } }"))["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_api_key_lifecycle(api: Api, alice: Account) -> None:
    created = (await api.data(CREATE_KEY, {"input": {"name": "CI", "scopes": ["sources:read"]}}, **alice.auth))["createApiKey"]
    secret, key = created["secret"], created["apiKey"]
    assert secret.startswith(key["prefix"]) and key["scopes"] == ["sources:read"] and key["lastUsedAt"] is None

    viewer = await api.data("{ viewer { scopes user { id } apiKey { name lastUsedAt } workspaces { name } } }", api_key=secret)
    assert viewer["viewer"]["scopes"] == ["sources:read"] and viewer["viewer"]["user"] is None
    assert viewer["viewer"]["apiKey"]["name"] == "CI" and viewer["viewer"]["workspaces"] == [{"name": "Alice Co"}]
    listed = await api.data("{ apiKeys { totalCount edges { node { name lastUsedAt } } } }", **alice.auth)
    assert listed["apiKeys"]["totalCount"] == 1 and listed["apiKeys"]["edges"][0]["node"]["lastUsedAt"] is not None
    # The full key is never shown again, and only its hash is stored.
    assert "secret" not in str(listed)

    # Scopes are enforced: reading sources works, writing does not.
    assert (await api.data("{ sources { totalCount } }", api_key=secret))["sources"]["totalCount"] == 0
    assert codes(await api(CREATE_SOURCE, {"name": "nope"}, api_key=secret)) == ["FORBIDDEN"]
    assert codes(await api("{ apiKeys { totalCount } }", api_key=secret)) == ["FORBIDDEN"]

    rotated = (await api.data("mutation($id: ID!) { rotateApiKey(id: $id) { secret apiKey { prefix } } }",
                              {"id": key["id"]}, **alice.auth))["rotateApiKey"]
    assert rotated["secret"] != secret
    assert unauthenticated(await api.post("{ viewer { scopes } }", api_key=secret))
    assert (await api.post("{ viewer { scopes } }", api_key=rotated["secret"])).status_code == 200

    revoked = (await api.data("mutation($id: ID!) { revokeApiKey(id: $id) { apiKey { revokedAt } } }",
                              {"id": key["id"]}, **alice.auth))["revokeApiKey"]
    assert revoked["apiKey"]["revokedAt"] is not None
    response = await api.post("{ viewer { scopes } }", api_key=rotated["secret"])
    assert unauthenticated(response)
    # Revoked keys are kept, and can't be rotated back to life.
    again = await api.data("mutation($id: ID!) { rotateApiKey(id: $id) { secret userErrors { code } } }",
                           {"id": key["id"]}, **alice.auth)
    assert again["rotateApiKey"] == {"secret": None, "userErrors": [{"code": "CONFLICT"}]}


async def test_api_key_input_rules(api: Api, alice: Account) -> None:
    bad = (await api.data(CREATE_KEY, {"input": {"name": "", "scopes": ["everything:now"]}}, **alice.auth))["createApiKey"]
    assert {e["code"] for e in bad["userErrors"]} == {"REQUIRED", "INVALID"} and bad["secret"] is None
    past = (await api.data(CREATE_KEY, {"input": {"name": "x", "scopes": ["*"], "expiresAt": "2001-01-01T00:00:00Z"}},
                           **alice.auth))["createApiKey"]
    assert past["userErrors"][0]["field"] == ["input", "expiresAt"]
    # A key with workspace:admin may make keys, but none stronger than itself.
    admin = (await api.data(CREATE_KEY, {"input": {"name": "admin", "scopes": ["workspace:admin", "sources:read"]}},
                            **alice.auth))["createApiKey"]["secret"]
    stronger = (await api.data(CREATE_KEY, {"input": {"name": "k", "scopes": ["sources:write"]}}, api_key=admin))
    assert stronger["createApiKey"]["userErrors"][0]["code"] == "FORBIDDEN"
    weaker = (await api.data(CREATE_KEY, {"input": {"name": "k", "scopes": ["sources:read"]}}, api_key=admin))
    assert weaker["createApiKey"]["userErrors"] == []
    # API keys act for the workspace, not a user: they cannot create workspaces.
    body = await api('mutation { createWorkspace(input: {name: "X"}) { workspace { id } } }', api_key=admin)
    assert codes(body) == ["FORBIDDEN"]


async def test_expired_api_key_is_refused(api: Api, alice: Account, settings: Any) -> None:
    """A key that expires while the gate remembers it (app.admission) is refused from its expiry on."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    created = await api.data(CREATE_KEY, {"input": {"name": "short", "scopes": ["*"], "expiresAt": expires.isoformat()}},
                             **alice.auth)
    secret = created["createApiKey"]["secret"]
    assert (await api.post("{ viewer { scopes } }", api_key=secret)).status_code == 200
    assert (await api.post("{ viewer { scopes } }", api_key=secret)).status_code == 200  # remembered now
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.05)
    refused = await api.post("{ viewer { scopes } }", api_key=secret)
    assert unauthenticated(refused)
    assert refused.json()["errors"][0]["message"] == "Invalid, revoked or expired API key"


async def test_credential_changes_apply_at_once_on_every_api_process(
    api: Api, alice: Account, settings: Any
) -> None:
    """Two API processes (apps) remember a key and a member; revoking the key or changing the role
    through one is seen by the other from the very next request (the credentials epoch)."""
    import httpx

    from app.http import create_app

    other_app = create_app(settings)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other_app), base_url="http://test") as client:
            other = Api(client)
            secret = (await api.data(CREATE_KEY, {"input": {"name": "gone", "scopes": ["*"]}}, **alice.auth)
                      )["createApiKey"]
            key = secret["secret"]
            for _ in range(2):
                assert (await other.post("{ viewer { scopes } }", api_key=key)).status_code == 200
            key_id = (await api.data("{ apiKeys(first: 100) { edges { node { id name } } } }", **alice.auth)
                      )["apiKeys"]["edges"]
            key_id = next(e["node"]["id"] for e in key_id if e["node"]["name"] == "gone")
            revoked = await api.data("mutation($id: ID!) { revokeApiKey(id: $id) { userErrors { message } } }",
                                     {"id": key_id}, **alice.auth)
            assert revoked["revokeApiKey"]["userErrors"] == []
            assert unauthenticated(await other.post("{ viewer { scopes } }", api_key=key))
    finally:
        await other_app.state.services.redis.aclose()
        await other_app.state.services.db.dispose()


async def test_role_changes_and_removals_apply_at_once_on_every_api_process(
    api: Api, alice: Account, settings: Any
) -> None:
    """A member's remembered principal on another API process follows a role change and a
    removal made through this one from the very next request (the credentials epoch)."""
    import httpx

    from app.http import create_app

    newcomer = f"epoch-{uuid.uuid4().hex[:8]}@example.com"
    invited = (await api.data(INVITE, {"email": newcomer, "role": "VIEWER"}, **alice.auth))["inviteMember"]
    await api.data(SIGN_UP, {"input": {"email": newcomer, "password": "newcomer password", "workspaceName": "Own",
                                       "invitationToken": invited["invitationToken"]}})
    token = (await api.data(LOGIN, {"email": newcomer, "password": "newcomer password"}))["login"]["accessToken"]
    as_newcomer = {"token": token, "workspace": alice.workspace_id}
    change = "mutation($id: ID!) { updateMemberRole(id: $id, role: MEMBER) { userErrors { code } } }"
    remove = "mutation($id: ID!) { removeMember(id: $id) { userErrors { code } } }"
    other_app = create_app(settings)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other_app), base_url="http://test") as client:
            other = Api(client)
            for _ in range(2):  # remembered as a VIEWER
                assert codes(await other(CREATE_SOURCE, {"name": "epoch_v"}, **as_newcomer)) == ["FORBIDDEN"]
            assert (await api.data(change, {"id": invited["member"]["id"]}, **alice.auth))["updateMemberRole"]["userErrors"] == []
            created = (await other.data(CREATE_SOURCE, {"name": "epoch_m"}, **as_newcomer))["createSource"]
            assert created["userErrors"] == [] and created["source"]["name"] == "epoch_m"
            assert (await api.data(remove, {"id": invited["member"]["id"]}, **alice.auth))["removeMember"]["userErrors"] == []
            gone = await other.post("{ sources { totalCount } }", **as_newcomer)
            assert gone.status_code == 200 and gone.json()["errors"][0]["message"] == "Unknown workspace"
    finally:
        await other_app.state.services.redis.aclose()
        await other_app.state.services.db.dispose()


async def test_members_invite_roles_and_last_owner(api: Api, alice: Account) -> None:
    # Inviting a brand-new address creates a password-less user who claims it by signing up.
    newcomer = f"new-{uuid.uuid4().hex[:8]}@example.com"
    invited = (await api.data(INVITE, {"email": newcomer, "role": "VIEWER"}, **alice.auth))["inviteMember"]
    assert invited["member"]["status"] == "INVITED" and invited["member"]["role"] == "VIEWER"
    dup = (await api.data(INVITE, {"email": newcomer, "role": "ADMIN"}, **alice.auth))["inviteMember"]
    assert dup["userErrors"][0]["code"] == "DUPLICATE"

    # Signing up with the address alone does not claim it (else anyone could take the invited role).
    squatter = await api.data(SIGN_UP, {"input": {"email": newcomer, "password": "attacker password", "workspaceName": "X"}})
    assert squatter["signUp"]["accessToken"] is None and squatter["signUp"]["userErrors"][0]["code"] == "DUPLICATE"
    wrong = await api.data(SIGN_UP, {"input": {"email": newcomer, "password": "attacker password", "workspaceName": "X",
                                               "invitationToken": "guess"}})
    assert wrong["signUp"]["accessToken"] is None
    claimed = await api.data(SIGN_UP, {"input": {"email": newcomer, "password": "newcomer password",
                                                 "workspaceName": "Newcomer's own",
                                                 "invitationToken": invited["invitationToken"]}})
    assert claimed["signUp"]["userErrors"] == []
    login = (await api.data(LOGIN, {"email": newcomer, "password": "newcomer password"}))["login"]
    roles = {w["name"]: w["viewerRole"] for w in login["viewer"]["workspaces"]}
    assert roles == {"Alice Co": "VIEWER", "Newcomer's own": "OWNER"}

    members = await api.data("{ members { totalCount edges { node { role status user { email } } } } }", **alice.auth)
    assert {(e["node"]["user"]["email"], e["node"]["status"]) for e in members["members"]["edges"]} == {
        (alice.email, "ACTIVE"), (newcomer, "ACTIVE")}

    # A VIEWER reads but cannot write.
    viewer_auth = {"token": login["accessToken"], "workspace": alice.workspace_id}
    assert (await api.data("{ sources { totalCount } }", **viewer_auth))["sources"]["totalCount"] == 0
    assert codes(await api(CREATE_SOURCE, {"name": "v"}, **viewer_auth)) == ["FORBIDDEN"]
    assert codes(await api(INVITE, {"email": "z@example.com", "role": "VIEWER"}, **viewer_auth)) == ["FORBIDDEN"]

    # The last owner can neither be demoted nor removed.
    owner_id = next(e["node"] for e in (await api.data("{ members { edges { node { id role } } } }", **alice.auth))
                    ["members"]["edges"] if e["node"]["role"] == "OWNER")["id"]
    demote = await api.data("mutation($id: ID!) { updateMemberRole(id: $id, role: ADMIN) { userErrors { code } } }",
                            {"id": owner_id}, **alice.auth)
    assert demote["updateMemberRole"]["userErrors"] == [{"code": "CONFLICT"}]
    remove = await api.data("mutation($id: ID!) { removeMember(id: $id) { deletedId userErrors { code } } }",
                            {"id": owner_id}, **alice.auth)
    assert remove["removeMember"] == {"deletedId": None, "userErrors": [{"code": "CONFLICT"}]}


async def test_admin_cannot_touch_owners_but_owner_can_promote(api: Api, alice: Account, bob: Account) -> None:
    member = (await api.data(INVITE, {"email": bob.email, "role": "ADMIN"}, **alice.auth))["inviteMember"]["member"]
    bob_login = (await api.data(LOGIN, {"email": bob.email, "password": bob.password}))["login"]
    as_bob = {"token": bob_login["accessToken"], "workspace": alice.workspace_id}
    owner_id = next(e["node"]["id"] for e in (await api.data("{ members { edges { node { id role } } } }", **alice.auth))
                    ["members"]["edges"] if e["node"]["role"] == "OWNER")
    refused = await api.data("mutation($id: ID!) { updateMemberRole(id: $id, role: MEMBER) { userErrors { code } } }",
                             {"id": owner_id}, **as_bob)
    assert refused["updateMemberRole"]["userErrors"] == [{"code": "FORBIDDEN"}]
    self_promote = await api.data("mutation($id: ID!) { updateMemberRole(id: $id, role: OWNER) { userErrors { code } } }",
                                  {"id": member["id"]}, **as_bob)
    assert self_promote["updateMemberRole"]["userErrors"] == [{"code": "FORBIDDEN"}]
    promoted = await api.data("mutation($id: ID!) { updateMemberRole(id: $id, role: OWNER) { member { role } } }",
                              {"id": member["id"]}, **alice.auth)
    assert promoted["updateMemberRole"]["member"]["role"] == "OWNER"
    # With a second owner, the first may step down.
    stepped = await api.data("mutation($id: ID!) { updateMemberRole(id: $id, role: ADMIN) { member { role } } }",
                             {"id": owner_id}, **alice.auth)
    assert stepped["updateMemberRole"]["member"]["role"] == "ADMIN"


async def test_workspace_header_selects_among_several(api: Api, alice: Account) -> None:
    created = await api.data('mutation { createWorkspace(input: {name: "Second"}) { workspace { id name viewerRole } } }',
                             token=alice.token)
    second = created["createWorkspace"]["workspace"]
    assert second["viewerRole"] == "OWNER"
    # Two workspaces and no header: user-level fields work, workspace-scoped ones ask for the header.
    body = await api("{ viewer { workspaces { name } } workspace { name } }", token=alice.token)
    assert body["data"] is None or body["data"].get("workspace") is None
    assert codes(body) == ["BAD_USER_INPUT"]
    named = await api.data("{ workspace { name } }", token=alice.token, workspace=second["id"])
    assert named["workspace"]["name"] == "Second"


async def test_foreign_workspace_header_is_refused(api: Api, alice: Account, bob: Account) -> None:
    response = await api.post("{ workspace { name } }", token=alice.token, workspace=bob.workspace_id)
    assert response.status_code == 200 and codes(response.json()) == ["FORBIDDEN"]  # as application/json
    unknown = await api.post("{ workspace { name } }", token=alice.token, workspace=str(uuid.uuid4()))
    assert unknown.status_code == 200 and unknown.json() == response.json()
    strict = await api.post("{ workspace { name } }", token=alice.token, workspace=bob.workspace_id,
                            headers={"accept": "application/graphql-response+json"})
    assert strict.status_code == 403 and strict.json() == response.json()


@pytest.mark.parametrize("scope,allowed", [("sources:read", True), ("contacts:read", False)])
async def test_node_respects_scopes(api: Api, alice: Account, scope: str, allowed: bool) -> None:
    source = (await api.data(CREATE_SOURCE, {"name": "scoped"}, **alice.auth))["createSource"]["source"]
    secret = (await api.data(CREATE_KEY, {"input": {"name": "k", "scopes": [scope]}}, **alice.auth))["createApiKey"]["secret"]
    body = await api("query($id: ID!) { node(id: $id) { id } }", {"id": source["id"]}, api_key=secret)
    if allowed:
        assert body["data"]["node"] == {"id": source["id"]}
    else:
        assert codes(body) == ["FORBIDDEN"]


async def test_a_key_cannot_grant_a_role_stronger_than_itself(api: Api, alice: Account, bob: Account) -> None:
    admin_only = (await api.data(CREATE_KEY, {"input": {"name": "adm", "scopes": ["workspace:admin"]}},
                                 **alice.auth))["createApiKey"]["secret"]
    refused = (await api.data(INVITE, {"email": bob.email, "role": "ADMIN"}, api_key=admin_only))["inviteMember"]
    assert refused["member"] is None and refused["userErrors"][0]["code"] == "FORBIDDEN"
    everything = (await api.data(CREATE_KEY, {"input": {"name": "all", "scopes": ["*"]}}, **alice.auth))["createApiKey"]["secret"]
    allowed = (await api.data(INVITE, {"email": bob.email, "role": "ADMIN"}, api_key=everything))["inviteMember"]
    assert allowed["userErrors"] == [] and allowed["member"]["role"] == "ADMIN"


async def test_members_are_hidden_from_keys_that_do_not_administer(api: Api, alice: Account) -> None:
    reader = (await api.data(CREATE_KEY, {"input": {"name": "r", "scopes": ["contacts:read"]}},
                             **alice.auth))["createApiKey"]["secret"]
    assert codes(await api("{ members { totalCount } }", api_key=reader)) == ["FORBIDDEN"]
    admin = (await api.data(CREATE_KEY, {"input": {"name": "a", "scopes": ["workspace:admin"]}},
                            **alice.auth))["createApiKey"]["secret"]
    listed = await api.data("{ members { edges { node { user { email } } } } }", api_key=admin)
    assert [e["node"]["user"]["email"] for e in listed["members"]["edges"]] == [alice.email]
