"""The WebSocket examples, over real loopback sockets: echo, chat rooms, bots, feed, threads.

Servers that users start from a shell run here the same way (``python -m ...`` in a
subprocess, address read from their ``listening on`` line); the rest run in-process so the
tests can look at the actors' counters. Every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import functools
import json
import random
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trustme
import wsproto
import wsproto.events

import actors
import transport
from examples import chat_protocol as protocol
from examples.chat_bots import CommandBot, Greeter
from examples.chat_server import ROOM_BUFFER, ChatServer, serve_chat
from examples.feed_bot import FeedBot
from examples.static_page import StaticFile, answer, chat_page_files
from examples.thread_bridge import Relay, Threads
from examples.ticker_feed import FeedConfig, FeedServer, Market, serve_feed
from tests.ws_support import raw_client

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 20  # generous: each wait takes far less; the bound turns a hang into a failure
NO_KEEPALIVE = transport.ConnectionOptions(ping_interval=None)


# -- helpers ----------------------------------------------------------------------------------


@asynccontextmanager
async def running(module: str, *args: str) -> AsyncIterator[tuple[str, list[str]]]:
    """Run ``python -m module args`` until its ``listening on URL`` line; yield the URL and the
    lines printed so far. Leaving the block sends SIGINT and waits for a clean exit."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-W", "error", "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    output = b""
    try:
        with trio.fail_after(TIMEOUT):
            while (match := re.search(rb"^listening on (\S+)$", output, re.MULTILINE)) is None:
                chunk = await process.stdout.receive_some()
                if not chunk:
                    errors = await process.stderr.receive_some()
                    raise AssertionError(f"{module} ended: {output!r} {errors!r}")
                output += chunk
        # The last line may still be arriving: read what is buffered without waiting long.
        with trio.move_on_after(0.2):
            while not output.endswith(b"\n") or output.count(b"\n") < 2:
                chunk = await process.stdout.receive_some()
                if not chunk:
                    break
                output += chunk
        yield match.group(1).decode(), output.decode().splitlines()
        process.send_signal(signal.SIGINT)
        with trio.fail_after(TIMEOUT):
            errors = b""
            while chunk := await process.stderr.receive_some():
                errors += chunk
            assert await process.wait() == 0, errors.decode()
        assert errors == b""
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


class ChatClient:
    """A test user: a transport client connection that speaks the chat protocol."""

    def __init__(self, connection: transport.WebSocketConnection) -> None:
        self.connection = connection
        self.seen: list[protocol.ServerMessage] = []

    async def send(self, message: protocol.ClientMessage) -> None:
        await self.connection.send(protocol.encode_client(message))

    async def expect(
        self, wanted: Callable[[protocol.ServerMessage], bool]
    ) -> protocol.ServerMessage:
        """Read until a message satisfies ``wanted`` (all are kept in ``seen``)."""
        with trio.fail_after(TIMEOUT):
            while True:
                message = protocol.decode_server(await self.connection.receive())
                self.seen.append(message)
                if wanted(message):
                    return message

    async def seen_or_expect(
        self, wanted: Callable[[protocol.ServerMessage], bool]
    ) -> protocol.ServerMessage:
        """The first message already read that satisfies ``wanted``, or the next one that does."""
        for message in self.seen:
            if wanted(message):
                return message
        return await self.expect(wanted)

    async def join(self, room: str, name: str) -> protocol.Members:
        await self.send(protocol.JoinRoom(room, name))
        reply = await self.expect(lambda m: isinstance(m, protocol.Members | protocol.Problem))
        assert isinstance(reply, protocol.Members), reply
        return reply


@asynccontextmanager
async def chat_client(system: actors.ActorSystem, url: str) -> AsyncIterator[ChatClient]:
    async with transport.open_websocket_client(system, url, options=NO_KEEPALIVE) as ws:
        yield ChatClient(ws)


def said(name: str, text: str) -> Callable[[protocol.ServerMessage], bool]:
    return lambda m: isinstance(m, protocol.Posted) and m.name == name and m.text == text


