"""Bad input gets a clear, specific answer and changes nothing; good input that looked odd to
older rules (camelCase field names, hyphenated source names) is taken."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from app.config import Settings
from tests.conftest import SIGN_UP, Account, Api
from tests.jobs_support import start_import, upload_import
from tests.test_records import RECORDS, create, make, make_type

CONTACTS = "query($f: ContactFilter) { contacts(filter: $f) { totalCount edges { node { id } } } }"
CREATE_SOURCE = """mutation($input: CreateSourceInput!) {
  createSource(input: $input) { source { id name } userErrors { field message code } } }"""


def count(settings: Settings, table: str, where: str = "true") -> int:
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute(f"select count(*) from {table} where {where}").fetchone()[0]  # type: ignore[index]


def codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


# ---------------------------------------------------------------- record field values


async def test_a_datetime_whose_utc_value_overflows_is_an_invalid_field(api: Api, alice: Account,
                                                                         settings: Settings) -> None:
    """Year 1 at +01:00 is a time before year 1 in UTC (and 9999-12-31 at -01:00 one after 9999)."""
    type_id = await make_type(api, alice, "overflow", [{"name": "openedAt", "fieldType": "DATETIME"}])
    before = count(settings, "records")
    for value in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        out = await create(api, alice, type_id, {"openedAt": value})
        assert out["record"] is None
        assert out["userErrors"] == [{"field": ["input", "fields", "openedAt"], "message": "openedAt is out of range",
                                      "code": "INVALID"}]
        body = await api(RECORDS, {"type": type_id, "filter": {"fields": [{"field": "openedAt", "gt": value}]}},
                         **alice.auth)
        assert codes(body) == ["BAD_USER_INPUT"] and "out of range" in body["errors"][0]["message"]
    assert count(settings, "records") == before
    assert (await make(api, alice, type_id, {"openedAt": "0001-01-01T00:00:00-01:00"}))["fields"] == {
        "openedAt": "0001-01-01T01:00:00Z"}


async def test_number_and_json_fields_refuse_what_json_cannot_hold(api: Api, alice: Account) -> None:
    """A GraphQL literal 1e400 is an infinity; huge integers are not INTs; 10,000 decimals are a float."""
    type_id = await make_type(api, alice, "numbers", [
        {"name": "n", "fieldType": "INT"}, {"name": "f", "fieldType": "FLOAT"}, {"name": "j", "fieldType": "JSON"},
        {"name": "d", "fieldType": "DATE"},
    ])

    async def literal(fields: str) -> dict[str, Any]:
        query = ('mutation { createRecord(input: {objectTypeId: "%s", name: "x", fields: %s}) '
                 '{ record { fields } userErrors { field message code } } }') % (type_id, fields)
        return await api(query, **alice.auth)

    def refused_on(body: dict[str, Any], field: str) -> bool:
        """A user error on the field, or (the JSON scalar refusing infinities itself) BAD_USER_INPUT."""
        if "errors" in body:
            return codes(body) == ["BAD_USER_INPUT"]
        out = body["data"]["createRecord"]
        return out["record"] is None and [e["field"] for e in out["userErrors"]] == [["input", "fields", field]]

    for fields, field in (("{j: 1e400}", "j"), ("{j: {deep: [1, -1e400]}}", "j"), ("{f: 1e400}", "f"),
                          ("{n: 1e308}", "n"), ("{n: %s}" % ("9" * 30), "n"), ('{f: "NaN"}', "f"),
                          ('{d: "0000-01-01"}', "d"), ('{d: "2026-02-30"}', "d")):
        assert refused_on(await literal(fields), field), fields
    body = await literal("{f: 0.%s}" % ("1" * 10_000))
    assert body["data"]["createRecord"]["record"]["fields"]["f"] == pytest.approx(1 / 9)
    body = await api(RECORDS, {"type": type_id, "filter": {"fields": [{"field": "j", "eq": {"a": 1}}]}}, **alice.auth)
    assert "errors" not in body
    query = 'query { records(objectTypeId: "%s", filter: {fields: [{field: "j", eq: 1e400}]}) { totalCount } }' % type_id
    assert codes(await api(query, **alice.auth)) == ["BAD_USER_INPUT"]


# ---------------------------------------------------------------- list sizes


async def test_filter_lists_are_capped_with_a_clear_error(api: Api, alice: Account) -> None:
    """70,000 values used to reach the driver ("number of parameters must be between 0 and 65535")."""
    for f, path in (
        ({"email": {"in": ["x@example.com"] * 70_000}}, "filter.email.in"),
        ({"id": {"in": ["Q29udGFjdDo="] * 1001}}, "filter.id.in"),
        ({"or": [{"email": {"eq": "a@example.com"}}] * 1001}, "filter.or"),
        ({"and": [{"tags": {"in": ["t"] * 1001}}]}, "filter.and.0.tags.in"),
    ):
        body = await api(CONTACTS, {"f": f}, **alice.auth)
        assert codes(body) == ["BAD_USER_INPUT"], body
        assert body["errors"][0]["message"] == f"{path}: at most 1,000 values, got {len(_deepest_list(f)):,}"
    assert "errors" not in await api(CONTACTS, {"f": {"email": {"in": ["x@example.com"] * 1000}}}, **alice.auth)
    type_id = await make_type(api, alice, "listy", [{"name": "n", "fieldType": "INT"}])
    body = await api(RECORDS, {"type": type_id, "filter": {"fields": [{"field": "n", "in": list(range(1001))}]}},
                     **alice.auth)
    assert body["errors"][0]["message"] == "filter.fields.0.in: at most 1,000 values, got 1,001"
    body = await api("query($f: SourceFilter) { sources(filter: $f) { totalCount } }",
                     {"f": {"provider": ["API"] * 1001}}, **alice.auth)
    assert body["errors"][0]["message"] == "filter.provider: at most 1,000 values, got 1,001"


def _deepest_list(value: Any) -> list[Any]:
    while isinstance(value, dict):
        value = next(iter(value.values()))
    return value if len(value) > 1 else _deepest_list(value[0])


async def test_bulk_inputs_are_capped(api: Api, alice: Account, settings: Settings) -> None:
    """Lists in mutation inputs: a userError naming the input, nothing written."""
    contacts_before = count(settings, "contacts")
    out = (await api.data("""mutation($input: CreateContactInput!) { createContact(input: $input) {
        contact { id } userErrors { field message code } } }""",
        {"input": {"fullName": "Tagged", "tags": [f"t{i}" for i in range(1001)]}}, **alice.auth))["createContact"]
    assert out["contact"] is None and out["userErrors"][0]["field"] == ["input", "tags"]
    linked = (await api.data("""mutation($input: CreateDocumentInput!) { createDocument(input: $input) {
        document { id } userErrors { field message code } } }""",
        {"input": {"title": "Linked", "content": "x", "linkTo": ["Q29udGFjdDo="] * 1001}}, **alice.auth))
    assert linked["createDocument"]["userErrors"][0]["field"] == ["input", "linkTo"], linked
    edge = {"sourceId": "Q29udGFjdDo=", "targetId": "Q29udGFjdDo=", "kind": "knows"}
    body = await api("""mutation($inputs: [CreateRelationshipInput!]!) { createRelationships(inputs: $inputs) {
        userErrors { field message code } } }""", {"inputs": [edge] * 1001}, **alice.auth)
    assert body["data"]["createRelationships"]["userErrors"][0]["field"] == ["inputs"], body
    assert count(settings, "contacts") == contacts_before


# ---------------------------------------------------------------- passwords


@pytest.mark.parametrize("password", [" " * 12, "\t \n \u3000\u00a0    ", "correct\x00horse battery",
                                      "correct horse\x1bbattery", "short"])
async def test_passwords_follow_a_stated_rule(api: Api, settings: Settings, password: str) -> None:
    email = f"pw-{abs(hash(password))}@example.com"
    body = await api(SIGN_UP, {"input": {"email": email, "password": password, "workspaceName": "W"}})
    assert count(settings, "users", f"email = '{email}'") == 0
    if "errors" in body:  # NUL is refused in every string input, before any service sees it
        assert "\x00" in password and codes(body) == ["BAD_USER_INPUT"] and "password" in body["errors"][0]["message"]
        return
    out = body["data"]["signUp"]
    assert out["accessToken"] is None
    [error] = out["userErrors"]
    assert error["field"] == ["input", "password"] and error["code"] == "INVALID"
    assert error["message"] == ("password must be at least 8 and at most 1024 characters, not only whitespace, "
                                "and no control characters")
    assert count(settings, "users", f"email = '{email}'") == 0


async def test_the_password_rule_is_in_the_schema(api: Api) -> None:
    fields = (await api.data('{ __type(name: "SignUpInput") { inputFields { name description } } }'))["__type"]
    description = {f["name"]: f["description"] for f in fields["inputFields"]}["password"]
    assert "8" in description and "whitespace" in description and "control characters" in description


# ---------------------------------------------------------------- names


async def test_custom_fields_may_be_named_in_camel_case_end_to_end(api: Api, alice: Account) -> None:
    type_id = await make_type(api, alice, "deal", [
        {"name": "openedAt", "fieldType": "DATETIME"}, {"name": "amountUsd", "fieldType": "FLOAT"},
        {"name": "amountusd", "fieldType": "FLOAT"}, {"name": "_internal", "fieldType": "STRING"},
    ])
    await make(api, alice, type_id, {"openedAt": "2026-01-02T00:00:00Z", "amountUsd": 10.5, "amountusd": 1}, "a")
    await make(api, alice, type_id, {"openedAt": "2026-03-04T00:00:00Z", "amountUsd": 99, "amountusd": 2}, "b")
    data = await api.data(RECORDS, {"type": type_id, "filter": {"fields": [{"field": "amountUsd", "gt": 50}]},
                                    "orderBy": [{"customField": "openedAt", "direction": "DESC"}]}, **alice.auth)
    assert [e["node"]["name"] for e in data["records"]["edges"]] == ["b"]
    data = await api.data(RECORDS, {"type": type_id, "orderBy": [{"customField": "amountusd", "direction": "DESC"}]},
                          **alice.auth)
    assert [e["node"]["name"] for e in data["records"]["edges"]] == ["b", "a"]
    twice = [{"customField": "amountUsd"}, {"customField": "amountUsd", "direction": "DESC"}]
    data = await api.data(RECORDS, {"type": type_id, "orderBy": twice}, **alice.auth)
    assert [e["node"]["name"] for e in data["records"]["edges"]] == ["a", "b"]
    for bad in ("9lives", "opened-at", "opened.at", "a b", "__typename", "x" * 64, "ok\n", "naïve"):
        body = await api.data("""mutation($input: CreateObjectTypeInput!) { createObjectType(input: $input) {
            objectType { id } userErrors { field message code } } }""", {"input": {
            "name": "bad", "displayName": "Bad", "fieldDefinitions": [{"name": bad, "fieldType": "STRING"}]}},
            **alice.auth)
        assert body["createObjectType"]["userErrors"][0]["field"] == ["input", "fieldDefinitions", "0", "name"], bad


async def test_camel_case_fields_import_from_csv(api: Api, alice: Account, worker: None) -> None:
    from tests.jobs_support import wait_for

    type_id = await make_type(api, alice, "lead", [{"name": "amountUsd", "fieldType": "INT"}])
    started = await start_import(api, alice, target="RECORDS", adapter="CSV", objectTypeId=type_id,
                                 data="ref,label,amount\nr1,Lead one,42\n",
                                 fieldMapping={"ref": "id", "label": "name", "amount": "fields.amountUsd:int"})
    assert started["userErrors"] == [], started
    assert (await wait_for(api, alice, started["job"]["id"]))["status"] == "COMPLETED"
    data = await api.data(RECORDS, {"type": type_id, "filter": {"fields": [{"field": "amountUsd", "eq": 42}]}},
                          **alice.auth)
    assert [e["node"]["fields"] for e in data["records"]["edges"]] == [{"amountUsd": 42}]


async def test_source_names_are_lower_case_slugs(api: Api, alice: Account) -> None:
    for name in ("imap-acme", "imap_acme-2", "a", "crm__eu_"):
        out = (await api.data(CREATE_SOURCE, {"input": {"name": name, "displayName": "X", "provider": "API"}},
                              **alice.auth))["createSource"]
        assert out["userErrors"] == [] and out["source"]["name"] == name
    for name in ("Imap-Acme", "-acme", "_acme", "imap acme", "imap.acme", "2fa", "acme\n", "x" * 64, ""):
        out = (await api.data(CREATE_SOURCE, {"input": {"name": name, "displayName": "X", "provider": "API"}},
                              **alice.auth))["createSource"]
        assert out["source"] is None and out["userErrors"][0]["field"] == ["input", "name"], name


# ---------------------------------------------------------------- CSV imports


@pytest.fixture(scope="module")
def worker(settings: Settings) -> Any:
    from tests.jobs_support import running_worker

    with running_worker(settings):
        yield


async def test_a_csv_whose_columns_map_to_no_field_is_refused(api: Api, alice: Account, settings: Settings) -> None:
    jobs_before = count(settings, "jobs")
    out = await start_import(api, alice, target="CONTACTS", adapter="CSV", data="not,a\n1,2\n")
    assert out["job"] is None
    [error] = out["userErrors"]
    assert error["field"] == ["input", "data"] and error["code"] == "INVALID"
    assert "not, a" in error["message"] and "fullName" in error["message"] and "email" in error["message"]
    mapped = await start_import(api, alice, target="CONTACTS", adapter="CSV", data="not,a\n1,2\n",
                                fieldMapping={"not": "nickname", "a": "alias"})
    assert mapped["job"] is None and "nickname, alias" in mapped["userErrors"][0]["message"]
    type_id = await make_type(api, alice, "order", [{"name": "totalUsd", "fieldType": "INT"}])
    records = await start_import(api, alice, target="RECORDS", adapter="CSV", objectTypeId=type_id,
                                 data="total\n1\n", fieldMapping={"total": "fields.total"})
    assert records["job"] is None and "fields.totalUsd" in records["userErrors"][0]["message"]
    assert count(settings, "jobs") == jobs_before


async def test_an_uploaded_csv_whose_columns_map_to_no_field_is_refused(api: Api, alice: Account,
                                                                        settings: Settings) -> None:
    jobs_before = count(settings, "jobs")
    out = await upload_import(api, alice, {"target": "DOCUMENTS", "adapter": "CSV"},
                              ("docs.csv", b"foo,bar\nx,y\n", "text/csv"))
    assert out["job"] is None and out["userErrors"][0]["field"] == ["input", "file"]
    assert "foo, bar" in out["userErrors"][0]["message"] and "title" in out["userErrors"][0]["message"]
    assert count(settings, "jobs") == jobs_before


async def test_records_csv_with_a_partly_known_header_still_imports(api: Api, alice: Account) -> None:
    type_id = await make_type(api, alice, "visit", [{"name": "city", "fieldType": "STRING"}])
    out = await start_import(api, alice, target="RECORDS", adapter="CSV", objectTypeId=type_id,
                             data="id,name,fields.city,extra\nv1,Visit,Paris,x\n")
    assert out["userErrors"] == [] and out["job"]["status"] == "PENDING"


def test_csv_cells_refuse_numbers_json_cannot_hold() -> None:
    """Python's float() and json.loads() take NaN and Infinity; no JSON column can hold them."""
    from app.services.adapters import BadItem, csv_entries, csv_rows

    rows = b"id,x,y\n1,Infinity,1\n2,{\"a\": NaN},1\n3,1,inf\n4,[1],2.5\n"
    entries = list(csv_entries(csv_rows([rows]), {"id": "id", "x": "customFields.x:json", "y": "customFields.y:float"}))
    assert [e.remote_id for e in entries[:3] if isinstance(e, BadItem)] == ["1", "2", "3"]
    assert entries[3] == {"id": "4", "customFields": {"x": [1], "y": 2.5}}


async def test_a_malformed_id_among_nodes_leaves_no_connection_behind(api: Api, alice: Account, app: Any) -> None:
    """The look-ups of the good ids used to go on after the bad one ended the operation, each
    holding a pooled connection in a transaction: a client could drain the pool that way."""
    created = await api.data('mutation { createContact(input: {fullName: "Node"}) { contact { id } } }', **alice.auth)
    good = created["createContact"]["contact"]["id"]
    pool = app.state.services.db.engine.sync_engine.pool
    before = pool.checkedout()
    for _ in range(5):
        body = await api("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": [good, good, "!!"]}, **alice.auth)
        assert codes(body) == ["BAD_USER_INPUT"]
    await asyncio.sleep(0.2)
    assert pool.checkedout() == before
