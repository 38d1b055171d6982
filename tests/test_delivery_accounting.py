"""Delivery accounting under abrupt disconnects: what was sent is received or reported.

A reconnecting client sends a numbered stream while the link under it is cut a few
times: by TCP resets (a proxy between client and server closes both of its sockets with
SO_LINGER 0, so each end sees a RST; the server's own sockets belong to its connection
actors and are not reachable from a handler), or by the server's handler closing with
1012. The client sends at a steady pace, so the stream spans the cuts. Then every number is
looked up:

- *received* by the server's handler (no number twice, each connection's in order);
- *reported* to the sender: dead letters (dropped from the full buffer while
  disconnected, or queued in a connection that ended before writing it);
- *written* but never read: frames the client's connection wrote into a socket that was
  reset (or that the server discarded after its own Close frame, RFC 6455 allows it).
  Nothing on the client's side can know about these without acknowledgements from the
  peer: delivery across a link failure is at most once. The test counts them exactly
  (written by the client's connections minus received) and bounds them.

The client's books balance exactly: written + reported == sent. Over the wire:
received + reported + lost in flight == sent, with received and reported disjoint.

With acknowledged delivery (the client's ``acknowledged=True``, the server reading through
``AckedSessions``) nothing is lost in flight: received + reported == sent, exactly, also
across a half-open link (the proxy stops forwarding and closes nothing; keepalive on both
ends finds out).
"""

from __future__ import annotations

import contextlib
import functools
import socket
import struct
from collections.abc import Callable

import attrs
import pytest
import trio

import actors
import transport
from transport import Overflow

SENT = 2000
DROPS_AT = (300, 800, 1300)  # the link is cut when the server has received this many
#: A half-open link swallows messages until keepalive notices: the cuts come sooner.
HALF_OPEN_DROPS_AT = (250, 500, 750)
BURST, PACE = 5, 0.002  # messages sent back to back, then a pause (seconds)
BUFFER = 20  # messages the client buffers while disconnected
#: Each disconnection lasts this long: longer than the buffer can absorb at the sending pace.
QUICK = actors.Backoff(minimum=0.05, maximum=0.05, jitter=0)
OPTIONS = transport.ConnectionOptions(ping_interval=None, write_timeout=2.0, close_timeout=1.0)
#: What one cut may lose in flight at most: the client's socket buffer and the proxy's and
#: server's receive buffers, in messages of a few bytes. Generous; the run prints the figure.
MAX_LOST_PER_CUT = 2 * BURST
#: For the half-open cut: both ends find out by keepalive that nothing comes through.
KEEPALIVE = attrs.evolve(OPTIONS, ping_interval=0.05, pong_timeout=0.1)


