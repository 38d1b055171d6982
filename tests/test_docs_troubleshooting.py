"""The troubleshooting page quotes the messages users see: each one is raised here for real,
and its text must be on the page, as the page's examples show it.

A message that changes in the code fails this test until the page quotes the new text.
Parts that vary from machine to machine (a remaining deadline, OpenSSL's source line) are
left out of the comparison, never the words.
"""

from __future__ import annotations

import functools
import re
import ssl
from pathlib import Path
from typing import cast

import attrs
import pytest
import trio
import trio.testing
import trustme

import actors
import transport
from tests.redis_support import (
    COREDIS_GARBAGE_WARNINGS,
    collect_coredis_garbage as collect_coredis_garbage,
)

PAGE = (Path(__file__).resolve().parent.parent / "docs" / "troubleshooting.rst").read_text(
    encoding="utf-8"
)
TIMEOUT = 20  # generous: each wait takes far less; the bound turns a hang into a failure


def assert_quoted(text: str) -> None:
    assert text in PAGE, f"docs/troubleshooting.rst does not quote: {text}"


@attrs.frozen
class Add:
    seconds: float


@attrs.frozen
class Get(actors.Request[int]):
    pass


@attrs.define(eq=False)
class Counter(actors.Actor[Add | Get]):
    total: int = 0

    @actors.handler
    async def add(self, message: Add) -> None:
        await trio.sleep(message.seconds)

    @actors.handler
    async def get(self, message: Get) -> int:
        if self.ctx.path == "/selfish":
            return await self.ctx.ref.ask(Get())
        return self.total


async def test_the_messages_of_tells_and_asks_are_quoted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("app") as system:
        counter = await system.spawn(Counter(), name="counter", mailbox_size=1)
        await counter.tell(Add(100))  # its handler is busy for 100 s
        with pytest.raises(actors.AskTimeoutError) as timed_out:
            await counter.ask(Get())
        assert_quoted(str(timed_out.value))
        busy = await system.spawn(Counter(), name="busy", mailbox_size=1)
        await busy.tell(Add(100))  # taken at once: its handler is busy for 100 s
        await trio.testing.wait_all_tasks_blocked()
        busy.tell_nowait(Add(0))  # the mailbox (1) is full now
        with pytest.raises(trio.WouldBlock) as full:
            busy.tell_nowait(Add(0))
        assert str(full.value) == ""
        assert_quoted("trio.WouldBlock")
        with pytest.raises(actors.UnhandledMessageError) as unhandled:
            await counter.tell("hello")  # type: ignore[arg-type]
        assert_quoted(str(unhandled.value))
        with pytest.raises(actors.NameTakenError) as taken:
            await system.spawn(Counter(), name="counter")
        assert_quoted(str(taken.value))

        def from_a_thread() -> None:
            with pytest.raises(actors.WrongThreadError) as wrong:
                counter.tell_nowait(Add(0))
            assert_quoted(str(wrong.value))

        await trio.to_thread.run_sync(from_a_thread)
        with pytest.raises(actors.WrongThreadError) as deadlock:
            counter.tell_from_thread(Add(0))
        assert_quoted(str(deadlock.value))
        selfish = await system.spawn(Counter(), name="selfish")
        with pytest.raises(actors.SelfAskError) as asked_itself:
            await selfish.ask(Get())
        assert_quoted(str(asked_itself.value))
        await counter.stop()
        with pytest.raises(actors.ActorStoppedError) as stopped:
            await counter.tell(Add(0))
        assert_quoted(str(stopped.value))
    with pytest.raises(actors.SystemClosedError) as closed:
        await system.spawn(Counter())
    assert_quoted(str(closed.value))


@attrs.define(eq=False)
class Fragile(actors.Actor[Add]):
    @actors.handler
    def add(self, message: Add) -> None:
        raise ValueError("bad input")


async def test_the_message_of_a_supervisor_that_gives_up_is_quoted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    spec = actors.ChildSpec("worker", Fragile)

    async def run_until_the_supervisor_gives_up() -> None:
        async with actors.open_system("app") as system:
            shop = await system.spawn(
                actors.Supervisor([spec], max_restarts=3, within=60.0), name="shop"
            )
            children = await shop.ask(actors.WhichChildren())
            # The ref stays valid across restarts: the mailbox belongs to the supervised cell.
            worker = cast(actors.ActorRef[Add], children["worker"])
            for _ in range(4):
                await worker.tell(Add(0))
                await trio.testing.wait_all_tasks_blocked()
            await trio.sleep_forever()

    with pytest.raises(actors.RestartIntensityError) as gave_up:
        await run_until_the_supervisor_gives_up()
    assert_quoted(str(gave_up.value))


async def test_the_message_of_a_lagging_subscriber_is_quoted(system: actors.ActorSystem) -> None:
    room: actors.Topic[str] = system.topic(
        "room:lobby", policy=actors.OverflowPolicy.DISCONNECT, buffer=64
    )
    with room.subscribe() as messages:
        for n in range(65):
            await room.publish(str(n))
        for _ in range(64):
            await messages.receive()
        with pytest.raises(actors.SubscriberLaggedError) as lagged:
            await messages.receive()
    assert_quoted(str(lagged.value))