def posted_by(name: str, pattern: str) -> Callable[[protocol.ServerMessage], bool]:
    return lambda m: (
        isinstance(m, protocol.Posted) and m.name == name and re.search(pattern, m.text) is not None
    )


@asynccontextmanager
async def chat_server(
    system: actors.ActorSystem,
    *,
    port: int = 0,
    http_port: int | None = None,
    room_buffer: int = ROOM_BUFFER,
    options: transport.ConnectionOptions = NO_KEEPALIVE,
) -> AsyncIterator[tuple[ChatServer, list[protocol.RoomEvent]]]:
    """The chat server in this process; ``events`` is what its rooms published."""
    events: list[protocol.RoomEvent] = []
    async with trio.open_nursery() as nursery:
        server: ChatServer = await nursery.start(
            functools.partial(
                serve_chat,
                system,
                "127.0.0.1",
                port,
                http_port=http_port,
                room_buffer=room_buffer,
                options=options,
                on_event=events.append,
            )
        )
        yield server, events
        nursery.cancel_scope.cancel()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


# -- the echo server --------------------------------------------------------------------------


async def test_echo_server_prints_its_address_and_echoes(system: actors.ActorSystem) -> None:
    async with running("examples.echo_server", "--port", "0") as (url, _):
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/", url)
        async with transport.open_websocket_client(system, url) as ws:
            await ws.send("hello")
            await ws.send(b"\x00\x01")
            with trio.fail_after(TIMEOUT):
                assert await ws.receive() == "hello"
                assert await ws.receive() == b"\x00\x01"


async def test_echo_server_over_tls(
    system: actors.ActorSystem, ca: trustme.CA, tmp_path: Path
) -> None:
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(tmp_path / "cert.pem"), append=True)
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    args = ["--port", "0", "--certfile", str(tmp_path / "cert.pem")]
    async with running("examples.echo_server", *args, "--keyfile", str(tmp_path / "key.pem")) as (
        url,
        _,
    ):
        assert url.startswith("wss://127.0.0.1:")
        client = ssl.create_default_context()
        ca.configure_trust(client)
        async with transport.open_websocket_client(system, url, ssl_context=client) as ws:
            await ws.send("secret")
            with trio.fail_after(TIMEOUT):
                assert await ws.receive() == "secret"


# -- the chat server --------------------------------------------------------------------------


async def test_chat_server_prints_its_addresses_and_serves_the_page(
    system: actors.ActorSystem,
) -> None:
    async with running("examples.chat_server", "--port", "0", "--http-port", "0") as (
        url,
        lines,
    ):
        page = next(line for line in lines if line.startswith("open http://"))
        match = re.fullmatch(r"open http://127\.0\.0\.1:(\d+)/\?ws=(\S+) in a browser", page)
        assert match is not None, page
        assert match.group(2) == url
        with trio.fail_after(TIMEOUT):
            stream = await trio.open_tcp_stream("127.0.0.1", int(match.group(1)))
            async with stream:
                await stream.send_all(b"GET /?ws=x HTTP/1.1\r\nHost: x\r\n\r\n")
                body = b""
                while chunk := await stream.receive_some():
                    body += chunk
        assert body.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"new WebSocket(url)" in body
        async with chat_client(system, url) as alice:
            assert await alice.join("lobby", "alice") == protocol.Members("lobby", ("alice",))
            await alice.send(protocol.SayInRoom("lobby", "anyone?"))
            await alice.expect(said("alice", "anyone?"))


def test_static_page_answers_get_only_for_its_files() -> None:
    files = {"/": StaticFile(b"<p>hi</p>", "text/html")}
    assert answer(b"GET /?ws=ws://h:1/ HTTP/1.1\r\n\r\n", files).endswith(b"\r\n\r\n<p>hi</p>")
    assert answer(b"GET /../etc/passwd HTTP/1.1\r\n\r\n", files).startswith(b"HTTP/1.1 404")
    assert answer(b"POST / HTTP/1.1\r\n\r\n", files).startswith(b"HTTP/1.1 405")
    assert answer(b"\x16\x03\x01garbage", files).startswith(b"HTTP/1.1 400")
    assert set(chat_page_files()) == {"/", "/chat.html"}


