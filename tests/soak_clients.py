"""The soak's clients, in a process of their own so the server's memory is measured alone.

``python -m tests.soak_clients URL CONNECTIONS SAMPLE INTERVAL MESSAGES`` opens ``SAMPLE``
connections and prints ``opened SAMPLE``; after a ``more`` line on standard input it opens
the rest and prints ``opened CONNECTIONS``; after ``go`` each connection sends
``MESSAGES`` messages, one every ``INTERVAL`` seconds (starts staggered over one interval),
and checks every echo, in order; then it prints ``done`` and a JSON tally, and after
``close`` closes every connection and exits.
"""

from __future__ import annotations

import contextlib
import json
import sys

import trio

import actors
import transport

OPTIONS = transport.ConnectionOptions(ping_interval=None)
OPENING = 50  # handshakes at a time


class Tally:
    """What the clients did: messages sent and echoed, and any echo out of order."""

    def __init__(self) -> None:
        self.sent = 0
        self.echoed = 0
        self.out_of_order: list[tuple[int, str, str]] = []


async def command(expected: str) -> None:
    line = await trio.to_thread.run_sync(sys.stdin.readline)
    if line.strip() != expected:
        raise SystemExit(f"expected {expected!r} on standard input, got {line!r}")


def say(line: str) -> None:
    print(line, flush=True)  # noqa: T201 - the protocol with the test


async def run_connection(
    connection: transport.WebSocketConnection,
    number: int,
    interval: float,
    messages: int,
    tally: Tally,
) -> None:
    async def send_all() -> None:
        await trio.sleep(interval * (number % 100) / 100)
        for i in range(messages):
            await connection.send(f"{number}:{i}")
            tally.sent += 1
            await trio.sleep(interval)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_all)
        for i in range(messages):
            echo = await connection.receive()
            if echo != f"{number}:{i}":
                tally.out_of_order.append((number, f"{number}:{i}", str(echo)))
            tally.echoed += 1


async def main(url: str, connections: int, sample: int, interval: float, messages: int) -> None:
    tally = Tally()
    async with actors.open_system("soak-clients") as system, contextlib.AsyncExitStack() as stack:
        opened: list[transport.WebSocketConnection] = []
        limiter = trio.CapacityLimiter(OPENING)

        async def open_one() -> None:
            async with limiter:
                opened.append(
                    await stack.enter_async_context(
                        transport.open_websocket_client(system, url, options=OPTIONS)
                    )
                )

        for count, then in ((sample, "more"), (connections, "go")):
            async with trio.open_nursery() as nursery:
                for _ in range(count - len(opened)):
                    nursery.start_soon(open_one)
            say(f"opened {len(opened)}")
            await command(then)
        async with trio.open_nursery() as nursery:
            for number, connection in enumerate(opened):
                nursery.start_soon(run_connection, connection, number, interval, messages, tally)
        say(
            "done "
            + json.dumps(
                {
                    "sent": tally.sent,
                    "echoed": tally.echoed,
                    "out_of_order": tally.out_of_order[:10],
                }
            )
        )
        await command("close")


if __name__ == "__main__":
    url, connections, sample, interval, messages = sys.argv[1:]
    trio.run(main, url, int(connections), int(sample), float(interval), int(messages))
