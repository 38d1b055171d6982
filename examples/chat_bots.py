"""Bots that join the chat as ordinary WebSocket clients: a greeter and a command bot.

::

    python -m examples.chat_bots --url ws://127.0.0.1:8765/ --room lobby

Each bot is an actor with one child, a ``transport.ReconnectingClient``, which owns the
connection (itself a child actor), joins the room again after every reconnect (its
``on_connected`` hook) and hands the bot what the room says. Stop the chat server and start
it again: the bots come back by themselves.

- ``greeter`` says welcome to whoever joins.
- ``commands`` answers ``/time``, ``/roll [SIDES]``, ``/who`` and ``/help``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import logging
import random
from collections.abc import Sequence

import attrs
import trio

import actors
import transport
from examples.chat_protocol import (
    AskWho,
    Joined,
    JoinRoom,
    Members,
    Posted,
    Problem,
    ProtocolError,
    SayInRoom,
    ServerMessage,
    decode_server,
    encode_client,
)
from examples.chat_server import wait_for_signal

logger = logging.getLogger("examples.chat_bots")


@attrs.frozen
class Say:
    """Say ``text`` in the bot's room (other actors post through a bot this way)."""

    text: str


ChatBotMessage = transport.ClientEvent | Say


@attrs.define(eq=False)
class ChatBot(actors.Actor[ChatBotMessage]):
    """A chat member over a reconnecting client: joins on every connect, reacts to the room.

    The bot spawns a ``transport.ReconnectingClient`` as its child and is its subscriber:
    it gets ``Connected``, each ``Received`` message, ``Disconnected`` when a connection
    ends (the client then backs off and redials), and ``GaveUp`` if the client stops
    trying (a TLS failure or an HTTP 4xx answer are not retried).
    """

    url: str
    room: str
    name: str
    client: transport.ReconnectingConnection | None = None
    in_room: bool = False

    async def on_start(self) -> None:
        join = encode_client(JoinRoom(self.room, self.name))

        async def rejoin(connection: transport.WebSocketConnection) -> None:
            # Runs on every new connection, before anything buffered meanwhile is sent.
            await connection.send(join)

        self.client = await transport.connect_reconnecting_client(
            self.ctx,
            transport.ReconnectingClient(
                url=self.url, on_connected=rejoin, subscriber=self.ctx.ref
            ),
            name="client",
        )

    async def say(self, text: str) -> None:
        await self.send(encode_client(SayInRoom(self.room, text)))

    async def send(self, text: str) -> None:
        assert self.client is not None
        # While disconnected the client buffers (bounded, oldest dropped and reported).
        # It is our child: it stops before we do, so a task of ours may find it gone.
        with contextlib.suppress(actors.ActorStoppedError):
            await self.client.send(text)

    @actors.handler
    async def say_this(self, message: Say) -> None:
        await self.say(message.text)

    @actors.handler
    def connected(self, message: transport.Connected) -> None:
        self.in_room = False  # the answer to the join comes first
        logger.info("%s connected to %s (connect #%d)", self.name, self.url, message.connects)

    @actors.handler
    def disconnected(self, message: transport.Disconnected) -> None:
        logger.info("%s lost %s: %r", self.name, self.url, message.closed)

    @actors.handler
    def gave_up(self, message: transport.GaveUp) -> None:
        logger.warning("%s gave up on %s: %s", self.name, self.url, message.reason)
        self.ctx.stop(message)

    @actors.handler
    async def received(self, message: transport.Received) -> None:
        data = message.data
        assert isinstance(data, str | bytes)  # the default codec passes text through
        try:
            event = decode_server(data)
        except ProtocolError as exc:
            logger.warning("%s: the server sent something odd: %s", self.name, exc)
            return
        if isinstance(event, Members) and not self.in_room:
            self.in_room = True  # the answer to our join
            return
        if isinstance(event, Problem):
            logger.warning("%s: the server says: %s", self.name, event.text)
            return
        await self.heard(event)

    async def heard(self, event: ServerMessage) -> None:
        """What the room said; bots override this."""
        await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class Greeter(ChatBot):
    name: str = "greeter"

    async def heard(self, event: ServerMessage) -> None:
        if isinstance(event, Joined) and event.name != self.name:
            await self.say(f"welcome, {event.name}!")
        else:
            await trio.lowlevel.checkpoint()


HELP = "commands: /time, /roll [sides], /who, /help"


@attrs.define(eq=False)
class CommandBot(ChatBot):
    name: str = "commands"
    rng: random.Random = attrs.Factory(random.Random)
    who_asked: list[str] = attrs.Factory(list)

    async def heard(self, event: ServerMessage) -> None:
        if isinstance(event, Members) and self.who_asked:
            asker = self.who_asked.pop(0)
            await self.say(f"{asker}: in {event.room}: {', '.join(event.names)}")
        elif isinstance(event, Posted) and event.text.startswith("/"):
            await self.command(event.name, event.text)
        else:
            await trio.lowlevel.checkpoint()

    async def command(self, author: str, text: str) -> None:
        command, _, argument = text.partition(" ")
        if command == "/time":
            now = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S UTC")
            await self.say(f"{author}: it is {now}")
        elif command == "/roll":
            sides = int(argument) if argument.strip().isdigit() else 6
            sides = min(max(sides, 2), 1000)
            await self.say(f"{author} rolled {self.rng.randint(1, sides)} (d{sides})")
        elif command == "/who":
            self.who_asked.append(author)  # the server's Members reply comes back in order
            await self.send(encode_client(AskWho(self.room)))
        elif command == "/help":
            await self.say(HELP)
        else:
            await self.say(f"{author}: I don't know {command}; {HELP}")


async def main(arguments: argparse.Namespace) -> None:
    rng = random.Random(arguments.seed)
    async with actors.open_system("bots") as system:
        greeter = await system.spawn(Greeter(arguments.url, arguments.room), name="greeter")
        commands = await system.spawn(
            CommandBot(arguments.url, arguments.room, rng=rng), name="commands"
        )
        print(f"greeter and commands are joining {arguments.room!r} at {arguments.url}")
        await wait_for_signal()
        for bot in (commands, greeter):
            await bot.stop()


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.chat_bots", description=__doc__)
    parser.add_argument("--url", default="ws://127.0.0.1:8765/", help="the chat server")
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--seed", type=int, default=None, help="seed the dice")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    trio.run(functools.partial(main, parse_arguments()))
