"""Against a second WebSocket implementation (``websockets``, in a subprocess), over loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import actors
import transport
from tests.ws_support import threads_and_tasks_send

PEERS = Path(__file__).resolve().parent / "peer_servers.py"
# Each connect takes milliseconds; the bound only turns a hang into a failure.
TIMEOUT = 60
CONNECTS = 100


@asynccontextmanager
async def peer_server(kind: str) -> AsyncIterator[int]:
    """Run ``peer_servers.py kind``; yield its port; stop it by closing its stdin."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-W", "error", str(PEERS), kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        with trio.fail_after(TIMEOUT):
            line = b""
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some()
                assert chunk, "the peer server ended before listening"
                line += chunk
        word, port = line.decode().split()
        assert word == "port"
        yield int(port)
    finally:
        with trio.CancelScope(shield=True):
            await process.stdin.aclose()
            with trio.move_on_after(TIMEOUT):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_a_server_that_speaks_and_closes_at_once_is_heard_every_time() -> None:
    """The text and the Close that come in the same read as the 101 are delivered:
    a message, then the end with the server's code, never a handshake error."""
    options = transport.ConnectionOptions(ping_interval=None)
    async with peer_server("speak-first") as port, actors.open_system("peers") as system:
        with trio.fail_after(TIMEOUT):
            for _ in range(CONNECTS):
                connection = await transport.connect_websocket(
                    system, f"ws://127.0.0.1:{port}/", options=options
                )
                assert await connection.receive() == "bye"
                with pytest.raises(trio.EndOfChannel):
                    await connection.receive()
                closed = await connection.ref.wait_stopped()
                assert closed == transport.ConnectionClosed(1001, "going away", by_peer=True)


async def test_threads_and_tasks_share_one_connection_to_another_implementation() -> None:
    """The original crash, against a second implementation's echo server, with the default
    options: 8 OS threads and 50 tasks send on one connection; every echo comes back, in
    each sender's order. The echoes arrive in bursts far larger than the inbound queue's
    1,024 messages; the reader pauses instead of hanging up."""
    threads, per_thread, tasks, per_task = 8, 200, 50, 20
    async with peer_server("echo") as port, actors.open_system("peers") as system:
        async with transport.open_websocket_client(system, f"ws://127.0.0.1:{port}/") as ws:
            with trio.fail_after(TIMEOUT):
                received = await threads_and_tasks_send(
                    ws, threads=threads, per_thread=per_thread, tasks=tasks, per_task=per_task
                )
            statistics = ws.statistics()
            assert (statistics.closed, statistics.inbound_dropped) == (None, 0)
        assert len(received) == threads + tasks
        for name, seqs in received.items():
            assert seqs == list(range(per_thread if name.startswith("t") else per_task)), name
        assert ws.closed == transport.ConnectionClosed(1000, "", by_peer=False)