@attrs.define(eq=False)
class ResettingProxy:
    """Forwards loopback TCP to ``upstream``; :meth:`reset` cuts the current link with RSTs,
    :meth:`freeze` makes it half-open (both sockets stay open, nothing goes through)."""

    upstream: int
    port: int = 0
    resets: int = 0
    #: Set to cut the link in the middle of the next chunk the client sends.
    split_next: bool = False
    _links: list[tuple[trio.SocketStream, trio.SocketStream, trio.CancelScope]] = attrs.Factory(
        list
    )
    _frozen: set[trio.CancelScope] = attrs.Factory(set)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._forward, listeners)

    async def _forward(self, downstream: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream)
        with trio.CancelScope() as scope:
            link = (downstream, upstream, scope)
            self._links.append(link)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pipe, downstream, upstream, True)
                nursery.start_soon(self._pipe, upstream, downstream, False)
        try:
            if scope in self._frozen:
                await trio.sleep_forever()  # half-open until the test ends
        finally:
            with trio.CancelScope(shield=True):  # close both, also when cancelled
                for stream in (downstream, upstream):
                    await trio.aclose_forcefully(stream)
            if link in self._links:
                self._links.remove(link)

    def reset(self) -> None:
        """Close both sockets of every open link with a RST (SO_LINGER 0)."""
        linger = struct.pack("ii", 1, 0)
        for downstream, upstream, scope in self._links:
            for stream in (downstream, upstream):
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            scope.cancel()
            self.resets += 1
        self._links.clear()

    def freeze(self) -> None:
        """Stop forwarding on every open link, and close none of its sockets."""
        for _, _, scope in self._links:
            self._frozen.add(scope)
            scope.cancel()
            self.resets += 1
        self._links.clear()

    async def _pipe(self, source: trio.SocketStream, sink: trio.SocketStream, out: bool) -> None:
        try:
            async for data in source:
                if out and self.split_next:
                    # Half of what the client wrote reaches the server: a frame is cut.
                    self.split_next = False
                    await sink.send_all(data[: len(data) // 2])
                    self.reset()
                    return
                await sink.send_all(data)
            await sink.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


@attrs.define(eq=False)
class Counting:
    """The server's application: records every number it reads, per connection, and cuts
    the link (``cut()``) when the total reaches one of ``drops_at``."""

    drops_at: tuple[int, ...] = DROPS_AT
    cut: Callable[[transport.WebSocketConnection], None] | None = None
    received: list[list[int]] = attrs.Factory(list)
    connections: list[transport.WebSocketConnection] = attrs.Factory(list)
    total: int = 0

    async def __call__(self, connection: transport.WebSocketConnection) -> None:
        numbers: list[int] = []
        self.received.append(numbers)
        self.connections.append(connection)
        async for message in connection:
            assert isinstance(message, str)
            numbers.append(int(message))
            self.total += 1
            if self.total in self.drops_at and self.cut is not None:
                self.cut(connection)


def reset_link(proxy: ResettingProxy, connection: transport.WebSocketConnection) -> None:
    proxy.reset()


def reset_mid_frame(proxy: ResettingProxy, connection: transport.WebSocketConnection) -> None:
    proxy.split_next = True


def freeze_link(proxy: ResettingProxy, connection: transport.WebSocketConnection) -> None:
    proxy.freeze()


def close_1012(connection: transport.WebSocketConnection) -> None:
    connection.ref.tell_nowait(transport.Close(1012, "service restart"))


def report(line: str) -> None:
    print(f"\n{line}")  # noqa: T201 - the figures for docs/reliability.rst (pytest -s)


def number_of(letter: actors.DeadLetter) -> int | None:
    message = letter.message
    if isinstance(message, transport.SendText):
        return int(message.text)
    return None


@attrs.frozen
class Run:
    """What one stream under cuts came to."""

    received: list[int]
    reported: list[int]
    #: Dead letters of frames or inbound messages that are not numbers reported to the sender.
    stray: list[actors.DeadLetter]
    stats: transport.ReconnectStatistics
    resets: int
    took: float


async def stream_under_cuts(
    system: actors.ActorSystem,
    application: Counting,
    cut: str,
    *,
    acknowledged: bool = False,
    window: int = 100,
) -> Run:
    """Send ``SENT`` numbers through a reconnecting client while ``cut`` cuts the link."""
    options = KEEPALIVE if cut == "half-open" else OPTIONS
    reported: list[int] = []
    stray: list[actors.DeadLetter] = []
    collected = trio.Event()

    async def collect(letters: trio.MemoryReceiveChannel[actors.DeadLetter]) -> None:
        async for letter in letters:
            number = number_of(letter)
            if number is not None:
                reported.append(number)
            elif isinstance(letter.message, transport.SendBytes | transport.Received):
                stray.append(letter)
        collected.set()

    async with trio.open_nursery() as nursery:
        with contextlib.ExitStack() as subscription:  # leaving it ends the collector
            letters = subscription.enter_context(system.dead_letters.subscribe(buffer=10 * SENT))
            nursery.start_soon(collect, letters)
            server: transport.WebSocketServer = await nursery.start(
                functools.partial(
                    transport.serve_websocket, system, application, "127.0.0.1", 0, options=options
                )
            )
            proxy = ResettingProxy(server.port)
            await nursery.start(proxy.serve)
            if cut == "reset":
                application.cut = functools.partial(reset_link, proxy)
            elif cut == "reset mid-frame":
                application.cut = functools.partial(reset_mid_frame, proxy)
            elif cut == "half-open":
                application.cut = functools.partial(freeze_link, proxy)
            else:
                application.cut = close_1012
            started = trio.current_time()
            with trio.fail_after(30):
                async with transport.open_reconnecting_client(
                    system,
                    transport.ReconnectingClient(
                        url=f"ws://127.0.0.1:{proxy.port}/",
                        options=options,
                        backoff=QUICK,
                        buffer=BUFFER,
                        when_full=Overflow.DROP_OLDEST,
                        acknowledged=acknowledged,
                        window=window,
                    ),
                ) as sender:
                    await sender.wait_connected()
                    for i in range(SENT):
                        await sender.send(str(i))
                        if i % BURST == BURST - 1:
                            # A steady stream (real sockets, so real time), not one burst
                            # the first cut would catch whole in the buffer.
                            await trio.sleep(PACE)
                    # The last connection writes what it has queued, then its Close.
                stats = sender.statistics()
                for connection in application.connections:
                    await connection.ref.wait_stopped()
        with trio.fail_after(5):  # the subscription has ended: the collector drains it
            await collected.wait()
        took = trio.current_time() - started
        nursery.cancel_scope.cancel()
    received = [n for numbers in application.received for n in numbers]
    return Run(received, reported, stray, stats, proxy.resets, took)


@pytest.mark.parametrize("cut", ["reset", "reset mid-frame", "close 1012"])
async def test_every_message_is_received_or_reported_across_abrupt_disconnects(
    system: actors.ActorSystem, cut: str
) -> None:
    application = Counting()
    run = await stream_under_cuts(system, application, cut)
    received, reported, stats, took = run.received, run.reported, run.stats, run.took
    lost = stats.sent - len(received)
    report(
        f"{cut}: {SENT} sent over {stats.connects} connections in {took:.2f}s; "
        f"{len(received)} received, {len(reported)} reported "
        f"({stats.dropped} dropped while disconnected), {lost} lost in flight"
    )
    assert stats.connects == len(DROPS_AT) + 1
    assert stats.dropped > 0  # the buffer overflowed while disconnected: reports happened
    if cut.startswith("reset"):
        assert run.resets == len(DROPS_AT)
    # Nothing counted twice: no number received twice, reported twice, or both.
    assert len(set(received)) == len(received)
    assert len(set(reported)) == len(reported)
    assert not set(received) & set(reported)
    for numbers in application.received:  # each connection in order
        assert numbers == sorted(numbers)
    # The client's books: every message sent was written by a connection or reported.
    assert stats.sent + len(reported) == SENT
    assert stats.undelivered == 0  # nothing left in the buffer at the end
    # Over the wire: received, reported, or written into a link that was then cut.
    assert set(received) | set(reported) <= set(range(SENT))
    assert len(received) + len(reported) + lost == SENT
    assert 0 <= lost <= MAX_LOST_PER_CUT * len(DROPS_AT)
    if cut == "reset mid-frame":
        # The frame cut in half was written and never received, and nobody could report
        # it: at most once, as documented. Only acknowledgements would close this gap.
        assert lost >= len(DROPS_AT)


@attrs.define(eq=False)
class AckedCounting(Counting):
    """:class:`Counting` behind acknowledged delivery: it reads through a session."""

    sessions: transport.AckedSessions = attrs.Factory(transport.AckedSessions)

    async def __call__(self, connection: transport.WebSocketConnection) -> None:
        session = await self.sessions.accept(connection)
        numbers: list[int] = []
        self.received.append(numbers)
        self.connections.append(connection)
        async for message in session:
            assert isinstance(message, str)
            numbers.append(int(message))
            self.total += 1
            if self.total in self.drops_at and self.cut is not None:
                self.cut(connection)


@pytest.mark.parametrize("cut", ["reset", "reset mid-frame", "half-open", "close 1012"])
async def test_acknowledged_delivery_makes_the_accounts_exact(
    system: actors.ActorSystem, cut: str
) -> None:
    """With acknowledgements nothing is lost in flight: received + reported == sent."""
    application = AckedCounting(HALF_OPEN_DROPS_AT if cut == "half-open" else DROPS_AT)
    run = await stream_under_cuts(system, application, cut, acknowledged=True, window=50)
    received, reported, stats, took = run.received, run.reported, run.stats, run.took
    sessions = application.sessions.statistics()
    report(
        f"acknowledged, {cut}: {SENT} sent over {stats.connects} connections in {took:.2f}s; "
        f"{len(received)} received, {len(reported)} reported "
        f"({stats.dropped} dropped by the buffer); {stats.resent} resent, "
        f"{sessions.duplicates} duplicates dropped by the server"
    )
    assert stats.connects == len(DROPS_AT) + 1
    assert stats.dropped > 0
    if cut != "close 1012":
        assert run.resets == len(DROPS_AT)
    # Exact: each number received once or reported once, never both, none missing.
    assert sorted(received + reported) == list(range(SENT))
    # One session, one order, across all the connections.
    assert received == sorted(received)
    assert stats.unconfirmed == 0
    assert stats.undelivered == 0
    assert stats.confirmed == len(received)
    if cut in ("reset mid-frame", "half-open"):
        # What the cut swallowed never reached the server: it went again, not missing.
        assert stats.resent >= len(DROPS_AT)
    # Protocol frames of a connection that ended are not reported as lost.
    assert run.stray == []
