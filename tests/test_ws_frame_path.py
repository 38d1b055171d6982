"""The per-message path: frames made without wsproto's objects, writes that need no
wait, and an inbound message handed straight to a waiting consumer."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
import wsproto.frame_protocol

import actors
from tests.test_ws_backend import open_pair
from tests.ws_support import connection_pair
from transport import Overflow
from transport._adapter._hooks import stream_lock
from transport._adapter._library import Backend
from transport._adapter._limits import DEFAULT_LIMITS, BackendLimits
from transport._compression import DEFAULT_COMPRESSION
from transport._connection._inbound import TAKE_SPELL_LIMIT, ByteBudget, InboundQueue

SIZES = [0, 1, 125, 126, 65535, 65536, 70000]


@asynccontextmanager
async def tcp_pair(
    limits: BackendLimits = DEFAULT_LIMITS,
) -> AsyncIterator[tuple[Backend, Backend]]:
    """A client and a server connection over loopback TCP, aborted at the end."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    client_stream = await trio.testing.open_stream_to_socket_listener(listeners[0])
    server_stream = await listeners[0].accept()
    await listeners[0].aclose()
    async with trio.open_nursery() as nursery:
        client, server = await open_pair(nursery, limits, (client_stream, server_stream))
        try:
            yield client, server
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await client.abort()
                await server.abort()
            nursery.cancel_scope.cancel()


