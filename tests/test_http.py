"""GraphQL over HTTP, to the letter: media types, status codes, malformed requests, CSRF."""

from __future__ import annotations

from typing import Any

import httpx

from app.http import negotiate
from tests.conftest import Account, Api

GQL = "application/graphql-response+json"


async def post(api: Api, body: Any, accept: str | None = GQL, **headers: str) -> httpx.Response:
    h = {"content-type": "application/json", **headers}
    if accept is not None:
        h["accept"] = accept
    if isinstance(body, (bytes, str)):
        return await api.http.post("/graphql", content=body, headers=h)
    return await api.http.post("/graphql", json=body, headers=h)


def test_negotiation() -> None:
    assert negotiate(None) == "application/json"
    assert negotiate("application/json") == "application/json"
    assert negotiate(GQL) == GQL
    assert negotiate(f"application/json, {GQL}") == GQL
    assert negotiate(f"application/json;q=1, {GQL};q=0.5") == "application/json"
    assert negotiate("*/*") == "application/json"
    assert negotiate(f"*/*, {GQL}") == GQL
    assert negotiate("text/plain") is None


async def test_success_in_both_media_types(api: Api) -> None:
    # An empty Accept (no preference) gets the legacy type, as the spec asks for old clients.
    for accept, media in ((GQL, GQL), ("application/json", "application/json"), ("", "application/json")):
        response = await post(api, {"query": "{ __typename }"}, accept=accept)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media)
        assert response.json() == {"data": {"__typename": "Query"}}


