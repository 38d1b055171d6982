"""``open_redis_backplane``: the door to the Redis backplane, which needs coredis only when used.

coredis is an optional dependency (``pip install trio-actors[redis]``). Importing
``transport`` never imports it; the Redis backplane's modules (``_redis`` and the
modules it uses) are imported on the first call of :func:`open_redis_backplane`, and
without coredis that call raises :exc:`ModuleNotFoundError` saying what to install.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import actors

from .._codec import Codec
from ._interface import Backplane
from ._wire import DEFAULT_MAX_PAYLOAD_SIZE

if TYPE_CHECKING:
    from types import ModuleType

#: Default Redis URL.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
#: Default prefix of every Redis key and channel the backplane uses.
DEFAULT_NAMESPACE = "trio-actors"
#: Default seconds to connect to Redis (at start and on each reconnection attempt).
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Default reconnection schedule of the subscriber connection.
DEFAULT_RECONNECT_BACKOFF = actors.Backoff(minimum=0.05, maximum=5.0, reset_after=60.0)


def redis_module() -> ModuleType:
    """The Redis backplane's module, imported now; a clear error if coredis is missing."""
    try:
        return importlib.import_module("._redis", __package__)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "coredis":
            raise
        raise ModuleNotFoundError(
            "the redis backplane needs coredis, which is not installed; "
            "install it with: pip install 'trio-actors[redis]'",
            name=exc.name,
        ) from exc


@contextlib.asynccontextmanager
async def open_redis_backplane(  # noqa: ASYNC911 - leaving closes and cancels, without waiting
    system: actors.ActorSystem,
    url: str = DEFAULT_REDIS_URL,
    *,
    codec: Codec | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    max_message_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    reconnect: actors.Backoff = DEFAULT_RECONNECT_BACKOFF,
    name_ttl: float = 3.0,
    heartbeat: float = 1.0,
) -> AsyncIterator[Backplane]:
    """A :class:`Backplane` through Redis or Valkey at ``url``, for ``system``.

    Every process that opens one with the same ``url`` and ``namespace`` shares its
    topics, streams and names. ``codec`` encodes messages (default
    :class:`RawCodec`: ``str`` and ``bytes``; use :class:`JsonCodec` for attrs
    classes); an encoded message may be at most ``max_message_size`` bytes, and one
    received above it, or undecodable, goes to dead letters. Raises
    :exc:`BackplaneUnavailableError`, naming the url, if Redis cannot be reached
    within ``connect_timeout`` seconds. Later losses of the connection are repaired
    on the ``reconnect`` schedule. A name registered here is held by a key that
    lives ``name_ttl`` seconds and is renewed every ``heartbeat`` seconds.

    Needs coredis (``pip install 'trio-actors[redis]'``); without it this raises
    :exc:`ModuleNotFoundError` saying so.
    """
    redis = redis_module()
    async with redis.open_backplane(
        system,
        url,
        codec=codec,
        namespace=namespace,
        max_message_size=max_message_size,
        connect_timeout=connect_timeout,
        reconnect=reconnect,
        name_ttl=name_ttl,
        heartbeat=heartbeat,
    ) as backplane:
        yield backplane
