"""GraphQL documents and helpers shared by the contact, activity and relationship tests."""

from __future__ import annotations

from typing import Any

from tests.conftest import Account, Api

CONTACT_FIELDS = "id fullName email emails phone title company city state tags contactType status remoteId customFields createdAt updatedAt deletedAt"
ERRORS = "userErrors { field message code }"

CREATE = f"""
mutation($input: CreateContactInput!) {{
  createContact(input: $input) {{ contact {{ {CONTACT_FIELDS} }} {ERRORS} }}
}}
"""
UPDATE = f"""
mutation($id: ID!, $input: UpdateContactInput!) {{
  updateContact(id: $id, input: $input) {{ contact {{ {CONTACT_FIELDS} }} {ERRORS} }}
}}
"""
DELETE = f"mutation($id: ID!) {{ deleteContact(id: $id) {{ contact {{ id deletedAt }} {ERRORS} }} }}"
RESTORE = f"mutation($id: ID!) {{ restoreContact(id: $id) {{ contact {{ id deletedAt }} {ERRORS} }} }}"
MERGE = f"mutation($ids: [ID!]!) {{ mergeContacts(ids: $ids) {{ contact {{ {CONTACT_FIELDS} }} {ERRORS} }} }}"
LIST = """
query($filter: ContactFilter, $orderBy: [ContactOrder!], $search: String, $first: Int, $after: String,
      $last: Int, $before: String) {
  contacts(filter: $filter, orderBy: $orderBy, search: $search, first: $first, after: $after, last: $last,
           before: $before) {
    edges { cursor node { id fullName email company tags } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    totalCount
  }
}
"""
RECORD = f"""
mutation($input: RecordActivityInput!) {{
  recordActivity(input: $input) {{
    event {{ id type resourceId occurredAt summary participants metadata contact {{ id email }} }}
    {ERRORS}
  }}
}}
"""
INTELLIGENCE = """
query($id: ID!) { node(id: $id) { ... on Contact { intelligence {
  sentCount receivedCount firstContactAt lastContactAt lastSentAt lastReceivedAt daysSinceContact
  replyRate avgResponseTimeHours preferredContactHours threadCount communicationPattern health strength
} } } }
"""
CREATE_REL = f"""
mutation($input: CreateRelationshipInput!) {{
  createRelationship(input: $input) {{
    relationship {{ id kind weight isActive metadata source {{ id }} target {{ id }} }}
    {ERRORS}
  }}
}}
"""


async def create(api: Api, who: Account, **fields: Any) -> dict[str, Any]:
    fields.setdefault("fullName", "Someone")
    payload = (await api.data(CREATE, {"input": fields}, **who.auth))["createContact"]
    assert payload["userErrors"] == [], payload["userErrors"]
    return payload["contact"]


async def record(api: Api, who: Account, **fields: Any) -> dict[str, Any]:
    payload = (await api.data(RECORD, {"input": fields}, **who.auth))["recordActivity"]
    assert payload["userErrors"] == [], payload["userErrors"]
    return payload["event"]


async def relate(api: Api, who: Account, source: str, target: str, kind: str = "works_with", **extra: Any) -> dict[str, Any]:
    payload = (await api.data(CREATE_REL, {"input": {"sourceId": source, "targetId": target, "kind": kind, **extra}},
                              **who.auth))["createRelationship"]
    assert payload["userErrors"] == [], payload["userErrors"]
    return payload["relationship"]


def names(data: dict[str, Any]) -> list[str]:
    return [e["node"]["fullName"] for e in data["contacts"]["edges"]]
