"""What gives way when a bounded queue of the transport is full (sans-IO).

One policy enum, :class:`Overflow`, for the two queues of the transport whose producer
must not simply wait on their consumer: a connection's inbound queue
(``ConnectionOptions.overflow``; its producer is the network reader) and a reconnecting
client's buffer (``when_full``; it holds messages while there is no connection). Each
queue takes the members that make sense for it and refuses the others when configured
(:func:`check_overflow`). Every message that gives way is reported.
"""

from __future__ import annotations

import enum
from collections.abc import Collection

from ._close_codes import Situation


class Overflow(enum.Enum):
    """What gives way when a bounded queue is full and another message arrives.

    A connection's inbound queue takes :attr:`PAUSE` (its default), the two drops
    and the two closes; a reconnecting client's buffer the two drops and :attr:`FAIL`.
    """

    #: Inbound queue: stop reading the peer until the application has made room (TCP
    #: backpressure: the peer's writes wait in the sockets' buffers). Nothing is
    #: dropped; while paused, the peer's pings and Close wait behind its data too.
    PAUSE = "pause"

    #: Drop the oldest queued message to make room for the new one (fresh data matters most).
    DROP_OLDEST = "drop oldest"
    #: Drop the message that just arrived (what was queued first goes first).
    DROP_NEWEST = "drop newest"
    #: Inbound queue: drop the new message and close the connection with 1008 (policy violation).
    CLOSE_POLICY_VIOLATION = "close 1008"
    #: Inbound queue: drop the new message and close the connection with 1013 (try again later).
    CLOSE_TRY_AGAIN_LATER = "close 1013"
    #: Reconnecting client's buffer: refuse the new message; ``send()`` raises
    #: :exc:`BufferFullError`, a told message goes to dead letters (``REJECTED``).
    FAIL = "fail"


#: The policies a connection's inbound queue takes.
INBOUND_OVERFLOW = frozenset(
    {
        Overflow.PAUSE,
        Overflow.DROP_OLDEST,
        Overflow.DROP_NEWEST,
        Overflow.CLOSE_POLICY_VIOLATION,
        Overflow.CLOSE_TRY_AGAIN_LATER,
    }
)
#: The policies a reconnecting client's buffer takes.
BUFFER_OVERFLOW = frozenset({Overflow.DROP_OLDEST, Overflow.DROP_NEWEST, Overflow.FAIL})


def close_situation(policy: Overflow) -> Situation | None:
    """The close situation ``policy`` leads to, or ``None`` for the others."""
    if policy is Overflow.CLOSE_POLICY_VIOLATION:
        return Situation.OVERFLOW_POLICY_VIOLATION
    if policy is Overflow.CLOSE_TRY_AGAIN_LATER:
        return Situation.OVERFLOW_TRY_AGAIN_LATER
    return None


def check_overflow(policy: Overflow, allowed: Collection[Overflow], what: str) -> None:
    """Refuse ``policy`` where ``what`` (an argument's name) does not take it."""
    if policy not in allowed:
        names = ", ".join(sorted(f"Overflow.{p.name}" for p in allowed))
        raise ValueError(f"{what} cannot be Overflow.{policy.name}; use one of {names}")
