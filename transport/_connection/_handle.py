"""``WebSocketConnection``: what application code holds of a connection."""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Self, final

import trio

import actors

from .._codec import Codec, RawCodec
from .._redact import redact_target
from ._messages import (
    Close,
    ConnectionInfo,
    ConnectionMessage,
    ConnectionStatistics,
    Counters,
    Frame,
    KeptBySender,
    Received,
    SendBytes,
    SendText,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .._close_codes import ConnectionClosed
    from ._inbound import InboundQueue


@final
class WebSocketConnection:
    """A handle on one connection actor: its ref, its inbound messages, its counters.

    It holds no stream and nothing that holds one: sending goes through the
    actor's mailbox (``ref``), receiving reads the actor's bounded inbound
    queue. Only one task may receive at a time (a second one gets
    :exc:`trio.BusyResourceError`). When the connection has a subscriber
    actor, the messages go there instead; don't receive here as well.

    :meth:`send` and :meth:`receive` (and ``async for``) carry text and
    bytes; :meth:`send_message` and :meth:`receive_message` go through the
    connection's codec (``ConnectionOptions.codec``), so with a
    :class:`JsonCodec` they carry your message objects. The ``*_nowait``
    variants never wait: after one ``await receive()``, draining what else
    has arrived with :meth:`receive_nowait` until :exc:`trio.WouldBlock`
    handles a burst in one go.

    There is one door into the connection's writer, its actor's mailbox:
    :meth:`send` tells the frame to ``ref`` exactly as
    ``ref.tell(SendText(...))`` does, and the actor's message loop writes it.
    Frames from one sender are written in the order it sent them, whichever
    call it used; senders waiting for room are served in arrival order. A
    :meth:`close` overtakes queued frames, but the frames queued before it are
    written first.
    """

    __slots__ = ("_counters", "_inbound", "_thread_id", "codec", "info", "ref")

    def __init__(
        self,
        ref: actors.ActorRef[ConnectionMessage],
        info: ConnectionInfo,
        counters: Counters,
        inbound: InboundQueue[Received],
        codec: Codec | None = None,
        *,
        thread_id: int | None = None,
    ) -> None:
        #: The connection actor's ref: tell it :class:`SendText`, :class:`SendBytes`,
        #: :class:`SendMessage`, :class:`Close`.
        self.ref = ref
        #: Path, subprotocol, headers and peer address of the connection.
        self.info = info
        #: How messages are encoded and decoded (from the connection's options).
        self.codec: Codec = codec if codec is not None else RawCodec()
        self._counters = counters
        self._inbound = inbound
        self._thread_id = thread_id

    def __repr__(self) -> str:
        return f"<WebSocketConnection {self.ref.path} path={redact_target(self.info.path)!r}>"

    async def send(self, message: str | bytes) -> None:
        """Queue ``message`` for sending (text for ``str``, binary for ``bytes``).

        Waits while the connection's outbound queue (``outbound_queue_size``
        messages, ``outbound_max_bytes`` bytes) is full. Raises :exc:`actors.ActorStoppedError` once the connection
        actor has stopped; a message accepted while the connection was closing
        goes to dead letters.
        """
        # _frame and _send inlined: the hot path of a handler that replies.
        frame: Frame
        if type(message) is bytes:
            frame = SendBytes(message)
        elif type(message) is str:
            frame = SendText(message)
        else:
            frame = _frame(message)
        if threading.get_ident() != self._thread_id:
            self._on_trio_thread("send")
        await self.ref.tell(frame)

    def send_nowait(self, message: str | bytes) -> None:
        """Like :meth:`send`, but raise :exc:`trio.WouldBlock` if the queue is full."""
        self._send_nowait(_frame(message))

    async def send_message(self, message: object) -> None:
        """Encode ``message`` with the connection's codec and queue it for sending.

        Raises :exc:`EncodeError` at once, sending nothing, if the codec cannot
        encode it (the connection stays open); otherwise like :meth:`send`.
        """
        await self._send(_frame(self.codec.encode(message)))

    def send_message_nowait(self, message: object) -> None:
        """Like :meth:`send_message`, but raise :exc:`trio.WouldBlock` if the queue is full."""
        self._send_nowait(_frame(self.codec.encode(message)))

    async def _send(self, frame: Frame) -> None:
        self._on_trio_thread("send")
        await self.ref.tell(frame)

    def _send_nowait(self, frame: Frame) -> None:
        self._on_trio_thread("send_nowait")
        self.ref.tell_nowait(frame)

    async def _send_kept(self, data: KeptBySender) -> bool:
        """Queue a protocol message its sender makes again if this connection ends.

        False, queueing nothing, once the connection is closing; one queued and then
        not written is never dead-lettered either (see :class:`KeptBySender`).
        """
        if self._counters.closing:
            await trio.lowlevel.checkpoint()
            return False
        try:
            await self.ref.tell(SendBytes(data))
        except actors.ActorStoppedError:
            return False  # noqa: ASYNC910 - tell checkpoints unless it fails at once
        return True

    def _on_trio_thread(self, method: str) -> bool:
        if threading.get_ident() != self._thread_id:
            raise actors.WrongThreadError(
                f"WebSocketConnection.{method}() was called from a thread other than the "
                "actor system's trio thread; from a plain OS thread use "
                "connection.ref.tell_from_thread(transport.SendText(...))"
            )
        return True

    async def receive(self) -> str | bytes:
        """The next inbound message; :exc:`trio.EndOfChannel` once the connection has ended.

        Messages that arrived before the close can still be received. Only for
        connections with the default :class:`RawCodec`; with another codec use
        :meth:`receive_message` (this raises :exc:`TypeError`).
        """
        self._check_raw()
        data = (await self._inbound.get()).data
        assert isinstance(data, str | bytes)
        return data

    def receive_nowait(self) -> str | bytes:
        """The next inbound message if one has arrived, else :exc:`trio.WouldBlock`;
        :exc:`trio.EndOfChannel` once the connection has ended (like :meth:`receive`)."""
        self._check_raw()
        data = self._inbound.get_nowait().data
        assert isinstance(data, str | bytes)
        return data

    def receive_message_nowait(self) -> object:
        """Like :meth:`receive_message`, but :exc:`trio.WouldBlock` instead of waiting."""
        return self._inbound.get_nowait().data

    async def receive_message(self) -> object:
        """The next inbound message as the codec decoded it, or an :class:`Undecodable`
        notice in place of one it could not decode; :exc:`trio.EndOfChannel` once the
        connection has ended. With the :class:`RawCodec` this is ``str`` or ``bytes``.
        """
        return (await self._inbound.get()).data

    def __aiter__(self) -> Self:
        self._check_raw()
        return self

    async def __anext__(self) -> str | bytes:
        # receive() inlined (its codec check ran in __aiter__): one coroutine less per message.
        try:
            data = (await self._inbound.get()).data
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        assert isinstance(data, str | bytes)
        return data

    def messages(self) -> AsyncIterator[object]:
        """``async for message in connection.messages():`` what :meth:`receive_message` returns."""
        return MessageIterator(self)

    def _check_raw(self) -> None:
        if not isinstance(self.codec, RawCodec):
            raise TypeError(
                f"connection {self.ref.path} decodes its messages with {self.codec!r}; "
                "receive them with receive_message() or messages(), not receive()"
            )

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
        """A snapshot of the connection's counters and queues."""
        return self._counters.snapshot(self._inbound, self.ref.statistics())


@final
class MessageIterator:
    """An async iterator over a connection's decoded messages (see :meth:`WebSocketConnection.messages`)."""

    __slots__ = ("_connection",)

    def __init__(self, connection: WebSocketConnection) -> None:
        self._connection = connection

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> object:
        try:
            return await self._connection.receive_message()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


def _frame(message: str | bytes) -> SendText | SendBytes:
    if isinstance(message, str):
        return SendText(message)
    if isinstance(message, bytes | bytearray | memoryview):
        return SendBytes(bytes(message))
    raise TypeError(f"a websocket message is str or bytes, not {type(message).__qualname__}")