async def test_room_fans_out_with_join_and_leave_notices(system: actors.ActorSystem) -> None:
    async with chat_server(system) as (server, events):
        async with chat_client(system, server.url) as alice:
            await alice.join("lobby", "alice")
            async with chat_client(system, server.url) as bob:
                assert await bob.join("lobby", "bob") == protocol.Members("lobby", ("alice", "bob"))
                await alice.expect(lambda m: m == protocol.Joined("lobby", "bob"))
                await bob.send(protocol.SayInRoom("lobby", "hi alice"))
                await alice.expect(said("bob", "hi alice"))
                await bob.expect(said("bob", "hi alice"))  # the author sees it in order too
                await bob.send(protocol.AskWho("lobby"))
                assert await bob.expect(lambda m: isinstance(m, protocol.Members)) == (
                    protocol.Members("lobby", ("alice", "bob"))
                )
            left = await alice.seen_or_expect(lambda m: isinstance(m, protocol.Left))
            assert left == protocol.Left("lobby", "bob", "disconnected")
            # Names are unique per room, and a room must be joined before speaking in it.
            async with chat_client(system, server.url) as impostor:
                await impostor.send(protocol.JoinRoom("lobby", "alice"))
                problem = await impostor.expect(lambda m: isinstance(m, protocol.Problem))
                assert "taken" in str(problem)
                await impostor.send(protocol.SayInRoom("attic", "boo"))
                problem = await impostor.expect(lambda m: isinstance(m, protocol.Problem))
                assert "join 'attic' first" in str(problem)
                await impostor.connection.send("not json")
                problem = await impostor.expect(lambda m: isinstance(m, protocol.Problem))
                assert "not JSON" in str(problem)
    assert events[:4] == [
        protocol.Joined("lobby", "alice"),
        protocol.Joined("lobby", "bob"),
        protocol.Posted("lobby", "bob", "hi alice"),
        protocol.Left("lobby", "bob", "disconnected"),
    ]


async def test_rooms_are_separate(system: actors.ActorSystem) -> None:
    async with chat_server(system) as (server, _):
        async with chat_client(system, server.url) as alice, chat_client(system, server.url) as bob:
            await alice.join("lobby", "alice")
            await alice.join("attic", "alice")
            await bob.join("attic", "bob")
            await bob.send(protocol.SayInRoom("attic", "up here"))
            await alice.send(protocol.SayInRoom("lobby", "down here"))
            await alice.expect(said("bob", "up here"))
            await alice.expect(said("alice", "down here"))
            await bob.send(protocol.LeaveRoom("attic"))
            left = await alice.seen_or_expect(lambda m: isinstance(m, protocol.Left))
            assert left == protocol.Left("attic", "bob", "left the room")
            assert not any(isinstance(m, protocol.Posted) and m.room == "lobby" for m in bob.seen)


async def test_browser_origins_other_than_the_page_are_refused(system: actors.ActorSystem) -> None:
    async with chat_server(system, http_port=0) as (server, _):
        assert server.page_url is not None
        page_origin = server.page_url.split("/?", 1)[0]
        async with transport.open_websocket_client(
            system, server.url, headers=[("Origin", page_origin)]
        ):
            pass
        with pytest.raises(transport.HandshakeRejected) as refused:
            await transport.connect_websocket(
                system, server.url, headers=[("Origin", "http://evil.example")]
            )
        assert refused.value.status == 403


