"""Acknowledged delivery: the wire format, the server's sessions, the client's window.

The exact accounting across real link failures is in ``test_delivery_accounting.py``;
here each rule is pinned down on its own, over memory streams where the server side is
concerned (a raw client speaks the protocol frame by frame) and on loopback for the
reconnecting client.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable

import attrs
import pytest
import trio
from hypothesis import given, strategies as st

import actors
import transport
from tests.reconnect_support import OPTIONS, drain
from tests.ws_support import connection_pair, wait_closed
from transport._reconnect._acked import _wire as wire

SESSION = b"s" * wire.SESSION_ID_BYTES


@attrs.frozen
class Note:
    text: str


CODEC = transport.JsonCodec(Note)


# ------------------------------------------------------------------------ the wire format


@given(st.integers(min_value=0, max_value=2**64 - 1), st.text() | st.binary())
def test_a_numbered_message_reads_back_as_written(seq: int, message: str | bytes) -> None:
    assert wire.parse_data(wire.data(seq, message)) == (seq, message)


@given(st.text() | st.binary())
def test_a_server_message_reads_back_as_written(message: str | bytes) -> None:
    assert wire.parse_server(wire.push(message)) == message


@given(st.binary() | st.text())
def test_any_input_parses_or_is_a_protocol_error(frame: str | bytes) -> None:
    for parse in (wire.parse_hello, wire.parse_data, wire.parse_server, wire.parse_ack):
        with contextlib.suppress(wire.AckProtocolError):
            parse(frame)


def test_malformed_frames_are_protocol_errors() -> None:
    with pytest.raises(wire.AckProtocolError, match="text"):
        wire.parse_data("D")
    with pytest.raises(wire.AckProtocolError, match="UTF-8"):
        wire.parse_data(b"D" + bytes(8) + b"t\xff")
    with pytest.raises(wire.AckProtocolError, match="marker"):
        wire.parse_data(b"D" + bytes(8) + b"x")
    with pytest.raises(wire.AckProtocolError, match="hello"):
        wire.parse_hello(b"H" + b"short")
    with pytest.raises(wire.AckProtocolError, match="not an acknowledgement"):
        wire.parse_ack(wire.push("hi"))


def test_the_window_forgets_what_is_acknowledged_and_keeps_the_order() -> None:
    window: wire.Window[str] = wire.Window(3)
    envelopes = [window.add(f"m{i}", f"m{i}") for i in range(3)]
    assert window.full
    assert [wire.parse_data(e)[0] for e in envelopes] == [1, 2, 3]
    assert window.confirm(0) == 0
    assert window.confirm(2) == 2
    assert window.envelopes() == envelopes[2:]
    assert window.confirmed == 2
    assert len(window) == 1
    with pytest.raises(wire.AckProtocolError, match="acknowledged 9"):
        window.confirm(9)
    assert window.take_all() == ["m2"]
    with pytest.raises(ValueError, match="window"):
        wire.Window(0)


# --------------------------------------------------------------------- the server side


@attrs.define(eq=False)
class Handler:
    """A server application that reads one session and records what it gets."""

    sessions: transport.AckedSessions
    received: list[str | bytes] = attrs.Factory(list)
    errors: list[BaseException] = attrs.Factory(list)
    done: trio.Event = attrs.Factory(trio.Event)

    async def __call__(self, connection: transport.WebSocketConnection) -> None:
        try:
            session = await self.sessions.accept(connection)
            async for message in session:
                self.received.append(message)
                if message == "ping":
                    await session.send("pong")
        except transport.AckProtocolError as exc:
            self.errors.append(exc)
        finally:
            self.done.set()


async def open_session(
    system: actors.ActorSystem, handler: Handler, session: bytes = SESSION
) -> tuple[transport.WebSocketConnection, int]:
    """A raw client connection that has said hello; and the number the server answered."""
    client, _server = await connection_pair(system, application=handler)
    await client.send(wire.hello(session))
    return client, wire.parse_ack(await client.receive())


async def acknowledged(client: transport.WebSocketConnection) -> int:
    """The highest number acknowledged once the server has nothing more to read."""
    seq = wire.parse_ack(await client.receive())
    while True:
        with trio.move_on_after(1):
            seq = wire.parse_ack(await client.receive())
            continue
        return seq


async def test_a_session_delivers_each_number_once_across_connections(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    sessions = transport.AckedSessions()
    first = Handler(sessions)
    client, resume_at = await open_session(system, first)
    assert resume_at == 0
    await client.send(wire.data(1, "a"))
    await client.send(wire.data(2, b"b"))
    assert await acknowledged(client) == 2
    await client.close()
    await first.done.wait()

    second = Handler(sessions)
    client, resume_at = await open_session(system, second)
    assert resume_at == 2  # the new connection learns where the session stands
    for seq, message in ((1, "a"), (2, b"b"), (3, "c")):  # sent again, then a new one
        await client.send(wire.data(seq, message))
    assert await acknowledged(client) == 3
    await client.close()
    await second.done.wait()

    assert first.received == ["a", b"b"]
    assert second.received == ["c"]
    assert sessions.statistics() == transport.SessionStatistics(1, 10_000, 0, 2)


async def test_the_server_talks_back_unnumbered(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    handler = Handler(transport.AckedSessions())
    client, _ = await open_session(system, handler)
    await client.send(wire.data(1, "ping"))
    replies = {wire.parse_server(await client.receive()) for _ in range(2)}
    assert replies == {"pong", 1}  # the reply and the acknowledgement of "ping"
    await client.close()


@pytest.mark.parametrize(
    ("frames", "error"),
    [
        ([b"not a hello"], "not a session hello"),
        (["text"], "text message"),
        ([wire.hello(SESSION), wire.data(1, "a"), wire.data(3, "c")], "a gap"),
        ([wire.hello(SESSION), b"A" + bytes(8)], "not a numbered data message"),
    ],
)
async def test_a_protocol_violation_closes_with_1002(
    system: actors.ActorSystem,
    autojump_clock: trio.testing.MockClock,
    frames: list[str | bytes],
    error: str,
) -> None:
    handler = Handler(transport.AckedSessions())
    client, _server = await connection_pair(system, application=handler)
    for frame in frames:
        await client.send(frame)
    closed = await wait_closed(client)
    assert closed.code == transport.CloseCode.PROTOCOL_ERROR
    await handler.done.wait()
    assert len(handler.errors) == 1
    assert error in str(handler.errors[0])
    assert handler.received == (["a"] if "gap" in error else [])


async def test_a_connection_that_never_says_hello_is_closed(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    handler = Handler(transport.AckedSessions(hello_timeout=5))
    client, _server = await connection_pair(system, application=handler)
    started = trio.current_time()
    closed = await wait_closed(client)
    assert closed.code == transport.CloseCode.PROTOCOL_ERROR
    assert trio.current_time() - started == pytest.approx(5, abs=0.1)
    assert "no session hello within 5" in str(handler.errors[0])


async def test_the_table_forgets_the_oldest_session_and_a_forgotten_one_resumes(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    sessions = transport.AckedSessions(capacity=1)
    old = Handler(sessions)
    client, _ = await open_session(system, old, b"1" * 16)
    await client.send(wire.data(1, "a"))
    assert await acknowledged(client) == 1
    await client.close()
    await old.done.wait()
    other = Handler(sessions)
    client, _ = await open_session(system, other, b"2" * 16)
    await client.close()
    await other.done.wait()
    assert sessions.statistics().forgotten == 1
    # Forgotten: the server cannot know what came before and takes up where it resumes.
    again = Handler(sessions)
    client, resume_at = await open_session(system, again, b"1" * 16)
    assert resume_at == 0
    await client.send(wire.data(7, "g"))
    await client.send(wire.data(8, "h"))
    assert await acknowledged(client) == 8
    assert again.received == ["g", "h"]


async def test_sessions_refuse_bad_settings_and_coded_connections(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(ValueError, match="capacity"):
        transport.AckedSessions(capacity=0)
    with pytest.raises(ValueError, match="hello_timeout"):
        transport.AckedSessions(hello_timeout=0)
    coded = transport.ConnectionOptions(ping_interval=None, codec=CODEC)
    _client, server = await connection_pair(system, server_options=coded)
    with pytest.raises(TypeError, match="RawCodec"):
        await transport.AckedSessions().accept(server)


# --------------------------------------------------------------------- the client side


async def serve(
    system: actors.ActorSystem,
    nursery: trio.Nursery,
    application: Callable[[transport.WebSocketConnection], Awaitable[None]],
) -> str:
    server: transport.WebSocketServer = await nursery.start(
        functools.partial(
            transport.serve_websocket, system, application, "127.0.0.1", 0, options=OPTIONS
        )
    )
    return f"ws://127.0.0.1:{server.port}/"


async def test_a_client_sends_and_receives_coded_messages_through_a_session(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    sessions = transport.AckedSessions(codec=CODEC)
    got: list[object] = []

    async def echo(connection: transport.WebSocketConnection) -> None:
        session = await sessions.accept(connection)
        while True:
            try:
                message = await session.receive_message()
            except trio.EndOfChannel:
                return
            got.append(message)
            await session.send_message(message)

    async with trio.open_nursery() as nursery:
        url = await serve(system, nursery, echo)
        options = attrs.evolve(OPTIONS, codec=CODEC)
        async with transport.open_reconnecting_client(
            system, transport.ReconnectingClient(url=url, options=options, acknowledged=True)
        ) as client:
            for i in range(3):
                await client.send_message(Note(f"n{i}"))
            echoed = [await client.receive_message() for _ in range(3)]
        stats = client.statistics()
        nursery.cancel_scope.cancel()
    assert got == echoed == [Note("n0"), Note("n1"), Note("n2")]
    assert (stats.confirmed, stats.unconfirmed, stats.undelivered) == (3, 0, 0)


async def test_what_is_still_unconfirmed_when_the_client_stops_is_reported(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    """A server that never acknowledges: the window fills, the buffer's policy applies,
    and at the close every message is accounted for."""
    sessions = transport.AckedSessions()

    async def mute(connection: transport.WebSocketConnection) -> None:
        await sessions.accept(connection)
        await trio.sleep_forever()  # never receives, so never acknowledges

    with system.dead_letters.subscribe(buffer=100) as letters:
        async with trio.open_nursery() as nursery:
            url = await serve(system, nursery, mute)
            async with transport.open_reconnecting_client(
                system,
                transport.ReconnectingClient(
                    url=url,
                    options=OPTIONS,
                    acknowledged=True,
                    window=3,
                    buffer=2,
                    when_full=transport.Overflow.DROP_NEWEST,
                ),
            ) as client:
                await client.wait_connected()
                for i in range(10):
                    await client.send(str(i))
                await trio.sleep(1)
                stats = client.statistics()
                assert (stats.unconfirmed, stats.buffered, stats.dropped) == (3, 2, 5)
            nursery.cancel_scope.cancel()
        reports = drain(letters)
    assert client.statistics().undelivered == 5
    unconfirmed = [r for r in reports if isinstance(r.error, transport.UnconfirmedError)]
    assert [r.message for r in unconfirmed] == [transport.SendText(str(i)) for i in range(3)]
    dropped = [r for r in reports if r.reason is actors.DeadLetterReason.DROPPED]
    buffered = [
        r
        for r in reports
        if r.reason is actors.DeadLetterReason.STOPPED and r.recipient == client.ref.path
    ]
    assert len(dropped) == 5
    assert [r.message for r in buffered] == [transport.SendText("3"), transport.SendText("4")]


async def test_a_client_gives_up_on_a_server_without_sessions(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    async def echo(connection: transport.WebSocketConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async with trio.open_nursery() as nursery:
        url = await serve(system, nursery, echo)
        client = await transport.connect_reconnecting_client(
            system, transport.ReconnectingClient(url=url, options=OPTIONS, acknowledged=True)
        )
        reason = await client.ref.wait_stopped()
        nursery.cancel_scope.cancel()
    assert isinstance(reason, transport.GaveUp)
    assert isinstance(reason.error, transport.AckProtocolError)
    assert "does not acknowledge" in reason.reason


def test_acknowledged_clients_refuse_a_hook_and_an_empty_window() -> None:
    async def hook(connection: transport.WebSocketConnection) -> None:
        await trio.lowlevel.checkpoint()

    with pytest.raises(ValueError, match="on_connected"):
        transport.ReconnectingClient(url="ws://h/", acknowledged=True, on_connected=hook)
    with pytest.raises(ValueError, match="window"):
        transport.ReconnectingClient(url="ws://h/", acknowledged=True, window=0)
