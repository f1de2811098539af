"""Contact imports through startImport with a real worker: the set-based batch write keeps
createContact's rules item by item (email dedup within the batch and against live contacts,
upsert by remoteId with full replacement, soft delete and revival, outcomes per item)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from app.config import Settings
from app.services import contacts as contact_service
from app.services import imports, jobs
from app.services.access import Principal
from tests.conftest import Account, Api
from tests.contacts_support import CONTACT_FIELDS, DELETE, create
from tests.jobs_support import running_worker, start_import, upload_import, wait_for

NODE = f"query($id: ID!) {{ node(id: $id) {{ ... on Contact {{ {CONTACT_FIELDS} }} }} }}"
ITEMS = """
query($id: ID!) { node(id: $id) { ... on Job {
  items(first: 100) { edges { node { index remoteId status error node { id } } } }
} } }
"""


@pytest.fixture(scope="module")
def worker(settings: Settings) -> Iterator[None]:
    with running_worker(settings):
        yield


async def _run(api: Api, who: Account, records: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Import `records` (one batch); the finished job and its items in order."""
    started = await start_import(api, who, target="CONTACTS", adapter="GENERIC_JSON", data={"records": records})
    assert started["userErrors"] == []
    done = await wait_for(api, who, started["job"]["id"])
    assert done["status"] == "COMPLETED", done
    edges = (await api.data(ITEMS, {"id": done["id"]}, **who.auth))["node"]["items"]["edges"]
    return done, [e["node"] for e in edges]


async def _contact(api: Api, who: Account, node_id: str) -> dict[str, Any]:
    return (await api.data(NODE, {"id": node_id}, **who.auth))["node"]


async def test_two_items_of_a_batch_sharing_an_email(api: Api, alice: Account, worker: None) -> None:
    done, got = await _run(api, alice, [
        {"id": "a", "fullName": "First", "email": "Shared@Example.com"},
        {"id": "b", "fullName": "Second", "email": "shared@example.com "},
        {"id": "c", "fullName": "Third", "emails": ["SHARED@example.com"]},
    ])
    assert [i["status"] for i in got] == ["SUCCESS", "FAILED", "FAILED"]
    first = got[0]["node"]["id"]
    assert got[1]["error"] == f"email: A contact with this email already exists: {first}"
    assert got[2]["error"] == f"emails: A contact with this email already exists: {first}"
    assert got[1]["node"] is None and got[2]["remoteId"] == "c"
    assert (await _contact(api, alice, first))["email"] == "shared@example.com"
    assert done["result"] == {"created": 1, "updated": 0, "skipped": 0, "deleted": 0, "failed": 2}


async def test_an_email_of_another_live_contact_fails_the_item(api: Api, alice: Account, worker: None) -> None:
    owner = await create(api, alice, fullName="Owner", email="taken@example.com", emails=["second@example.com"])
    gone = await create(api, alice, fullName="Gone", email="free-again@example.com")
    await api.data(DELETE, {"id": gone["id"]}, **alice.auth)
    done, got = await _run(api, alice, [
        {"id": "p", "fullName": "Primary clash", "email": "TAKEN@example.com"},
        {"id": "s", "fullName": "Secondary clash", "email": "second@example.com"},
        {"id": "e", "fullName": "Listed clash", "email": "new@example.com", "emails": ["taken@example.com"]},
        {"id": "f", "fullName": "Freed address", "email": "free-again@example.com"},
    ])
    assert [i["status"] for i in got] == ["FAILED", "FAILED", "FAILED", "SUCCESS"]
    assert all(owner["id"] in (i["error"] or "") for i in got[:3])
    assert done["result"] == {"created": 1, "updated": 0, "skipped": 0, "deleted": 0, "failed": 3}
    # the failed items wrote nothing: their addresses stay free of them
    assert (await _contact(api, alice, owner["id"]))["emails"] == ["second@example.com"]


async def test_addresses_of_another_workspace_are_free(api: Api, alice: Account, bob: Account, worker: None) -> None:
    """Email ownership is per workspace, secondary addresses included (they are looked up
    through a SECURITY DEFINER function that applies the workspace itself)."""
    await create(api, bob, fullName="Bob's", email="bob-primary@example.com", emails=["bob-second@example.com"])
    done, got = await _run(api, alice, [
        {"id": "w1", "fullName": "Same primary", "email": "bob-primary@example.com"},
        {"id": "w2", "fullName": "Same secondary", "email": "bob-second@example.com"},
    ])
    assert [i["status"] for i in got] == ["SUCCESS", "SUCCESS"]
    assert done["result"]["created"] == 2


async def test_a_batch_is_checked_beside_the_one_before_only_when_independent(alice: Account, app: Any) -> None:
    """The worker checks a batch while the one before is written only when that write changes
    none of what it reads: its remoteIds, its addresses, those of the rows it writes over."""
    ws = uuid.UUID(base64.b64decode(alice.workspace_id).decode().split(":")[1])
    p = Principal(user_id=uuid.uuid4(), workspace_id=ws, role="OWNER", scopes=frozenset({"*"}))
    job = jobs.new_job(p, ws, "IMPORT", target="CONTACTS", adapter="GENERIC_JSON")
    async with app.state.services.db.tenant(ws) as s:
        await contact_service.import_contacts(s, p, [{"id": "mover", "fullName": "Mover", "email": "moving@example.com"}], None)
        writing = await imports.check_batch(s, job, await imports.prepare_batch(job, [
            (0, {"id": "mover", "fullName": "Mover", "email": "settled@example.com"}),
            (1, {"id": "new", "fullName": "New", "email": "new@example.com", "emails": ["new2@example.com"]}),
        ]))

        async def independent(item: dict[str, Any]) -> bool:
            return imports.independent(job, writing, await imports.prepare_batch(job, [(2, item)]))

        assert await independent({"id": "other", "fullName": "Other", "email": "other@example.com"})
        assert not await independent({"id": "mover", "fullName": "Again"})
        assert not await independent({"id": "taker", "fullName": "Taker", "email": "moving@example.com"})  # freed
        assert not await independent({"id": "t2", "fullName": "T2", "emails": ["new2@example.com"]})
        assert not await independent({"id": "new", "deleted": True})
        await s.rollback()


