"""Byte budgets (DESIGN guarantee 4): a peer that outpaces the application holds the
server to the connection's budget, and a server's connections share one inbound budget,
whether the reader pauses (the default, TCP backpressure) or drops and closes.

The queued bytes are measured (the statistics' high-water marks), not the process's RSS.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import trio

import actors
import transport
from tests.hostile import BINARY, HostileClient, flood, frame, settled
from tests.ws_support import NO_KEEPALIVE, until

CHUNK = 64 * 1024
#: More 64 KiB messages than any server should take in (6.5 GB): the flood's cap.
FLOOD = 100_000
DROPPED = actors.DeadLetterReason.DROPPED


async def test_a_flood_that_never_reads_its_echoes_is_held_to_the_budget(
    system: actors.ActorSystem,
) -> None:
    """64 KiB binary messages as fast as the client can, never reading the echoes, to a
    server that drops and closes (``CLOSE_TRY_AGAIN_LATER``): the echo server's queues
    stay within their byte bounds, it closes with 1013, and every message it dropped is
    reported."""
    options = transport.ConnectionOptions(
        ping_interval=None,
        write_timeout=1,
        close_timeout=1,
        overflow=transport.Overflow.CLOSE_TRY_AGAIN_LATER,
    )
    connections: list[transport.WebSocketConnection] = []

    async def echo(connection: transport.WebSocketConnection) -> None:
        connections.append(connection)
        async for message in connection:
            await connection.send(message)

    async with trio.open_nursery() as nursery:
        server: transport.WebSocketServer = await nursery.start(
            functools.partial(
                transport.serve_websocket, system, echo, "127.0.0.1", 0, options=options
            )
        )
        client = await HostileClient.open(server.port)
        dropped_before = system.dead_letters.statistics().by_reason.get(DROPPED, 0)
        with trio.fail_after(60):
            # The server reads on and drops by policy (its Close cannot be written to a
            # client that never reads) until the write of an echo is cut.
            sent = await flood(client, frame(BINARY, b"x" * CHUNK), FLOOD)
            (connection,) = connections
            closed = await connection.ref.wait_stopped()
            await client.aclose()
            await settled(server)
        assert sent < FLOOD  # the server hung up on the flood
        assert isinstance(closed, transport.ConnectionClosed)
        assert closed.code == 1013, closed
        statistics = connection.statistics()
        assert 0 < statistics.inbound_bytes_high_water <= options.inbound_max_bytes
        assert 0 < statistics.outbound_bytes_high_water <= options.outbound_max_bytes
        assert statistics.inbound_dropped >= 1
        dropped = system.dead_letters.statistics().by_reason.get(DROPPED, 0) - dropped_before
        assert dropped == statistics.inbound_dropped
        nursery.cancel_scope.cancel()


async def test_the_connections_of_a_server_share_one_inbound_budget(
    system: actors.ActorSystem,
) -> None:
    """Two clients whose messages fit their own connection's bound but not, together,
    the server's budget: the connection whose message would pass it is closed with 1013
    (``CLOSE_TRY_AGAIN_LATER``)."""
    options = transport.ConnectionOptions(
        ping_interval=None,
        inbound_max_bytes=10 * CHUNK,
        write_timeout=1,
        close_timeout=1,
        overflow=transport.Overflow.CLOSE_TRY_AGAIN_LATER,
    )
    connections: list[transport.WebSocketConnection] = []

    async def never_reads(connection: transport.WebSocketConnection) -> None:
        connections.append(connection)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            first, second = await budgeted_pair(nursery, system, never_reads, options)
            message = frame(BINARY, b"x" * (CHUNK - 16))
            await first.send(message + message)
            await second.send(message)
            ended: list[actors.StopReason] = []
            async with trio.open_nursery() as race:

                async def wait_one(ref: actors.ActorRef[transport.ConnectionMessage]) -> None:
                    ended.append(await ref.wait_stopped())
                    race.cancel_scope.cancel()

                for connection in connections:
                    race.start_soon(wait_one, connection.ref)
        # Three messages of nearly 64 KiB, a budget of two and a half: the one that would
        # pass it closes its connection with 1013; the other keeps what it received.
        assert ended == [transport.ConnectionClosed(1013, "inbound queue overflow")]
        (held,) = [c for c in connections if c.closed is None]
        assert held.statistics().inbound_bytes in (CHUNK - 16, 2 * (CHUNK - 16))
        await first.aclose()
        await second.aclose()
        nursery.cancel_scope.cancel()


# -- the default: pause reading the peer (Overflow.PAUSE) --------------------------------------


async def test_a_flood_pauses_the_reader_and_loses_nothing(system: actors.ActorSystem) -> None:
    """A client sends far more than the connection's budget while the application does not
    read: the reader stops reading at the budget (the queue holds its bytes and at most one
    message more), nothing is dropped, and the application then gets every message, in
    order, slowly. Its keepalive (every 50 ms, 200 ms to answer) does not give up on the
    client meanwhile, though the client's Pongs wait behind the data the reader left unread."""
    count, size = 100, 16 * 1024  # 1.6 MB against a budget of 256 KiB
    options = transport.ConnectionOptions(ping_interval=0.05, pong_timeout=0.2)
    statistics: list[transport.ConnectionStatistics] = []
    received: list[bytes] = []
    go = trio.Event()

    async def late_reader(connection: transport.WebSocketConnection) -> None:
        await go.wait()
        statistics.append(connection.statistics())
        for _ in range(count):
            message = await connection.receive()
            assert isinstance(message, bytes)
            received.append(message)
            # Slowly, for a second: the reader pauses again and again, and the client's
            # Pongs to the pings sent in between wait behind hundreds of kilobytes.
            await trio.sleep(0.01)
        await connection.send("all read")

    async with trio.open_nursery() as nursery:
        server: transport.WebSocketServer = await nursery.start(
            functools.partial(
                transport.serve_websocket, system, late_reader, "127.0.0.1", 0, options=options
            )
        )
        sent = [i.to_bytes(4, "big") + b"x" * (size - 4) for i in range(count)]
        async with transport.open_websocket_client(
            system, f"ws://127.0.0.1:{server.port}/", options=NO_KEEPALIVE
        ) as client:
            with trio.fail_after(30):
                async with trio.open_nursery() as sending:
                    sending.start_soon(send_all, client, sent)
                    # Longer than several pong timeouts, with the reader paused all along.
                    await trio.sleep(1.0)
                    go.set()
                assert await client.receive() == "all read"
        (paused,) = statistics
        assert paused.inbound_pauses >= 1
        assert paused.inbound_dropped == 0
        assert paused.closed is None  # the keepalive did not give up on a paused reader
        assert 0 < paused.inbound_bytes_high_water < options.inbound_max_bytes + size
        assert received == sent
        nursery.cancel_scope.cancel()


