"""Hostile opening handshakes: malformed requests, slowloris, silence, connection floods.

The server reads and judges the request before any connection actor exists, so
none of these costs an actor; every one ends within the handshake deadline.
"""

from __future__ import annotations

import pytest
import trio

import actors
from tests.hostile import (
    BINARY,
    CLOSE,
    HANDSHAKE_CASES,
    SERVER_OPTIONS,
    TEXT,
    HandshakeCase,
    HostileClient,
    close_payload,
    frame,
    request,
    settled,
    start_server,
    still_serves,
)

DEADLINE = SERVER_OPTIONS.handshake_timeout


@pytest.mark.parametrize("case", HANDSHAKE_CASES, ids=[case.name for case in HANDSHAKE_CASES])
async def test_malformed_request_gets_an_http_error_and_no_actor(
    system: actors.ActorSystem, case: HandshakeCase
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        client = await HostileClient.connect(server.port)
        with trio.fail_after(DEADLINE):  # answered at once, not at the deadline
            status, closed = await client.http_status_then_eof(case.data)
        assert (status, closed) == (case.status, True)
        await client.aclose()
        with trio.fail_after(5):
            await settled(server)
            stats = await server.statistics()
            assert (stats.accepted, stats.handshake_failures, stats.active) == (0, 1, 0)
            await still_serves(system, server.port)
        nursery.cancel_scope.cancel()


async def test_silent_connection_is_cut_at_the_handshake_deadline(
    system: actors.ActorSystem,
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        client = await HostileClient.connect(server.port)
        start = trio.current_time()
        with trio.fail_after(DEADLINE + 2):
            assert await client.closed()
        assert DEADLINE * 0.9 <= trio.current_time() - start < DEADLINE + 1
        await client.aclose()
        assert (await server.statistics()).handshake_failures == 1
        nursery.cancel_scope.cancel()


async def test_slowloris_request_is_cut_at_the_handshake_deadline(
    system: actors.ActorSystem,
) -> None:
    """One byte every 20 ms: the deadline is for the whole request, not between bytes."""
    data = request(headers=(("X-Slow", "s" * 200),))
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        client = await HostileClient.connect(server.port)
        start = trio.current_time()
        sent = 0
        with trio.fail_after(DEADLINE + 2):
            while sent < len(data) and await client.send(data[sent : sent + 1]):
                sent += 1
                await trio.sleep(0.02)  # pacing the attack, not waiting for a result
            assert await client.closed()
        assert sent < len(data)
        assert trio.current_time() - start < DEADLINE + 1
        await client.aclose()
        with trio.fail_after(5):
            await still_serves(system, server.port)
        nursery.cancel_scope.cancel()


async def test_a_flood_of_silent_connections_is_capped_and_cut(
    system: actors.ActorSystem,
) -> None:
    """Handshakes in progress count against the cap; past it clients are refused at once."""
    cap, crowd = 10, 60
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, max_connections=cap)
        clients = [await HostileClient.connect(server.port) for _ in range(crowd)]
        with trio.fail_after(DEADLINE + 3):
            async with trio.open_nursery() as waiters:
                for client in clients:
                    waiters.start_soon(client.closed)
            await settled(server)
        stats = await server.statistics()
        assert stats.refused == crowd - cap
        assert stats.handshake_failures == cap
        for client in clients:
            await client.aclose()
        with trio.fail_after(5):
            await still_serves(system, server.port)
        nursery.cancel_scope.cancel()


async def test_refused_at_the_cap_still_gets_503(system: actors.ActorSystem) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, max_connections=1)
        holder = await HostileClient.open(server.port)
        late = await HostileClient.connect(server.port)
        with trio.fail_after(DEADLINE):
            status, _ = await late.http_status_then_eof(request())
        assert status == 503
        for client in (holder, late):
            await client.aclose()
        nursery.cancel_scope.cancel()


async def test_frames_sent_with_the_request_are_not_lost(system: actors.ActorSystem) -> None:
    """A client that does not wait for the 101 (RFC 6455 says it must) and sends its first
    frames in the same packet as its request: they are read and answered in order, instead
    of being dropped with the rest of the request's read."""
    early = frame(TEXT, b"early") + frame(BINARY, b"\x00bytes")
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        client = await HostileClient.connect(server.port)
        with trio.fail_after(DEADLINE):
            assert await client.handshake(request() + early) == 101
            assert await client.next_message() == b"early"
            assert await client.next_message() == b"\x00bytes"
            assert await client.send(frame(CLOSE, close_payload(1000, b"done")))
            ending = await client.ending()
            assert (ending.code, ending.reason) == (1000, "done")
            assert await client.closed()
        await client.aclose()
        nursery.cancel_scope.cancel()
