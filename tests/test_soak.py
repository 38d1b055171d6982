"""Soak: many concurrent connections to one server, echoing for a fixed time.

The server runs in this process; the clients (``tests/soak_clients.py``, our own client
connections) run in another, so what is measured here is the server alone. Real sockets on
127.0.0.1, so real time: each client sends one message every ``INTERVAL`` seconds (its
start staggered) for ``DURATION`` seconds and checks every echo arrives, in order.
Afterwards the server has no connection left, and the trio task count and open file
descriptors are back to what they were before the clients came.

Memory per connection is the server's: the growth of Python allocations (``tracemalloc``)
while the first ``SAMPLE`` connections open, divided by their number, and the growth of the
process's RSS over all of them (it also holds allocator slack), the figure the transport
benchmark compares with its bound.
"""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import trio

import actors
import transport
from tests.hostile import settled, start_server
from tests.test_faults import fd_count, task_count

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 1000
INTERVAL = 0.25  # seconds between two messages of one client
DURATION = 6.0  # seconds of traffic
MESSAGES = int(DURATION / INTERVAL)  # per connection
SAMPLE = 100  # connections opened while tracemalloc traces (it slows allocation down)
#: The server's Python allocations per connection, under traffic (measured: 27.5 kB).
#: The transport benchmark's bound for an idle connection is 28 kB of RSS.
MAX_BYTES_PER_CONNECTION = 30_000
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


class Lines:
    """The lines a process writes to its standard output, one at a time."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            data = await self._stream.receive_some()
            if not data:
                raise EOFError(f"the client process ended; last output {self._buffer!r}")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


@pytest.mark.soak
async def test_a_thousand_connections_echo_without_loss_or_leaks() -> None:
    raise_fd_limit(CONNECTIONS + 200)
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
            arguments = [url, CONNECTIONS, SAMPLE, INTERVAL, MESSAGES]
            clients = await trio.lowlevel.open_process(
                [sys.executable, "-m", "tests.soak_clients", *map(str, arguments)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=ROOT,
            )
            assert clients.stdin is not None
            assert clients.stdout is not None
            lines = Lines(clients.stdout)

            async def say(line: str) -> None:
                assert clients.stdin is not None
                await clients.stdin.send_all(f"{line}\n".encode())

            try:
                gc.collect()
                rss_before = rss_bytes()
                started = trio.current_time()
                tracemalloc.start()
                base = tracemalloc.get_traced_memory()[0]
                with trio.fail_after(30):
                    assert await lines.next() == f"opened {SAMPLE}"
                    await settled(server, active=SAMPLE)
                traced = tracemalloc.get_traced_memory()[0] - base
                tracemalloc.stop()
                await say("more")
                with trio.fail_after(60):
                    assert await lines.next() == f"opened {CONNECTIONS}"
                    await settled(server, active=CONNECTIONS)
                held = (await server.statistics()).active
                rss_growth = rss_bytes() - rss_before
                connected_in = trio.current_time() - started
                await say("go")
                with trio.fail_after(DURATION + 30):
                    done, _, figures = (await lines.next()).partition(" ")
                assert done == "done"
                tally = json.loads(figures)
                traffic_in = trio.current_time() - started - connected_in
                await say("close")
                with trio.fail_after(30):
                    assert await clients.wait() == 0
                    await settled(server)
            finally:
                tracemalloc.stop()
                if clients.returncode is None:
                    clients.kill()
                with trio.CancelScope(shield=True):  # reap it and close the pipes, always
                    await clients.wait()
                    await clients.stdin.aclose()
                    await clients.stdout.aclose()
            total = trio.current_time() - started
            tasks_after, fds_after = task_count(), fd_count()
            nursery.cancel_scope.cancel()
    per_connection = traced // SAMPLE
    print(  # noqa: T201 - the figures for docs/reliability.rst (pytest -s)
        f"\nsoak: {held} connections held; {tally['sent']} messages sent, "
        f"{tally['echoed']} echoed, {len(tally['out_of_order'])} out of order; "
        f"connected in {connected_in:.1f}s, traffic {traffic_in:.1f}s, total {total:.1f}s; "
        f"server: {per_connection} bytes traced per connection, "
        f"RSS +{rss_growth // CONNECTIONS} bytes per connection; "
        f"dead letters {system.dead_letters.count}"
    )
    assert held == CONNECTIONS
    assert tally["out_of_order"] == []
    assert tally["sent"] == tally["echoed"] == CONNECTIONS * MESSAGES
    assert (tasks_after, fds_after) == (tasks_before, fds_before)
    assert per_connection < MAX_BYTES_PER_CONNECTION


async def still_echoes(system: actors.ActorSystem, url: str) -> None:
    async with transport.open_websocket_client(system, url, options=OPTIONS) as ws:
        await ws.send("warm up")
        assert await ws.receive() == "warm up"
