"""The connection's reader and writer: direct delivery, the bound on each write, stops
during a write, the end of the reader, the handle's direct and non-blocking calls."""

from __future__ import annotations

import gc

import attrs
import pytest
import trio
import trio.testing
import wsproto
import wsproto.events

import actors
import transport
from tests.ws_support import NO_KEEPALIVE, connection_pair, wait_closed
from transport import ConnectionOptions
from transport._connection._actor import Application, spawn_connection
from transport._server._handshake import DEFAULT_POLICY, server_opener


@attrs.define(eq=False)
class StallingStream(trio.abc.Stream):
    """A stream that, once ``stall`` is set, writes half of the next write and hangs.

    Closing it does not wake the hung write (only cancellation does), and every
    write is logged, so a test sees whether anything followed the half frame.
    With ``delay``, each write takes that long (half of it before the first half
    of the data goes out, half before the rest).
    """

    inner: trio.abc.Stream
    stall: bool = False
    delay: float = 0.0
    sent: list[bytes] = attrs.Factory(list)
    closed: bool = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            raise trio.ClosedResourceError("closed")
        if self.stall:
            half = bytes(data[: len(data) // 2])
            self.sent.append(half)
            await self.inner.send_all(half)
            await trio.sleep_forever()
        data = bytes(data)
        self.sent.append(data)
        if self.delay:
            middle = len(data) // 2
            await trio.sleep(self.delay / 2)
            await self.inner.send_all(data[:middle])
            await trio.sleep(self.delay / 2)
            await self.inner.send_all(data[middle:])
            return
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()


async def stalling_pair(
    system: actors.ActorSystem, options: ConnectionOptions
) -> tuple[StallingStream, transport.WebSocketConnection, transport.WebSocketConnection]:
    """A client (with ``options``) whose writes go through a :class:`StallingStream`."""
    client_side, server_side = trio.testing.memory_stream_pair()
    stalling = StallingStream(client_side)
    client, server = await connection_pair(
        system, client_options=options, streams=(stalling, server_side)
    )
    return stalling, client, server


@pytest.mark.parametrize(
    ("last_write_before", "cut_after"),
    [
        # The first write: the deadline is set to write_timeout and a quarter.
        (None, 5.0),
        # A write 0.9 s before set it to 5 s after that write; this write still has 4.1.
        (0.9, 4.1),
        # One 3 s before: 2 s would be left, less than write_timeout, so it is moved.
        (3.0, 5.0),
    ],
)
async def test_a_write_that_hangs_is_aborted_write_timeout_after_it_started(
    system: actors.ActorSystem,
    autojump_clock: trio.testing.MockClock,
    last_write_before: float | None,
    cut_after: float,
) -> None:
    stalling, client, server = await stalling_pair(
        system, ConnectionOptions(ping_interval=None, write_timeout=4)
    )
    await trio.sleep(5.5)
    if last_write_before is not None:
        await client.send("earlier")
        await trio.sleep(last_write_before)
    stalling.stall = True
    with system.dead_letters.subscribe() as letters:
        start = trio.current_time()
        await client.send("x" * 100)
        closed = await wait_closed(client)
        letter = letters.receive_nowait()
    # Never before write_timeout (4 s), never after a quarter of it more.
    assert trio.current_time() - start == pytest.approx(cut_after, abs=0.01)
    assert closed.code == transport.CloseCode.ABNORMAL_CLOSURE
    assert "write did not finish within 4" in closed.reason
    assert letter.message == transport.SendText("x" * 100)
    # The stream was closed; nothing (no Close frame, no ping) followed the half frame.
    assert stalling.closed
    half_frame = stalling.sent[-1]
    assert 0 < len(half_frame) < 100
    await trio.sleep(10)
    assert stalling.sent[-1] is half_frame
    assert client.statistics().messages_sent == (last_write_before is not None)
    peer = await wait_closed(server)
    assert peer.code == transport.CloseCode.ABNORMAL_CLOSURE


@pytest.mark.parametrize(
    ("drain", "written", "took"),
    [
        # A draining stop: m0, then m1 and m2 (queued during m0's write, so they are
        # written together, in one busy spell), then the Close: one second each.
        (True, 3, 2.25),
        # A plain stop: the frame under way and the Close; the queued frames are the
        # mailbox's messages, reported as dead letters (a Close writes them first).
        (False, 1, 1.25),
    ],
)
async def test_a_stop_lets_the_write_under_way_finish_before_the_1001(
    system: actors.ActorSystem,
    autojump_clock: trio.testing.MockClock,
    drain: bool,
    written: int,
    took: float,
) -> None:
    slow, client, server = await stalling_pair(
        system, ConnectionOptions(ping_interval=None, write_timeout=4)
    )
    slow.delay = 1.0
    frames = [f"m{i}" for i in range(3)]
    client.send_nowait(frames[0])
    await trio.sleep(0.25)  # the writer is under way with m0
    for frame in frames[1:]:
        client.send_nowait(frame)  # queued in the mailbox meanwhile
    await trio.sleep(0.5)  # the writer is half-way through m0
    start = trio.current_time()
    with trio.fail_after(10):
        await client.ref.stop(drain=drain)
    # No frame was cut, none was lost.
    assert trio.current_time() - start == pytest.approx(took, abs=0.01)
    assert client.statistics().messages_sent == written
    assert [await server.receive() for _ in range(written)] == frames[:written]
    letters = [
        letter for letter in system.dead_letters.recent() if letter.recipient == client.ref.path
    ]
    assert [letter.message for letter in letters] == [
        transport.SendText(frame) for frame in frames[written:]
    ]
    assert {letter.reason for letter in letters} <= {actors.DeadLetterReason.STOPPED}
    closed = await wait_closed(server)
    assert (closed.code, closed.by_peer) == (transport.CloseCode.GOING_AWAY, True)


async def test_a_stop_writes_the_frames_the_loop_had_taken_before_the_1001(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    client, server = await connection_pair(system, client_options=NO_KEEPALIVE)
    # The loop is parked: m0 is handed to it, m1 and m2 queue; the stop request goes
    # ahead of them. The loop has taken m0 (its spell's frame, not yet written) when it
    # sees the stop: the spell's end writes it, then the 1001 follows.
    frames = ["m0", "m1", "m2"]
    for frame in frames:
        client.send_nowait(frame)
    client.ref.request_stop()
    await client.ref.wait_stopped()
    assert await server.receive() == "m0"
    closed = await wait_closed(server)
    assert (closed.code, closed.by_peer) == (transport.CloseCode.GOING_AWAY, True)
    assert client.statistics().messages_sent == 1
    letters = [
        letter.message
        for letter in system.dead_letters.recent()
        if letter.recipient == client.ref.path
    ]
    assert letters == [transport.SendText("m1"), transport.SendText("m2")]


async def test_a_stop_during_a_write_that_hangs_ends_when_the_write_times_out(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    stalling, client, _server = await stalling_pair(
        system, ConnectionOptions(ping_interval=None, write_timeout=4)
    )
    stalling.stall = True
    start = trio.current_time()
    client.send_nowait("hangs")
    await trio.sleep(0.25)  # its write is under way (and hangs)
    client.send_nowait("queued")  # queued in the mailbox meanwhile
    await trio.sleep(0.75)
    with trio.fail_after(10):
        await client.ref.stop()
    # The first write's bound: write_timeout and a quarter.
    assert trio.current_time() - start == pytest.approx(5, abs=0.01)
    closed = client.closed
    assert closed is not None
    assert "write did not finish within 4" in closed.reason
    # Cut at its deadline, the half frame was the last thing written.
    assert stalling.closed
    assert 0 < len(stalling.sent[-1]) < len("hangs") + 2


async def test_writes_that_finish_are_never_aborted(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    options = ConnectionOptions(ping_interval=None, write_timeout=1)
    client, server = await connection_pair(system, client_options=options)
    for i in range(5):
        await client.send(f"m{i}")
        await trio.sleep(0.7)
    assert [await server.receive() for _ in range(5)] == [f"m{i}" for i in range(5)]
    assert client.closed is None
    await client.close()


async def raw_peer(
    system: actors.ActorSystem, options: ConnectionOptions, application: Application | None = None
) -> tuple[trio.abc.Stream, wsproto.WSConnection, transport.WebSocketConnection]:
    """A server connection actor and a bare wsproto client talking to it."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await client_stream.send_all(ws.send(wsproto.events.Request(host="t", target="/")))
    opener = server_opener(server_stream, DEFAULT_POLICY, options)
    server = await spawn_connection(system, opener, options, application=application)
    while True:
        ws.receive_data(bytes(await client_stream.receive_some()))
        if any(isinstance(e, wsproto.events.AcceptConnection) for e in ws.events()):
            return client_stream, ws, server


async def test_a_peer_that_goes_away_while_its_close_is_answered_still_ends_the_connection(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    # The library stops reading without marking the connection closed here (the
    # answer to the peer's Close cannot be written); the end of its reader does it.
    client_stream, ws, server = await raw_peer(system, NO_KEEPALIVE)
    await client_stream.send_all(ws.send(wsproto.events.TextMessage("before")))
    await client_stream.send_all(ws.send(wsproto.events.CloseConnection(4000, "bye")))
    await client_stream.aclose()
    start = trio.current_time()
    with trio.fail_after(60):
        closed = await wait_closed(server)
    assert trio.current_time() - start < 0.1
    assert (closed.code, closed.reason, closed.by_peer) == (4000, "bye", True)
    assert await server.receive() == "before"


async def test_receive_nowait_drains_what_has_arrived(system: actors.ActorSystem) -> None:
    client, server = await connection_pair(system)
    with pytest.raises(trio.WouldBlock):
        server.receive_nowait()
    for i in range(10):
        await client.send(f"m{i}")
    got = [await server.receive()]
    await trio.testing.wait_all_tasks_blocked()
    while True:
        try:
            got.append(server.receive_nowait())
        except trio.WouldBlock:
            break
    assert got == [f"m{i}" for i in range(10)]
    await client.send(b"raw")
    await trio.testing.wait_all_tasks_blocked()
    assert server.receive_message_nowait() == b"raw"
    await client.close()
    await wait_closed(server)
    with pytest.raises(trio.EndOfChannel):
        server.receive_nowait()


async def test_receive_nowait_refuses_while_another_task_receives(
    system: actors.ActorSystem,
) -> None:
    client, server = await connection_pair(system)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.receive)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            server.receive_nowait()
        await client.send("for the waiting task")
    await client.close()


@attrs.define(eq=False)
class Sink(actors.Actor[transport.Received]):
    want: int
    got: list[object] = attrs.Factory(list)
    done: trio.Event = attrs.Factory(trio.Event)

    @actors.handler
    def received(self, message: transport.Received) -> None:
        self.got.append(message.data)
        if len(self.got) == self.want:
            self.done.set()


async def test_default_queue_takes_a_burst_for_a_handler_that_awaits_per_message(
    system: actors.ActorSystem,
) -> None:
    sink = Sink(900)
    ref = await system.spawn(sink)

    async def application(connection: transport.WebSocketConnection) -> None:
        async for message in connection:
            await ref.tell(transport.Received(message))

    options = ConnectionOptions(ping_interval=None)  # the default inbound queue
    client_stream, ws, server = await raw_peer(system, options, application)
    # One write, so that the server's reader gets the whole burst in one read.
    burst = b"".join(ws.send(wsproto.events.TextMessage(f"m{i}")) for i in range(900))
    await client_stream.send_all(burst)
    with trio.fail_after(5):
        await sink.done.wait()
    assert sink.got == [f"m{i}" for i in range(900)]
    assert server.closed is None
    assert server.statistics().inbound_dropped == 0
    await client_stream.aclose()
    await wait_closed(server)


async def test_send_waits_for_room_and_send_nowait_refuses_when_the_outbox_is_full(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    stalling, client, _server = await stalling_pair(
        system, ConnectionOptions(ping_interval=None, outbound_queue_size=2, write_timeout=60)
    )
    stalling.stall = True
    await client.send("in the writer")
    await trio.testing.wait_all_tasks_blocked()
    client.send_nowait("queued 1")
    await client.send("queued 2")
    assert client.statistics().outbound_depth == 2
    with pytest.raises(trio.WouldBlock):
        client.send_nowait("no room")
    with trio.move_on_after(1) as waited:
        await client.send("no room either")
    assert waited.cancelled_caught
    await wait_closed(client)  # the write's bound ends it


async def test_the_handle_sends_only_from_the_trio_thread(system: actors.ActorSystem) -> None:
    client, _server = await connection_pair(system)
    with pytest.raises(actors.WrongThreadError):
        await trio.to_thread.run_sync(client.send_nowait, "from a thread")
    await client.close()


def _live_receive_channels() -> int:
    gc.collect()
    return sum(isinstance(obj, trio.MemoryReceiveChannel) for obj in gc.get_objects())


async def _works_then_leaves_no_task(
    client: transport.WebSocketConnection, server: transport.WebSocketConnection, tasks: int
) -> None:
    """The pair still carries a message, and once closed, ``tasks`` tasks are left."""
    await client.send("still works")
    assert await server.receive() == "still works"
    await client.close()
    await wait_closed(server)
    await trio.testing.wait_all_tasks_blocked()
    assert trio.lowlevel.current_statistics().tasks_living == tasks


async def test_an_idle_connection_runs_three_tasks_and_keeps_no_library_queue(
    system: actors.ActorSystem,
) -> None:
    # Idle connections are the bulk of a server's memory: each task (and each cancel
    # scope, and the library's own message queue) costs every one of them.
    await trio.testing.wait_all_tasks_blocked()
    tasks = trio.lowlevel.current_statistics().tasks_living
    channels = _live_receive_channels()
    client, server = await connection_pair(system)
    await trio.testing.wait_all_tasks_blocked()
    # Each side: the actor's loop, the io task (the writer and its timers), the reader.
    assert trio.lowlevel.current_statistics().tasks_living - tasks == 2 * 3
    assert _live_receive_channels() == channels
    await _works_then_leaves_no_task(client, server, tasks)


@attrs.define(eq=False)
class StepCounter(trio.abc.Instrument):
    """Counts the scheduler steps of the tasks whose name ends with ``suffix``."""

    suffix: str
    steps: int = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith(self.suffix):
            self.steps += 1


async def test_the_keepalive_routine_never_wakes_the_io_tasks(
    system: actors.ActorSystem, autojump_clock: trio.abc.Clock
) -> None:
    # Each Ping is told by the alarm clock, written by the loop, and its Pong seen by
    # the reader; none of them needs the io task, which wakes only for a late Pong, a
    # timeout or a close.
    keepalive = ConnectionOptions(ping_interval=5.0, pong_timeout=2.0)
    client, server = await connection_pair(
        system, client_options=keepalive, server_options=keepalive
    )
    await trio.testing.wait_all_tasks_blocked()
    io_steps = StepCounter(":websocket-io")
    trio.lowlevel.add_instrument(io_steps)
    try:
        await trio.sleep(60)
    finally:
        trio.lowlevel.remove_instrument(io_steps)
    for side in (client, server):
        assert side.statistics().pings_sent >= 10
    assert io_steps.steps == 0
    await client.close()
    await wait_closed(server)


async def test_idle_connections_with_keepalive_share_one_clock_task(
    system: actors.ActorSystem, autojump_clock: trio.abc.Clock
) -> None:
    # The io tasks sleep between their timers without a cancel scope: one alarm clock
    # per run wakes them, and it runs only while some connection has a timer set.
    await trio.testing.wait_all_tasks_blocked()
    tasks = trio.lowlevel.current_statistics().tasks_living
    keepalive = ConnectionOptions(ping_interval=5.0, pong_timeout=2.0)
    client, server = await connection_pair(
        system, client_options=keepalive, server_options=keepalive
    )
    await trio.testing.wait_all_tasks_blocked()
    assert trio.lowlevel.current_statistics().tasks_living - tasks == 2 * 3 + 1
    await trio.sleep(60)  # a dozen pings each way, each answered in time
    for side in (client, server):
        assert side.statistics().pings_sent >= 10
        assert side.statistics().latency is not None
    await _works_then_leaves_no_task(client, server, tasks)
