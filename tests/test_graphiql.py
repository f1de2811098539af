"""GraphiQL served by the API itself: every asset from this origin, a strict CSP, and the page
rendered by headless Chromium (this machine has no internet, so a CDN could not serve it)."""

from __future__ import annotations

import re

import httpx

from tests.conftest import Api
from tests.test_cors import dump_dom


async def test_the_page_loads_nothing_from_elsewhere(api: Api) -> None:
    page = await api.http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp and "unsafe-inline" not in csp
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/graphiql/") or s.startswith("data:") for s in sources), sources
    assert "<script>" not in page.text  # no inline script: the CSP would refuse it
    for source in sources:
        if source.startswith("/graphiql/"):
            asset = await api.http.get(source)
            assert asset.status_code == 200 and len(asset.content) > 0, source


def test_graphiql_renders_in_chromium_with_only_this_server(live_server: str) -> None:
    dom = dump_dom(f"{live_server}/graphql")
    assert "graphiql-container" in dom, dom[:2000]  # React rendered GraphiQL: every script loaded and ran
    assert "FirstContacts" in dom  # the example query in the editor (CodeMirror splits it into tokens)
    assert "Loading GraphiQL" not in dom
    assert httpx.get(f"{live_server}/graphiql/licenses/graphiql.LICENSE").status_code == 200