# -- frames ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("text", [False, True])
async def test_a_server_frame_is_the_one_wsproto_makes(size: int, text: bool) -> None:
    message: str | bytes = "é" * (size // 2) if text else bytes(range(256)) * (size // 256 + 1)
    if not text:
        message = message[:size]
    async with trio.open_nursery() as nursery:
        _, server = await open_pair(nursery)
        wsprotos = wsproto.frame_protocol.FrameProtocol(client=False, extensions=[])
        assert server.encode(message) == bytes(wsprotos.send_data(message))
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("size", SIZES)
async def test_a_client_frame_is_masked_with_a_fresh_key_and_arrives_whole(size: int) -> None:
    limits = BackendLimits(max_message_size=2**20)
    async with trio.open_nursery() as nursery:
        client, server = await open_pair(nursery, limits)
        text = "ü" * size
        first, second = client.encode(text), client.encode(text)
        assert first[1] & 0x80  # the mask bit
        if size:
            assert first != second  # a key of its own per frame
        await client.send_encoded(first + second + client.encode(b"\x00" * size))
        assert await server.receive() == text
        assert await server.receive() == text
        assert await server.receive() == b"\x00" * size
        nursery.cancel_scope.cancel()


async def test_a_compressed_connection_frames_through_wsproto() -> None:
    limits = BackendLimits(compression=DEFAULT_COMPRESSION)
    async with trio.open_nursery() as nursery:
        client, server = await open_pair(nursery, limits)
        assert server.compression is not None
        frame = server.encode("a" * 1000)
        assert frame[0] & 0x40  # RSV1: compressed
        assert len(frame) < 100
        await server.send_encoded(frame)
        assert await client.receive() == "a" * 1000
        nursery.cancel_scope.cancel()


# -- writes ---------------------------------------------------------------------------------


async def test_write_now_writes_what_the_socket_takes_and_the_rest_follows_in_order() -> None:
    async with tcp_pair(BackendLimits(max_message_size=2**26)) as (client, server):
        small = server.encode("small")
        assert server.write_now(small) == len(small)
        assert await client.receive() == "small"
        # More than the socket buffers of both ends take while nobody reads.
        big = b"\x01" * 2**25
        frame = server.encode(big) + server.encode("after")
        sent = server.write_now(frame)
        assert 0 < sent < len(frame)
        received: list[str | bytes] = []

        async def read_two() -> None:
            received.append(await client.receive())
            received.append(await client.receive())

        with trio.fail_after(20):
            async with trio.open_nursery() as inner:
                inner.start_soon(read_two)
                await server.send_encoded(memoryview(frame)[sent:])
        assert received == [big, "after"]


async def test_write_now_writes_nothing_while_another_write_holds_the_stream() -> None:
    async with tcp_pair() as (client, server):
        frame = server.encode("later")
        lock = stream_lock(server._ws)
        await lock.acquire()
        assert server.write_now(frame) == 0
        lock.release()
        assert server.write_now(frame) == len(frame)
        assert await client.receive() == "later"


async def test_write_now_writes_nothing_on_a_stream_that_is_not_a_socket() -> None:
    async with trio.open_nursery() as nursery:
        _, server = await open_pair(nursery)
        assert server.write_now(server.encode("x")) == 0
        nursery.cancel_scope.cancel()


async def test_write_now_writes_nothing_once_the_stream_is_closed() -> None:
    async with tcp_pair() as (_, server):
        await server.abort()
        assert server.write_now(b"\x81\x01x") == 0


# -- the inbound queue's hand-off -----------------------------------------------------------


@asynccontextmanager
async def waiting_consumer(queue: InboundQueue[str]) -> AsyncIterator[list[str]]:
    """A task waiting in ``queue.get()`` for one item; the list gets it."""
    got: list[str] = []

    async def consume() -> None:
        got.append(await queue.get())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.testing.wait_all_tasks_blocked()
        yield got


async def test_a_waiting_consumer_is_handed_the_message_without_queueing_it() -> None:
    queue: InboundQueue[str] = InboundQueue(4, Overflow.DROP_NEWEST, max_bytes=100)
    async with waiting_consumer(queue) as got:
        assert queue.waiting
        assert queue.put("hello", 5) == []
        assert len(queue) == 0
        assert queue.queued_bytes == 0
        assert queue.bytes_high_water == 5
    assert got == ["hello"]


async def test_a_waiting_consumer_is_not_handed_a_message_past_the_shared_budget() -> None:
    budget = ByteBudget(10)
    budget.used = 8  # other connections hold most of it
    queue: InboundQueue[str] = InboundQueue(4, Overflow.DROP_NEWEST, budget=budget)
    async with waiting_consumer(queue) as got:
        assert queue.put("too big", 7) == ["too big"]
        assert queue.dropped == 1
        assert queue.waiting
        assert queue.put("ok", 2) == []
    assert got == ["ok"]
    assert budget.used == 8


async def test_a_consumer_woken_by_the_close_ends() -> None:
    queue: InboundQueue[str] = InboundQueue(4, Overflow.DROP_NEWEST)
    ended = trio.Event()

    async def consume() -> None:
        with pytest.raises(trio.EndOfChannel):
            await queue.get()
        ended.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.testing.wait_all_tasks_blocked()
        queue.close()
    assert ended.is_set()


async def test_a_consumer_of_ready_items_yields_once_per_spell_and_stays_cancellable() -> None:
    queue: InboundQueue[int] = InboundQueue(1000, Overflow.DROP_NEWEST)
    for i in range(200):
        queue.put(i, 1)
    taken: list[int] = []
    seen: list[int] = []  # how many were taken each time another task ran

    async def other_task() -> None:
        while True:
            seen.append(len(taken))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        await trio.lowlevel.cancel_shielded_checkpoint()
        with trio.CancelScope() as scope:
            scope.cancel()
            await queue.get()  # a cancellation point even with items ready
        assert scope.cancelled_caught
        assert len(queue) == 200
        for _ in range(200):
            taken.append(await queue.get())
        nursery.cancel_scope.cancel()
    assert taken == list(range(200))
    steps = [b - a for a, b in itertools.pairwise(seen) if b > a]
    # The others run once per spell (trio orders each pass's tasks at random: between two
    # runs of one of them the consumer may have run twice).
    assert max(steps) <= 2 * TAKE_SPELL_LIMIT
    assert len(steps) <= 200 // TAKE_SPELL_LIMIT + 1  # not after every item


# -- the writer in a long spell ---------------------------------------------------------------


async def test_the_writes_of_a_long_spell_let_other_tasks_run_between_them(
    system: actors.ActorSystem,
) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    client_stream = await trio.testing.open_stream_to_socket_listener(listeners[0])
    server_stream = await listeners[0].accept()
    await listeners[0].aclose()
    client, server = await connection_pair(system, streams=(client_stream, server_stream))
    seen: list[int] = []  # frames written each time another task ran

    async def other_task() -> None:
        while True:
            seen.append(client.statistics().messages_sent)
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        await trio.lowlevel.checkpoint()
        for i in range(40):  # one busy spell: the loop takes them in a row
            client.send_nowait(f"m{i}")
        with trio.fail_after(10):
            assert [await server.receive() for _ in range(40)] == [f"m{i}" for i in range(40)]
        nursery.cancel_scope.cancel()
    # Written 4 frames a write, and the other task ran between the writes (the socket
    # took each write at once: no wait in the spell).
    assert 0 < min(n for n in seen if n > 0) <= 4 * 2
    assert len({n for n in seen if 0 < n < 40}) >= 40 // 4 // 2
    await client.close()
