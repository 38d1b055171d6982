"""Floods from a raw-socket client: fragments, pings, messages. Memory and time stay bounded.

Memory is the peak growth of Python allocations (tracemalloc, client and server in this
process) while the flood runs; the flood itself is built before tracing starts.
"""

from __future__ import annotations

import pytest
import trio

import actors
import transport
from tests.hostile import (
    BINARY,
    CONTINUATION,
    PING,
    TEXT,
    HostileClient,
    flood,
    frame,
    settled,
    start_server,
    still_serves,
    traced_memory,
)

BUDGET = 256
LIMITS = transport.InboundLimits(max_fragments=BUDGET)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("empty", frame(CONTINUATION, b"", fin=False)),
        ("one-byte", frame(CONTINUATION, b"x", fin=False)),
    ],
)
async def test_continuation_flood_is_cut_at_the_fragment_budget(
    system: actors.ActorSystem, name: str, fragment: bytes
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, limits=LIMITS)
        client = await HostileClient.open(server.port)
        chunk = fragment * 1000  # 6-7 KB per send, 100,000 fragments in all
        start = trio.current_time()
        with trio.fail_after(5), traced_memory() as peak:
            await client.send(frame(TEXT, b"", fin=False))
            sent = await flood(client, chunk, 100)
            ending = await client.ending()
        assert ending.code == 1009, ending
        assert f"more than {BUDGET} frames" in ending.reason
        assert trio.current_time() - start < 2
        assert peak[0] < 2**20, f"{peak[0]} bytes for {sent * 1000} fragments ({name})"
        await client.aclose()
        with trio.fail_after(5):
            await settled(server)
            await still_serves(system, server.port)
        nursery.cancel_scope.cancel()


async def test_fragmented_messages_within_the_budget_pass(system: actors.ActorSystem) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, limits=LIMITS)
        client = await HostileClient.open(server.port)
        parts = [frame(BINARY, b"a", fin=False)]
        parts += [frame(CONTINUATION, b"b", fin=False)] * (BUDGET - 2)
        parts.append(frame(CONTINUATION, b"c"))
        with trio.fail_after(5):
            await client.send(b"".join(parts) * 3)  # three messages of exactly BUDGET frames
            for _ in range(3):
                assert await client.next_message() == b"a" + b"b" * (BUDGET - 2) + b"c"
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_ping_flood_is_answered_with_bounded_memory(system: actors.ActorSystem) -> None:
    count = 2000
    pings = b"".join(frame(PING, b"%d" % i) for i in range(count))
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        client = await HostileClient.open(server.port)
        with trio.fail_after(10), traced_memory() as peak:
            nursery.start_soon(client.send, pings)
            assert await client.pongs(count) == count
        assert peak[0] < 2**20, peak
        await client.abort()
        with trio.fail_after(5):
            await settled(server)
            await still_serves(system, server.port)
        nursery.cancel_scope.cancel()


async def test_ping_flood_that_never_reads_pongs_stays_bounded(system: actors.ActorSystem) -> None:
    """The server's reader waits on its own pong writes: TCP backpressure, not buffering."""
    pings = frame(PING, b"p" * 100) * 1000  # 106 KB per send
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        client = await HostileClient.open(server.port)
        sent = 0
        with traced_memory() as peak:
            with trio.move_on_after(1.0):
                while sent < 1000 and await client.send(pings):  # up to 100 MB: blocks first
                    sent += 1
        assert sent < 1000  # the server stopped reading: backpressure reached the client
        assert peak[0] < 4 * 2**20, peak
        await client.abort()
        with trio.fail_after(5):
            await settled(server)
            await still_serves(system, server.port)
        nursery.cancel_scope.cancel()


async def test_message_rate_limit_closes_with_1008(system: actors.ActorSystem) -> None:
    limits = transport.InboundLimits(max_messages_per_second=20, burst=10)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, limits=limits)
        polite = await HostileClient.open(server.port)
        with trio.fail_after(5):
            await polite.send(frame(TEXT, b"hello") * 5)  # within the burst
            assert [await polite.next_message() for _ in range(5)] == [b"hello"] * 5
        rude = await HostileClient.open(server.port)
        with trio.fail_after(5):
            await rude.send(frame(TEXT, b"spam") * 200)
            ending = await rude.ending()
        assert ending.code == 1008, ending
        assert "messages per second" in ending.reason
        with trio.fail_after(5):  # the polite one is unaffected
            await polite.send(frame(TEXT, b"still here"))
            assert await polite.next_message() == b"still here"
        for client in (polite, rude):
            await client.aclose()
        nursery.cancel_scope.cancel()


async def test_ping_flood_past_the_rate_limit_closes_with_1008(
    system: actors.ActorSystem,
) -> None:
    limits = transport.InboundLimits(max_messages_per_second=100, burst=50)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, limits=limits)
        client = await HostileClient.open(server.port)
        with trio.fail_after(5):
            await client.send(frame(PING, b"p") * 1000)
            ending = await client.ending()
        assert ending.code == 1008, ending
        assert ending.pongs <= 60  # the burst, plus what the rate refilled meanwhile
        await client.aclose()
        nursery.cancel_scope.cancel()
