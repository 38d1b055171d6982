"""What a reconnecting client does, decided without I/O (sans-IO: no trio, no network).

- :func:`refusal_reason`: is a failed connection attempt worth retrying?
- :func:`close_refusal_reason`: is a connection that ended worth reconnecting?
- :class:`SendBuffer`: the bounded buffer of outbound messages waiting for a connection, and
  its :class:`Overflow` policy, what gives way when it is full.
Each returns a value; the reconnecting client (``_client.py``) acts on it.
"""

from __future__ import annotations

import collections
import enum
from typing import Generic, TypeVar, final

from .._close_codes import ConnectionClosed
from .._exceptions import (
    HandshakeError,
    HandshakeRejected,
    ProxyError,
    TLSError,
    TransportError,
)
from .._overflow import BUFFER_OVERFLOW, Overflow, check_overflow

T = TypeVar("T")


class ClientState(enum.Enum):
    """Where a reconnecting client is in its life."""

    #: A connection attempt (TCP, TLS, HTTP upgrade, ``on_connected``) is under way.
    CONNECTING = "connecting"
    #: Connected: messages go straight to the connection.
    CONNECTED = "connected"
    #: The last attempt failed or the connection ended; waiting before the next attempt.
    BACKING_OFF = "backing off"
    #: Stopped trying: a failure retrying cannot fix, or the attempt cap.
    GAVE_UP = "gave up"
    #: Closed by its owner (``close()``, ``ref.stop()``, the system shutting down).
    CLOSED = "closed"


class BufferFullError(TransportError):
    """A reconnecting client refused a message: it is disconnected and its buffer is full.

    Raised by ``send()`` under :attr:`Overflow.FAIL`. Try again once connected, or
    choose a larger ``buffer`` or a drop policy.
    """


def refusal_reason(error: Exception) -> str | None:
    """Why a failed connection attempt must not be retried, or ``None`` to retry it.

    Retried: anything that can heal by itself (connection refused or reset, a
    handshake timeout, an HTTP 5xx answer, a proxy that cannot reach the server
    or closed the exchange). Not retried: a TLS failure (trust or
    configuration), a proxy that refuses the tunnel or the credentials, and any
    other HTTP status (4xx: the request itself is wrong; 3xx: a redirect not
    followed).
    Errors that are not transport errors are bugs: they are not classified here.
    """
    if isinstance(error, TLSError):
        return f"tls failure, not retried: {error}"
    if isinstance(error, ProxyError):
        return None if error.transient else f"the proxy failed, not retried: {error}"
    if isinstance(error, HandshakeRejected):
        if 500 <= error.status < 600:
            return None
        return f"the server rejected the handshake with HTTP {error.status}, not retried"
    if isinstance(error, HandshakeError):
        if error.code is not None:  # the client failed an open connection: not transient
            return f"{error}, not retried"
        return None
    return f"unexpected error, not retried: {error!r}"


def close_refusal_reason(closed: ConnectionClosed) -> str | None:
    """Why a connection that ended must not be reconnected, or ``None`` to reconnect.

    Reconnects after the transient close codes (1001, 1006, 1011-1014, see
    :func:`is_transient`); any other code (a normal 1000, a protocol or policy
    error, an application code) says the peer meant it.
    """
    if closed.is_transient:
        return None
    text = f" {closed.reason!r}" if closed.reason else ""
    return f"the connection closed with {closed.code}{text}, which is not transient"


@final
class SendBuffer(Generic[T]):
    """A bounded FIFO of messages waiting for a connection, with a :class:`Overflow` policy.

    It never blocks and never raises: :meth:`put` and :meth:`put_back` return what gave
    way, and the caller reports it.
    """

    __slots__ = ("_items", "capacity", "when_full")

    def __init__(self, capacity: int, when_full: Overflow) -> None:
        if capacity < 0:
            raise ValueError(f"buffer must be at least 0, not {capacity!r}")
        check_overflow(when_full, BUFFER_OVERFLOW, "when_full")
        self.capacity = capacity
        self.when_full = when_full
        self._items: collections.deque[T] = collections.deque()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> T | None:
        """Queue ``item``; return the item that gave way (``item`` itself if refused)."""
        if len(self._items) < self.capacity:
            self._items.append(item)
            return None
        if self.when_full is Overflow.DROP_OLDEST and self._items:
            self._items.append(item)
            return self._items.popleft()
        return item

    def put_back(self, item: T) -> list[T]:
        """Return ``item`` (the oldest) to the front; return what no longer fits.

        Used when a message taken for sending found the connection gone. Under
        ``DROP_OLDEST`` the oldest give way, otherwise the newest.
        """
        self._items.appendleft(item)
        dropped: list[T] = []
        while len(self._items) > self.capacity:
            if self.when_full is Overflow.DROP_OLDEST:
                dropped.append(self._items.popleft())
            else:
                dropped.append(self._items.pop())
        return dropped

    def take(self) -> T:
        """The oldest message (the caller checked the outbox is not empty)."""
        return self._items.popleft()

    def take_all(self) -> list[T]:
        """Every message, oldest first, leaving the outbox empty."""
        items = list(self._items)
        self._items.clear()
        return items
