"""The demo: a chat server with a web page, bots that join it over WebSockets, a TLS ticker
feed that drops its subscribers now and then, and two plain OS threads, all in one process.

::

    trio-actors demo               # runs until Ctrl-C
    trio-actors demo --seconds 5   # a bounded run
    trio-actors demo --seed 7      # the same dice rolls and prices every time
    trio-actors demo --redis redis://127.0.0.1:6379/0   # two chat servers, one room

It prints the address of the web page (open it, pick a name, say ``/help``) and then who
said what in the room ``lobby``, as the room's actor publishes it. Who is in there:

- ``greeter`` and ``commands`` (``transport/apps/chat_bots.py``): clients with reconnect.
- ``ticker`` (``transport/apps/feed_bot.py``): reads a ``wss://`` feed (``transport/apps/ticker_feed.py``,
  with a certificate from a throwaway local CA) while sending heartbeats, and posts a digest.
  The feed drops every subscriber every few seconds; the bot reconnects and says so.
- ``sensors`` (``transport/apps/thread_bridge.py``): a sensor loop thread and a legacy SDK's
  callback thread, reporting through ``ref.tell_from_thread``.
- ``alice``: a scripted user typing a few lines and commands.

With ``--redis URL`` the demo runs two chat servers, each with its own actor system and its
own connection to Redis, as two processes on two hosts would (``transport/apps/chat_server.py``
explains how a room spans servers). The people are split between them: ``greeter``,
``ticker`` and ``alice`` connect to server 1, ``commands`` and ``sensors`` to server 2, so
alice's ``/roll`` is answered from the other server. Every line of the transcript says which
server it was said on.

Every port is loopback and chosen free unless ``--port``/``--http-port`` say otherwise
(they apply to server 1).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator
from typing import Never

import attrs
import trio

import actors
import transport
import transport.observe
from transport.apps.arguments import port, require_extra
from transport.apps.chat_bots import ChatBot, CommandBot, Greeter
from transport.apps.chat_protocol import Joined, Left, Posted, RoomEvent
from transport.apps.chat_server import (
    ROOM_CODEC,
    ChatServer,
    OnEvent,
    open_rooms_backplane,
    room_topic,
    serve_chat,
    wait_for_signal,
)
from transport.apps.feed_bot import FeedBot
from transport.apps.thread_bridge import Relay, Threads
from transport.apps.ticker_feed import FeedConfig, FeedServer, Market, serve_feed

HOST = "127.0.0.1"
ROOM = "lobby"
FEED_DROP_AFTER = 2.0  # seconds: the feed drops each subscriber this long after it subscribed
DIGEST_EVERY = 1.0
SENSOR_INTERVAL = 1.0
STOP_GRACE = 2.0  # seconds the rooms get to announce that the people left


class Transcript:
    """Prints timestamped lines: what the room publishes, and the demo's own notes."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.present: set[str] = set()
        self._empty = trio.Event()  # set while the room is empty
        self._empty.set()

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self.started:5.2f}s]"

    def event(self, event: RoomEvent) -> None:
        self._print_event("", event)

    def events_of(self, server: str) -> OnEvent:
        """Print a room's events marked with the server whose room published them."""
        return functools.partial(self._print_event, f"[{server}] ")

    def _print_event(self, where: str, event: RoomEvent) -> None:
        if isinstance(event, Posted):
            print(f"{self._stamp()} {where}{event.name}: {event.text}", flush=True)
        elif isinstance(event, Joined):
            print(f"{self._stamp()} {where}-- {event.name} joined {event.room}", flush=True)
            self.present.add(event.name)
            if self._empty.is_set():
                self._empty = trio.Event()
        elif isinstance(event, Left):
            line = f"-- {event.name} left {event.room} ({event.reason})"
            print(f"{self._stamp()} {where}{line}", flush=True)
            self.present.discard(event.name)
            if not self.present:
                self._empty.set()

    async def wait_until_everyone_left(self) -> None:
        """Return once the room has announced that its last member left."""
        await self._empty.wait()

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
    import trustme  # the demo extra; the CLI checks it is there before starting

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@attrs.frozen
class Server:
    """One chat server of the demo, with the actor system it runs in."""

    label: str
    system: actors.ActorSystem
    chat: ChatServer