async def push_until(
    healthy: ChatClient, done: Callable[[], bool], *, size: int = 1900, limit: int = 20_000
) -> int:
    """Say big lines, each one only after ``healthy`` has read the previous one back (so the
    healthy member never lags), until ``done()``; return how many were said."""
    filler = "x" * size
    for n in range(limit):
        await healthy.send(protocol.SayInRoom("lobby", f"{n} {filler}"))
        await healthy.expect(posted_by("alice", rf"^{n} "))
        if done():
            return n + 1
    raise AssertionError(f"not done after {limit} messages")


async def test_a_client_that_stops_reading_never_stalls_the_room() -> None:
    # Small mailboxes and a short write deadline keep the numbers small; the shape is the
    # same with the defaults.
    async with actors.open_system("stuck", mailbox_size=8) as system:
        options = transport.ConnectionOptions(ping_interval=None, write_timeout=1.0)
        async with chat_server(system, room_buffer=8, options=options) as (server, events):
            stuck_stream, stuck_ws = await raw_client(server.server.port)
            async with stuck_stream:
                join = protocol.encode_client(protocol.JoinRoom("lobby", "stuck"))
                await stuck_stream.send_all(stuck_ws.send(wsproto.events.TextMessage(join)))
                # ... and never reads again.
                async with chat_client(system, server.url) as alice:
                    await alice.join("lobby", "alice")
                    room: actors.Topic[protocol.RoomEvent] = system.topic("room:lobby")

                    def stuck_is_gone() -> bool:
                        return any(
                            isinstance(e, protocol.Left) and e.name == "stuck" for e in events
                        )

                    sent = await push_until(alice, stuck_is_gone)
                    left = await alice.seen_or_expect(lambda m: isinstance(m, protocol.Left))
        # Alice got every line, in order, while the stuck member was being dropped.
        lines = [m.text.split(" ", 1)[0] for m in alice.seen if isinstance(m, protocol.Posted)]
        assert lines == [str(n) for n in range(sent)]
        # Whichever came first: the write deadline aborting the connection, or the session
        # catching up to the gap the room's policy left (the aborted connection takes no time).
        assert isinstance(left, protocol.Left)
        assert left.name == "stuck"
        assert re.fullmatch(
            r"connection lost \(1006(: .+)?\)|too slow: missed \d+ messages", left.reason
        )
        stats = room.statistics()
        assert stats.dropped >= 1  # the room's policy cut the stuck member's queue
        assert stats.disconnected == 1
        assert system.dead_letters.statistics().by_reason[actors.DeadLetterReason.DROPPED] >= 1


async def test_a_slow_client_is_disconnected_by_the_rooms_policy_and_told_why() -> None:
    async with actors.open_system("slow", mailbox_size=8) as system:
        async with chat_server(system, room_buffer=8, options=NO_KEEPALIVE) as (server, events):
            slow_stream, slow_ws = await raw_client(server.server.port)
            async with slow_stream:
                join = protocol.encode_client(protocol.JoinRoom("lobby", "slow"))
                await slow_stream.send_all(slow_ws.send(wsproto.events.TextMessage(join)))
                async with chat_client(system, server.url) as alice:
                    await alice.join("lobby", "alice")
                    room: actors.Topic[protocol.RoomEvent] = system.topic("room:lobby")
                    # The slow member reads nothing until the room has cut it off ...
                    await push_until(alice, lambda: room.statistics().disconnected > 0)
                    # ... then catches up: what was queued, the reason, and a 1013 close.
                    texts, code = await read_until_closed(slow_stream, slow_ws)
                    left = await alice.seen_or_expect(lambda m: isinstance(m, protocol.Left))
    assert code == transport.CloseCode.TRY_AGAIN_LATER
    last = protocol.decode_server(texts[-1])
    assert isinstance(last, protocol.Problem)
    assert re.fullmatch(r"you fell behind in 'lobby' and missed \d+", last.text)
    assert isinstance(left, protocol.Left)
    assert left.name == "slow"
    assert re.fullmatch(r"too slow: missed \d+ messages", left.reason)
    assert protocol.Left("lobby", "slow", left.reason) in events


