"""Helpers shared by the transport tests: connection pairs over in-memory streams."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable

import trio
import trio.testing
import wsproto
import wsproto.events

import actors
import transport
from transport._client._connect import client_opener
from transport._connection._actor import Application, spawn_connection
from transport._server._handshake import DEFAULT_POLICY, server_opener

NO_KEEPALIVE = transport.ConnectionOptions(ping_interval=None)


async def connection_pair(
    system: actors.ActorSystem,
    *,
    client_options: transport.ConnectionOptions = NO_KEEPALIVE,
    server_options: transport.ConnectionOptions = NO_KEEPALIVE,
    policy: transport.HandshakePolicy = DEFAULT_POLICY,
    application: Application | None = None,
    subscriber: actors.ActorRef[transport.SubscriberMessage] | None = None,
    streams: tuple[trio.abc.Stream, trio.abc.Stream] | None = None,
) -> tuple[transport.WebSocketConnection, transport.WebSocketConnection]:
    """A client and a server connection actor talking over a memory stream pair."""
    client_stream, server_stream = streams or trio.testing.memory_stream_pair()

    async def connect() -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        return client_stream

    opened: dict[str, transport.WebSocketConnection] = {}

    async def open_client() -> None:
        opener = client_opener(connect, host="test", resource="/ws", options=client_options)
        opened["client"] = await spawn_connection(
            system, opener, client_options, subscriber=subscriber, name="client"
        )

    async def open_server() -> None:
        opener = server_opener(server_stream, policy, server_options)
        opened["server"] = await spawn_connection(
            system, opener, server_options, application=application, name="server"
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(open_client)
        nursery.start_soon(open_server)
    return opened["client"], opened["server"]


async def echo(connection: transport.WebSocketConnection) -> None:
    """A server handler that sends every message back."""
    async for message in connection:
        await connection.send(message)


async def serve_echo(
    nursery: trio.Nursery,
    system: actors.ActorSystem,
    *,
    ssl_context: ssl.SSLContext | None = None,
    options: transport.ConnectionOptions = NO_KEEPALIVE,
    policy: transport.HandshakePolicy = DEFAULT_POLICY,
) -> transport.WebSocketServer:
    """An echo server on a free loopback port, running in ``nursery``."""
    server: transport.WebSocketServer = await nursery.start(
        functools.partial(
            transport.serve_websocket,
            system,
            echo,
            "127.0.0.1",
            0,
            ssl_context=ssl_context,
            options=options,
            policy=policy,
        )
    )
    return server


async def wait_closed(connection: transport.WebSocketConnection) -> transport.ConnectionClosed:
    """The connection's final ConnectionClosed, once its actor has stopped."""
    reason = await connection.ref.wait_stopped()
    assert isinstance(reason, transport.ConnectionClosed), reason
    return reason


async def raw_client(port: int, path: str = "/") -> tuple[trio.SocketStream, wsproto.WSConnection]:
    """A bare wsproto client over loopback TCP, for sending what a well-behaved client won't."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await stream.send_all(ws.send(wsproto.events.Request(host="127.0.0.1", target=path)))
    while True:
        ws.receive_data(await stream.receive_some())
        for event in ws.events():
            if isinstance(event, wsproto.events.AcceptConnection):
                return stream, ws
            raise AssertionError(f"handshake failed: {event!r}")


async def raw_close_code(stream: trio.SocketStream, ws: wsproto.WSConnection) -> int | None:
    """Read until the peer's Close frame (its code) or EOF without one (``None``)."""
    while True:
        try:
            data = await stream.receive_some()
        except trio.BrokenResourceError:
            return None
        if not data:
            return None
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, wsproto.events.CloseConnection):
                return event.code


async def threads_and_tasks_send(
    ws: transport.WebSocketConnection,
    *,
    threads: int,
    per_thread: int,
    tasks: int,
    per_task: int,
) -> dict[str, list[int]]:
    """The original crash's load on one echoed connection: ``threads`` OS threads
    (``tell_from_thread``) and ``tasks`` trio tasks (``send``) each send numbered texts;
    the numbers each sender's echoes came back with, by sender (``t0``.., ``a0``..)."""
    ref = ws.ref

    def thread_sender(sender: int) -> None:
        for seq in range(per_thread):
            ref.tell_from_thread(transport.SendText(f"t{sender}:{seq}"))

    async def task_sender(sender: int) -> None:
        for seq in range(per_task):
            await ws.send(f"a{sender}:{seq}")

    received: dict[str, list[int]] = {}
    async with trio.open_nursery() as senders:
        for sender in range(threads):
            senders.start_soon(trio.to_thread.run_sync, thread_sender, sender)
        for sender in range(tasks):
            senders.start_soon(task_sender, sender)
        for _ in range(threads * per_thread + tasks * per_task):
            message = await ws.receive()
            assert isinstance(message, str)
            name, seq = message.split(":")
            received.setdefault(name, []).append(int(seq))
    return received


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition``: state that changes inside a server, with no event to wait on."""
    while not condition():  # noqa: ASYNC110 - polled state of another component
        await trio.sleep(0.01)