async def send_all(client: transport.WebSocketConnection, messages: list[bytes]) -> None:
    for message in messages:
        await client.send(message)


async def budgeted_pair(
    nursery: trio.Nursery,
    system: actors.ActorSystem,
    handler: Callable[[transport.WebSocketConnection], Awaitable[None]],
    options: transport.ConnectionOptions,
) -> tuple[HostileClient, HostileClient]:
    """Two clients of a server whose connections share a budget of two and a half
    ``CHUNK``; returned once the handler runs for both."""
    opened = trio.Semaphore(0)

    async def counted(connection: transport.WebSocketConnection) -> None:
        opened.release()
        await handler(connection)

    server: transport.WebSocketServer = await nursery.start(
        functools.partial(
            transport.serve_websocket,
            system,
            counted,
            "127.0.0.1",
            0,
            options=options,
            max_inbound_bytes=5 * CHUNK // 2,
        )
    )
    clients = (await HostileClient.open(server.port), await HostileClient.open(server.port))
    await opened.acquire()
    await opened.acquire()
    return clients


async def test_paused_connections_wait_for_the_shared_budget_in_turn(
    system: actors.ActorSystem,
) -> None:
    """Two connections whose messages fit their own bound but not, together, the
    server's budget: the one that finds the budget spent stops reading (nothing is
    dropped, nobody is closed) and goes on once the other's application has read."""
    options = transport.ConnectionOptions(ping_interval=None, inbound_max_bytes=10 * CHUNK)
    payload = b"x" * (CHUNK - 16)
    connections: list[transport.WebSocketConnection] = []
    read = trio.Event()

    async def reads_when_told(connection: transport.WebSocketConnection) -> None:
        connections.append(connection)
        await read.wait()
        async for message in connection:
            await connection.send(f"{len(message)}")

    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            first, second = await budgeted_pair(nursery, system, reads_when_told, options)
            # The first's three messages get in (the third takes the budget past its limit:
            # the budget is checked before each message) ...
            await first.send(frame(BINARY, payload) * 3)
            await until(lambda: sum(c.statistics().inbound_depth for c in connections) == 3)
            # ... and the second's only message finds it spent: its reader waits.
            await second.send(frame(BINARY, payload))
            await until(lambda: sum(c.statistics().inbound_pauses for c in connections) == 1)
            queued = [c.statistics() for c in connections]
            assert sum(s.inbound_bytes for s in queued) <= 5 * CHUNK // 2 + CHUNK
            assert [s.inbound_dropped for s in queued] == [0, 0]
            assert [s.closed for s in queued] == [None, None]
            read.set()
            for _ in range(3):
                assert await first.next_message() == str(len(payload)).encode()
            assert await second.next_message() == str(len(payload)).encode()
        await first.aclose()
        await second.aclose()
        nursery.cancel_scope.cancel()
