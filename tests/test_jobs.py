"""Jobs through the API with a real Dramatiq worker: imports, progress, cancel, retry, isolation."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from tests.conftest import Account, Api
from tests.jobs_support import (
    START_IMPORT_FILE, contacts_payload, items, running_worker, start_import, upload_import, wait_for,
)


@pytest.fixture(scope="module")
def worker(settings: Settings) -> Iterator[None]:
    with running_worker(settings):
        yield


async def test_generic_json_contacts_import_completes_with_counts(api: Api, alice: Account, worker: None) -> None:
    payload = contacts_payload(120)
    payload["records"].append({"id": "bad-1", "email": "not-an-email"})
    started = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=payload)
    assert started["userErrors"] == []
    job = started["job"]
    assert job["status"] == "PENDING" and job["kind"] == "IMPORT"
    assert job["progress"]["total"] == 121
    done = await wait_for(api, alice, job["id"])
    assert done["status"] == "COMPLETED", done
    assert done["progress"] == {"total": 121, "processed": 121, "successful": 120, "failed": 1, "skipped": 0}
    assert done["result"] == {"created": 120, "updated": 0, "skipped": 0, "deleted": 0, "failed": 1}
    failed = await items(api, alice, job["id"], "FAILED")
    assert failed["totalCount"] == 1
    [edge] = failed["edges"]
    assert edge["node"]["index"] == 120 and edge["node"]["remoteId"] == "bad-1" and edge["node"]["error"]


ITEM_PAGE = """
query($id: ID!, $status: JobItemStatus, $first: Int, $after: String) { node(id: $id) { ... on Job {
  items(status: $status, first: $first, after: $after) {
    totalCount edges { node { index remoteId status error node { id } } } pageInfo { hasNextPage endCursor }
  }
} } }
"""


async def test_job_items_page_across_batches_in_index_order(api: Api, alice: Account, worker: None) -> None:
    """Outcomes are stored per batch (50 items here): pages cross batch boundaries, keyset
    cursors resume exactly, and a status filter reads the matching items of every batch."""
    payload = contacts_payload(130, "pg")
    for i in (7, 49, 50, 128):
        payload["records"][i]["email"] = "broken"
    job_id = (await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=payload))["job"]["id"]
    assert (await wait_for(api, alice, job_id))["status"] == "COMPLETED"

    async def page(status: str | None, first: int, after: str | None) -> dict[str, object]:
        data = await api.data(ITEM_PAGE, {"id": job_id, "status": status, "first": first, "after": after}, **alice.auth)
        return data["node"]["items"]

    seen, after = [], None
    while True:
        got = await page(None, 40, after)
        assert got["totalCount"] == 130
        seen += [e["node"] for e in got["edges"]]
        if not got["pageInfo"]["hasNextPage"]:
            break
        after = got["pageInfo"]["endCursor"]
    assert [n["index"] for n in seen] == list(range(130))
    assert [n["remoteId"] for n in seen] == [f"pg-{i}" for i in range(130)]
    assert all((n["status"] == "FAILED") == (n["index"] in (7, 49, 50, 128)) for n in seen)
    assert all((n["node"] is None) == (n["status"] == "FAILED") for n in seen)

    first = await page("FAILED", 3, None)
    assert first["totalCount"] == 4 and [e["node"]["index"] for e in first["edges"]] == [7, 49, 50]
    assert all("email" in e["node"]["error"] for e in first["edges"])
    rest = await page("FAILED", 3, first["pageInfo"]["endCursor"])
    assert [e["node"]["index"] for e in rest["edges"]] == [128] and not rest["pageInfo"]["hasNextPage"]
    assert (await page("SKIPPED", 10, None))["totalCount"] == 0
    assert [e["node"]["index"] for e in (await page("SUCCESS", 2, first["pageInfo"]["endCursor"]))["edges"]] == [51, 52]


JOBS = """
query($filter: JobFilter, $first: Int, $after: String) {
  jobs(filter: $filter, first: $first, after: $after) { totalCount edges { node { id kind status } } pageInfo { hasNextPage endCursor } }
}
"""
CANCEL = "mutation($id: ID!) { cancelJob(id: $id) { job { id status } userErrors { field message code } } }"
RETRY = """mutation($id: ID!) { retryJob(id: $id) {
  job { id status kind progress { total } } userErrors { field message code } } }"""
CREATE_SOURCE = """mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id } userErrors { code } } }"""


async def _source(api: Api, account: Account, name: str, **extra: object) -> str:
    data = await api.data(CREATE_SOURCE, {"input": {"name": name, "displayName": name, "provider": "API", **extra}},
                          **account.auth)
    return data["createSource"]["source"]["id"]


async def _job_ids(api: Api, account: Account) -> list[str]:
    return [e["node"]["id"] for e in (await api.data(JOBS, {"first": 100}, **account.auth))["jobs"]["edges"]]


@pytest.mark.parametrize(("input_", "field", "code"), [
    ({"target": "CONTACTS", "adapter": "GENERIC_JSON"}, ["input", "data"], "REQUIRED"),
    ({"target": "CONTACTS", "adapter": "GENERIC_JSON", "data": [1, 2]}, ["input", "data"], "INVALID"),
    ({"target": "CONTACTS", "adapter": "GENERIC_JSON", "data": {"items": []}}, ["input", "data"], "INVALID"),
    ({"target": "DOCUMENTS", "adapter": "CONTENT_HUB", "data": {"records": []}}, ["input", "data"], "INVALID"),
    ({"target": "CONTACTS", "adapter": "CONTENT_HUB", "data": [[], {}]}, ["input", "adapter"], "INVALID"),
    ({"target": "RECORDS", "adapter": "GENERIC_JSON", "data": {"records": []}}, ["input", "objectTypeId"], "REQUIRED"),
    ({"target": "CONTACTS", "adapter": "GENERIC_JSON", "data": {"records": []},
      "objectTypeId": "T2JqZWN0VHlwZTowMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA="}, ["input", "objectTypeId"], "INVALID"),
    ({"target": "CONTACTS", "adapter": "GENERIC_JSON", "data": {"records": []},
      "sourceId": "U291cmNlOjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMA=="}, ["input", "sourceId"], "NOT_FOUND"),
    ({"target": "CONTACTS", "adapter": "CSV", "data": "email,name\na@b.c,A\n", "fieldMapping": {"mail": "email"}},
     ["input", "fieldMapping", "mail"], "INVALID"),
    ({"target": "CONTACTS", "adapter": "CSV", "data": "email\na@b.c\n", "fieldMapping": {"email": "email:colour"}},
     ["input", "fieldMapping", "email"], "INVALID"),
    ({"target": "CONTACTS", "adapter": "GENERIC_JSON", "data": {"records": []}, "fieldMapping": {"a": "b"}},
     ["input", "fieldMapping"], "INVALID"),
    ({"target": "CONTACTS", "adapter": "CSV", "data": ""}, ["input", "data"], "INVALID"),
])
async def test_a_malformed_import_is_refused_synchronously_and_stores_nothing(
    api: Api, alice: Account, input_: dict, field: list[str], code: str
) -> None:
    started = await start_import(api, alice, **input_)
    assert started["job"] is None
    [error] = started["userErrors"]
    assert (error["field"], error["code"]) == (field, code), error
    assert await _job_ids(api, alice) == []


async def test_a_foreign_source_is_not_found_like_a_missing_one(api: Api, alice: Account, bob: Account) -> None:
    bobs = await _source(api, bob, "bobs")
    started = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data={"records": []}, sourceId=bobs)
    assert started["userErrors"] == [{"field": ["input", "sourceId"], "message": "Source not found", "code": "NOT_FOUND"}]


async def test_reimporting_the_same_items_creates_nothing_new(api: Api, alice: Account, worker: None) -> None:
    source = await _source(api, alice, "crm")
    payload = contacts_payload(30, "r")
    first = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=payload, sourceId=source)
    assert (await wait_for(api, alice, first["job"]["id"]))["result"]["created"] == 30
    payload["records"][0]["fullName"] = "Renamed Person"
    second = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=payload, sourceId=source)
    done = await wait_for(api, alice, second["job"]["id"])
    assert done["result"] == {"created": 0, "updated": 1, "skipped": 29, "deleted": 0, "failed": 0}
    assert done["progress"] == {"total": 30, "processed": 30, "successful": 1, "failed": 0, "skipped": 29}
    count = await api.data("{ contacts(first: 1) { totalCount } }", **alice.auth)
    assert count["contacts"]["totalCount"] == 30
    job = (await api.data("query($id: ID!) { node(id: $id) { ... on Job { source { id } createdBy { id role } } } }",
                          {"id": done["id"]}, **alice.auth))["node"]
    assert job["source"]["id"] == source and job["createdBy"]["role"] == "OWNER"


async def test_csv_inline_maps_and_types_columns(api: Api, alice: Account, worker: None) -> None:
    csv_text = (
        "Ref,Name,Mail,Labels,Notes\n"
        "1,Ada Lovelace,ada@example.com,math;poetry,\"first, of \"\"many\"\"\"\n"
        "2,,nobody@example.com,,\n"
        "3,Short Row\n"
    )
    mapping = {"Ref": "remoteId", "Name": "fullName", "Mail": "email", "Labels": "tags:list", "Notes": "customFields.notes"}
    started = await start_import(api, alice, target="CONTACTS", adapter="CSV", data=csv_text, fieldMapping=mapping)
    assert started["userErrors"] == []
    done = await wait_for(api, alice, started["job"]["id"])
    assert done["status"] == "COMPLETED"
    assert done["progress"] == {"total": 3, "processed": 3, "successful": 1, "failed": 2, "skipped": 0}
    failed = {e["node"]["index"]: e["node"] for e in (await items(api, alice, done["id"], "FAILED"))["edges"]}
    assert set(failed) == {1, 2} and "columns" in failed[2]["error"]
    [ok] = (await items(api, alice, done["id"], "SUCCESS"))["edges"]
    contact = (await api.data("query($id: ID!) { node(id: $id) { ... on Contact { fullName email tags customFields } } }",
                              {"id": ok["node"]["node"]["id"]}, **alice.auth))["node"]
    assert contact == {"fullName": "Ada Lovelace", "email": "ada@example.com", "tags": ["math", "poetry"],
                       "customFields": {"notes": 'first, of "many"'}}


async def test_csv_upload_through_multipart(api: Api, alice: Account, worker: None) -> None:
    rows = "".join(f"u{i},User {i},u{i}@example.com\n" for i in range(250))
    body = ("id,name,email\n" + rows).encode()
    started = await upload_import(api, alice, {"target": "CONTACTS", "adapter": "CSV", "fieldMapping": {
        "id": "remoteId", "name": "fullName", "email": "email"}}, ("contacts.csv", body, "text/csv"))
    assert started["userErrors"] == []
    done = await wait_for(api, alice, started["job"]["id"])
    assert done["progress"] == {"total": 250, "processed": 250, "successful": 250, "failed": 0, "skipped": 0}


async def test_a_json_upload_is_read_item_by_item(api: Api, alice: Account, worker: None) -> None:
    """A JSON file is streamed (never parsed whole, whatever its size): its items count at once,
    the records key may come after others, and a payload broken anywhere, its last byte
    included, is refused synchronously with the reason."""
    records = [{"id": f"j{i}", "fullName": f"Json {i}", "email": f"j{i}@example.com", "customFields": {"x": 1.5}}
               for i in range(3000)]
    body = json.dumps({"meta": {"exported": "today", "nested": {"records": [{"id": "not me"}]}}, "records": records}).encode()
    json_import = {"target": "CONTACTS", "adapter": "GENERIC_JSON"}
    started = await upload_import(api, alice, json_import, ("payload.json", body, "application/json"))
    assert started["userErrors"] == [], started
    done = await wait_for(api, alice, started["job"]["id"])
    assert done["progress"] == {"total": 3000, "processed": 3000, "successful": 3000, "failed": 0, "skipped": 0}
    jobs_before = await _job_ids(api, alice)
    for broken, reason in ((body[:-1], "not valid JSON"), (body.replace(b'"x": 1.5', b'"x": 1.5.5', 1), "not valid JSON"),
                           (b'{"records": {"a": 1}}', "expects an object {records: [...]}"),
                           (b'{"meta": [1, 2]}', "expects an object {records: [...]}"), (b"  \n ", "empty")):
        refused = await upload_import(api, alice, json_import, ("payload.json", broken, "application/json"))
        assert refused["job"] is None
        assert refused["userErrors"][0]["field"] == ["input", "file"] and reason in refused["userErrors"][0]["message"]
    assert await _job_ids(api, alice) == jobs_before


async def test_content_hub_documents(api: Api, alice: Account, worker: None) -> None:
    def entry(identifier: object, html: str, attributes: list[dict]) -> dict:
        return {"content": {"documentIdentifier": identifier, "deleted": False,
                            "inlineContent": {"textContent": {"data": html}, "type": "TEXT"}},
                "metadata": {"inlineAttributes": attributes}}

    def attr(key: str, value: str) -> dict:
        return {"key": key, "value": {"stringValue": value, "type": "STRING"}}

    payload = [[
        entry("Page://a", "<h1>Caf&eacute; &amp; Co</h1><p>Hello <b>world</b> &lt;3</p><ul><li>one</li><li>two</li></ul>",
              [attr("keywords", "business, enterprise"), attr("region", "EU")]),
        entry("Page://b", "<h2>Heading</h2><p>Body text</p>", [attr("Title", "Given Title")]),
        entry(None, "<p>no id</p>", []),
        "not an object",
    ], {"timeTaken": "250ms"}]
    started = await start_import(api, alice, target="DOCUMENTS", adapter="CONTENT_HUB", data=payload)
    assert started["userErrors"] == []
    done = await wait_for(api, alice, started["job"]["id"])
    assert done["progress"] == {"total": 4, "processed": 4, "successful": 2, "failed": 2, "skipped": 0}, \
        await items(api, alice, done["id"])
    succeeded = (await items(api, alice, done["id"], "SUCCESS"))["edges"]
    docs = []
    for edge in succeeded:
        docs.append((await api.data(
            "query($id: ID!) { node(id: $id) { ... on Document { title content contentType tags metadata } } }",
            {"id": edge["node"]["node"]["id"]}, **alice.auth))["node"])
    first, second = docs
    assert first["title"] == "Café & Co" and first["tags"] == ["business", "enterprise"]
    assert first["metadata"] == {"region": "EU"}
    assert first["contentType"] == "text/markdown"
    assert "Hello world <3" in first["content"] and "one" in first["content"]  # content is the extracted text
    assert second["title"] == "Given Title"


async def test_generic_json_documents_soft_delete_by_remote_id(api: Api, alice: Account, worker: None) -> None:
    data = {"records": [{"id": "d1", "title": "One", "content": "first document"},
                        {"id": "d2", "title": "Two", "content": "second document"}]}
    first = await wait_for(api, alice, (await start_import(api, alice, target="DOCUMENTS", adapter="GENERIC_JSON",
                                                           data=data))["job"]["id"])
    assert first["result"]["created"] == 2
    again = await wait_for(api, alice, (await start_import(api, alice, target="DOCUMENTS", adapter="GENERIC_JSON",
                                                           data={"records": [{"id": "d1", "deleted": True}]}))["job"]["id"])
    assert again["result"]["deleted"] == 1


async def test_cancel_stops_at_a_batch_boundary_and_keeps_what_committed(api: Api, alice: Account, worker: None) -> None:
    started = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON", data=contacts_payload(3000, "x"))
    job_id = started["job"]["id"]
    cancelled = (await api.data(CANCEL, {"id": job_id}, **alice.auth))["cancelJob"]
    assert cancelled["userErrors"] == [] and cancelled["job"]["status"] in ("PENDING", "RUNNING", "CANCELLED")
    done = await wait_for(api, alice, job_id)
    assert done["status"] == "CANCELLED" and done["finishedAt"]
    processed = done["progress"]["processed"]
    assert processed < 3000 and processed % 50 == 0  # whole batches only
    count = await api.data("{ contacts(first: 1, filter: {email: {startsWith: \"x\"}}) { totalCount } }", **alice.auth)
    assert count["contacts"]["totalCount"] == processed
    again = (await api.data(CANCEL, {"id": job_id}, **alice.auth))["cancelJob"]
    assert again["job"] is None and again["userErrors"][0]["code"] == "CONFLICT"


async def test_retry_runs_a_new_job_over_the_failed_items(api: Api, alice: Account, worker: None) -> None:
    payload = contacts_payload(5, "t")
    payload["records"][1]["email"] = "broken"
    payload["records"][3] = "not an object"
    done = await wait_for(api, alice, (await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON",
                                                          data=payload))["job"]["id"])
    assert done["progress"]["failed"] == 2
    retry = (await api.data(RETRY, {"id": done["id"]}, **alice.auth))["retryJob"]
    assert retry["userErrors"] == [] and retry["job"]["progress"]["total"] == 2
    redone = await wait_for(api, alice, retry["job"]["id"])
    assert redone["progress"] == {"total": 2, "processed": 2, "successful": 0, "failed": 2, "skipped": 0}
    assert sorted(e["node"]["index"] for e in (await items(api, alice, redone["id"]))["edges"]) == [1, 3]

    clean = await wait_for(api, alice, (await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON",
                                                           data=contacts_payload(2, "ok")))["job"]["id"])
    refused = (await api.data(RETRY, {"id": clean["id"]}, **alice.auth))["retryJob"]
    assert refused["job"] is None and refused["userErrors"][0]["code"] == "CONFLICT"


async def test_jobs_are_listed_newest_first_and_filtered(api: Api, alice: Account, worker: None) -> None:
    ids = []
    for prefix in ("n1", "n2", "n3"):
        ids.append((await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON",
                                       data=contacts_payload(1, prefix)))["job"]["id"])
    for job_id in ids:
        await wait_for(api, alice, job_id)
    assert await _job_ids(api, alice) == ids[::-1]
    page = (await api.data(JOBS, {"first": 2}, **alice.auth))["jobs"]
    assert [e["node"]["id"] for e in page["edges"]] == ids[:0:-1] and page["pageInfo"]["hasNextPage"]
    rest = (await api.data(JOBS, {"first": 2, "after": page["pageInfo"]["endCursor"]}, **alice.auth))["jobs"]
    assert [e["node"]["id"] for e in rest["edges"]] == ids[:1]
    filtered = (await api.data(JOBS, {"filter": {"status": ["FAILED"], "kind": ["IMPORT"]}}, **alice.auth))["jobs"]
    assert filtered["totalCount"] == 0
    assert (await api.data(JOBS, {"filter": {"status": ["COMPLETED"], "kind": ["IMPORT"]}}, **alice.auth))["jobs"]["totalCount"] == 3


async def test_jobs_are_isolated_between_workspaces(api: Api, alice: Account, bob: Account, worker: None) -> None:
    job_id = (await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON",
                                 data=contacts_payload(1, "i")))["job"]["id"]
    await wait_for(api, alice, job_id)
    assert (await api.data("query($id: ID!) { node(id: $id) { id } }", {"id": job_id}, **bob.auth))["node"] is None
    assert await _job_ids(api, bob) == []
    for mutation, key in ((CANCEL, "cancelJob"), (RETRY, "retryJob")):
        answer = (await api.data(mutation, {"id": job_id}, **bob.auth))[key]
        assert answer["job"] is None and answer["userErrors"][0]["code"] == "NOT_FOUND"


async def test_scopes_guard_jobs(api: Api, alice: Account) -> None:
    created = await api.data(
        "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }",
        {"input": {"name": "reader", "scopes": ["jobs:read", "contacts:read"]}}, **alice.auth,
    )
    key = created["createApiKey"]["secret"]
    body = await api(START_IMPORT_FILE, {"input": {"target": "CONTACTS", "adapter": "GENERIC_JSON",
                                                   "data": {"records": []}}}, api_key=key)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await api.data(JOBS, {}, api_key=key))["jobs"]["totalCount"] == 0
    anonymous = await api(JOBS, {})
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_sync_source_reimports_its_file(api: Api, alice: Account, settings: Settings, worker: None) -> None:
    workspace_uuid = base64.b64decode(alice.workspace_id).decode().split(":")[1]
    files = Path(settings.home) / "files" / workspace_uuid  # each workspace reads only its own folder
    files.mkdir(parents=True, exist_ok=True)
    (files / "people.csv").write_text("ref,name,email\nf1,File One,f1@example.com\nf2,File Two,f2@example.com\n")
    config = {"file": "people.csv", "import": {
        "target": "CONTACTS", "adapter": "CSV", "fieldMapping": {"ref": "remoteId", "name": "fullName", "email": "email"}}}
    source = (await api.data(CREATE_SOURCE, {"input": {"name": "files", "displayName": "Files", "provider": "FILE",
                                                       "config": config}}, **alice.auth))["createSource"]["source"]["id"]
    sync = "mutation($id: ID!) { syncSource(id: $id) { job { id kind } userErrors { field message code } } }"
    results = []
    for _ in range(2):
        started = (await api.data(sync, {"id": source}, **alice.auth))["syncSource"]
        assert started["userErrors"] == [] and started["job"]["kind"] == "SYNC_SOURCE"
        results.append((await wait_for(api, alice, started["job"]["id"]))["result"])
    assert results[0]["created"] == 2 and results[1] == {"created": 0, "updated": 0, "skipped": 2, "deleted": 0, "failed": 0}
    state = (await api.data("query($id: ID!) { node(id: $id) { ... on Source { lastSyncStartedAt lastSyncFinishedAt lastSyncStatusMessage } } }",
                            {"id": source}, **alice.auth))["node"]
    assert state["lastSyncStartedAt"] and state["lastSyncFinishedAt"] and "2 skipped" in state["lastSyncStatusMessage"]

    api_source = await _source(api, alice, "pushonly")
    refused = (await api.data(sync, {"id": api_source}, **alice.auth))["syncSource"]
    assert refused["userErrors"][0]["code"] == "INVALID"
    await api.data("mutation($id: ID!) { pauseSource(id: $id) { source { id } } }", {"id": source}, **alice.auth)
    paused = (await api.data(sync, {"id": source}, **alice.auth))["syncSource"]
    assert paused["userErrors"][0]["code"] == "CONFLICT"


async def test_retrying_takes_the_scopes_of_the_work(api: Api, alice: Account, worker: None) -> None:
    """jobs:write alone may not re-run an import into contacts: retrying writes what the job writes."""
    started = await start_import(api, alice, target="CONTACTS", adapter="GENERIC_JSON",
                                 data={"records": [{"id": "x1", "fullName": ""}]})
    done = await wait_for(api, alice, started["job"]["id"])
    assert done["progress"]["failed"] == 1
    key = (await api.data('mutation { createApiKey(input: {name: "jobs", scopes: ["jobs:read", "jobs:write"]}) { secret } }',
                          **alice.auth))["createApiKey"]["secret"]
    body = await api(RETRY, {"id": done["id"]}, api_key=key)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    allowed = (await api.data(RETRY, {"id": done["id"]}, **alice.auth))["retryJob"]
    assert allowed["userErrors"] == []


async def test_a_file_source_cannot_read_another_workspaces_files(
    api: Api, alice: Account, bob: Account, settings: Settings, worker: None
) -> None:
    alice_uuid = base64.b64decode(alice.workspace_id).decode().split(":")[1]
    files = Path(settings.home) / "files" / alice_uuid
    files.mkdir(parents=True, exist_ok=True)
    (files / "secret.csv").write_text("ref,name\ns1,Secret Person\n")
    config = {"file": f"../{alice_uuid}/secret.csv", "import": {
        "target": "CONTACTS", "adapter": "CSV", "fieldMapping": {"ref": "remoteId", "name": "fullName"}}}
    source = (await api.data(CREATE_SOURCE, {"input": {"name": "peek", "displayName": "Peek", "provider": "FILE",
                                                       "config": config}}, **bob.auth))["createSource"]["source"]["id"]
    started = (await api.data("mutation($id: ID!) { syncSource(id: $id) { job { id } userErrors { code } } }",
                              {"id": source}, **bob.auth))["syncSource"]
    done = await wait_for(api, bob, started["job"]["id"])
    assert done["status"] == "FAILED" and "own files folder" in done["error"] and str(settings.home) not in done["error"]
    assert (await api.data("{ contacts { totalCount } }", **bob.auth))["contacts"]["totalCount"] == 0
