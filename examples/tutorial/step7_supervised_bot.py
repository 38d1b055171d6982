"""Tutorial step 7: a first supervised bot: its connection is dropped once, and it comes back.

Run it from the repository root: ``python -m examples.tutorial.step7_supervised_bot``.
"""

from __future__ import annotations

import functools

import attrs
import trio

import actors
import transport


@attrs.define
class FlakyServer:
    """The server's handler: welcomes, answers pings, and restarts once (1012) on the first."""

    connections: int = 0

    async def __call__(self, connection: transport.WebSocketConnection) -> None:
        self.connections += 1
        number = self.connections
        async for message in connection:
            if message == "hello":
                await connection.send(f"welcome, connection {number}")
            elif number == 1:
                print(f"server: restarting; closing connection {number} with 1012")
                # From inside the handler: tell the actor to close, then return (don't wait).
                await connection.ref.tell(
                    transport.Close(transport.CloseCode.SERVICE_RESTART, "restarting")
                )
                return
            else:
                print(f"server: connection {number} answers {message!r}")
                await connection.send("pong")


@attrs.define(eq=False)
class Bot(actors.Actor[transport.ClientEvent]):
    """Keeps one logical client over successive connections; pings until it gets an answer."""

    url: str
    client: transport.ReconnectingConnection | None = None

    async def on_start(self) -> None:
        async def hello(connection: transport.WebSocketConnection) -> None:
            # Runs on every new connection, before anything buffered meanwhile is sent.
            await connection.send("hello")

        self.client = await transport.connect_reconnecting_client(
            self.ctx,
            transport.ReconnectingClient(
                url=self.url,
                backoff=actors.Backoff(minimum=0.1, maximum=2.0),
                on_connected=hello,
                subscriber=self.ctx.ref,
            ),
            name="client",
        )

    @actors.handler
    def connected(self, message: transport.Connected) -> None:
        print(f"bot: connected (connect #{message.connects})")

    @actors.handler
    async def received(self, message: transport.Received) -> None:
        assert self.client is not None
        print(f"bot: received {message.data!r}")
        if isinstance(message.data, str) and message.data.startswith("welcome"):
            print("bot: sending 'ping'")
            await self.client.send("ping")
        else:
            statistics = self.client.statistics()
            print(f"bot: done after {statistics.connects} connects")
            self.ctx.stop()

    @actors.handler
    def disconnected(self, message: transport.Disconnected) -> None:
        closed = message.closed
        print(
            f"bot: disconnected: code {closed.code}, reason {closed.reason!r}, "
            f"by peer {closed.by_peer}; reconnecting {message.reconnecting}"
        )

    @actors.handler
    def gave_up(self, message: transport.GaveUp) -> None:
        print(f"bot: the client gave up: {message.reason}")
        self.ctx.stop(message)


async def main() -> None:
    handler = FlakyServer()
    async with actors.open_system() as system:
        async with trio.open_nursery() as nursery:
            server: transport.WebSocketServer = await nursery.start(
                functools.partial(
                    transport.serve_websocket, system, handler, "127.0.0.1", 0, name="server"
                )
            )
            bot = await system.spawn(Bot(f"ws://127.0.0.1:{server.port}/"), name="bot")
            print(f"bot stopped: {await bot.wait_stopped()!r}")
            print(f"server: served {handler.connections} connections")
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
