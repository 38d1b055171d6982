"""Routing logics: which routee gets a message (pure: no trio, no I/O).

A :class:`Router` asks its routing logic to pick one routee (or, for
:class:`Broadcast`, all of them) from the current routees, in the sender's own
task: a routed message goes straight into the routee's mailbox, with no extra
hop through a router actor. Each router works on its own copy of the logic it
is given, so one logic object may configure several routers.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from ._ref import ActorRef

#: A routing key for :class:`ConsistentHashing`: hashed by value, the same in every process.
RoutingKey = str | bytes | int


class Routing:
    """Base class of routing logics: pick the routee for a message."""

    __slots__ = ()

    def select(self, message: object, routees: Sequence[ActorRef[Any]]) -> ActorRef[Any]:
        """The routee for ``message``; ``routees`` is never empty."""
        raise NotImplementedError

    def routees_changed(self, routees: Sequence[ActorRef[Any]]) -> None:
        """Called by the router when the set of routees changed (before the next select)."""


@final
class RoundRobin(Routing):
    """Each routee in turn (Akka's ``RoundRobinRoutingLogic``, poolboy's FIFO strategy)."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def __repr__(self) -> str:
        return "RoundRobin()"

    def select(self, message: object, routees: Sequence[ActorRef[Any]]) -> ActorRef[Any]:
        """The routee after the one picked last."""
        index = self._next
        self._next = index + 1
        return routees[index % len(routees)]


@final
class RandomChoice(Routing):
    """A routee picked uniformly at random; ``seed`` makes the sequence repeatable."""

    __slots__ = ("_random",)

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)

    def __repr__(self) -> str:
        return "RandomChoice()"

    def select(self, message: object, routees: Sequence[ActorRef[Any]]) -> ActorRef[Any]:
        """A random routee."""
        return routees[self._random.randrange(len(routees))]


@final
class Broadcast(Routing):
    """Every routee gets every told message; a broadcast router cannot ``ask``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Broadcast()"

    def select(self, message: object, routees: Sequence[ActorRef[Any]]) -> ActorRef[Any]:
        """Not used: the router tells every routee."""
        raise TypeError(
            "a Broadcast router sends to every routee; ask each one (router.routees) "
            "or use another routing logic to ask one"
        )


@final
class SmallestMailbox(Routing):
    """The routee with the fewest queued messages, an idle one first (Akka's logic)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SmallestMailbox()"

    def select(self, message: object, routees: Sequence[ActorRef[Any]]) -> ActorRef[Any]:
        """The first idle routee, else the one with the smallest mailbox (the first of equals)."""
        best = routees[0]
        best_depth = -1
        for routee in routees:
            mailbox = routee._cell.mailbox
            if mailbox.waiting:
                return routee
            depth = mailbox.depth
            if best_depth < 0 or depth < best_depth:
                best, best_depth = routee, depth
        return best


@final
class ConsistentHashing(Routing):
    """A hash ring: messages with the same key go to the same routee while it is there.

    ``key(message)`` returns the routing key (a ``str``, ``bytes`` or
    ``int``, hashed by value with BLAKE2b, so the mapping is the same in
    every process and run). Each routee owns ``virtual_nodes`` points on the
    ring, placed by the hash of its path; when routees come or go, only the
    keys of the ring's changed arcs move: resizing a pool of ``n`` to
    ``n + 1`` moves about ``1/(n + 1)`` of the keys, all to the new routee.
    """

    __slots__ = ("_key", "_owners", "_points", "virtual_nodes")

    def __init__(self, key: Callable[[Any], RoutingKey], *, virtual_nodes: int = 160) -> None:
        if virtual_nodes < 1:
            raise ValueError(f"virtual_nodes must be at least 1, not {virtual_nodes!r}")
        self._key = key
        #: Points on the ring per routee.
        self.virtual_nodes = virtual_nodes
        self._points: list[int] = []
        self._owners: list[ActorRef[Any]] = []

    def __repr__(self) -> str:
        return f"ConsistentHashing(virtual_nodes={self.virtual_nodes})"

    def routees_changed(self, routees: Sequence[ActorRef[Any]]) -> None:
        """Rebuild the ring from the routees' paths."""
        ring = sorted(
            (ring_hash(f"{routee.path}#{index}"), routee.path, routee)
            for routee in routees
            for index in range(self.virtual_nodes)
        )
        self._points = [point for point, _, _ in ring]
        self._owners = [routee for _, _, routee in ring]

    def select(self, message: object, routees: Sequence[ActorRef[Any]]) -> ActorRef[Any]:
        """The owner of the first ring point at or after the key's hash."""
        index = bisect.bisect_left(self._points, ring_hash(self._key(message)))
        return self._owners[index % len(self._owners)]


def ring_hash(key: RoutingKey) -> int:
    """A 64-bit hash of ``key`` that is the same in every process (unlike ``hash()``)."""
    if isinstance(key, str):
        data = key.encode()
    elif isinstance(key, bytes):
        data = key
    elif isinstance(key, int):
        data = str(key).encode()
    else:
        raise TypeError(
            f"a consistent-hashing key must be str, bytes or int, not {type(key).__qualname__}; "
            "return one of those from key="
        )
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
