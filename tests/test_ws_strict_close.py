"""Strict close order (DESIGN guarantee 7): messages that arrived before a protocol error
reach the application, and the replies it writes to them go out before the Close frame.

Every hostile frame of :data:`tests.hostile.FRAME_CASES` is checked this way on the server
in ``test_hostile_frames``; here, the bound on a slow application and the client side.
"""

from __future__ import annotations

import functools

import trio
import trio.testing
import wsproto
import wsproto.events

import actors
import transport
from tests.hostile import (
    TEXT,
    HostileClient,
    frame,
    request,
)
from transport._connection._actor import spawn_connection
from transport._server._handshake import DEFAULT_POLICY, server_opener

#: Seconds within which the echo and the Close must come (the application is quick).
ANSWER_WITHIN = 2.0


async def test_a_slow_application_is_waited_for_at_most_close_timeout(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    """An application that never takes the message before the error does not hold the
    Close back for longer than ``close_timeout``."""
    options = transport.ConnectionOptions(ping_interval=None, close_timeout=3.0)
    client_stream, server_stream = trio.testing.memory_stream_pair()

    async def never_reads(connection: transport.WebSocketConnection) -> None:
        await trio.sleep_forever()

    opener = server_opener(server_stream, DEFAULT_POLICY, options)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(spawn_connection, system, opener, options, application=never_reads)
        )
        client = HostileClient(client_stream)
        assert await client.handshake(request()) == 101
        await client.send(frame(TEXT, b"first") + frame(0x3, b"reserved opcode"))
        started = trio.current_time()
        ending = await client.ending()
        waited = trio.current_time() - started
        assert ending.code == 1002
        assert options.close_timeout <= waited < options.close_timeout + 1
        nursery.cancel_scope.cancel()


async def test_a_client_replies_before_it_closes_on_a_server_protocol_error(
    system: actors.ActorSystem,
) -> None:
    """The same order on the client side: a server sends a message, then a masked frame
    (servers must not mask); the client's reply is written before its Close 1002."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    seen: list[object] = []

    async def raw_server(stream: trio.SocketStream) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        while True:
            ws.receive_data(await stream.receive_some())
            request = next((e for e in ws.events() if isinstance(e, wsproto.events.Request)), None)
            if request is not None:
                break
        await stream.send_all(ws.send(wsproto.events.AcceptConnection()))
        masked = frame(TEXT, b"bad", mask=True)  # a server frame with a mask: 1002
        await stream.send_all(ws.send(wsproto.events.TextMessage("hello")) + masked)
        while True:
            data = await stream.receive_some()
            if not data:
                break
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, wsproto.events.TextMessage):
                    seen.append(event.data)
                elif isinstance(event, wsproto.events.CloseConnection):
                    seen.append(event.code)
                    return

    options = transport.ConnectionOptions(ping_interval=None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, raw_server, listeners)
        with trio.fail_after(ANSWER_WITHIN):
            connection = await transport.connect_websocket(
                system, f"ws://127.0.0.1:{port}/", options=options
            )
            async for message in connection:
                assert isinstance(message, str)
                await connection.send(f"re: {message}")
            closed = await connection.ref.wait_stopped()
            assert isinstance(closed, transport.ConnectionClosed)
            assert (closed.code, closed.by_peer) == (1002, False), closed
        nursery.cancel_scope.cancel()
    assert seen == ["re: hello", 1002]
