"""Credentials against guessing and forgery: checksummed API keys refused offline, failure
budgets per credential and per address that never lock out a valid credential, forwarded
addresses believed only from trusted proxies, a private /metrics, no placeholder secrets, and a
remembered-credential cache that holds under concurrent requests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from sqlalchemy import event

from app.config import Settings
from app.http import create_app
from app.security import sha256
from tests.conftest import Account, Api, early_in_a_window, served, sign_up, unauthenticated

GQL = "application/graphql-response+json"
VIEWER = "{ viewer { scopes } }"
CREATE_KEY = """
mutation($name: String!) { createApiKey(input: {name: $name, scopes: ["*"]}) { secret apiKey { id prefix } } }
"""
LOGIN = """
mutation($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) { accessToken userErrors { code } }
}
"""
REFRESH = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken userErrors { code } } }"
ROOT = Path(__file__).resolve().parent.parent


def _address() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


@contextlib.asynccontextmanager
async def app_with(settings: Settings, **changes: Any) -> AsyncIterator[tuple[Api, Any]]:
    """The app with `changes`, reached from an address of its own (fresh budgets), and the app."""
    await asyncio.sleep(early_in_a_window())
    app = create_app(replace(settings, **changes))
    transport = httpx.ASGITransport(app=app, client=(_address(), 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield Api(client), app
    finally:
        await app.state.services.db.dispose()
        await app.state.services.redis.aclose()


@contextlib.contextmanager
def look_ups(app: Any) -> Iterator[list[str]]:
    """Every trip the app makes to PostgreSQL for a credential (a plain look-up, or a transaction
    of a system session, as login and refresh use) while open: a spy that lets each one through."""
    db, seen = app.state.services.db, []
    lookup, system = db.lookup, db.system

    async def counted_lookup(sql: str, params: dict[str, Any]) -> list[Any]:
        seen.append(sql)
        return await lookup(sql, params)

    def counted_system() -> Any:
        session = system()
        event.listen(session.sync_session, "after_begin", lambda *_: seen.append("system session"))
        return session

    db.lookup, db.system = counted_lookup, counted_system
    try:
        yield seen
    finally:
        del db.lookup, db.system


def code(response: httpx.Response) -> str:
    return response.json()["errors"][0]["extensions"]["code"]


async def new_key(api: Api, owner: Account) -> tuple[str, str]:
    created = (await api.data(CREATE_KEY, {"name": f"k-{uuid.uuid4().hex[:6]}"}, **owner.auth))["createApiKey"]
    return created["secret"], created["apiKey"]["id"]


def well_formed_guess(prefix: str = "") -> str:
    """A key with a valid checksum (anyone can compute a CRC32), starting with `prefix`."""
    from app.security import _checksum

    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    body = (prefix or "cgk_") + "".join(secrets.choice(alphabet) for _ in range(40 - len(prefix or "cgk_")))
    return body + _checksum(body)


# ------------------------------------------------------------------ API keys


async def test_keys_carry_a_checksum_and_random_guesses_cost_nothing(api: Api, settings: Settings, alice: Account) -> None:
    """60 random X-API-Key guesses from one address: each refused offline (no look-up, nothing
    counted), and a valid key used next from the same address works."""
    secret, _ = await new_key(api, alice)
    assert re.fullmatch(r"cgk_[0-9A-Za-z]{42}", secret)
    async with app_with(settings, rate_limit_per_minute=60) as (client, app):
        with look_ups(app) as trips:
            for _ in range(60):
                guess = random.choice(["cgk_" + secrets.token_hex(21), "cgk_wrong", secrets.token_urlsafe(30)])
                refused = await client.post(VIEWER, api_key=guess, headers={"accept": GQL})
                assert refused.status_code == 401 and code(refused) == "UNAUTHENTICATED"
            mistyped = secret[:-1] + ("a" if secret[-1] != "a" else "b")
            assert unauthenticated(await client.post(VIEWER, api_key=mistyped))
        assert trips == []
        valid = await client.post(VIEWER, api_key=secret, headers={"accept": GQL})
        assert valid.status_code == 200, valid.text
        assert unauthenticated(await client.post(VIEWER, headers={"authorization": f"Bearer {mistyped}"}))


async def test_keys_issued_before_the_checksum_keep_working(api: Api, settings: Settings, alice: Account) -> None:
    secret, key_id = await new_key(api, alice)
    legacy = "cgk_" + secrets.token_urlsafe(32)  # how keys were made before
    key_uuid = base64.b64decode(key_id).decode().split(":")[1]
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("update api_keys set key_hash = %s, prefix = %s where id = %s",
                     (sha256(legacy), legacy[:12], key_uuid))
    assert (await api.post(VIEWER, api_key=legacy)).status_code == 200
    assert unauthenticated(await api.post(VIEWER, api_key=secret))


async def test_well_formed_guesses_are_budgeted_and_never_lock_out_a_known_key(
    api: Api, settings: Settings, alice: Account
) -> None:
    """Guesses with valid checksums cost a look-up each, until the address's budget is spent;
    then none costs one, while a key that authenticated lately still works from that address,
    as does a user's signed token."""
    known, _ = await new_key(api, alice)
    assert (await api.post(VIEWER, api_key=known)).status_code == 200  # authenticated lately: vouched for
    async with app_with(settings, auth_failures_per_address=5, auth_failures_per_credential=3) as (client, app):
        with look_ups(app) as trips:
            for _ in range(5):
                assert unauthenticated(await client.post(VIEWER, api_key=well_formed_guess()))
        assert len(trips) == 5
        with look_ups(app) as trips:
            for _ in range(5):
                refused = await client.post(VIEWER, api_key=well_formed_guess(), headers={"accept": GQL})
                assert refused.status_code == 429 and code(refused) == "RATE_LIMITED"
                assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert trips == []
        assert (await client.post(VIEWER, api_key=known)).status_code == 200
        assert (await client.post(VIEWER, **alice.auth)).status_code == 200

        # Guessing at one key (its visible prefix) spends that key's own budget, not the others'.
        target, _ = await new_key(api, alice)
        async with app_with(settings, auth_failures_per_credential=3) as (other, other_app):
            for _ in range(3):
                assert unauthenticated(await other.post(VIEWER, api_key=well_formed_guess(target[:12])))
            with look_ups(other_app) as trips:
                assert (await other.post(VIEWER, api_key=well_formed_guess(target[:12]))).status_code == 429
            assert trips == []
            assert (await other.post(VIEWER, api_key=known)).status_code == 200


