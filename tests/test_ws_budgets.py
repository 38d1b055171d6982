"""Byte budgets (DESIGN guarantee 4): a peer that outpaces the application holds the
server to the connection's budget, and a server's connections share one inbound budget.

The queued bytes are measured (the statistics' high-water marks), not the process's RSS.
"""

from __future__ import annotations

import functools

import trio

import actors
import transport
from tests.hostile import BINARY, HostileClient, flood, frame, settled

CHUNK = 64 * 1024
#: More 64 KiB messages than any server should take in (6.5 GB): the flood's cap.
FLOOD = 100_000
DROPPED = actors.DeadLetterReason.DROPPED


async def test_a_flood_that_never_reads_its_echoes_is_held_to_the_budget(
    system: actors.ActorSystem,
) -> None:
    """64 KiB binary messages as fast as the client can, never reading the echoes: the
    echo server's queues stay within their byte bounds, it closes with 1013, and every
    message it dropped is reported."""
    options = transport.ConnectionOptions(ping_interval=None, write_timeout=1, close_timeout=1)
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
    the server's budget: the connection whose message would pass it is closed with 1013."""
    options = transport.ConnectionOptions(
        ping_interval=None, inbound_max_bytes=10 * CHUNK, write_timeout=1, close_timeout=1
    )
    opened = trio.Semaphore(0)
    connections: list[transport.WebSocketConnection] = []

    async def never_reads(connection: transport.WebSocketConnection) -> None:
        connections.append(connection)
        opened.release()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server: transport.WebSocketServer = await nursery.start(
            functools.partial(
                transport.serve_websocket,
                system,
                never_reads,
                "127.0.0.1",
                0,
                options=options,
                max_inbound_bytes=5 * CHUNK // 2,
            )
        )
        first = await HostileClient.open(server.port)
        second = await HostileClient.open(server.port)
        with trio.fail_after(10):
            await opened.acquire()
            await opened.acquire()
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
