"""A worker program for the tests of ``transport.workers``, and helpers to talk to it.

The tests run it as ``python -c "from tests.workers_support import worker_main; worker_main()"
MODE``. ``serve``: an echo server on the workers' port that greets each client with
``worker N``, until SIGTERM (or its parent is gone). ``fail``: says why on stderr and exits 3
before listening, as a worker that cannot start does.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

import actors
import transport
import transport.workers

ROOT = Path(__file__).resolve().parent.parent
NO_KEEPALIVE = transport.ConnectionOptions(ping_interval=None)
FAILURE = "cannot start: broken on purpose"


def worker_command(mode: str) -> list[str]:
    """The command line of one worker in ``mode``."""
    code = "from tests.workers_support import worker_main; worker_main()"
    return [sys.executable, "-W", "error", "-c", code, mode]


def worker_env() -> dict[str, str]:
    """What a worker needs to import the tests package."""
    return {"PYTHONPATH": str(ROOT)}


def worker_main() -> None:
    """Entry point of a worker process."""
    mode = sys.argv[1]
    if mode == "fail":
        print(FAILURE, file=sys.stderr, flush=True)  # noqa: T201 - a worker's last words
        sys.exit(3)
    trio.run(_serve)


async def _greet_and_echo(connection: transport.WebSocketConnection) -> None:
    worker = transport.workers.current_worker()
    assert worker is not None
    await connection.send(f"worker {worker.index} pid {os.getpid()}")
    async for message in connection:
        await connection.send(message)


async def _serve() -> None:
    worker = transport.workers.current_worker()
    assert worker is not None
    async with actors.open_system(f"worker-{worker.index}") as system:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: transport.serve_websocket(
                    system,
                    _greet_and_echo,
                    worker.host,
                    worker.port,
                    options=NO_KEEPALIVE,
                    shutdown_timeout=5,
                    reuse_port=True,
                    task_status=task_status,
                )
            )
            print(f"serving on port {worker.port}", flush=True)  # noqa: T201 - its log
            await worker.report_listening()
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            print("draining", flush=True)  # noqa: T201 - its log
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def greeted_client(
    system: actors.ActorSystem, port: int
) -> AsyncIterator[tuple[transport.WebSocketConnection, int, int]]:
    """A client of the workers on ``port``: its connection, and its worker's number and pid."""
    url = f"ws://127.0.0.1:{port}/"
    async with transport.open_websocket_client(system, url, options=NO_KEEPALIVE) as ws:
        greeting = await ws.receive()
        assert isinstance(greeting, str)
        _, index, _, pid = greeting.split()
        yield ws, int(index), int(pid)


async def workers_reached(system: actors.ActorSystem, port: int, connections: int) -> set[int]:
    """The workers that served ``connections`` connections opened one after another."""
    reached = set()
    for _ in range(connections):
        async with greeted_client(system, port) as (_, index, _):
            reached.add(index)
    return reached
