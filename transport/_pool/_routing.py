"""Which connection of a pool takes the next message, decided without I/O (sans-IO).

:func:`choose_member` returns an index; the pool's router actor (``_router.py``) acts on it.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Hashable, Sequence


class Routing(enum.Enum):
    """How a connection pool picks the connection for each message."""

    #: In turn, skipping connections that are down while any is up.
    ROUND_ROBIN = "round robin"
    #: By the message's key: one key always goes to the same connection, so the
    #: messages of one key keep their order (a connection that is down buffers them).
    KEY_HASH = "key hash"
    #: The connection with the fewest messages waiting to be written (among those up,
    #: while any is up); ties go in turn.
    LEAST_LOADED = "least loaded"


def stable_hash(key: Hashable) -> int:
    """A hash of ``key`` that does not change between runs for ``str``, ``bytes`` and ``int``."""
    if isinstance(key, str):
        return zlib.crc32(key.encode("utf-8"))
    if isinstance(key, bytes):
        return zlib.crc32(key)
    if isinstance(key, int):
        return key
    return hash(key)


def choose_member(
    routing: Routing,
    *,
    up: Sequence[bool],
    loads: Sequence[int],
    turn: int,
    key: Hashable | None = None,
) -> int:
    """The index of the pool member that takes the next message.

    ``up`` says which members are connected, ``loads`` how many messages each has
    waiting, ``turn`` is the round-robin position (the caller advances it). A
    member that is down is skipped while another is up, except under ``KEY_HASH``,
    where the key decides alone.
    """
    size = len(up)
    if routing is Routing.KEY_HASH:
        if key is None:
            raise ValueError("key-hash routing needs a key with every message; pass key=...")
        return stable_hash(key) % size
    order = [(turn + offset) % size for offset in range(size)]
    candidates = [i for i in order if up[i]] or order
    if routing is Routing.ROUND_ROBIN:
        return candidates[0]
    return min(candidates, key=lambda i: loads[i])
