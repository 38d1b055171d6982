"""Control never waits behind data (DESIGN guarantee 9), and the one door into the writer.

A connection whose writes are slow (each takes a second of virtual time) and on which many
tasks wait to send: statistics asks and a Close are answered after at most the frame being
written, however many frames are queued or senders wait; frames from one sender are
written in the order it sent them, whichever call it used.
"""

from __future__ import annotations

import functools

import trio
import trio.testing

import actors
import transport
from tests.hostile import HostileClient
from tests.test_ws_io import stalling_pair
from tests.ws_support import until
from transport import ConnectionOptions

#: Virtual seconds each write of the client takes.
WRITE = 1.0
SENDERS = 50
FRAMES = 20
#: More senders than the mailbox holds: the writer takes up to a whole mailbox of frames
#: per write (a busy spell), so fewer would all fit in it between two writes.
MANY_SENDERS = 150


async def slow_pair(
    system: actors.ActorSystem,
) -> tuple[transport.WebSocketConnection, transport.WebSocketConnection]:
    """A client whose every write takes ``WRITE`` seconds, and its server."""
    options = ConnectionOptions(ping_interval=None, write_timeout=10 * WRITE)
    stalling, client, server = await stalling_pair(system, options)
    stalling.delay = WRITE
    return client, server


async def test_statistics_asks_overtake_queued_frames_and_waiting_senders(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    client, server = await slow_pair(system)
    latencies: list[float] = []

    async def sender(number: int) -> None:
        for index in range(FRAMES):
            if index % 2:
                await client.send(f"{number}:{index}")
            else:
                await client.ref.tell(transport.SendText(f"{number}:{index}"))

    async def drain() -> None:
        async for _ in server:
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        for number in range(MANY_SENDERS):
            nursery.start_soon(sender, number)
        await trio.sleep(WRITE / 2)  # mid-write, with every sender queued or waiting
        for _ in range(10):
            asked = trio.current_time()
            statistics = await client.ref.ask(transport.GetStatistics())
            latencies.append(trio.current_time() - asked)
            assert statistics.closed is None
        # At most the frame being written goes first (the ask itself takes no time).
        assert max(latencies) <= WRITE
        assert client.ref.statistics().senders_waiting > 0  # data was still waiting
        nursery.cancel_scope.cancel()


async def test_a_close_overtakes_waiting_senders_and_frames_sent_before_it_go_first(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    client, server = await slow_pair(system)
    received: list[str | bytes] = []

    async def drain() -> None:
        async for message in server:
            received.append(message)

    async def sender(number: int) -> None:
        for index in range(FRAMES):
            try:
                await client.send(f"{number}:{index}")
            except actors.ActorStoppedError:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        for number in range(SENDERS):
            nursery.start_soon(sender, number)
        await trio.sleep(WRITE / 2)
        queued = client.ref.statistics().depth
        started = trio.current_time()
        await client.ref.tell(transport.Close(1000, "enough"))
        reason = await client.ref.wait_stopped()
        # The frames queued before the Close were written, then the Close: bounded by
        # what was queued when it was handled, not by every sender that kept waiting.
        assert trio.current_time() - started <= (queued + SENDERS + 2) * WRITE
        assert reason == transport.ConnectionClosed(1000, "enough", by_peer=False)
        nursery.cancel_scope.cancel()
    # Each sender's frames arrived in the order it sent them, without gaps.
    for number in range(SENDERS):
        mine = [m for m in received if isinstance(m, str) and m.startswith(f"{number}:")]
        assert mine == [f"{number}:{index}" for index in range(len(mine))]


async def test_on_tcp_a_write_waiting_for_the_peers_window_holds_back_no_ask(
    system: actors.ActorSystem,
) -> None:
    """Over a plain TCP socket the rest of a write that the socket could not take waits for
    room in the io task, and the actor takes control messages meanwhile: a statistics ask
    is answered while the peer reads nothing, long before the write's own timeout. The
    frames queued behind it then go out in order once the peer reads."""
    options = ConnectionOptions(ping_interval=None, write_timeout=60)
    chunk = b"x" * 65536
    handles: list[transport.WebSocketConnection] = []
    sent_all = trio.Event()

    async def pusher(connection: transport.WebSocketConnection) -> None:
        handles.append(connection)
        for index in range(200):  # 13 MB: far more than the sockets' buffers hold
            await connection.send(index.to_bytes(4, "big") + chunk)
        sent_all.set()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server: transport.WebSocketServer = await nursery.start(
            functools.partial(
                transport.serve_websocket, system, pusher, "127.0.0.1", 0, options=options
            )
        )
        client = await HostileClient.open(server.port)  # reads nothing for now
        with trio.fail_after(30):
            # The pusher fills the sockets.
            await until(lambda: bool(handles) and handles[0].statistics().messages_sent >= 2)
            await trio.sleep(0.5)  # its write now waits for the peer's window
            (connection,) = handles
            assert not sent_all.is_set()
            for _ in range(5):
                statistics = await connection.ref.ask(transport.GetStatistics(), timeout=10)
                assert statistics.messages_sent < 200
            # The peer reads: every frame arrives, in order.
            for index in range(200):
                message = await client.next_message()
                assert message[:4] == index.to_bytes(4, "big")
                assert len(message) == 4 + len(chunk)
            await sent_all.wait()
        await client.aclose()
        nursery.cancel_scope.cancel()