async def read_until_closed(
    stream: trio.SocketStream, ws: wsproto.WSConnection
) -> tuple[list[str], int | None]:
    texts: list[str] = []
    partial = ""
    with trio.fail_after(TIMEOUT):
        while True:
            data = await stream.receive_some()
            if not data:
                return texts, None
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, wsproto.events.TextMessage):
                    partial += event.data
                    if event.message_finished:
                        texts.append(partial)
                        partial = ""
                elif isinstance(event, wsproto.events.CloseConnection):
                    return texts, event.code


# -- the bots ---------------------------------------------------------------------------------


def joined(name: str) -> Callable[[protocol.ServerMessage], bool]:
    return lambda m: isinstance(m, protocol.Joined) and m.name == name


async def test_bots_greet_and_answer_commands(system: actors.ActorSystem) -> None:
    async with chat_server(system) as (server, _):
        async with chat_client(system, server.url) as alice:
            await alice.join("lobby", "alice")
            await system.spawn(Greeter(server.url, "lobby"), name="greeter")
            await system.spawn(
                CommandBot(server.url, "lobby", rng=random.Random(3)), name="commands"
            )
            await alice.expect(joined("greeter"))
            await alice.expect(joined("commands"))
            async with chat_client(system, server.url) as bob:
                await bob.join("lobby", "bob")
                await alice.expect(said("greeter", "welcome, bob!"))
            for command in ["/roll", "/roll 20", "/time", "/who", "/dance"]:
                await alice.send(protocol.SayInRoom("lobby", command))
            await alice.expect(posted_by("commands", r"^alice rolled [1-6] \(d6\)$"))
            await alice.expect(posted_by("commands", r"^alice rolled \d+ \(d20\)$"))
            await alice.expect(posted_by("commands", r"^alice: it is \d\d:\d\d:\d\d UTC$"))
            await alice.expect(posted_by("commands", r"^alice: I don't know /dance"))
            # /who takes a round trip to the server, so its answer comes last.
            await alice.expect(said("commands", "alice: in lobby: alice, greeter, commands"))


async def test_bots_come_back_after_the_server_restarts(system: actors.ActorSystem) -> None:
    async with chat_server(system) as (server, _):
        port = server.server.port
        async with chat_client(system, server.url) as alice:
            await alice.join("lobby", "alice")
            greeter = await system.spawn(Greeter(server.url, "lobby"), name="greeter")
            await alice.expect(joined("greeter"))
    # The server has shut down (1001 to everyone); the greeter is backing off and redialing.
    async with chat_server(system, port=port) as (again, events):
        async with chat_client(system, again.url) as alice:
            await alice.join("lobby", "alice")
            if protocol.Joined("lobby", "greeter") not in events:
                await alice.expect(joined("greeter"))
            async with chat_client(system, again.url) as bob:
                await bob.join("lobby", "bob")
                await alice.expect(said("greeter", "welcome, bob!"))
    await greeter.stop()


# -- the ticker feed and the feed bot ---------------------------------------------------------


def tls_pair(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def test_ticker_feed_cli_serves_ticks_over_verified_tls(
    system: actors.ActorSystem, ca: trustme.CA, tmp_path: Path
) -> None:
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "feed.pem"))
    feed = str(tmp_path / "feed.pem")
    args = ["--port", "0", "--certfile", feed, "--keyfile", feed, "--interval", "0.05"]
    async with running("examples.ticker_feed", *args) as (url, _):
        assert url.startswith("wss://127.0.0.1:")
        client = ssl.create_default_context()
        ca.configure_trust(client)
        async with transport.open_websocket_client(system, url, ssl_context=client) as ws:
            await ws.send(json.dumps({"op": "subscribe", "symbols": ["ACME"]}))
            with trio.fail_after(TIMEOUT):
                assert json.loads(await ws.receive()) == {"op": "subscribed", "symbols": ["ACME"]}
                tick = json.loads(await ws.receive())
        assert tick["op"] == "tick"
        assert tick["symbol"] == "ACME"