async def silent_server(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Accepts TCP connections and never answers."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

    async def never_answer(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(never_answer, listeners)


async def echo(connection: transport.WebSocketConnection) -> None:
    async for message in connection:
        await connection.send(message)


def without_ssl_line(text: str) -> str:
    return re.sub(r" \(_ssl\.c:\d+\)$", "", text)


async def test_the_messages_of_connecting_are_quoted(system: actors.ActorSystem) -> None:
    with pytest.raises(ValueError, match="websocket urls") as bad_url:
        await transport.connect_websocket(system, "http://chat.example.com/")
    assert_quoted(str(bad_url.value))
    context = ssl.create_default_context()
    with pytest.raises(ValueError, match="ssl_context") as plain:
        await transport.connect_websocket(system, "ws://chat.example.com/", ssl_context=context)
    assert_quoted(str(plain.value))
    with pytest.raises(transport.HandshakeError) as refused:
        await transport.connect_websocket(system, "ws://127.0.0.1:1/")
    assert_quoted(str(refused.value).replace("127.0.0.1:1", "127.0.0.1:8765"))
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    policy = transport.HandshakePolicy(allowed_origins={"https://chat.example.com"})
    async with trio.open_nursery() as nursery:
        silent = await nursery.start(silent_server)
        options = transport.ConnectionOptions(handshake_timeout=0.5)
        with pytest.raises(transport.HandshakeTimeoutError) as timed_out:
            await transport.connect_websocket(system, f"ws://127.0.0.1:{silent}/", options=options)
        message = str(timed_out.value)
        assert re.fullmatch(r"timed out after [\d.]+s opening a websocket to .*", message)
        assert_quoted(" opening a websocket to ")
        assert_quoted(message.split("/", 1)[1])  # "; raise handshake_timeout if ..."
        serve = functools.partial(transport.serve_websocket, policy=policy)
        server = await nursery.start(serve, system, echo, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{server.port}/"
        evil = [("Origin", "https://evil.example")]
        with pytest.raises(transport.HandshakeRejected) as rejected:
            await transport.connect_websocket(system, url, headers=evil)
        assert rejected.value.status == 403
        assert_quoted(str(rejected.value))
        with pytest.raises(OSError, match="Address already in use") as in_use:
            await nursery.start(transport.serve_websocket, system, echo, "127.0.0.1", server.port)
        assert_quoted(str(in_use.value))
        ws = await transport.connect_websocket(system, url)

        async def first_reader() -> None:
            with pytest.raises(trio.EndOfChannel):  # once the connection below is closed
                await ws.receive()

        nursery.start_soon(first_reader)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError) as busy:
            await ws.receive()
        assert_quoted(str(busy.value))

        def from_a_thread() -> None:
            with pytest.raises(actors.WrongThreadError) as wrong:
                ws.send_nowait("hello")
            assert_quoted(str(wrong.value))

        await trio.to_thread.run_sync(from_a_thread)
        await ws.close()
        with pytest.raises(actors.ActorStoppedError) as stopped:
            await ws.send("hello")
        assert_quoted(str(stopped.value).replace(ws.ref.path, "/connectionactor-3"))
        tls = functools.partial(transport.serve_websocket, ssl_context=server_tls)
        secure = await nursery.start(tls, system, echo, "127.0.0.1", 0)
        with pytest.raises(transport.TLSError) as untrusted:
            await transport.connect_websocket(system, f"wss://127.0.0.1:{secure.port}/")
        assert_quoted(without_ssl_line(str(untrusted.value)))
        client_tls = ssl.create_default_context()
        ca.configure_trust(client_tls)
        with pytest.raises(transport.TLSError) as mismatch:
            await transport.connect_websocket(
                system, f"wss://localhost:{secure.port}/", ssl_context=client_tls
            )
        assert_quoted(without_ssl_line(str(mismatch.value)))
        with pytest.raises(transport.HandshakeError) as plain_to_tls:
            await transport.connect_websocket(system, f"ws://127.0.0.1:{secure.port}/")
        assert_quoted(str(plain_to_tls.value).replace(str(secure.port), "8443"))
        nursery.cancel_scope.cancel()


async def test_the_close_reasons_are_quoted(system: actors.ActorSystem) -> None:
    """What a peer is told when it sends too much, and how a stuck write ends."""
    limits = transport.InboundLimits(max_messages_per_second=20, burst=1)
    async with trio.open_nursery() as nursery:
        serve = functools.partial(
            transport.serve_websocket,
            limits=limits,
            options=transport.ConnectionOptions(max_message_size=1024),
        )
        server = await nursery.start(serve, system, echo, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{server.port}/"
        reasons = []
        for messages in (["x" * 1025], ["a", "b", "c"]):
            ws = await transport.connect_websocket(system, url)
            with trio.fail_after(TIMEOUT):
                for message in messages:
                    await ws.send(message)
                closed = await ws.ref.wait_stopped()
            assert isinstance(closed, transport.ConnectionClosed)
            reasons.append((closed.code, closed.reason))
        nursery.cancel_scope.cancel()
    assert reasons == [
        (1009, "message exceeds the limit of 1024 bytes"),
        (1008, "more than 20 messages per second"),
    ]
    for _, reason in reasons:
        assert_quoted(reason.replace("1024", "1048576"))
    for reason in (
        "inbound queue overflow",
        "frame header announces more than the limit of 1048576 bytes",
        "message split into more than 1024 frames",
    ):
        assert_quoted(reason)  # asserted by test_ws_connection.py and test_hostile_frames.py


@pytest.mark.usefixtures("collect_coredis_garbage")
@COREDIS_GARBAGE_WARNINGS
async def test_the_message_of_an_unreachable_redis_is_quoted(system: actors.ActorSystem) -> None:
    with pytest.raises(transport.backplane.BackplaneUnavailableError) as unavailable:
        async with transport.backplane.open_redis_backplane(
            system, "redis://127.0.0.1:1/0", connect_timeout=2
        ):
            pass
    assert_quoted(str(unavailable.value).replace("127.0.0.1:1", "127.0.0.1:6379"))
