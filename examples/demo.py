"""The demo: a chat server with a web page, bots that join it over WebSockets, a TLS ticker
feed that drops its subscribers now and then, and two plain OS threads, all in one process.

::

    python -m examples.demo               # runs until Ctrl-C
    python -m examples.demo --seconds 5   # a bounded run
    python -m examples.demo --seed 7      # the same dice rolls and prices every time

It prints the address of the web page (open it, pick a name, say ``/help``) and then who
said what in the room ``lobby``, as the room's actor publishes it. Who is in there:

- ``greeter`` and ``commands`` (``examples/chat_bots.py``): clients with reconnect.
- ``ticker`` (``examples/feed_bot.py``): reads a ``wss://`` feed (``examples/ticker_feed.py``,
  with a certificate from a throwaway local CA) while sending heartbeats, and posts a digest.
  The feed drops every subscriber every few seconds; the bot reconnects and says so.
- ``sensors`` (``examples/thread_bridge.py``): a sensor loop thread and a legacy SDK's
  callback thread, reporting through ``ref.tell_from_thread``.
- ``alice``: a scripted user typing a few lines and commands.

Every port is loopback and chosen free unless ``--port``/``--http-port`` say otherwise.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import logging
import random
import ssl
import time
from collections.abc import Sequence
from typing import Never

import attrs
import trio
import trustme

import actors
from examples.chat_bots import ChatBot, CommandBot, Greeter
from examples.chat_protocol import Joined, Left, Posted, RoomEvent
from examples.chat_server import ChatServer, serve_chat, wait_for_signal
from examples.feed_bot import FeedBot
from examples.thread_bridge import Relay, Threads
from examples.ticker_feed import FeedConfig, FeedServer, Market, serve_feed

HOST = "127.0.0.1"
ROOM = "lobby"
FEED_DROP_AFTER = 2.0  # seconds: the feed drops each subscriber this long after it subscribed
DIGEST_EVERY = 1.0
SENSOR_INTERVAL = 1.0


class Transcript:
    """Prints timestamped lines: what the room publishes, and the demo's own notes."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self.started:5.2f}s]"

    def event(self, event: RoomEvent) -> None:
        if isinstance(event, Posted):
            print(f"{self._stamp()} {event.name}: {event.text}", flush=True)
        elif isinstance(event, Joined):
            print(f"{self._stamp()} -- {event.name} joined {event.room}", flush=True)
        elif isinstance(event, Left):
            print(f"{self._stamp()} -- {event.name} left {event.room} ({event.reason})", flush=True)

    def note(self, text: str) -> None:
        print(f"{self._stamp()} -- {text}", flush=True)


class TranscriptLogHandler(logging.Handler):
    """Shows the runtime's and the transport's warnings in the transcript."""

    def __init__(self, transcript: Transcript) -> None:
        super().__init__(logging.WARNING)
        self.transcript = transcript

    def emit(self, record: logging.LogRecord) -> None:
        self.transcript.note(f"log {record.levelname} {record.name}: {record.getMessage()}")


SCRIPT = ["hi everyone", "/roll", "/time", "/who", "anyone watching ACME?"]
CHATTER = ["/roll 20", "the coffee machine is fixed", "/roll", "/help", "back to work"]


@attrs.define(eq=False)
class ScriptedUser(ChatBot):
    """A user who types a line every ``pause`` seconds (a helper task does the typing)."""

    pause: float = 0.5

    async def on_start(self) -> None:
        await super().on_start()
        self.ctx.start_soon(self._type)

    async def _type(self) -> None:
        for text in itertools.chain(SCRIPT, itertools.cycle(CHATTER)):
            await trio.sleep(self.pause)
            await self.say(text)


def throwaway_tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A local CA and a certificate for 127.0.0.1: the feed's context and its clients'."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def summary(
    system: actors.ActorSystem, chat: ChatServer, feed: FeedServer, transcript: Transcript
) -> None:
    chat_stats = await chat.server.statistics()
    feed_stats = await feed.server.statistics()
    room: actors.Topic[RoomEvent] = actors.topic(system, f"room:{ROOM}")
    room_stats = room.statistics()
    letters = system.dead_letters.statistics()
    reasons = ", ".join(f"{reason.value}: {n}" for reason, n in letters.by_reason.items())
    print()
    print(f"chat connections: {chat_stats.accepted} accepted, {chat_stats.active} still open")
    print(f"feed connections: {feed_stats.accepted} accepted (each drop is a reconnect)")
    print(
        f"room {ROOM}: {room_stats.published} events published, {room_stats.dropped} dropped, "
        f"{room_stats.disconnected} members disconnected for lagging"
    )
    print(f"dead letters: {letters.total} ({reasons or 'none'})")


async def main(arguments: argparse.Namespace) -> None:
    transcript = Transcript()
    for name in ("actors", "transport"):
        log = logging.getLogger(name)
        log.addHandler(TranscriptLogHandler(transcript))
        log.propagate = False
    rng = random.Random(arguments.seed)
    feed_tls, client_tls = throwaway_tls()

    async with actors.open_system("demo") as system:
        async with trio.open_nursery() as servers:
            chat: ChatServer = await servers.start(
                functools.partial(
                    serve_chat,
                    system,
                    HOST,
                    arguments.port,
                    http_port=arguments.http_port,
                    on_event=transcript.event,
                )
            )
            config = FeedConfig(
                Market(random.Random(rng.random())), interval=0.25, drop_after=FEED_DROP_AFTER
            )
            feed: FeedServer = await servers.start(
                functools.partial(serve_feed, system, HOST, 0, config, ssl_context=feed_tls)
            )
            print(f"chat server: listening on {chat.url}")
            print(f"web page:    open {chat.page_url} in a browser")
            print(
                f"ticker feed: listening on {feed.url} (drops subscribers every {FEED_DROP_AFTER:g}s)"
            )
            running = "until Ctrl-C" if arguments.seconds is None else f"for {arguments.seconds:g}s"
            print(f"running {running}; the room {ROOM!r}:", flush=True)

            people: list[actors.ActorRef[Never]] = []
            people.append(await system.spawn(Greeter(chat.url, ROOM), name="greeter"))
            people.append(
                await system.spawn(
                    CommandBot(chat.url, ROOM, rng=random.Random(rng.random())), name="commands"
                )
            )
            people.append(
                await system.spawn(
                    FeedBot(
                        feed.url, chat.url, ROOM, ssl_context=client_tls, digest_every=DIGEST_EVERY
                    ),
                    name="ticker",
                )
            )
            relay = await system.spawn(Relay(chat.url, ROOM), name="relay")
            people.append(relay)
            threads = Threads.start(relay, SENSOR_INTERVAL, random.Random(rng.random()))
            people.append(await system.spawn(ScriptedUser(chat.url, ROOM, "alice"), name="alice"))

            await wait_for_signal(arguments.seconds)

            transcript.note("stopping: the threads first, then the people, then the servers")
            await threads.stop()
            for ref in reversed(people):
                await ref.stop()
            await summary(system, chat, feed, transcript)
            servers.cancel_scope.cancel()


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo",
        description="A chat server, its web page, bots, a TLS feed and two threads, on loopback.",
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (default: at Ctrl-C)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed the dice and the prices")
    parser.add_argument("--port", type=int, default=0, help="chat WebSocket port (0: any free)")
    parser.add_argument("--http-port", type=int, default=0, help="web page port (0: any free)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    trio.run(main, parse_arguments())
