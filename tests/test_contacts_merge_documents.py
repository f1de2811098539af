"""mergeContacts moves document links and authorship to the surviving contact."""

from __future__ import annotations

from tests.conftest import Account, Api
from tests.contacts_support import create

DOC = """
mutation($input: CreateDocumentInput!) { createDocument(input: $input) { document { id } userErrors { code message } } }
"""
MERGE = "mutation($ids: [ID!]!) { mergeContacts(ids: $ids) { contact { id } userErrors { code } } }"
VIEW = """
query($id: ID!) { node(id: $id) { ... on Document { author { id } linkedNodes { id } } } }
"""


async def test_merge_moves_document_links_and_authorship(api: Api, alice: Account) -> None:
    keep = await create(api, alice, fullName="Keep", email="keep@docs.test")
    dup = await create(api, alice, fullName="Dup", email="dup@docs.test")
    both = (await api.data(DOC, {"input": {"title": "Both", "content": "linked to both",
                                            "linkTo": [keep["id"], dup["id"]]}}, **alice.auth))["createDocument"]
    by_dup = (await api.data(DOC, {"input": {"title": "By dup", "content": "written by dup", "authorId": dup["id"],
                                              "linkTo": [dup["id"]]}}, **alice.auth))["createDocument"]
    assert both["userErrors"] == [] and by_dup["userErrors"] == []

    merged = (await api.data(MERGE, {"ids": [keep["id"], dup["id"]]}, **alice.auth))["mergeContacts"]
    assert merged == {"contact": {"id": keep["id"]}, "userErrors": []}

    first = (await api.data(VIEW, {"id": both["document"]["id"]}, **alice.auth))["node"]
    assert first["linkedNodes"] == [{"id": keep["id"]}]
    second = (await api.data(VIEW, {"id": by_dup["document"]["id"]}, **alice.auth))["node"]
    assert second == {"author": {"id": keep["id"]}, "linkedNodes": [{"id": keep["id"]}]}
    listed = await api.data("query($id: ID!) { node(id: $id) { ... on Contact { documents { totalCount } } } }",
                            {"id": keep["id"]}, **alice.auth)
    assert listed["node"]["documents"]["totalCount"] == 2