async def test_an_item_postgresql_refuses_fails_alone(api: Api, alice: Account, worker: None) -> None:
    """A batch that fails as a whole (here a NUL character, which jsonb refuses) is imported one
    item at a time: only that item fails. (A NUL in a GraphQL string is refused with the request;
    an uploaded file's items reach the worker as they are.)"""
    records = [
        {"id": "before-nul", "fullName": "Before", "email": "before-nul@example.com"},
        {"id": "nul\u0000id", "fullName": "Nul"},
        {"id": "after-nul", "fullName": "After", "email": "after-nul@example.com"},
    ]
    file = ("contacts.json", json.dumps({"records": records}).encode(), "application/json")
    started = await upload_import(api, alice, {"target": "CONTACTS", "adapter": "GENERIC_JSON"}, file)
    assert started["userErrors"] == []
    done = await wait_for(api, alice, started["job"]["id"])
    edges = (await api.data(ITEMS, {"id": done["id"]}, **alice.auth))["node"]["items"]["edges"]
    got = [e["node"] for e in edges]
    assert [i["status"] for i in got] == ["SUCCESS", "FAILED", "SUCCESS"]
    assert got[1]["error"] == "Internal error while importing the item"
    assert got[1]["remoteId"] == "nul\ufffdid"  # PostgreSQL text holds no NUL
    assert done["result"] == {"created": 2, "updated": 0, "skipped": 0, "deleted": 0, "failed": 1}


async def test_an_item_updating_an_existing_contact(api: Api, alice: Account, worker: None) -> None:
    _, got = await _run(api, alice, [
        {"id": "u1", "fullName": "Ada", "email": "ada@example.com", "phone": "1", "tags": ["x"],
         "customFields": {"k": 1}},
        {"id": "u2", "fullName": "Bea", "email": "bea@example.com"},
    ])
    ada, bea = (i["node"]["id"] for i in got)
    # u1 is replaced whole (phone and customFields cleared); u2 is unchanged; the same remoteId
    # twice in a batch and an address taken by u1 fail alone
    done, again = await _run(api, alice, [
        {"id": "u1", "fullName": "Ada Lovelace", "email": "ada@example.com", "tags": ["x", "y"]},
        {"id": "u2", "fullName": "Bea", "email": "bea@example.com"},
        {"remoteId": "u1", "fullName": "Twice", "email": "twice@example.com"},
        {"id": "u3", "fullName": "Clash", "email": "ada@example.com"},
    ])
    assert [i["status"] for i in again] == ["SUCCESS", "SKIPPED", "FAILED", "FAILED"]
    assert [i["node"]["id"] if i["node"] else None for i in again] == [ada, bea, None, None]
    assert "remoteId" in again[2]["error"] and ada in again[3]["error"]
    assert done["result"] == {"created": 0, "updated": 1, "skipped": 1, "deleted": 0, "failed": 2}
    contact = await _contact(api, alice, ada)
    assert (contact["fullName"], contact["phone"], contact["tags"], contact["customFields"]) == (
        "Ada Lovelace", None, ["x", "y"], {}
    )
    assert contact["remoteId"] == "u1"


async def test_soft_delete_then_revive_by_remote_id(api: Api, alice: Account, worker: None) -> None:
    _, got = await _run(api, alice, [{"id": "d1", "fullName": "Dora", "email": "dora@example.com"}])
    dora = got[0]["node"]["id"]
    done, deleted = await _run(api, alice, [
        {"id": "d1", "deleted": True}, {"id": "missing", "deleted": True}, {"deleted": True},
    ])
    assert [i["status"] for i in deleted] == ["SUCCESS", "SKIPPED", "FAILED"]
    assert "remoteId" in deleted[2]["error"]
    assert (await _contact(api, alice, dora))["deletedAt"] is not None
    # its address is free while it is deleted; reviving it then clashes, and fails alone
    clash = await create(api, alice, fullName="Newcomer", email="dora@example.com")
    _, revived = await _run(api, alice, [{"id": "d1", "fullName": "Dora", "email": "dora@example.com"}])
    assert revived[0]["status"] == "FAILED" and clash["id"] in revived[0]["error"]
    _, revived = await _run(api, alice, [{"id": "d1", "fullName": "Dora", "email": "dora2@example.com"}])
    assert revived[0]["status"] == "SUCCESS" and revived[0]["node"]["id"] == dora
    back = await _contact(api, alice, dora)
    assert back["deletedAt"] is None and back["email"] == "dora2@example.com"
    assert done["result"] == {"created": 0, "updated": 0, "skipped": 1, "deleted": 1, "failed": 1}


async def test_imports_are_isolated_between_workspaces(api: Api, alice: Account, bob: Account, worker: None) -> None:
    await create(api, bob, fullName="Bob's", email="same@example.com", remoteId="same")
    _, got = await _run(api, alice, [{"id": "same", "fullName": "Alice's", "email": "same@example.com"}])
    assert got[0]["status"] == "SUCCESS"
    assert (await _contact(api, bob, got[0]["node"]["id"])) is None
