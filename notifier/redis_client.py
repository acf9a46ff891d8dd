"""How every process reaches Redis: one server by NOTIFIER_REDIS_URL, or, with
NOTIFIER_REDIS_SENTINELS, the master that Sentinel names, followed through a failover by
redis-py's own Sentinel support (a connection to a master that was demoted is dropped,
and the next one goes to the master Sentinel names then)."""

from __future__ import annotations

from typing import Any

import redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.connection import parse_url
from redis.sentinel import Sentinel as SyncSentinel

from notifier.config import Settings


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool that, like the single server's, makes a task wait for a free
    connection at a burst instead of failing."""


def _options(settings: Settings) -> dict[str, Any]:
    return {
        "max_connections": settings.redis_max_connections,
        "timeout": 10,
        "health_check_interval": 30,
        "socket_connect_timeout": 5,
        "protocol": 2,  # the reply shapes the code is written for
        "client_name": f"notifier@{settings.redis_prefix.rstrip(':')}",
    }


def _from_url(settings: Settings) -> dict[str, Any]:
    """What the URL says besides where: database, user name and password."""
    found = parse_url(settings.redis_url)
    return {k: v for k, v in found.items() if k in ("db", "username", "password")}


def _sentinel_options(settings: Settings) -> dict[str, Any]:
    password = settings.redis_sentinel_password
    return {
        "socket_connect_timeout": 1,
        "socket_timeout": 1,
        **({"password": password.get_secret_value()} if password else {}),
    }


def connect(settings: Settings) -> Redis:
    """The service's client; it owns its pool (``aclose()`` closes the connections)."""
    if not settings.sentinels:
        pool = BlockingConnectionPool.from_url(settings.redis_url, **_options(settings))
        return Redis.from_pool(pool)
    sentinel = Sentinel(settings.sentinels, sentinel_kwargs=_sentinel_options(settings))
    client: Redis = sentinel.master_for(
        settings.redis_sentinel_master,
        connection_pool_class=BlockingSentinelPool,
        **_options(settings),
        **_from_url(settings),
    )
    client.auto_close_connection_pool = True
    return client


async def close(client: Redis) -> None:
    """Close the client's connections, and under Sentinel those to the Sentinels too."""
    await client.aclose()
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", []):
        await sentinel.aclose()


def where(settings: Settings) -> str:
    """Where Redis is, for people (no password)."""
    if not settings.sentinels:
        found = parse_url(settings.redis_url)
        return f"{found.get('host', '127.0.0.1')}:{found.get('port', 6379)}/{found.get('db', 0)}"
    hosts = ",".join(f"{h}:{p}" for h, p in settings.sentinels)
    return f"the master {settings.redis_sentinel_master!r} of Sentinel {hosts}"


def survey(settings: Settings) -> tuple[bool, list[str]]:
    """Whether the master answers, and what was found, a line each (``notifier check``):
    under Sentinel the master, its replicas and each Sentinel reached or not."""
    if not settings.sentinels:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1)
        try:
            return bool(client.ping()), [f"redis    answers at {where(settings)}"]
        except (redis.RedisError, OSError):
            return False, [f"redis    NOT ANSWERING at {where(settings)}"]
        finally:
            client.close()
    lines, name = [], settings.redis_sentinel_master
    for host, port in settings.sentinels:
        one = redis.Redis(host=host, port=port, **_sentinel_options(settings))
        try:
            one.ping()
            lines.append(f"sentinel {host}:{port} reached")
        except (redis.RedisError, OSError):
            lines.append(f"sentinel {host}:{port} NOT REACHED")
        finally:
            one.close()
    sentinel = SyncSentinel(settings.sentinels, sentinel_kwargs=_sentinel_options(settings))
    try:
        host, port = sentinel.discover_master(name)
        replicas = sentinel.discover_slaves(name)
    except (redis.RedisError, OSError) as e:
        return False, [*lines, f"redis    no master {name!r} found: {type(e).__name__}"]
    master = sentinel.master_for(name, socket_connect_timeout=1, **_from_url(settings))
    try:
        ok = bool(master.ping())
    except (redis.RedisError, OSError):
        ok = False
    finally:
        master.close()
    state = "answers" if ok else "NOT ANSWERING"
    lines.append(f"redis    master {name!r} {state} at {host}:{port}")
    lines += [f"redis    replica at {h}:{p}" for h, p in replicas] or ["redis    no replica"]
    return ok, lines
