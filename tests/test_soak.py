"""Soak: many concurrent connections to one server in this process, echoing for a fixed time.

Real sockets on 127.0.0.1, so real time: each client sends one message every
``INTERVAL`` seconds (its start staggered) for ``DURATION`` seconds and checks every echo
arrives, in order. Afterwards the server has no connection left, and the trio task count
and open file descriptors are back to what they were before the clients came.

Memory per connection is the growth of Python allocations (``tracemalloc``) while the
connections are opened, divided by their number: it covers both ends, the server's
connection actor and the client's, since both run in this process. The RSS growth is
printed too (it also holds allocator slack and the interpreter's own caches).
"""

from __future__ import annotations

import contextlib
import resource
import tracemalloc

import pytest
import trio

import actors
import transport
from tests.hostile import settled, start_server
from tests.test_faults import fd_count, task_count

CONNECTIONS = 1000
INTERVAL = 1.0  # seconds between two messages of one client
DURATION = 6.0  # seconds of traffic
MESSAGES = int(DURATION / INTERVAL)  # per connection
SAMPLE = 100  # connections opened while tracemalloc traces (it slows allocation down)
OPENING = 50  # handshakes at a time
#: Python allocations per connection (server side and client side together). The
#: transport benchmark measured about 51 kB for an idle connection's server side.
MAX_BYTES_PER_CONNECTION = 120_000
OPTIONS = transport.ConnectionOptions(ping_interval=None)


def raise_fd_limit(needed: int) -> None:
    """Raise the soft limit on open files to the hard limit if ``needed`` does not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < needed:
        pytest.fail(f"the soak needs {needed} open files; the hard limit is {hard}")


def rss_bytes() -> int:
    """The resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


class Gate:
    """Counts arrivals; :meth:`wait` returns once ``target`` have arrived."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.arrived = 0
        self._event = trio.Event()

    def arrive(self) -> None:
        self.arrived += 1
        if self.arrived >= self.target:
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


class Tally:
    """What the clients did: messages sent and echoed, failures by connection."""

    def __init__(self) -> None:
        self.sent = 0
        self.echoed = 0
        self.out_of_order: list[tuple[int, str, str]] = []


async def client(
    system: actors.ActorSystem,
    url: str,
    number: int,
    opening: trio.CapacityLimiter,
    opened: Gate,
    go: trio.Event,
    finished: Gate,
    release: trio.Event,
    tally: Tally,
) -> None:
    """One connection: open, wait for the others, then send and check every echo."""
    async with contextlib.AsyncExitStack() as stack:
        async with opening:
            ws = await stack.enter_async_context(
                transport.open_websocket_client(system, url, options=OPTIONS)
            )
        opened.arrive()
        await go.wait()

        async def send_all() -> None:
            # Stagger the starts so the clients don't all send in the same instant.
            await trio.sleep(INTERVAL * (number % 100) / 100)
            for i in range(MESSAGES):
                await ws.send(f"{number}:{i}")
                tally.sent += 1
                await trio.sleep(INTERVAL)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all)
            for i in range(MESSAGES):
                echo = await ws.receive()
                if echo != f"{number}:{i}":
                    tally.out_of_order.append((number, f"{number}:{i}", str(echo)))
                tally.echoed += 1
        finished.arrive()
        # Close together, once every client is done (no closing under the others' traffic).
        await release.wait()


@pytest.mark.soak
async def test_a_thousand_connections_echo_without_loss_or_leaks() -> None:
    raise_fd_limit(2 * CONNECTIONS + 200)
    async with actors.open_system("soak", dead_letter_history=100) as system:
        async with trio.open_nursery() as nursery:
            server = await start_server(
                nursery, system, options=OPTIONS, max_connections=CONNECTIONS + 100
            )
            url = f"ws://127.0.0.1:{server.port}/"
            with trio.fail_after(10):  # one connection first, so lazy imports don't count
                await still_echoes(system, url)
                await settled(server)
            tasks_before, fds_before = task_count(), fd_count()
            rss_before = rss_bytes()
            sample, rest = Gate(SAMPLE), Gate(CONNECTIONS - SAMPLE)
            finished = Gate(CONNECTIONS)
            opening = trio.CapacityLimiter(OPENING)
            go, release = trio.Event(), trio.Event()
            tally = Tally()
            started = trio.current_time()
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                async with trio.open_nursery() as clients:

                    def start(numbers: range, opened: Gate) -> None:
                        for number in numbers:
                            clients.start_soon(
                                client,
                                system,
                                url,
                                number,
                                opening,
                                opened,
                                go,
                                finished,
                                release,
                                tally,
                            )

                    start(range(SAMPLE), sample)
                    with trio.fail_after(10):
                        await sample.wait()
                    traced = tracemalloc.get_traced_memory()[0] - base
                    tracemalloc.stop()
                    start(range(SAMPLE, CONNECTIONS), rest)
                    with trio.fail_after(30):
                        await rest.wait()
                    held = (await server.statistics()).active
                    rss_growth = rss_bytes() - rss_before
                    connected_in = trio.current_time() - started
                    go.set()
                    with trio.fail_after(DURATION + 20):
                        await finished.wait()
                    traffic_in = trio.current_time() - started - connected_in
                    release.set()
            finally:
                tracemalloc.stop()
            with trio.fail_after(20):
                await settled(server)
            total = trio.current_time() - started
            tasks_after, fds_after = task_count(), fd_count()
            nursery.cancel_scope.cancel()
    per_connection = traced // SAMPLE
    print(  # noqa: T201 - the figures for docs/reliability.rst (pytest -s)
        f"\nsoak: {held} connections held; {tally.sent} messages sent, {tally.echoed} echoed, "
        f"{len(tally.out_of_order)} out of order; connected in {connected_in:.1f}s, "
        f"traffic {traffic_in:.1f}s, total {total:.1f}s; "
        f"{per_connection} bytes traced per connection (both ends), "
        f"RSS +{rss_growth // CONNECTIONS} bytes per connection; "
        f"dead letters {system.dead_letters.count}"
    )
    assert held == CONNECTIONS
    assert tally.out_of_order == []
    assert tally.sent == tally.echoed == CONNECTIONS * MESSAGES
    assert (tasks_after, fds_after) == (tasks_before, fds_before)
    assert per_connection < MAX_BYTES_PER_CONNECTION


async def still_echoes(system: actors.ActorSystem, url: str) -> None:
    async with transport.open_websocket_client(system, url, options=OPTIONS) as ws:
        await ws.send("warm up")
        assert await ws.receive() == "warm up"
