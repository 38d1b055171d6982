"""Helpers for the reconnecting client and pool tests: a loopback endpoint the test controls."""

from __future__ import annotations

import functools
import ssl

import attrs
import trio

import actors
import transport

#: No keepalive: the tests run in virtual time, where idle pings would only add noise.
OPTIONS = transport.ConnectionOptions(ping_interval=None)
#: No jitter, so delays can be asserted exactly: 1, 2, 4, 8... seconds.
EXACT = actors.Backoff(minimum=1, maximum=30, factor=2, jitter=0)


@attrs.define(eq=False)
class Endpoint:
    """A loopback WebSocket server that records what it receives and whom it serves.

    ``messages`` yields ``(connection number, message)`` for every inbound message;
    ``reject`` holds HTTP statuses to answer the next handshakes with; ``handshakes``
    the virtual time of every handshake; ``greeting`` is sent on each new connection.
    """

    system: actors.ActorSystem
    greeting: str | None = None
    reject: list[int] = attrs.Factory(list)
    handshakes: list[float] = attrs.Factory(list)
    connections: list[transport.WebSocketConnection] = attrs.Factory(list)
    server: transport.WebSocketServer | None = None
    _send: trio.MemorySendChannel[tuple[int, str | bytes]] = attrs.field(init=False)
    messages: trio.MemoryReceiveChannel[tuple[int, str | bytes]] = attrs.field(init=False)
    _opened: trio.MemorySendChannel[int] = attrs.field(init=False)
    opened: trio.MemoryReceiveChannel[int] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._send, self.messages = trio.open_memory_channel[tuple[int, str | bytes]](10_000)
        self._opened, self.opened = trio.open_memory_channel[int](1000)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/feed"

    async def start(
        self, nursery: trio.Nursery, port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        policy = transport.HandshakePolicy(on_handshake=self._on_handshake)
        self.server = await nursery.start(
            functools.partial(
                transport.serve_websocket,
                self.system,
                self._serve,
                "127.0.0.1",
                port,
                ssl_context=ssl_context,
                policy=policy,
                options=OPTIONS,
            )
        )

    async def _on_handshake(self, request: transport.HandshakeRequest) -> transport.Reject | None:
        await trio.lowlevel.checkpoint()
        self.handshakes.append(trio.current_time())
        if self.reject:
            return transport.Reject(self.reject.pop(0))
        return None

    async def _serve(self, connection: transport.WebSocketConnection) -> None:
        number = len(self.connections)
        self.connections.append(connection)
        self._opened.send_nowait(number)
        if self.greeting is not None:
            await connection.send(f"{self.greeting} {number}")
        async for message in connection:
            self._send.send_nowait((number, message))

    async def take(self, count: int) -> list[tuple[int, str | bytes]]:
        """The next ``count`` inbound messages."""
        return [await self.messages.receive() for _ in range(count)]

    def received_total(self) -> int:
        """Messages read by the server's connections (including any after a close began)."""
        return sum(c.statistics().messages_received for c in self.connections)


def drain(channel: trio.MemoryReceiveChannel[actors.DeadLetter]) -> list[actors.DeadLetter]:
    """Everything waiting in ``channel`` now."""
    items = []
    while True:
        try:
            items.append(channel.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return items


async def closed_port() -> int:
    """A loopback port with nothing listening on it (connections are refused)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]
    for listener in listeners:
        await listener.aclose()
    return port


@attrs.define(eq=False)
class Events(actors.Actor[transport.ClientEvent]):
    """A subscriber that puts every event it is told into a channel, in order."""

    channel: trio.MemorySendChannel[transport.ClientEvent]

    @actors.handler
    async def event(
        self,
        message: transport.Connected
        | transport.Received
        | transport.Disconnected
        | transport.GaveUp,
    ) -> None:
        await self.channel.send(message)


async def spawn_events(
    system: actors.ActorSystem,
) -> tuple[
    actors.ActorRef[transport.ClientEvent], trio.MemoryReceiveChannel[transport.ClientEvent]
]:
    send, receive = trio.open_memory_channel[transport.ClientEvent](1000)
    ref = await system.spawn(Events(send))
    return ref, receive


async def wait_for_state(
    client: transport.ReconnectingConnection,
    state: transport.ClientState,
    failed_attempts: int | None = None,
) -> transport.ReconnectStatistics:
    """Wait for ``state`` (after ``failed_attempts`` failures in a row, if given)."""
    while True:
        stats = client.statistics()
        if stats.state is state and failed_attempts in (None, stats.failed_attempts):
            await trio.lowlevel.checkpoint()
            return stats
        await client._status.wait_changed()