async def test_request_errors_are_4xx_only_with_the_graphql_media_type(api: Api) -> None:
    cases = [
        {"query": "{ __typename "},  # syntax
        {"query": "{ notAField }"},  # validation
        {"query": "query($n: Int!) { __typename }", "variables": {"n": "x"}},  # variable coercion
        {"query": "query($n: Int!) { __typename }"},  # missing variable
    ]
    for body in cases:
        strict = await post(api, body)
        assert strict.status_code == 400, body
        payload = strict.json()
        assert "data" not in payload and payload["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        legacy = await post(api, body, accept="application/json")
        assert legacy.status_code == 200 and legacy.json()["errors"]


async def test_field_errors_keep_200_and_partial_data(api: Api) -> None:
    response = await post(api, {"query": "{ __typename viewer { scopes } }"})
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None and body["errors"][0]["path"] == ["viewer"]


async def test_malformed_requests(api: Api) -> None:
    not_json = await post(api, b"{not json")
    assert not_json.status_code == 400 and not_json.json()["errors"][0]["message"]
    no_query = await post(api, {"variables": {}})
    assert no_query.status_code == 400
    bad_variables = await post(api, {"query": "{ __typename }", "variables": [1]})
    assert bad_variables.status_code == 400


async def test_get_serves_queries_but_refuses_mutations(api: Api) -> None:
    ok = await api.http.get("/graphql", params={"query": "{ __typename }"}, headers={"accept": GQL})
    assert ok.status_code == 200 and ok.json() == {"data": {"__typename": "Query"}}
    mutation = 'mutation { login(input: {email: "a@b.co", password: "x"}) { accessToken } }'
    refused = await api.http.get("/graphql", params={"query": mutation}, headers={"accept": GQL})
    assert refused.status_code == 405 and refused.headers["allow"] == "POST"


async def test_get_answers_are_never_shared_between_callers(api: Api, alice: Account) -> None:
    """A GET is cacheable by URL: the answer says no cache may keep it, and on what it depends."""
    query = {"query": "{ viewer { user { email } } }"}
    for headers in ({"accept": GQL}, {"accept": GQL, "authorization": f"Bearer {alice.token}"}):
        answer = await api.http.get("/graphql", params=query, headers=headers)
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "private, no-store"
        assert {v.strip().lower() for v in answer.headers["vary"].split(",")} >= {"authorization", "x-api-key", "x-workspace-id"}


async def test_graphiql_for_browsers(api: Api) -> None:
    page = await api.http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


async def test_csrf_simple_content_types_are_refused(api: Api) -> None:
    body = '{"query": "{ __typename }"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = await api.http.post("/graphql", content=body, headers={"content-type": content_type})
        assert response.status_code == 415
    multipart = await api.http.post(
        "/graphql", files={"operations": (None, body), "map": (None, "{}")}
    )
    assert multipart.status_code == 400 and "Preflight" in multipart.json()["errors"][0]["message"]
    preflighted = await api.http.post(
        "/graphql", files={"operations": (None, body), "map": (None, "{}")},
        headers={"graphql-require-preflight": "1"},
    )
    assert preflighted.status_code == 200 and preflighted.json()["data"] == {"__typename": "Query"}


async def test_unacceptable_accept_is_406(api: Api) -> None:
    response = await post(api, {"query": "{ __typename }"}, accept="text/plain")
    assert response.status_code == 406


async def test_body_over_the_limit_is_413(api: Api, settings: Any) -> None:
    big = b'{"query": "{ __typename }", "pad": "' + b"x" * (settings.max_body_bytes + 1) + b'"}'
    response = await post(api, big)
    assert response.status_code == 413

    async def chunks():  # no Content-Length: the limit still holds while streaming
        yield b'{"query": "{ __typename }", "pad": "'
        for _ in range(11):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    streamed = await api.http.post("/graphql", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


async def test_request_id_is_echoed_or_made(api: Api) -> None:
    given = await post(api, {"query": "{ __typename }"}, **{"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await post(api, {"query": "{ __typename }"}, **{"x-request-id": "bad id with spaces"})
    assert len(made.headers["x-request-id"]) == 32


async def test_no_field_suggestions(api: Api) -> None:
    body = (await post(api, {"query": "{ viewr { scopes } }"}, accept="application/json")).json()
    assert "Did you mean" not in body["errors"][0]["message"]


async def test_introspection_on_by_default_and_off_by_setting(api: Api, settings: Any) -> None:
    from dataclasses import replace

    from app.http import create_app

    query = {"query": "{ __schema { queryType { name } } }"}
    assert (await post(api, query)).json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
    closed = create_app(replace(settings, introspection=False, graphiql=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=closed), base_url="http://t") as client:
        refused = await client.post("/graphql", json=query, headers={"accept": GQL})
        assert refused.status_code == 400
        assert "introspection" in refused.json()["errors"][0]["message"].lower()
        page = await client.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 404
        await closed.state.services.db.dispose()
        await closed.state.services.redis.aclose()


async def test_unexpected_errors_are_masked_with_a_request_id(api: Api, alice: Account, monkeypatch: Any) -> None:
    from app.services import sources

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret detail: password=hunter2 SELECT * FROM users")

    monkeypatch.setattr(sources, "sources_query", broken)  # the planner meets it, then the resolver
    # a document of its own: a plan compiled earlier for another would not meet the broken query
    response = await api.post("{ brokenSources: sources { totalCount } }", **alice.auth, headers={"x-request-id": "req-42"})
    error = response.json()["errors"][0]
    assert error["message"] == "Internal server error"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-42"}
    assert "hunter2" not in response.text


async def test_health_readiness_and_metrics(api: Api) -> None:
    assert (await api.http.get("/healthz")).json() == {"status": "ok"}
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok", "postgres": "ok", "redis": "ok"}
    assert (await api.http.get("/metrics")).status_code == 404  # no CTXGRAPH_METRICS_TOKEN: not served


async def test_readyz_reports_an_unreachable_redis(settings: Any) -> None:
    from dataclasses import replace

    from app.http import create_app

    broken = create_app(replace(settings, redis_url="redis://127.0.0.1:1/0"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=broken), base_url="http://t") as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["postgres"] == "ok" and ready.json()["redis"] != "ok"
    await broken.state.services.db.dispose()
