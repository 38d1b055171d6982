"""Slow consumers: an application that stops reading, a client that stops reading, a stuck
room member. Queues stay bounded, every drop is counted and reported, nobody else waits.

Memory is the growth of Python allocations (``tracemalloc``, both ends in this process)
from before a flood to after it; the flood's bytes are built before tracing starts. The
bound is derived from what the policy may keep: the inbound queue, the dead-letter
history, the outbound queue, each times the message size, plus a fixed allowance.
"""

from __future__ import annotations

import contextlib
import socket
import tracemalloc

import pytest
import trio

import actors
import transport
from tests.hostile import PING, TEXT, HostileClient, frame, request, start_server
from transport import Overflow

CAPACITY = 64  # inbound queue size of the server under test
SIZE = 1024  # bytes per message
FLOOD = 4000  # messages sent into a stuck connection: 4 MB, 62 times the queue
HISTORY = 16  # the system's dead-letter history (it keeps the most recent letters)
#: What one queued message costs beyond its payload: the Received, the str header, a slot.
PER_MESSAGE = SIZE + 256
#: Buffers and bookkeeping that do not grow with the flood (library buffers, counters).
ALLOWANCE = 256 * 1024


def numbered(i: int) -> str:
    return f"{i:06d}".ljust(SIZE, ".")


def report(line: str) -> None:
    print(f"\n{line}")  # noqa: T201 - the figures for docs/reliability.rst (pytest -s)


def number_of(message: object) -> int:
    if isinstance(message, transport.Received):
        message = message.data
    if isinstance(message, transport.SendText):
        message = message.text
    assert isinstance(message, str), message
    return int(message[:6])


def dropped_letters(system: actors.ActorSystem) -> int:
    return system.dead_letters.statistics().by_reason.get(actors.DeadLetterReason.DROPPED, 0)


class StuckApplication:
    """A server application that takes the connection and reads nothing until released.

    Released, it reads what is queued (``until_end``: everything, until the connection
    has ended).
    """

    def __init__(self, *, until_end: bool = False) -> None:
        self.until_end = until_end
        self.connections: list[transport.WebSocketConnection] = []
        self.opened = trio.Event()
        self.release = trio.Event()
        self.read: list[int] = []
        self.done = trio.Event()

    async def __call__(self, connection: transport.WebSocketConnection) -> None:
        self.connections.append(connection)
        self.opened.set()
        await self.release.wait()
        while True:
            try:
                if self.until_end:
                    message = await connection.receive()
                else:
                    message = connection.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            self.read.append(number_of(message))
        self.done.set()


@pytest.mark.parametrize("policy", [Overflow.DROP_OLDEST, Overflow.DROP_NEWEST])
async def test_a_stuck_application_drops_by_policy_and_memory_stays_bounded(
    policy: Overflow,
) -> None:
    # The Pong after the flood comes once the server's reader has handled every message.
    flood = b"".join(frame(TEXT, numbered(i).encode()) for i in range(FLOOD))
    flood += frame(PING, b"after the flood")
    options = transport.ConnectionOptions(
        ping_interval=None, inbound_queue_size=CAPACITY, overflow=policy
    )
    application = StuckApplication()
    async with actors.open_system("slow", dead_letter_history=HISTORY) as system:
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, system, options=options, handler=application)
            client = await HostileClient.open(server.port)
            with trio.fail_after(5):
                await application.opened.wait()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                with trio.fail_after(10):
                    await client.send(flood)
                    assert await client.pongs(1) == 1
                growth, peak = (m - before for m in tracemalloc.get_traced_memory())
            finally:
                tracemalloc.stop()
            (connection,) = application.connections
            stats = connection.statistics()
            recent = [
                number_of(letter.message)
                for letter in system.dead_letters.recent()
                if letter.reason is actors.DeadLetterReason.DROPPED
            ]
            application.release.set()
            with trio.fail_after(5):
                await application.done.wait()
            await client.aclose()
            nursery.cancel_scope.cancel()
    report(
        f"{policy.name}: {FLOOD} x {SIZE} B into a stuck connection: +{growth} B, peak +{peak} B"
    )
    assert stats.closed is None  # a drop policy keeps the connection open
    assert (stats.messages_received, stats.inbound_depth) == (FLOOD, CAPACITY)
    assert stats.inbound_dropped == dropped_letters(system) == FLOOD - CAPACITY
    if policy is Overflow.DROP_OLDEST:  # the newest are kept
        kept, last_dropped = list(range(FLOOD - CAPACITY, FLOOD)), FLOOD - CAPACITY
    else:  # the first ones are kept, everything after is dropped
        kept, last_dropped = list(range(CAPACITY)), FLOOD
    assert application.read == kept
    assert recent == list(range(last_dropped - HISTORY, last_dropped))
    assert growth < (CAPACITY + HISTORY) * PER_MESSAGE + ALLOWANCE, growth


