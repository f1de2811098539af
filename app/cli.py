"""The `ctxgraph` command: serve, worker, migrate, schema, import.

Each command imports what it needs when it runs, so `ctxgraph schema` starts no server and
loads neither uvicorn nor the database drivers.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any

from app.config import InsecureSecret, Settings

log = logging.getLogger("ctxgraph.cli")
H11_MAX_REQUEST_HEAD = 1024 * 1024 + 64 * 1024  # a megabyte of headers, and room for the request line


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        with _sigterm_as_interrupt():
            code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except InsecureSecret as exc:  # serve and worker refuse to start with a secret anyone may know
        print(f"ctxgraph: refusing to start: {exc}", file=sys.stderr, flush=True)
        return 2
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctxgraph", description="Context Graph GraphQL API server.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="migrate, then run the API (and a worker, unless --no-worker)")
    serve.add_argument("--host", help="address to bind (default: CTXGRAPH_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default: CTXGRAPH_PORT or 8000)")
    serve.add_argument("--no-worker", action="store_true", help="run no in-process job worker")
    serve.add_argument("--worker-threads", type=int, default=2, metavar="N", help="in-process worker threads (2)")
    serve.set_defaults(run=_serve)

    worker = sub.add_parser("worker", help="run a job worker until SIGINT/SIGTERM")
    worker.add_argument("--threads", type=int, default=4, metavar="N", help="worker threads (4)")
    worker.set_defaults(run=_worker)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--revision", default="heads", help="target revision (default: every head)")
    migrate.set_defaults(run=_migrate)

    imp = sub.add_parser("import", help="import a file through a running server, following its progress")
    imp.add_argument("file", help="CSV or JSON file")
    imp.add_argument("--target", required=True, choices=["contacts", "records", "documents", "activity"], type=str.lower)
    imp.add_argument("--adapter", required=True, type=str.lower,
                     choices=["csv", "generic_json", "generic-json", "content_hub", "content-hub"])
    imp.add_argument("--object-type", help="object type name (target records)")
    imp.add_argument("--source", help="source name: items upsert by (source, remote id)")
    imp.add_argument("--mapping", help='CSV fieldMapping as JSON, or @file.json: {"Column": "field[:type]"}')
    imp.add_argument("--url", default=os.environ.get("CTXGRAPH_URL", "http://127.0.0.1:8000"),
                     help="server URL (CTXGRAPH_URL, default http://127.0.0.1:8000)")
    imp.add_argument("--api-key", default=os.environ.get("CTXGRAPH_API_KEY"), help="API key (CTXGRAPH_API_KEY)")
    imp.add_argument("--workspace", default=os.environ.get("CTXGRAPH_WORKSPACE_ID"), help="workspace id (optional)")
    imp.set_defaults(run=_import)

    schema = sub.add_parser("schema", help="print the GraphQL schema (SDL)")
    schema.set_defaults(run=_schema)
    return parser


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Make SIGTERM unwind like Ctrl-C, so embedded servers started so far are stopped."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # main() called from a test thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """While uvicorn runs: it handles SIGINT/SIGTERM itself and re-raises the signal after its
    graceful shutdown, which must then not kill the process before the worker and servers stop."""

    def ignore(_signum: int, _frame: FrameType | None) -> None:
        pass  # not SIG_IGN: that would be inherited by child processes

    previous = {sig: signal.signal(sig, ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _serve(args: argparse.Namespace) -> int:
    from app.db.migrate import upgrade
    from app.embedded import services

    settings = Settings.from_env()
    settings = dataclasses.replace(
        settings,
        host=args.host if args.host is not None else settings.host,
        port=args.port if args.port is not None else settings.port,
    )
    _setup_logging(settings)
    with services(settings) as s:
        s = s.with_secrets()
        upgrade(s)

        import uvicorn

        from app.http import create_app

        worker = None
        if not args.no_worker:
            from app.jobs.worker import start_in_process

            worker = start_in_process(s, threads=args.worker_threads)
        try:
            server = uvicorn.Server(uvicorn.Config(create_app(s), **uvicorn_options(s)))
            ide = " (GraphiQL in a browser)" if s.graphiql else ""
            print(f"Context Graph: GraphQL at {_url(s.host, s.port)}/graphql{ide}", flush=True)
            with _signals_ignored():
                server.run()  # handles SIGINT/SIGTERM itself, then returns
            started = server.started
        finally:
            if worker is not None:
                worker.stop()
    return 0 if started else 3  # 3: uvicorn's code for a failed startup


def uvicorn_options(s: Settings) -> dict[str, Any]:
    """How `serve` runs uvicorn (tests serve the app with the same options)."""
    return {
        "host": s.host,
        "port": s.port,
        "log_level": s.log_level.lower(),
        "lifespan": "on",
        "ws": "auto",  # the sans-I/O websockets implementation (the legacy one is deprecated)
        # Subscription messages are small JSON: compressing them costs each socket a zlib
        # state and CPU per message (client and server) for little bandwidth saved.
        "ws_per_message_deflate": False,
        # X-Forwarded-For sets the client address that rate limits and failure budgets count by:
        # believed only from the proxies named, never by default (uvicorn's own default trusts
        # any local peer, so anything on the machine could claim any address).
        "proxy_headers": bool(s.trusted_proxies),
        "forwarded_allow_ips": list(s.trusted_proxies),
        # Header limits are the gate's (app.http: 431 in JSON): h11, when uvicorn runs it instead
        # of httptools, would otherwise refuse a head over 16 KB first, as plain-text 400.
        "h11_max_incomplete_event_size": H11_MAX_REQUEST_HEAD,
    }


def _url(host: str, port: int) -> str:
    """A URL a browser on this machine can open, also when bound to all addresses."""
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _worker(args: argparse.Namespace) -> int:
    from app.embedded import services
    from app.jobs.worker import run

    settings = Settings.from_env()
    _setup_logging(settings)
    with services(settings) as s:
        run(s.with_secrets(), threads=args.threads)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from app.db.migrate import upgrade
    from app.embedded import services

    settings = Settings.from_env()
    _setup_logging(settings)
    with services(settings) as s:
        upgrade(s, args.revision)
    return 0


def _import(args: argparse.Namespace) -> int:
    from app.import_client import main as import_main

    return import_main(args)


def _schema(_args: argparse.Namespace) -> int:
    from schema import schema

    try:
        print(schema.as_str(), flush=True)
    except BrokenPipeError:  # `ctxgraph schema | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # as the Python docs advise
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
