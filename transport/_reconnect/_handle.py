"""``ReconnectingConnection`` (the handle on a reconnecting client) and the functions that open one."""

from __future__ import annotations

import contextlib
import math
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import final

import trio

import actors

from .._client._connect import closed_on_exit
from .._codec import Codec
from .._connection._actor import Spawner
from .._connection._messages import DEFAULT_OPTIONS, Close, ConnectionOptions
from .._overflow import Overflow
from ._client import ConnectedHook, ReconnectingClient
from ._inbox_reader import InboxReader
from ._policy import ClientState
from ._types import (
    DEFAULT_BACKOFF,
    ClientEvent,
    ReconnectingMessage,
    ReconnectStatistics,
    Send,
    Status,
    frame_of,
)


@final
class ReconnectingConnection(InboxReader):
    """A handle on a :class:`ReconnectingClient`: send, receive, state, statistics, close.

    Like :class:`WebSocketConnection` it holds no stream. ``send`` waits until the
    client has taken the message (handed to the connection, or buffered); inbound
    messages are read with ``receive`` (or ``async for``) unless the client has a
    subscriber; only one task may receive at a time.
    """

    __slots__ = ("_codec", "_status", "ref")

    def __init__(
        self,
        ref: actors.ActorRef[ReconnectingMessage],
        status: Status,
        inbox: trio.MemoryReceiveChannel[object] | None,
        codec: Codec,
    ) -> None:
        #: The client actor's ref: tell it :class:`SendText`, :class:`SendBytes`, :class:`Close`.
        super().__init__(inbox)
        self.ref = ref
        self._status = status
        self._codec = codec

    def __repr__(self) -> str:
        return f"<ReconnectingConnection {self.ref.path} {self._status.state.value}>"

    def _reader_name(self) -> str:
        return f"reconnecting client {self.ref.path}"

    def _reader_codec(self) -> Codec:
        return self._codec

    @property
    def state(self) -> ClientState:
        """Connected, connecting, backing off, gave up or closed."""
        return self._status.state

    def statistics(self) -> ReconnectStatistics:
        """A snapshot of the client's counters and state."""
        return self._status.snapshot()

    async def send(self, message: str | bytes) -> None:
        """Send ``message`` (text for ``str``, binary for ``bytes``) now, or once reconnected.

        Returns when the client has handed it to the connection or buffered it.
        Raises :exc:`BufferFullError` when the buffer is full under ``Overflow.FAIL``
        and :exc:`actors.ActorStoppedError` once the client has stopped.
        """
        await self.ref.ask(Send(message), timeout=math.inf)

    def send_nowait(self, message: str | bytes) -> None:
        """Queue ``message`` in the client's mailbox or raise :exc:`trio.WouldBlock`.

        A refusal under ``Overflow.FAIL`` then goes to dead letters (``REJECTED``).
        """
        self.ref.tell_nowait(frame_of(message))

    async def send_message(self, message: object) -> None:
        """Encode ``message`` with the connections' codec (``options.codec``), then :meth:`send` it.

        Raises :exc:`EncodeError` at once, sending nothing, if the codec refuses it.
        """
        await self.send(self._codec.encode(message))

    async def wait_connected(self) -> None:
        """Wait until the client is connected; :exc:`actors.ActorStoppedError` if it stops first."""
        while True:
            state = self._status.state
            if state is ClientState.CONNECTED:
                await trio.lowlevel.checkpoint()
                return
            if state in (ClientState.GAVE_UP, ClientState.CLOSED) or not self.ref.is_alive:
                raise actors.ActorStoppedError(
                    f"reconnecting client {self.ref.path} has stopped ({state.value}): "
                    f"{self.ref.stop_reason!r}"
                )
            await self._status.wait_changed()

    async def close(self, code: int = 1000, reason: str = "") -> actors.StopReason:
        """Close the connection (if any) with ``code``, stop the client; returns its stop reason.

        Messages still buffered go to dead letters (reason ``STOPPED``).
        """
        with contextlib.suppress(actors.ActorStoppedError):
            await self.ref.tell(Close(code, reason))
        return await self.ref.wait_stopped()


async def connect_reconnecting_client(
    parent: Spawner,
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    options: ConnectionOptions = DEFAULT_OPTIONS,
    backoff: actors.Backoff = DEFAULT_BACKOFF,
    max_attempts: int | None = None,
    buffer: int = 100,
    when_full: Overflow = Overflow.DROP_OLDEST,
    on_connected: ConnectedHook | None = None,
    subscriber: actors.ActorRef[ClientEvent] | None = None,
    acknowledged: bool = False,
    window: int = 100,
    name: str | None = None,
) -> ReconnectingConnection:
    """Spawn a :class:`ReconnectingClient` under ``parent`` and return its handle.

    It returns at once: the client connects in the background and buffers what is
    sent meanwhile (:meth:`ReconnectingConnection.wait_connected` waits for the
    connection). Arguments as for :class:`ReconnectingClient`; a malformed ``url``
    raises :exc:`ValueError` here.
    """
    client = ReconnectingClient(
        url=url,
        ssl_context=ssl_context,
        subprotocols=subprotocols,
        headers=headers,
        options=options,
        backoff=backoff,
        max_attempts=max_attempts,
        buffer=buffer,
        when_full=when_full,
        on_connected=on_connected,
        subscriber=subscriber,
        acknowledged=acknowledged,
        window=window,
    )
    await parent.spawn(client, name=name)
    return client.handle()


@asynccontextmanager
async def open_reconnecting_client(
    parent: Spawner,
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    options: ConnectionOptions = DEFAULT_OPTIONS,
    backoff: actors.Backoff = DEFAULT_BACKOFF,
    max_attempts: int | None = None,
    buffer: int = 100,
    when_full: Overflow = Overflow.DROP_OLDEST,
    on_connected: ConnectedHook | None = None,
    subscriber: actors.ActorRef[ClientEvent] | None = None,
    acknowledged: bool = False,
    window: int = 100,
    name: str | None = None,
) -> AsyncIterator[ReconnectingConnection]:
    """:func:`connect_reconnecting_client` for the duration of an ``async with`` block.

    Leaving the block closes the client (1000, or 1011 if the block raised) and waits
    for it to stop, within ``write_timeout + close_timeout``.
    """
    client = await connect_reconnecting_client(
        parent,
        url,
        ssl_context=ssl_context,
        subprotocols=subprotocols,
        headers=headers,
        options=options,
        backoff=backoff,
        max_attempts=max_attempts,
        buffer=buffer,
        when_full=when_full,
        on_connected=on_connected,
        subscriber=subscriber,
        acknowledged=acknowledged,
        window=window,
        name=name,
    )
    async with closed_on_exit(client, options):
        yield client