@pytest.mark.parametrize(
    ("policy", "code"),
    [(Overflow.CLOSE_POLICY_VIOLATION, 1008), (Overflow.CLOSE_TRY_AGAIN_LATER, 1013)],
)
async def test_a_stuck_application_closes_by_policy_and_memory_stays_bounded(
    policy: Overflow, code: int
) -> None:
    flood = b"".join(frame(TEXT, numbered(i).encode()) for i in range(FLOOD))
    options = transport.ConnectionOptions(
        ping_interval=None,
        inbound_queue_size=CAPACITY,
        overflow=policy,
        write_timeout=1.0,  # the flooder never answers the Close: bound the wait for it
        close_timeout=0.5,
    )
    application = StuckApplication(until_end=True)
    async with actors.open_system("slow", dead_letter_history=HISTORY) as system:
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, system, options=options, handler=application)
            client = await HostileClient.open(server.port)
            with trio.fail_after(5):
                await application.opened.wait()
            (connection,) = application.connections
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                with trio.fail_after(10):
                    nursery.start_soon(client.send, flood)
                    ending = await client.ending()
                    application.release.set()  # it reads what is left, to the end
                    await application.done.wait()
                    await connection.ref.wait_stopped()
                growth = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            stats = connection.statistics()
            await client.aclose()
            nursery.cancel_scope.cancel()
    report(f"{policy.name}: closed with {ending.code} after {stats.messages_received} messages")
    assert (ending.code, ending.reason) == (code, "inbound queue overflow")
    assert stats.closed is not None
    assert stats.closed.code == code
    # Every message the server read was either handed to the application or dropped and
    # reported. The first ones filled the queue; the reader keeps reading until the close
    # handshake ends, and what it read after the application made room was queued again.
    assert application.read[:CAPACITY] == list(range(CAPACITY))
    assert application.read == sorted(set(application.read))
    assert stats.inbound_dropped == dropped_letters(system) >= 1
    assert stats.messages_received == len(application.read) + stats.inbound_dropped
    assert growth < (CAPACITY + HISTORY) * PER_MESSAGE + ALLOWANCE, growth


async def test_messages_queued_for_an_application_that_never_reads_them_are_reported() -> None:
    """DESIGN guarantee 5: delivered, or an error to the sender, or a dead letter.

    The application never reads; the connection closes by policy. The messages that sat
    in its inbound queue were accepted from the network and are never delivered: they
    must be dead-lettered (``STOPPED``) like the ones the policy dropped (``DROPPED``),
    as a subscriber connection's are.
    """
    options = transport.ConnectionOptions(
        ping_interval=None,
        inbound_queue_size=CAPACITY,
        overflow=Overflow.CLOSE_TRY_AGAIN_LATER,
        write_timeout=1.0,
        close_timeout=0.5,
    )
    application = StuckApplication()  # never released
    flood = b"".join(frame(TEXT, numbered(i).encode()) for i in range(2 * CAPACITY))
    async with actors.open_system("slow") as system:
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, system, options=options, handler=application)
            client = await HostileClient.open(server.port)
            with trio.fail_after(5):
                await application.opened.wait()
            (connection,) = application.connections
            with trio.fail_after(10):
                await client.send(flood)
                assert (await client.ending()).code == 1013
                await connection.ref.wait_stopped()
            await client.aclose()
            nursery.cancel_scope.cancel()
    stats = connection.statistics()
    reported = {
        number_of(letter.message)
        for letter in system.dead_letters.recent()
        if isinstance(letter.message, transport.Received)
    }
    assert stats.messages_received == 2 * CAPACITY
    assert application.read == []
    assert reported == set(range(stats.messages_received))


