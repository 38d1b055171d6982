"""Tutorial step 6: a first server: a WebSocket echo server whose connections are actors.

Run it from the repository root: ``python -m examples.tutorial.step6_first_server``.
"""

from __future__ import annotations

import functools

import trio

import actors
import transport


async def echo(
    accepted: list[transport.WebSocketConnection], connection: transport.WebSocketConnection
) -> None:
    # Runs inside the connection actor, once per connection. It never holds the socket:
    # it reads the actor's bounded inbound queue and queues replies for the actor's writer.
    accepted.append(connection)
    async for message in connection:  # ends when the connection has closed
        print(f"server: {connection.ref.path} echoes {message!r}")
        await connection.send(message)  # waits while the outbound queue is full


async def main() -> None:
    accepted: list[transport.WebSocketConnection] = []
    async with actors.open_system() as system:
        async with trio.open_nursery() as nursery:
            server: transport.WebSocketServer = await nursery.start(
                functools.partial(
                    transport.serve_websocket,
                    system,
                    functools.partial(echo, accepted),
                    "127.0.0.1",
                    0,  # any free port; server.port says which
                    name="echo",
                )
            )
            url = f"ws://127.0.0.1:{server.port}/"
            async with transport.open_websocket_client(system, url, name="client") as ws:
                for text in ["hello", "world"]:
                    await ws.send(text)
                    print(f"client: {ws.ref.path} received {await ws.receive()!r}")
                await ws.close(1000, "done")  # returns once the connection actor has stopped

            # A connection ends as a value: its actor's stop reason, on both sides.
            server_side = accepted[0]
            await server_side.ref.wait_stopped()
            for side in [ws, server_side]:
                closed = side.closed  # a transport.ConnectionClosed once the actor has stopped
                assert closed is not None
                print(
                    f"{side.ref.path} closed: code {closed.code}, "
                    f"reason {closed.reason!r}, by peer {closed.by_peer}"
                )
            seen = server_side.closed
            assert seen is not None
            code = transport.CloseCode(seen.code)
            print(f"{code} is {code.name}: failure {seen.is_failure}, retry {seen.is_transient}")
            statistics = await server.statistics()
            print(f"server: {statistics.accepted} accepted, {statistics.active} open")
            nursery.cancel_scope.cancel()  # stops the server: open connections get 1001


if __name__ == "__main__":
    trio.run(main)