async def serve_second_chat(
    redis_url: str,
    on_event: OnEvent,
    *,
    task_status: trio.TaskStatus[Server],
) -> None:
    """Chat server 2: its own actor system and its own Redis connection, as on another host."""
    async with (
        actors.open_system("demo-2") as system,
        transport.backplane.open_redis_backplane(system, redis_url, codec=ROOM_CODEC) as backplane,
        trio.open_nursery() as nursery,
    ):
        chat: ChatServer = await nursery.start(
            functools.partial(
                serve_chat, system, HOST, 0, http_port=0, on_event=on_event, backplane=backplane
            )
        )
        task_status.started(Server("server 2", system, chat))


async def room_statistics(server: Server) -> actors.TopicStatistics:
    """The counters of the room's topic in this server (its local end, with a backplane)."""
    if server.chat.backplane is None:
        return server.system.topic(room_topic(ROOM)).statistics()
    shared = await server.chat.backplane.topic(room_topic(ROOM))
    return shared.statistics()


def dead_letters(system: actors.ActorSystem) -> str:
    letters = system.dead_letters.statistics()
    reasons = ", ".join(f"{reason.value}: {n}" for reason, n in letters.by_reason.items())
    return f"{letters.total} ({reasons or 'none'})"


async def summary(servers: list[Server], feed: FeedServer) -> None:
    feed_stats = await feed.server.statistics()
    print()
    if len(servers) == 1:
        (server,) = servers
        chat_stats = await server.chat.server.statistics()
        room_stats = await room_statistics(server)
        print(f"chat connections: {chat_stats.accepted} accepted, {chat_stats.active} still open")
        print(f"feed connections: {feed_stats.accepted} accepted (each drop is a reconnect)")
        print(
            f"room {ROOM}: {room_stats.published} events published, {room_stats.dropped} "
            f"dropped, {room_stats.disconnected} members disconnected for lagging"
        )
        print(f"dead letters: {dead_letters(server.system)}")
        return
    for server in servers:
        chat_stats = await server.chat.server.statistics()
        room_stats = await room_statistics(server)
        assert server.chat.backplane is not None
        backplane = server.chat.backplane.statistics()
        print(
            f"chat {server.label}: {chat_stats.accepted} connections accepted, "
            f"{chat_stats.active} still open"
        )
        print(
            f"  room {ROOM}: {room_stats.published} messages from redis, {room_stats.dropped} "
            f"dropped, {room_stats.disconnected} members disconnected for lagging"
        )
        print(
            f"  backplane: {backplane.published} published, {backplane.received} received, "
            f"{backplane.gaps} gaps"
        )
        print(f"  dead letters: {dead_letters(server.system)}")
    print(f"feed connections: {feed_stats.accepted} accepted (each drop is a reconnect)")


