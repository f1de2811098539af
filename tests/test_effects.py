"""Effects after commit (app.services.effects): workspace events, job messages and the credentials
epoch happen once a transaction has committed and never when it rolls back; a mutation refused
with user errors announces nothing; an import announces what a mutation of the same item does,
to a `workspaceEvents` subscriber on another API process."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from app.config import Settings
from app.pubsub import workspace_channel
from app.services import effects, ids
from tests.conftest import Account, Api
from tests.jobs_support import items, running_worker, start_import, wait_for
from tests.test_subscriptions import EVENTS, Socket, auth_of, open_socket, serving

CREATE_CONTACT = """mutation($input: CreateContactInput!) {
  createContact(input: $input) { contact { id } userErrors { field code } } }"""


class Channel:
    """What a workspace's event channel carries, read straight from Redis."""

    def __init__(self, redis: Redis, workspace_id: uuid.UUID) -> None:
        self.pubsub = redis.pubsub()
        self.channel = workspace_channel(workspace_id)

    async def __aenter__(self) -> Channel:
        await self.pubsub.subscribe(self.channel)
        confirmed = await self.pubsub.get_message(timeout=5)
        assert confirmed is not None and confirmed["type"] == "subscribe"
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.pubsub.aclose()

    async def heard(self, timeout: float = 1.0) -> list[dict[str, Any]]:
        """The events published until `timeout` seconds pass without one."""
        events = []
        while (message := await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)) is not None:
            events.append(json.loads(message["data"]))
        return events


def node_ids(events: list[dict[str, Any]], event_type: str) -> list[str]:
    return [e["nodeId"] for e in events if e["type"] == event_type]


async def test_effects_follow_the_commit_and_are_dropped_with_a_rollback(app: Any) -> None:
    services = app.state.services
    workspace = uuid.uuid4()
    kept, dropped, after_release, rolled_back, closed = (uuid.uuid4() for _ in range(5))
    ran: list[str] = []

    async def callback(_: Any) -> None:
        ran.append("callback")

    async with Channel(services.redis, workspace) as channel:
        async with services.db.tenant(workspace) as s:
            await s.execute(text("select 1"))
            effects.event(s, "contact.created", "Contact", kept)
            effects.on_commit(s, callback)
            with pytest.raises(ZeroDivisionError):
                async with s.begin_nested():  # an import item that fails alone
                    effects.event(s, "contact.created", "Contact", dropped)
                    raise ZeroDivisionError
            async with s.begin_nested():  # released: its effects wait for the transaction
                effects.event(s, "contact.updated", "Contact", after_release)
            assert await channel.heard(0.3) == [] and ran == []  # nothing before the commit

            await effects.commit(s, services)
            heard = await channel.heard()
            assert [(e["type"], e["nodeId"]) for e in heard] == [
                ("contact.created", str(kept)), ("contact.updated", str(after_release))]
            assert ran == ["callback"]

            await s.execute(text("select 1"))
            effects.event(s, "contact.deleted", "Contact", rolled_back)
            await s.rollback()
            await s.execute(text("select 1"))
            await effects.commit(s, services)

            await s.execute(text("select 1"))
            effects.event(s, "contact.deleted", "Contact", closed)
        async with services.db.tenant(workspace) as s:
            await s.execute(text("select 1"))
            await effects.commit(s, services)
        assert await channel.heard() == []  # neither the rolled back one nor the one never committed
        assert ran == ["callback"]


async def test_a_refused_mutation_announces_nothing(api: Api, app: Any, alice: Account) -> None:
    workspace = ids.decode_as(alice.workspace_id, "Workspace")
    assert workspace is not None
    async with Channel(app.state.services.redis, workspace) as channel:
        refused = await api.data(CREATE_CONTACT, {"input": {"fullName": "Ann", "email": "not an address"}}, **alice.auth)
        assert refused["createContact"]["userErrors"] and refused["createContact"]["contact"] is None
        assert await channel.heard() == []

        created = await api.data(CREATE_CONTACT, {"input": {"fullName": "Ann", "email": "ann@example.com"}}, **alice.auth)
        contact_id = ids.decode_as(created["createContact"]["contact"]["id"], "Contact")
        heard = await channel.heard()
        assert [(e["type"], e["nodeType"], e["nodeId"]) for e in heard] == [("contact.created", "Contact", str(contact_id))]

        unchanged = await api.data(
            "mutation($id: ID!) { updateContact(id: $id, input: {fullName: \"Ann\"}) { userErrors { code } } }",
            {"id": created["createContact"]["contact"]["id"]}, **alice.auth,
        )
        assert unchanged["updateContact"]["userErrors"] == []
        assert await channel.heard() == []  # nothing changed, nothing to announce


@pytest.fixture(scope="module")
def other_api_process(settings: Settings) -> Iterator[str]:
    with serving(settings) as url:
        yield url


@pytest.fixture
async def subscriber(other_api_process: str, alice: Account) -> AsyncIterator[Socket]:
    socket_ = await open_socket(other_api_process, auth_of(alice))
    await socket_.subscribe(EVENTS, {"types": ["contact.*"]})
    await asyncio.sleep(0.3)  # live once Redis confirmed the subscription
    yield socket_
    await socket_.ws.close()


async def received(socket_: Socket, n: int) -> list[tuple[str, str]]:
    events = []
    for _ in range(n):
        message = await socket_.receive(timeout=15)
        assert message["type"] == "next" and "errors" not in message["payload"], message
        event = message["payload"]["data"]["workspaceEvents"]
        events.append((event["type"], event["node"]["id"]))
    return events


async def test_an_import_announces_what_the_mutation_of_the_same_item_does(
    api: Api, alice: Account, subscriber: Socket, settings: Settings
) -> None:
    created = await api.data(CREATE_CONTACT, {"input": {"fullName": "By hand", "email": "hand@example.com"}}, **alice.auth)
    by_hand = created["createContact"]["contact"]["id"]
    assert await received(subscriber, 1) == [("contact.created", by_hand)]

    payload = {"records": [{"id": "imp-1", "fullName": "Imported", "email": "imported@example.com"}]}
    with running_worker(settings):
        started = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=payload)
        assert (await wait_for(api, alice, started["job"]["id"]))["status"] == "COMPLETED"
        imported = (await items(api, alice, started["job"]["id"]))["edges"][0]["node"]["node"]["id"]
        assert await received(subscriber, 1) == [("contact.created", imported)]

        again = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=payload)
        assert (await wait_for(api, alice, again["job"]["id"]))["status"] == "COMPLETED"  # SKIPPED: unchanged
        payload["records"][0]["fullName"] = "Imported, renamed"
        renamed = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=payload)
        assert (await wait_for(api, alice, renamed["job"]["id"]))["status"] == "COMPLETED"
        assert await received(subscriber, 1) == [("contact.updated", imported)]  # nothing for the skipped one

    await api.data("mutation($id: ID!) { updateContact(id: $id, input: {fullName: \"Renamed\"}) { contact { id } } }",
                   {"id": by_hand}, **alice.auth)
    assert await received(subscriber, 1) == [("contact.updated", by_hand)]
    with pytest.raises(TimeoutError):
        await subscriber.receive(timeout=1)
