"""``ReconnectingConnection`` (the handle on a reconnecting client) and the functions that open one."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import final

import attrs
import trio

import actors

from .._client._connect import closed_on_exit
from .._codec import Codec
from .._connection._actor import Spawner
from .._connection._messages import Close
from ._client import ReconnectingClient
from ._inbox_reader import InboxReader
from ._policy import ClientState
from ._types import (
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
    parent: Spawner, client: ReconnectingClient, *, name: str | None = None
) -> ReconnectingConnection:
    """Spawn a client made from the ``client`` template under ``parent``; return its handle.

    ``client`` holds every setting (``ReconnectingClient(url=..., buffer=...)``, see
    :class:`ReconnectingClient`): one object, as a pool's members are made from one, and
    the same template may be started any number of times. This returns at once: the
    client connects in the background and buffers what is sent meanwhile
    (:meth:`ReconnectingConnection.wait_connected` waits for the connection). A malformed
    ``url`` raises :exc:`ValueError` when the template is made.
    """
    actor = attrs.evolve(client)
    await parent.spawn(actor, name=name)
    return actor.handle()


@asynccontextmanager
async def open_reconnecting_client(
    parent: Spawner, client: ReconnectingClient, *, name: str | None = None
) -> AsyncIterator[ReconnectingConnection]:
    """:func:`connect_reconnecting_client` for the duration of an ``async with`` block.

    Leaving the block closes the client (1000, or 1011 if the block raised) and waits
    for it to stop, within ``write_timeout + close_timeout``.
    """
    connection = await connect_reconnecting_client(parent, client, name=name)
    async with closed_on_exit(connection, client.options):
        yield connection
