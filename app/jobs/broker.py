"""The Dramatiq broker on Redis, set up once per process.

`@dramatiq.actor` binds each actor to the global broker when its module is imported (with no
broker set, `dramatiq.get_broker()` would invent one on localhost). So `setup_broker()` sets the
broker first and only then imports `app.jobs.actors`: import actors only through it.
"""

from __future__ import annotations

import importlib
import logging
import threading

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from app.config import Settings

log = logging.getLogger("ctxgraph.jobs")

# Redelivery of a dead worker's messages. A worker killed mid-message leaves it in its acks set;
# any process's broker puts it back on its queue during "maintenance", once the dead worker's
# last heartbeat is older than HEARTBEAT_TIMEOUT_MS. Every broker call is a heartbeat, and a
# live worker makes about one per second per queue (idle consumers poll once a second, the
# delay-queue consumer keeps polling while actors are busy), so 30 s (default 60 s) leaves a
# wide margin against declaring a live worker dead. Maintenance runs for the queue of the call
# on a random MAINTENANCE_CHANCE out of 1,000,000 calls (dramatiq's scale: the default 1,000 is
# 1 in 1,000, i.e. ~17 min between maintenances of a queue polled once a second). 50,000 is
# 1 in 20: a dead worker's message is back within about 30 + 20 s. Maintenance is cheap (two
# sorted-set range queries) except while dead workers are listed, when it scans their keys.
HEARTBEAT_TIMEOUT_MS = 30_000
MAINTENANCE_CHANCE = 50_000

_lock = threading.Lock()
_broker: RedisBroker | None = None
_key: tuple[str, str] | None = None


def namespace_of(settings: Settings) -> str:
    """The Redis key namespace of the queues (see `Settings.redis_namespace`)."""
    return settings.redis_namespace


def setup_broker(settings: Settings) -> RedisBroker:
    """Return this process's broker for `settings.redis_url`, creating it on first use.

    Called again with another URL or namespace (tests), it replaces the broker and moves the
    declared actors over to the new one.
    """
    global _broker, _key
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set (and no embedded server was started)")
    key = (settings.redis_url, namespace_of(settings))
    with _lock:
        if _broker is None or _key != key:
            broker = RedisBroker(
                url=settings.redis_url,
                namespace=key[1],
                heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
                maintenance_chance=MAINTENANCE_CHANCE,
            )  # middleware=None: dramatiq's defaults (age and time limits, retries, callbacks, ...)
            if _broker is not None:
                for actor in _broker.actors.values():
                    actor.broker = broker
                    broker.declare_actor(actor)
                close_broker_connections(_broker)
            dramatiq.set_broker(broker)
            _broker, _key = broker, key
            log.debug("dramatiq broker set up on %s", _redacted(settings.redis_url))
        importlib.import_module("app.jobs.actors")  # declares the actors, once per process
        return _broker


def close_broker_connections(broker: RedisBroker) -> None:
    """Close the broker's Redis connections (RedisBroker.close() does nothing)."""
    broker.close()
    broker.client.connection_pool.disconnect()


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}" if "@" in rest else url
