"""`ctxgraph import FILE`: a client of a running server. Uploads the file with startImport
(GraphQL multipart request), follows jobProgress over graphql-transport-ws with a progress bar,
then prints the result and the failed items. Exit status 0 when the job completed."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import httpx
from websockets.asyncio.client import connect

JOB_FIELDS = "id status error result progress { total processed successful failed skipped }"
START = """mutation($input: StartImportInput!) { startImport(input: $input) {
  job { %s } userErrors { field message code } } }""" % JOB_FIELDS
PROGRESS = "subscription($id: ID!) { jobProgress(id: $id) { %s } }" % JOB_FIELDS
FAILED_ITEMS = """query($id: ID!, $after: String) { node(id: $id) { ... on Job {
  items(status: FAILED, first: 100, after: $after) { edges { node { index remoteId error } } pageInfo { hasNextPage endCursor } }
} } }"""
OBJECT_TYPE = "query($name: String!) { objectType(name: $name) { id } }"
SOURCES = "query($after: String) { sources(first: 100, after: $after) { edges { node { id name } } pageInfo { hasNextPage endCursor } } }"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


class ImportFailed(Exception):
    pass


class Client:
    def __init__(self, url: str, api_key: str, workspace: str | None) -> None:
        self.url = url.rstrip("/")
        if not self.url.endswith("/graphql"):
            self.url += "/graphql"
        self.headers = {"x-api-key": api_key, **({"x-workspace-id": workspace} if workspace else {})}
        self.init_payload = {"apiKey": api_key, **({"workspaceId": workspace} if workspace else {})}
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, write=300.0))

    async def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.http.post(self.url, json={"query": query, "variables": variables or {}}, headers=self.headers)
        return self._data(response)

    @staticmethod
    def _data(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise ImportFailed(f"HTTP {response.status_code} from the server") from None
        if body.get("errors"):
            raise ImportFailed("; ".join(e.get("message", "?") for e in body["errors"]))
        return body["data"]  # type: ignore[no-any-return]

    async def object_type_id(self, name: str) -> str:
        found = (await self.query(OBJECT_TYPE, {"name": name}))["objectType"]
        if not found:
            raise ImportFailed(f"No object type named {name!r}")
        return str(found["id"])

    async def source_id(self, name: str) -> str:
        after = None
        while True:
            page = (await self.query(SOURCES, {"after": after}))["sources"]
            for edge in page["edges"]:
                if edge["node"]["name"] == name:
                    return str(edge["node"]["id"])
            if not page["pageInfo"]["hasNextPage"]:
                raise ImportFailed(f"No source named {name!r}")
            after = page["pageInfo"]["endCursor"]

    async def start(self, path: Path, input_: dict[str, Any]) -> dict[str, Any]:
        """The file streams from disk in the multipart body."""
        operations = {"query": START, "variables": {"input": {**input_, "file": None}}}
        with path.open("rb") as handle:
            response = await self.http.post(
                self.url,
                data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.input.file"]})},
                files={"0": (path.name, handle, "application/octet-stream")},
                headers={**self.headers, "graphql-require-preflight": "1"},
            )
        payload = self._data(response)["startImport"]
        if payload["userErrors"]:
            raise ImportFailed("; ".join(f"{'.'.join(e['field'] or [])}: {e['message']}" for e in payload["userErrors"]))
        return payload["job"]  # type: ignore[no-any-return]

    async def follow(self, job_id: str, out: TextIO) -> dict[str, Any]:
        ws_url = "ws" + self.url[len("http"):]
        async with connect(ws_url, subprotocols=["graphql-transport-ws"], ping_interval=20) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": self.init_payload}))
            await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                      "payload": {"query": PROGRESS, "variables": {"id": job_id}}}))
            job: dict[str, Any] = {}
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif message["type"] == "next":
                    if message["payload"].get("errors"):
                        raise ImportFailed(message["payload"]["errors"][0]["message"])
                    job = message["payload"]["data"]["jobProgress"]
                    _bar(job, out)
                elif message["type"] in ("complete", "error"):
                    break
            out.write("\n")
            return job

    async def failed_items(self, job_id: str) -> list[dict[str, Any]]:
        out, after = [], None
        while True:
            page = (await self.query(FAILED_ITEMS, {"id": job_id, "after": after}))["node"]["items"]
            out += [e["node"] for e in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                return out
            after = page["pageInfo"]["endCursor"]


def _bar(job: dict[str, Any], out: TextIO, width: int = 30) -> None:
    progress = job["progress"]
    total, done = progress["total"], progress["processed"]
    filled = int(width * done / total) if total else 0
    counts = f"{done}/{total if total is not None else '?'}"
    out.write(f"\r{job['status']:<9} [{'#' * filled}{'.' * (width - filled)}] {counts} "
              f"ok {progress['successful']} skipped {progress['skipped']} failed {progress['failed']}")
    out.flush()


async def run_import(
    path: Path, *, url: str, api_key: str, workspace: str | None, target: str, adapter: str,
    object_type: str | None, source: str | None, mapping: Any, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
) -> int:
    client = Client(url, api_key, workspace)
    try:
        input_: dict[str, Any] = {"target": target, "adapter": adapter}
        if object_type:
            input_["objectTypeId"] = await client.object_type_id(object_type)
        if source:
            input_["sourceId"] = await client.source_id(source)
        if mapping is not None:
            input_["fieldMapping"] = mapping
        job = await client.start(path, input_)
        err.write(f"job {job['id']} started\n")
        if job["status"] not in TERMINAL:
            job = await client.follow(job["id"], err)
        out.write(json.dumps({"status": job["status"], "result": job.get("result"), "error": job.get("error")}) + "\n")
        for item in await client.failed_items(job["id"]):
            out.write(f"failed item {item['index']} ({item['remoteId'] or 'no id'}): {item['error']}\n")
        return 0 if job["status"] == "COMPLETED" else 1
    except (ImportFailed, httpx.HTTPError, OSError) as exc:
        err.write(f"ctxgraph import: {exc}\n")
        return 1
    finally:
        await client.http.aclose()


def main(args: Any) -> int:
    mapping = None
    if args.mapping:
        text = Path(args.mapping[1:]).read_text() if args.mapping.startswith("@") else args.mapping
        mapping = json.loads(text)
    if not args.api_key:
        sys.stderr.write("ctxgraph import: give --api-key or set CTXGRAPH_API_KEY\n")
        return 2
    return asyncio.run(run_import(
        Path(args.file), url=args.url, api_key=args.api_key, workspace=args.workspace, target=args.target.upper(),
        adapter=args.adapter.upper().replace("-", "_"), object_type=args.object_type, source=args.source, mapping=mapping,
    ))