async def stuck_client(port: int) -> HostileClient:
    """A client with a 4 KiB receive buffer that completes the handshake, then never reads."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    client = HostileClient(trio.SocketStream(sock))
    assert await client.handshake(request()) == 101
    return client


async def test_a_client_that_stops_reading_is_cut_at_the_write_timeout() -> None:
    """The server's writes for it are bounded: its outbound queue holds at most
    ``outbound_queue_size`` frames (the sender waits meanwhile), and a write that cannot
    finish within ``write_timeout`` aborts that connection. What it never wrote is
    reported: accepted == written + dead-lettered."""
    write_timeout = 1.0
    options = transport.ConnectionOptions(
        ping_interval=None, write_timeout=write_timeout, close_timeout=0.5
    )
    capacity = options.outbound_queue_size
    accepted = 0
    depths: list[int] = []
    connections: list[transport.WebSocketConnection] = []
    opened = trio.Event()

    async def firehose(connection: transport.WebSocketConnection) -> None:
        nonlocal accepted
        connections.append(connection)
        opened.set()
        with contextlib.suppress(actors.ActorStoppedError):
            while connection.closed is None:
                await connection.send(numbered(accepted))
                accepted += 1
                depths.append(connection.statistics().outbound_depth)

    unwritten = 0
    counted = trio.Event()

    async def count_unwritten(letters: trio.MemoryReceiveChannel[actors.DeadLetter]) -> None:
        nonlocal unwritten
        async for letter in letters:
            unwritten += isinstance(letter.message, transport.SendText)
        counted.set()

    async with actors.open_system("slow", dead_letter_history=HISTORY) as system:
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, system, options=options, handler=firehose)
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                with contextlib.ExitStack() as subscription:  # leaving it ends the collector
                    letters = subscription.enter_context(
                        system.dead_letters.subscribe(buffer=1_000_000)
                    )
                    nursery.start_soon(count_unwritten, letters)
                    client = await stuck_client(server.port)
                    with trio.fail_after(5):
                        await opened.wait()
                    started = trio.current_time()
                    with trio.fail_after(2 * write_timeout + 5):
                        reason = await connections[0].ref.wait_stopped()
                    cut_after = trio.current_time() - started
                with trio.fail_after(5):  # the subscription has ended: the counter drains it
                    await counted.wait()
                growth = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            stats = connections[0].statistics()
            await client.aclose()
            nursery.cancel_scope.cancel()
    report(
        f"stuck reader: cut after {cut_after:.2f}s; {accepted} accepted, "
        f"{stats.messages_sent} written, {unwritten} reported; +{growth} B"
    )
    assert isinstance(reason, transport.ConnectionClosed)
    assert reason.code == 1006
    assert reason.reason == f"a write did not finish within {write_timeout}s"
    assert max(depths) <= capacity
    # Until the actor has stopped, sends are accepted and, once the connection is
    # closing, dead-lettered: every accepted frame was written or reported.
    assert accepted == stats.messages_sent + unwritten
    assert cut_after < 2 * write_timeout + 1
    assert growth < (capacity + HISTORY) * PER_MESSAGE + ALLOWANCE, growth


MEMBERS = 20
BURSTS = 20
BURST = 20  # messages per burst; the room publishes the next burst once the healthy
#           members have all of this one
ROOM_BUFFER = 2 * BURST


class Arrivals:
    """Messages each healthy member received, and a wait for all of them to reach a count."""

    def __init__(self, members: int) -> None:
        self.counts = [0] * members
        self._target = 0
        self._event = trio.Event()

    def arrived(self, member: int) -> None:
        self.counts[member] += 1
        if min(self.counts) >= self._target:
            self._event.set()

    async def all_reached(self, target: int) -> None:
        self._target = target
        if min(self.counts) >= target:
            await trio.lowlevel.checkpoint()
            return
        self._event = trio.Event()
        await self._event.wait()


async def test_a_stuck_room_member_never_delays_the_others() -> None:
    """Fan-out to 20 members, one of which never reads: the 19 others get every message,
    in order, each burst within a bounded time, while the stuck one is cut off."""
    options = transport.ConnectionOptions(
        ping_interval=None, outbound_queue_size=16, write_timeout=5.0, close_timeout=0.5
    )
    healthy = MEMBERS - 1
    arrivals = Arrivals(healthy)
    lagged: list[BaseException] = []
    joined = trio.Event()

    async with actors.open_system("room") as system:
        room: actors.Topic[str] = system.topic(
            "room", policy=actors.OverflowPolicy.DISCONNECT, buffer=ROOM_BUFFER
        )

        async def member(connection: transport.WebSocketConnection) -> None:
            with room.subscribe() as events:
                if room.statistics().subscribers == MEMBERS:
                    joined.set()
                try:
                    async for event in events:
                        await connection.send(event)
                except actors.SubscriberLaggedError as exc:
                    lagged.append(exc)
                    await connection.close(1013, "too slow")

        async def healthy_member(url: str, index: int) -> None:
            async with transport.open_websocket_client(system, url, options=options) as ws:
                for i in range(BURSTS * BURST):
                    assert await ws.receive() == numbered(i)
                    arrivals.arrived(index)

        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, system, options=options, handler=member)
            url = f"ws://127.0.0.1:{server.port}/"
            stuck = await stuck_client(server.port)
            async with trio.open_nursery() as members:
                for index in range(healthy):
                    members.start_soon(healthy_member, url, index)
                with trio.fail_after(10):
                    await joined.wait()
                slowest = 0.0
                started = trio.current_time()
                for burst in range(BURSTS):
                    burst_started = trio.current_time()
                    for i in range(burst * BURST, (burst + 1) * BURST):
                        room.publish_nowait(numbered(i))
                    with trio.fail_after(5):
                        await arrivals.all_reached((burst + 1) * BURST)
                    slowest = max(slowest, trio.current_time() - burst_started)
                took = trio.current_time() - started
            stats = room.statistics()
            await stuck.aclose()
            nursery.cancel_scope.cancel()
    report(
        f"room: {healthy} healthy members got {BURSTS * BURST} messages each in {took:.2f}s "
        f"(slowest burst {slowest * 1000:.0f} ms); stuck member disconnected after "
        f"{stats.dropped} drops"
    )
    assert arrivals.counts == [BURSTS * BURST] * healthy
    assert stats.disconnected == 1  # the stuck member, and only it
    assert len(lagged) == 1
    assert slowest < 2.0
