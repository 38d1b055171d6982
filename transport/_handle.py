"""``WebSocketConnection``: what application code holds of a connection."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Self, final

import trio

import actors

from ._messages import (
    Close,
    ConnectionInfo,
    ConnectionMessage,
    ConnectionStatistics,
    Counters,
    SendBytes,
    SendText,
)

if TYPE_CHECKING:
    from ._close_codes import ConnectionClosed
    from ._inbound import InboundQueue


@final
class WebSocketConnection:
    """A handle on one connection actor: its ref, its inbound messages, its counters.

    It holds no stream and nothing that holds one: sending goes through the
    actor's mailbox (``ref``), receiving reads the actor's bounded inbound
    queue. Only one task may receive at a time (a second one gets
    :exc:`trio.BusyResourceError`). When the connection has a subscriber
    actor, the messages go there instead; don't receive here as well.
    """

    __slots__ = ("_counters", "_inbound", "info", "ref")

    def __init__(
        self,
        ref: actors.ActorRef[ConnectionMessage],
        info: ConnectionInfo,
        counters: Counters,
        inbound: InboundQueue[str | bytes],
    ) -> None:
        #: The connection actor's ref: tell it :class:`SendText`, :class:`SendBytes`, :class:`Close`.
        self.ref = ref
        #: Path, subprotocol, headers and peer address of the connection.
        self.info = info
        self._counters = counters
        self._inbound = inbound

    def __repr__(self) -> str:
        return f"<WebSocketConnection {self.ref.path} path={self.info.path!r}>"

    async def send(self, message: str | bytes) -> None:
        """Queue ``message`` for sending (text for ``str``, binary for ``bytes``).

        Waits while the connection's mailbox is full. Raises
        :exc:`actors.ActorStoppedError` once the connection actor has stopped;
        a message accepted while the connection was closing goes to dead
        letters.
        """
        await self.ref.tell(_frame(message))

    def send_nowait(self, message: str | bytes) -> None:
        """Like :meth:`send`, but raise :exc:`trio.WouldBlock` if the mailbox is full."""
        self.ref.tell_nowait(_frame(message))

    async def receive(self) -> str | bytes:
        """The next inbound message; :exc:`trio.EndOfChannel` once the connection has ended.

        Messages that arrived before the close can still be received.
        """
        return await self._inbound.get()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self._inbound.get()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def close(self, code: int = 1000, reason: str = "") -> actors.StopReason:
        """Close the connection and wait until its actor has stopped; returns the stop reason.

        Queued outbound messages are written first. Closing a connection that
        has already ended just returns how it ended.
        """
        close = Close(code, reason)
        with contextlib.suppress(actors.ActorStoppedError):
            await self.ref.tell(close)
        return await self.ref.wait_stopped()

    @property
    def closed(self) -> ConnectionClosed | None:
        """How the connection ended, or ``None`` while it is open."""
        return self._counters.closed

    def statistics(self) -> ConnectionStatistics:
        """A snapshot of the connection's counters."""
        return self._counters.snapshot(self._inbound)


def _frame(message: str | bytes) -> SendText | SendBytes:
    if isinstance(message, str):
        return SendText(message)
    if isinstance(message, bytes | bytearray | memoryview):
        return SendBytes(bytes(message))
    raise TypeError(f"a websocket message is str or bytes, not {type(message).__qualname__}")