async def test_ticker_feed_drops_a_client_that_sends_no_heartbeat(
    system: actors.ActorSystem,
) -> None:
    config = FeedConfig(Market(random.Random(1)), interval=0.05, heartbeat_timeout=0.3)
    async with trio.open_nursery() as nursery:
        feed: FeedServer = await nursery.start(serve_feed, system, "127.0.0.1", 0, config)
        ws = await transport.connect_websocket(system, feed.url, options=NO_KEEPALIVE)
        await ws.send(json.dumps({"op": "subscribe", "symbols": ["BOLT"]}))
        with trio.fail_after(TIMEOUT):
            closed = await ws.ref.wait_stopped()
        assert closed == transport.ConnectionClosed(1008, "no heartbeat", by_peer=True)
        nursery.cancel_scope.cancel()


async def test_feed_bot_reconnects_after_drops_and_posts_digests(
    system: actors.ActorSystem, ca: trustme.CA
) -> None:
    server_tls, client_tls = tls_pair(ca)
    config = FeedConfig(Market(random.Random(2)), interval=0.05, drop_after=0.4)
    async with chat_server(system) as (chat, _), trio.open_nursery() as nursery:
        feed: FeedServer = await nursery.start(
            functools.partial(serve_feed, system, "127.0.0.1", 0, config, ssl_context=server_tls)
        )
        assert feed.url.startswith("wss://")
        async with chat_client(system, chat.url) as alice:
            await alice.join("lobby", "alice")
            await system.spawn(
                FeedBot(
                    feed.url,
                    chat.url,
                    "lobby",
                    ssl_context=client_tls,
                    digest_every=0.3,
                    heartbeat_every=0.1,
                ),
                name="ticker",
            )
            digest = r"^ACME \d+\.\d\d \([+-]\d+\.\d\d%\) · BOLT .* \[\d+ ticks\]"
            await alice.expect(posted_by("ticker", digest))
            await alice.expect(
                posted_by(
                    "ticker", r"\(feed reconnected after: closed with 1012 \(feed restarting\)"
                )
            )
            await alice.expect(posted_by("ticker", digest + "$"))  # ticks flow again
        assert (await feed.server.statistics()).accepted >= 2
        nursery.cancel_scope.cancel()


async def test_feed_bot_gives_up_on_an_untrusted_certificate(
    system: actors.ActorSystem, ca: trustme.CA
) -> None:
    server_tls, _ = tls_pair(ca)
    config = FeedConfig(Market(random.Random(2)))
    async with chat_server(system) as (chat, _), trio.open_nursery() as nursery:
        feed: FeedServer = await nursery.start(
            functools.partial(serve_feed, system, "127.0.0.1", 0, config, ssl_context=server_tls)
        )
        untrusting = ssl.create_default_context()
        bot = await system.spawn(FeedBot(feed.url, chat.url, ssl_context=untrusting), name="ticker")
        with trio.fail_after(TIMEOUT):
            reason = await bot.wait_stopped()
        assert isinstance(reason, transport.GaveUp)
        assert isinstance(reason.error, transport.TLSError)
        nursery.cancel_scope.cancel()


# -- the thread bridge ------------------------------------------------------------------------


async def test_thread_bridge_posts_what_plain_threads_report(system: actors.ActorSystem) -> None:
    async with chat_server(system) as (server, _):
        async with chat_client(system, server.url) as alice:
            await alice.join("lobby", "alice")
            relay = await system.spawn(Relay(server.url, "lobby"), name="relay")
            threads = Threads.start(relay, 0.05, random.Random(4))
            try:
                await alice.expect(posted_by("sensors", r"^thermometer: \d+\.\d C$"))
                await alice.expect(said("sensors", "door front open"))
                await alice.expect(said("sensors", "door front closed"))
            finally:
                with trio.CancelScope(shield=True), trio.fail_after(TIMEOUT):
                    await threads.stop()
            await relay.stop()
