"""Metrics and a live dashboard for a small running system.

::

    pip install 'trio-actors[metrics]'
    python -m examples.observed_system --port 9464

It prints ``dashboard: open http://127.0.0.1:9464/ in a browser`` and
``metrics: http://127.0.0.1:9464/metrics``; ``--port 0`` picks a free port.

What runs: an echo server, a client that sends it a message every tenth of a
second over a real WebSocket, and a supervisor whose worker fails every
``--crash-every`` seconds and is restarted (watch its restart counter and the
events list in the dashboard). With ``--seconds N`` it stops after N seconds
and prints the lines of its own ``/metrics`` that a dashboard would chart.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import logging
from collections.abc import Sequence

import attrs
import trio

import actors
import transport
import transport.observe


@attrs.frozen
class Work:
    """One job for the worker."""

    number: int


@attrs.frozen
class Fail:
    """Makes the worker fail (to show a restart)."""


@attrs.define(eq=False)
class Worker(actors.Actor[Work | Fail]):
    done: int = 0

    @actors.handler
    def work(self, message: Work) -> None:
        self.done += 1

    @actors.handler
    def fail(self, message: Fail) -> None:
        raise RuntimeError("the worker failed on purpose")


async def echo(connection: transport.WebSocketConnection) -> None:
    async for message in connection:
        await connection.send(message)


async def chatter(system: actors.ActorSystem, url: str, worker: actors.ActorRef[Work]) -> None:
    """A client that sends a message every 0.1 s and hands the worker a job for each echo."""
    async with transport.open_websocket_client(system, url, name="chatter") as connection:
        for number in itertools.count():
            await connection.send(f"message {number}")
            await connection.receive()
            await worker.tell(Work(number))
            await trio.sleep(0.1)


async def failures(worker: actors.ActorRef[Fail], every: float) -> None:
    while True:
        await trio.sleep(every)
        await worker.tell(Fail())


async def scrape(url: str) -> str:
    """``GET url`` over plain HTTP/1.1, as a Prometheus server would; the body."""
    host, _, rest = url.removeprefix("http://").partition(":")
    port, _, path = rest.partition("/")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        request = f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        await stream.send_all(request.encode())
        response = b""
        while chunk := await stream.receive_some(65536):
            response += chunk
    return response.partition(b"\r\n\r\n")[2].decode()


async def main(arguments: argparse.Namespace) -> None:
    # The worker fails on purpose: the dashboard shows each failure, the log need not.
    logging.getLogger("actors").setLevel(logging.CRITICAL)
    async with actors.open_system("observed") as system:
        async with transport.observe.open_observer(system, "127.0.0.1", arguments.port) as seen:
            print(f"dashboard: open {seen.url} in a browser")
            print(f"metrics: {seen.url}metrics", flush=True)
            async with trio.open_nursery() as nursery:
                server: transport.WebSocketServer = await nursery.start(
                    functools.partial(
                        transport.serve_websocket, system, echo, "127.0.0.1", 0, name="echo"
                    )
                )
                supervisor = await system.spawn(
                    actors.Supervisor(max_restarts=1000, within=1.0), name="workers"
                )
                worker = await actors.start_child(supervisor, actors.ChildSpec("worker", Worker))
                nursery.start_soon(chatter, system, f"ws://127.0.0.1:{server.port}/", worker)
                nursery.start_soon(failures, worker, arguments.crash_every)
                if arguments.seconds is None:
                    await trio.sleep_forever()
                await trio.sleep(arguments.seconds)
                text = await scrape(seen.url + "metrics")
                nursery.cancel_scope.cancel()
            for line in text.splitlines():
                if arguments.all_metrics or line.startswith(SHOWN):
                    print(line)


SHOWN = (
    "trio_actors_restarts_total",
    'trio_actors_websocket_messages_received_total{side="server"}',
    'trio_actors_connections_open{side="client"}',
    'trio_actors_dead_letters_total{reason="failed"}',
)


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9464, help="observer port (0: any free)")
    parser.add_argument(
        "--crash-every", type=float, default=3.0, help="seconds between worker failures"
    )
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument(
        "--all-metrics", action="store_true", help="with --seconds: print every metric at the end"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, parse_arguments())