async def main(arguments: argparse.Namespace) -> None:
    """``trio-actors demo``: start everything, print the room until the end, then a summary."""
    transcript = Transcript()
    for name in ("actors", "transport"):
        log = logging.getLogger(name)
        log.addHandler(TranscriptLogHandler(transcript))
        log.propagate = False
    rng = random.Random(arguments.seed)
    feed_tls, client_tls = throwaway_tls()
    redis_url: str | None = arguments.redis

    async with (
        actors.open_system("demo") as system,
        # First, so that it counts every server, connection and client started below.
        open_dashboard(system, arguments) as dashboard,
        open_rooms_backplane(system, redis_url) as backplane,
        trio.open_nursery() as nursery,
    ):
        on_event = transcript.event if redis_url is None else transcript.events_of("server 1")
        chat: ChatServer = await nursery.start(
            functools.partial(
                serve_chat,
                system,
                HOST,
                arguments.port,
                http_port=arguments.http_port,
                on_event=on_event,
                backplane=backplane,
            )
        )
        servers = [Server("server 1", system, chat)]
        if redis_url is not None:
            second = transcript.events_of("server 2")
            servers.append(await nursery.start(serve_second_chat, redis_url, second))
        config = FeedConfig(
            Market(random.Random(rng.random())), interval=0.25, drop_after=FEED_DROP_AFTER
        )
        feed: FeedServer = await nursery.start(
            functools.partial(serve_feed, system, HOST, 0, config, ssl_context=feed_tls)
        )
        if backplane is None:
            print(f"chat server: listening on {chat.url}")
            print(f"web page:    open {chat.page_url} in a browser")
        else:
            stats = backplane.statistics()
            print(f"rooms shared through {stats.url}: two chat servers, as if on two hosts")
            for server in servers:
                print(f"chat {server.label}: listening on {server.chat.url}")
            for server in servers:
                print(f"web page:    open {server.chat.page_url} in a browser ({server.label})")
        print(
            f"ticker feed: listening on {feed.url} (drops subscribers every {FEED_DROP_AFTER:g}s)"
        )
        if dashboard is not None:
            print(
                f"dashboard:   open {dashboard.url} in a browser (metrics at {dashboard.url}metrics)"
            )
        # Who connects where: with two servers, the people are split between them.
        first, last = servers[0].chat.url, servers[-1].chat.url
        where = {
            "greeter": first,
            "commands": last,
            "ticker": first,
            "sensors": last,
            "alice": first,
        }
        if len(servers) > 1:
            for server in servers:
                names = [name for name, url in where.items() if url == server.chat.url]
                print(f"on {server.label}: {', '.join(names)}")
        running = "until Ctrl-C" if arguments.seconds is None else f"for {arguments.seconds:g}s"
        marked = "" if len(servers) == 1 else ", each line marked with the server it was said on"
        print(f"running {running}; the room {ROOM!r}{marked}:", flush=True)

        people: list[actors.ActorRef[Never]] = []
        people.append(await system.spawn(Greeter(where["greeter"], ROOM), name="greeter"))
        people.append(
            await system.spawn(
                CommandBot(where["commands"], ROOM, rng=random.Random(rng.random())),
                name="commands",
            )
        )
        people.append(
            await system.spawn(
                FeedBot(
                    feed.url,
                    where["ticker"],
                    ROOM,
                    ssl_context=client_tls,
                    digest_every=DIGEST_EVERY,
                ),
                name="ticker",
            )
        )
        relay = await system.spawn(Relay(where["sensors"], ROOM), name="relay")
        people.append(relay)
        threads = Threads.start(relay, SENSOR_INTERVAL, random.Random(rng.random()))
        people.append(await system.spawn(ScriptedUser(where["alice"], ROOM, "alice"), name="alice"))

        await wait_for_signal(arguments.seconds)

        transcript.note("stopping: the threads first, then the people, then the servers")
        await threads.stop()
        for ref in reversed(people):
            await ref.stop()
        # The rooms announce departures as the servers notice them: let them finish.
        with trio.move_on_after(STOP_GRACE):
            await transcript.wait_until_everyone_left()
        await summary(servers, feed)
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def open_dashboard(
    system: actors.ActorSystem, arguments: argparse.Namespace
) -> AsyncIterator[transport.observe.Observer | None]:
    """The live dashboard and ``/metrics`` of the demo's system, unless ``--no-dashboard``."""
    if arguments.no_dashboard:
        await trio.lowlevel.checkpoint()
        yield None
        return
    async with transport.observe.open_observer(system, HOST, arguments.dashboard_port) as observer:
        yield observer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``trio-actors demo``."""
    parser.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (default: at Ctrl-C)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed the dice and the prices")
    parser.add_argument("--port", type=port, default=0, help="chat WebSocket port (0: any free)")
    parser.add_argument("--http-port", type=port, default=0, help="web page port (0: any free)")
    parser.add_argument(
        "--dashboard-port",
        type=port,
        default=0,
        help="port of the live dashboard and its /metrics (0: any free)",
    )
    parser.add_argument(
        "--no-dashboard", action="store_true", help="run without the dashboard and /metrics"
    )
    parser.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="run two chat servers sharing the room through this Redis "
        "(e.g. redis://127.0.0.1:6379/0); default: one server, rooms in this process",
    )


def check_arguments(arguments: argparse.Namespace) -> None:
    """The demo's own packages (the ``demo`` extra, and ``redis`` for ``--redis``)."""
    require_extra("trustme", "demo", "the demo's local TLS feed")
    if not arguments.no_dashboard:
        require_extra("prometheus_client", "demo", "the dashboard (or run with --no-dashboard)")
    if arguments.redis is not None:
        require_extra("coredis", "redis", "--redis")