async def test_a_signed_token_is_checked_offline(settings: Settings, alice: Account) -> None:
    from app.security import issue_access_token

    user_id = uuid.UUID(base64.b64decode(alice.user_id).decode().split(":")[1])
    forged, _ = issue_access_token("another secret of at least thirty-two bytes", user_id, 300)
    async with app_with(settings, auth_failures_per_address=1, auth_failures_per_credential=1) as (client, app):
        with look_ups(app) as trips:
            for _ in range(5):  # refused offline, counted against no one: never 429
                assert unauthenticated(await client.post(VIEWER, token=forged))
        assert trips == []
        assert (await client.post(VIEWER, **alice.auth)).status_code == 200


# ------------------------------------------------------------------ login and refresh


async def test_login_failures_are_budgeted_per_account_and_per_address(api: Api, settings: Settings) -> None:
    victim, known = await sign_up(api), await sign_up(api)
    async with app_with(settings, auth_failures_per_credential=3, auth_failures_per_address=6) as (client, app):
        assert (await client.data(LOGIN, {"email": known.email, "password": known.password}))["login"]["accessToken"]
        for _ in range(3):
            wrong = await client.data(LOGIN, {"email": victim.email, "password": "not the password"})
            assert wrong["login"]["userErrors"] == [{"code": "INVALID"}]
        with look_ups(app) as trips:  # the account's budget is spent: even its password waits, unhashed
            limited = await client(LOGIN, {"email": victim.email, "password": victim.password})
        assert trips == [] and limited["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert 1 <= limited["errors"][0]["extensions"]["retryAfter"] <= 60
        for _ in range(3):  # spraying other accounts spends the address's budget
            await client.data(LOGIN, {"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "guess guess"})
        with look_ups(app) as trips:
            sprayed = await client(LOGIN, {"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "guess"})
        assert trips == [] and sprayed["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        # An account that logged in lately is not refused because of others' failures from its address.
        again = await client.data(LOGIN, {"email": known.email, "password": known.password})
        assert again["login"]["accessToken"] and again["login"]["userErrors"] == []


async def test_refresh_token_guesses_are_budgeted_per_address(api: Api, settings: Settings) -> None:
    async with app_with(settings, auth_failures_per_address=3) as (client, app):
        for _ in range(3):
            guessed = await client.data(REFRESH, {"t": secrets.token_urlsafe(32)})
            assert guessed["refreshToken"]["userErrors"] == [{"code": "INVALID"}]
        with look_ups(app) as trips:
            limited = await client(REFRESH, {"t": secrets.token_urlsafe(32)})
        assert trips == [] and limited["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    someone = await sign_up(api)  # another address is not affected
    assert (await api.data(REFRESH, {"t": someone.refresh_token}))["refreshToken"]["accessToken"]


# ------------------------------------------------------------------ forwarded addresses


def _anonymous_statuses(url: str, forwarded: list[str]) -> list[int]:
    with httpx.Client(base_url=url, timeout=10) as client:
        return [client.post("/graphql", json={"query": "{ __typename }"}, headers={"x-forwarded-for": f}).status_code
                for f in forwarded]


def test_forwarded_addresses_are_believed_only_from_trusted_proxies(settings: Settings) -> None:
    """Anonymous requests count per client address (2 a minute here). A local peer that claims a
    new X-Forwarded-For each time gets no new budget unless it is a trusted proxy."""
    isolated = replace(settings, rate_limit_per_minute=2)
    spoofed = [_address() for _ in range(4)]
    time.sleep(early_in_a_window(needed=20))
    with served(replace(isolated, broker_namespace=f"xff-{uuid.uuid4().hex[:8]}")) as url:
        assert _anonymous_statuses(url, spoofed)[2:] == [429, 429]
    trusted = replace(isolated, trusted_proxies=("10.255.0.0/16", "127.0.0.1"), broker_namespace=f"xff-{uuid.uuid4().hex[:8]}")
    with served(trusted) as url:
        assert _anonymous_statuses(url, [_address() for _ in range(4)]) == [200] * 4
        one = _address()
        assert _anonymous_statuses(url, [one, one, one]) == [200, 200, 429]


# ------------------------------------------------------------------ metrics


async def test_metrics_need_the_metrics_token(settings: Settings) -> None:
    async with app_with(settings) as (client, _):
        assert (await client.http.get("/metrics")).status_code == 404
    token = secrets.token_urlsafe(24)
    async with app_with(settings, metrics_token=token) as (client, _):
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {token}"}):
            refused = await client.http.get("/metrics", headers=headers)
            assert refused.status_code == 401 and "ctxgraph_http" not in refused.text
            assert refused.headers["www-authenticate"].startswith("Bearer")
        served = await client.http.get("/metrics", headers={"authorization": f"Bearer {token}"})
        assert served.status_code == 200 and "ctxgraph_http_requests_total" in served.text


# ------------------------------------------------------------------ secrets


PLACEHOLDER_JWT = "change-me-insecure-jwt-secret-placeholder"
PLACEHOLDER_KEY = "Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMzI="


@pytest.mark.parametrize(("variable", "value", "reason"), [
    ("CTXGRAPH_JWT_SECRET", PLACEHOLDER_JWT, "published placeholder"),
    ("CTXGRAPH_JWT_SECRET", "short-secret", "at least 32"),
    ("CTXGRAPH_ENCRYPTION_KEY", PLACEHOLDER_KEY, "published placeholder"),
    ("CTXGRAPH_ENCRYPTION_KEY", "not-a-fernet-key", "not a Fernet key"),
])
@pytest.mark.parametrize("command", [["serve", "--no-worker", "--port", "1"], ["worker", "--threads", "1"]])
def test_serve_and_worker_refuse_known_or_weak_secrets(
    settings: Settings, tmp_path: Path, command: list[str], variable: str, value: str, reason: str
) -> None:
    env = {**os.environ, "DATABASE_URL": settings.database_url or "", "REDIS_URL": settings.redis_url or "",
           "CTXGRAPH_HOME": str(tmp_path), variable: value}
    done = subprocess.run([sys.executable, "-m", "app.cli", *command], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert variable in done.stderr and reason in done.stderr


def test_compose_file_carries_no_secret() -> None:
    environment = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["x-app"]["environment"]
    for variable in ("CTXGRAPH_JWT_SECRET", "CTXGRAPH_ENCRYPTION_KEY"):
        assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", environment[variable]), environment[variable]
    text = (ROOT / "docker-compose.yml").read_text()
    assert PLACEHOLDER_JWT not in text and PLACEHOLDER_KEY not in text


def test_generated_secrets_are_accepted(tmp_path: Path) -> None:
    filled = Settings(home=tmp_path).with_secrets()
    assert filled.jwt_secret and filled.encryption_key
    assert Settings(home=tmp_path).with_secrets() == filled  # read back from CTXGRAPH_HOME as they are


# ------------------------------------------------------------------ the remembered credentials


async def test_remembered_credentials_hold_under_concurrency_across_lapses(settings: Settings, alice: Account) -> None:
    """Many concurrent requests with the same credentials while their remembered principals lapse
    every few milliseconds: every response is a 200."""
    from app.admission import Admission

    async with app_with(settings) as (client, app):
        services = app.state.services
        app.state.admission = Admission(services.db, services.redis, services.settings, remember_seconds=0.003)
        key, _ = await new_key(client, alice)
        credentials = [{"api_key": key}, alice.auth]
        statuses: list[int] = []
        stop = time.monotonic() + 4

        async def hammer(credential: dict[str, str]) -> None:
            while time.monotonic() < stop:
                statuses.append((await client.post(VIEWER, **credential)).status_code)

        await asyncio.gather(*(hammer(credentials[i % 2]) for i in range(24)))
        assert len(statuses) > 200
        assert set(statuses) == {200}


async def test_a_remembered_credential_costs_no_look_up(settings: Settings, alice: Account) -> None:
    async with app_with(settings) as (client, app):
        key, _ = await new_key(client, alice)
        assert (await client.post(VIEWER, api_key=key)).status_code == 200
        with look_ups(app) as trips:
            for _ in range(5):
                assert (await client.post(VIEWER, api_key=key)).status_code == 200
                assert (await client.post(VIEWER, **alice.auth)).status_code == 200
        assert trips == []


async def test_socket_authentication_spends_the_same_budgets(api: Api, settings: Settings, alice: Account) -> None:
    """Guesses in connection_init count like guesses over HTTP: past the key's budget it is refused everywhere."""
    from websockets.asyncio.client import connect

    target, _ = await new_key(api, alice)
    tight = replace(settings, auth_failures_per_credential=2)
    await asyncio.sleep(early_in_a_window())
    with served(tight) as url:
        for _ in range(3):
            async with connect(url.replace("http://", "ws://") + "/graphql", subprotocols=["graphql-transport-ws"]) as ws:
                await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": well_formed_guess(target[:12])}}))
                await ws.wait_closed()
                assert ws.close_code == 4403
    async with app_with(tight) as (client, _):
        refused = await client.post(VIEWER, api_key=target, headers={"accept": GQL})
        assert refused.status_code == 429 and code(refused) == "RATE_LIMITED"
