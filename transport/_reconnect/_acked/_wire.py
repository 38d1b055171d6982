"""Acknowledged delivery, sans-IO: the frames on the wire and the client's window.

A reconnecting client created with ``acknowledged=True`` and a server handler that
accepts through :class:`AckedSessions` speak this protocol over plain WebSocket Binary
messages (the first byte says what a message is)::

    client -> server   H <16-byte session id>                 hello, first on every connection
    server -> client   A <u64 seq>                             acknowledged up to seq
    client -> server   D <u64 seq> <t|b> <payload>             a message, numbered 1, 2, ...
    server -> client   M <t|b> <payload>                       a message (not numbered)

``t`` marks a UTF-8 text payload, ``b`` a binary one. The session id is random and
stays the same across the client's connections; the server remembers, per session, the
last number it handed to its application, answers every hello with that number, and
drops a number it has already delivered. The client keeps each numbered message until
an acknowledgement covers it and sends the unacknowledged ones again, in order, on the
next connection: each message reaches the application once, or it is reported.
"""

from __future__ import annotations

import collections
import struct
from typing import Generic, TypeVar, final

import trio

from ..._connection._messages import KeptBySender
from ..._exceptions import TransportError

T = TypeVar("T")

HELLO = b"H"
ACK = b"A"
DATA = b"D"
PUSH = b"M"
_SEQ = struct.Struct("!Q")
SESSION_ID_BYTES = 16
_TEXT = ord("t")
_BYTES = ord("b")


class AckProtocolError(TransportError):
    """A message broke the acknowledged-delivery protocol (the connection closes with 1002)."""


@final
class Retained(KeptBySender):
    """A protocol message that outlives the connection it was queued on.

    A numbered message stays in the client's window until acknowledged (sent again on
    the next connection, or reported when the client gives up); a hello or an
    acknowledgement is made anew on the next connection. So a connection that ends
    before writing one does not dead-letter it: that would report a loss that is not.
    """

    __slots__ = ()


def _payload(message: str | bytes) -> bytes:
    if isinstance(message, str):
        return b"t" + message.encode()
    return b"b" + message


def _message(payload: bytes | memoryview, what: str) -> str | bytes:
    if not payload or payload[0] not in (_TEXT, _BYTES):
        raise AckProtocolError(f"{what} has no t/b payload marker")
    body = bytes(payload[1:])
    if payload[0] == _BYTES:
        return body
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise AckProtocolError(f"{what} holds text that is not valid UTF-8") from None


def hello(session: bytes) -> Retained:
    """The first message of every connection of a session."""
    return Retained(HELLO + session)


def ack(seq: int) -> Retained:
    """Acknowledge every message up to ``seq``."""
    return Retained(ACK + _SEQ.pack(seq))


def data(seq: int, message: str | bytes) -> Retained:
    """Message number ``seq`` of a session."""
    return Retained(DATA + _SEQ.pack(seq) + _payload(message))


def push(message: str | bytes) -> bytes:
    """A message from the server to the client."""
    return PUSH + _payload(message)


def _binary(frame: str | bytes, what: str) -> bytes:
    if not isinstance(frame, bytes):
        raise AckProtocolError(f"expected a binary {what}, got a text message")
    return frame


def parse_hello(frame: str | bytes) -> bytes:
    """The session id of a hello."""
    frame = _binary(frame, "hello")
    if len(frame) != 1 + SESSION_ID_BYTES or frame[:1] != HELLO:
        raise AckProtocolError("the first message is not a session hello")
    return frame[1:]


def parse_data(frame: str | bytes) -> tuple[int, str | bytes]:
    """The number and message of a client's data message."""
    frame = _binary(frame, "data message")
    if len(frame) < 1 + _SEQ.size + 1 or frame[:1] != DATA:
        raise AckProtocolError("not a numbered data message")
    (seq,) = _SEQ.unpack_from(frame, 1)
    return seq, _message(memoryview(frame)[1 + _SEQ.size :], "data message")


def parse_server(frame: str | bytes) -> int | str | bytes:
    """A server message: the acknowledged number (``int``) or a message (``str``/``bytes``)."""
    frame = _binary(frame, "server message")
    kind = frame[:1]
    if kind == ACK and len(frame) == 1 + _SEQ.size:
        return int(_SEQ.unpack_from(frame, 1)[0])
    if kind == PUSH:
        return _message(memoryview(frame)[1:], "server message")
    raise AckProtocolError("neither an acknowledgement nor a message")


def parse_ack(frame: str | bytes) -> int:
    """The number a server's answer to a hello acknowledges."""
    value = parse_server(frame)
    if not isinstance(value, int):
        raise AckProtocolError("the answer to the session hello is not an acknowledgement")
    return value


@final
class Window(Generic[T]):
    """The client's numbered messages that no acknowledgement has covered yet.

    ``T`` is what the client reports if a message is never confirmed (its original
    send request). Holds at most ``capacity``; :meth:`wait_changed` wakes on every
    acknowledgement and on :meth:`poke`.
    """

    __slots__ = ("_changed", "_items", "capacity", "confirmed", "next_seq")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"window must be at least 1, not {capacity!r}")
        self.capacity = capacity
        self.next_seq = 1
        #: Messages confirmed by the peer since the client started.
        self.confirmed = 0
        self._items: collections.deque[tuple[int, T, Retained]] = collections.deque()
        self._changed = trio.Event()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        """No room for another unconfirmed message."""
        return len(self._items) >= self.capacity

    def add(self, original: T, message: str | bytes) -> Retained:
        """Number ``message`` and keep it; returns the envelope to send."""
        seq = self.next_seq
        self.next_seq = seq + 1
        envelope = data(seq, message)
        self._items.append((seq, original, envelope))
        return envelope

    def confirm(self, seq: int) -> int:
        """Forget every message up to ``seq``; how many that was.

        :exc:`AckProtocolError` if ``seq`` acknowledges a number never sent.
        """
        if seq >= self.next_seq:
            raise AckProtocolError(
                f"acknowledged {seq}, but the last message sent is {self.next_seq - 1}"
            )
        items = self._items
        count = 0
        while items and items[0][0] <= seq:
            items.popleft()
            count += 1
        if count:
            self.confirmed += count
            self.poke()
        return count

    def envelopes(self) -> list[Retained]:
        """The unconfirmed envelopes, oldest first (to send again)."""
        return [envelope for _, _, envelope in self._items]

    def take_all(self) -> list[T]:
        """Every unconfirmed original, oldest first, leaving the window empty."""
        originals = [original for _, original, _ in self._items]
        self._items.clear()
        self.poke()
        return originals

    def poke(self) -> None:
        """Wake whoever waits in :meth:`wait_changed`."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        """Wait for the next acknowledgement or :meth:`poke`."""
        await self._changed.wait()
