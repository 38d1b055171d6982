"""The trio-websocket adapter over in-memory streams: handshakes, deadlines, limits."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from transport import HandshakeError, HandshakeRejected, HandshakeTimeoutError
from transport._adapter._library import Backend, BackendClosed, client_handshake, server_handshake
from transport._adapter._limits import DEFAULT_LIMITS, BackendLimits


async def open_pair(
    nursery: trio.Nursery,
    limits: BackendLimits = DEFAULT_LIMITS,
    streams: tuple[trio.abc.Stream, trio.abc.Stream] | None = None,
) -> tuple[Backend, Backend]:
    """A client and a server backend over ``streams`` (a memory stream pair by default)."""
    client_stream, server_stream = streams or trio.testing.memory_stream_pair()
    server: list[Backend] = []

    async def serve() -> None:
        handshake = await server_handshake(nursery, server_stream, limits=limits)
        server.append(await handshake.accept(None, (), 10))

    async with trio.open_nursery() as inner:
        inner.start_soon(serve)
        client = await client_handshake(
            nursery, client_stream, host="example", resource="/chat", limits=limits
        )
    return client, server[0]


async def test_messages_flow_both_ways_in_order() -> None:
    async with trio.open_nursery() as nursery:
        client, server = await open_pair(nursery)
        for i in range(5):
            await client.send(f"text {i}")
        await client.send(b"\x00bytes")
        assert [await server.receive() for _ in range(5)] == [f"text {i}" for i in range(5)]
        assert await server.receive() == b"\x00bytes"
        await server.send("back")
        assert await client.receive() == "back"
        nursery.cancel_scope.cancel()


async def test_close_handshake_reports_the_code_to_the_peer() -> None:
    async with trio.open_nursery() as nursery:
        client, server = await open_pair(nursery)
        with trio.fail_after(5):
            nursery.start_soon(client.close, 4001, "bye")
            with pytest.raises(BackendClosed) as info:
                await server.receive()
        assert (info.value.code, info.value.reason) == (4001, "bye")
        nursery.cancel_scope.cancel()


async def test_ping_waits_for_the_pong() -> None:
    async with trio.open_nursery() as nursery:
        client, server = await open_pair(nursery)
        nursery.start_soon(server.receive)  # the peer's reader answers pings
        pong = await client.send_ping(b"1")
        with trio.fail_after(5):
            await pong.wait()
        nursery.cancel_scope.cancel()


async def test_message_over_the_limit_closes_with_1009() -> None:
    async with trio.open_nursery() as nursery:
        client, server = await open_pair(nursery, BackendLimits(max_message_size=100))
        await client.send("x" * 101)
        with pytest.raises(BackendClosed) as info:
            await server.receive()
        assert info.value.code == 1009
        with pytest.raises(BackendClosed) as info:
            await client.receive()
        assert info.value.code == 1009
        nursery.cancel_scope.cancel()


async def test_server_rejection_is_a_handshake_rejected_with_status() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            handshake = await server_handshake(nursery, server_stream)
            assert handshake.path == "/private"
            await handshake.reject(403, b"go away", (), 5)

        nursery.start_soon(serve)
        with pytest.raises(HandshakeRejected) as info:
            await client_handshake(nursery, client_stream, host="h", resource="/private")
        assert info.value.status == 403
        assert info.value.body == b"go away"
        nursery.cancel_scope.cancel()


async def test_silent_server_times_out_with_the_handshake_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client_stream, _server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        with pytest.raises(HandshakeTimeoutError):
            await client_handshake(nursery, client_stream, host="h", resource="/", within=3)
        assert trio.current_time() - start == pytest.approx(3)
        nursery.cancel_scope.cancel()


async def test_peer_hanging_up_during_handshake_fails_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        await server_stream.aclose()
        start = trio.current_time()
        with pytest.raises(HandshakeError):
            await client_handshake(nursery, client_stream, host="h", resource="/")
        assert trio.current_time() - start < 1
        server_stream2, client_stream2 = trio.testing.memory_stream_pair()
        await client_stream2.aclose()
        with pytest.raises(HandshakeError):
            await server_handshake(nursery, server_stream2)
        assert trio.current_time() - start < 1
        nursery.cancel_scope.cancel()
