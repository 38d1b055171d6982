"""Acknowledged delivery: every reading reaches the server's application once, across drops.

::

    python -m examples.acked_delivery

A sensor sends 100 numbered readings through a reconnecting client made with
``acknowledged=True``. The collector server reads them through ``AckedSessions``, and twice
it drops the connection (1012, as a restarting server would) right after reading a
reading, so readings are on the wire in both directions when the link goes. The client
reconnects, learns from the server's answer to its hello how far the session got, and sends
the rest again; the server drops anything it already handed over. The collector ends up
with each reading once, in order.

Without ``acknowledged=True`` the messages written into a connection that then drops are
gone without a trace: the client cannot know what the server read.
"""

from __future__ import annotations

import functools

import trio

import actors
import transport

READINGS = 100
DROP_AFTER = (30, 60)
QUICK = actors.Backoff(minimum=0.05, maximum=0.05, jitter=0)


async def main() -> None:
    sessions = transport.AckedSessions()
    readings: list[str] = []

    async def collector(connection: transport.WebSocketConnection) -> None:
        session = await sessions.accept(connection)
        async for reading in session:
            assert isinstance(reading, str)
            readings.append(reading)
            if len(readings) in DROP_AFTER:
                print(f"server: dropping the connection after reading {len(readings)}")
                await connection.ref.tell(transport.Close(1012, "restarting"))

    async with actors.open_system("acked") as system, trio.open_nursery() as nursery:
        server: transport.WebSocketServer = await nursery.start(
            functools.partial(transport.serve_websocket, system, collector, "127.0.0.1", 0)
        )
        url = f"ws://127.0.0.1:{server.port}/"
        print(f"server: listening on {url}")
        async with transport.open_reconnecting_client(
            system, transport.ReconnectingClient(url=url, acknowledged=True, backoff=QUICK)
        ) as sensor:
            for number in range(READINGS):
                await sensor.send(f"reading {number}")
                if number % 10 == 9:
                    await trio.sleep(0.01)  # bursts of ten: some are on the wire at a drop
        stats = sensor.statistics()
        print(
            f"client: sent {READINGS} readings over {stats.connects} connections; "
            f"{stats.confirmed} confirmed, {stats.undelivered} unconfirmed"
        )
        in_order = readings == [f"reading {n}" for n in range(READINGS)]
        print(f"server: got {len(readings)} readings, each once and in order: {in_order}")
        duplicates = sessions.statistics().duplicates
        print(f"(sent again after a drop: {stats.resent}; already read, so dropped: {duplicates})")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
