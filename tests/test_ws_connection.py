"""The connection actor over in-memory streams: delivery, closing, overflow, keepalive."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

import actors
import transport
from tests.ws_support import NO_KEEPALIVE, connection_pair, wait_closed
from transport import ConnectionOptions, Overflow


async def test_messages_flow_in_order_both_ways(system: actors.ActorSystem) -> None:
    client, server = await connection_pair(system)
    for i in range(20):
        await client.send(f"m{i}")
    await client.send(b"\x01\x02")
    assert [await server.receive() for _ in range(20)] == [f"m{i}" for i in range(20)]
    assert await server.receive() == b"\x01\x02"
    await server.send("pong")
    assert await client.receive() == "pong"
    assert client.info.is_client
    assert not server.info.is_client
    assert server.info.path == "/ws"
    await client.close()


async def test_close_codes_are_plain_ints_on_both_sides(system: actors.ActorSystem) -> None:
    client, server = await connection_pair(system)
    with trio.fail_after(5):
        reason = await client.close(1000, "bye")
    assert isinstance(reason, transport.ConnectionClosed)
    peer = await wait_closed(server)
    # None of the library's own types (its close-code enum) leaves the adapter.
    assert (type(reason.code), type(peer.code)) == (int, int)
    assert repr(peer) == repr(transport.ConnectionClosed(1000, "bye", by_peer=True))


async def test_close_code_reaches_the_peer_and_both_actors_stop(
    system: actors.ActorSystem,
) -> None:
    client, server = await connection_pair(system)
    await client.send("last words")
    with trio.fail_after(5):
        reason = await client.close(4000, "done")
    assert reason == transport.ConnectionClosed(4000, "done", by_peer=False)
    peer = await wait_closed(server)
    assert (peer.code, peer.reason, peer.by_peer) == (4000, "done", True)
    # Messages that arrived before the close stay readable, then the channel ends.
    assert await server.receive() == "last words"
    with pytest.raises(trio.EndOfChannel):
        await server.receive()
    assert server.closed == peer


async def test_stopping_the_actor_closes_with_1001(system: actors.ActorSystem) -> None:
    client, server = await connection_pair(system)
    with trio.fail_after(5):
        await server.ref.stop()
        peer = await wait_closed(client)
    assert peer.code == transport.CloseCode.GOING_AWAY
    assert peer.by_peer


async def test_closing_the_system_closes_connections_with_1001() -> None:
    async with actors.open_system() as system:
        client, server = await connection_pair(system)
    assert client.closed is not None
    assert server.closed is not None
    assert {client.closed.code, server.closed.code} == {1001}


@pytest.mark.parametrize(
    ("policy", "kept"),
    [(Overflow.DROP_OLDEST, ["m3", "m4"]), (Overflow.DROP_NEWEST, ["m0", "m1"])],
)
async def test_drop_policies_count_and_dead_letter_every_drop(
    system: actors.ActorSystem, policy: Overflow, kept: list[str]
) -> None:
    options = ConnectionOptions(ping_interval=None, inbound_queue_size=2, overflow=policy)
    client, server = await connection_pair(system, server_options=options)
    with system.dead_letters.subscribe() as letters:
        for i in range(5):
            await client.send(f"m{i}")
        await trio.testing.wait_all_tasks_blocked()
        dropped = [letters.receive_nowait() for _ in range(3)]
    assert all(d.reason is actors.DeadLetterReason.DROPPED for d in dropped)
    assert all(isinstance(d.message, transport.Received) for d in dropped)
    assert all(d.recipient == server.ref.path for d in dropped)
    stats = server.statistics()
    assert (stats.inbound_dropped, stats.inbound_depth, stats.messages_received) == (3, 2, 5)
    assert [await server.receive() for _ in range(2)] == kept
    assert server.closed is None


@pytest.mark.parametrize(
    ("policy", "code"),
    [(Overflow.CLOSE_POLICY_VIOLATION, 1008), (Overflow.CLOSE_TRY_AGAIN_LATER, 1013)],
)
async def test_close_policies_disconnect_the_slow_party(
    system: actors.ActorSystem, policy: Overflow, code: int
) -> None:
    options = ConnectionOptions(ping_interval=None, inbound_queue_size=2, overflow=policy)
    client, server = await connection_pair(system, server_options=options)
    for i in range(3):
        await client.send(f"m{i}")
    with trio.fail_after(5):
        peer = await wait_closed(client)
        local = await wait_closed(server)
    assert (peer.code, peer.by_peer) == (code, True)
    assert (local.code, local.by_peer) == (code, False)
    assert server.statistics().inbound_dropped == 1


async def test_message_too_big_closes_with_1009(system: actors.ActorSystem) -> None:
    options = ConnectionOptions(ping_interval=None, max_message_size=10)
    client, server = await connection_pair(system, server_options=options)
    await client.send("x" * 11)
    with trio.fail_after(5):
        assert (await wait_closed(client)).code == 1009
        local = await wait_closed(server)
    assert (local.code, local.by_peer) == (1009, False)


async def test_reader_keeps_answering_pings_while_the_application_reads_nothing(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    keepalive = ConnectionOptions(ping_interval=1, pong_timeout=1)
    slow_app = ConnectionOptions(
        ping_interval=None, inbound_queue_size=1, overflow=Overflow.DROP_NEWEST
    )
    client, server = await connection_pair(
        system, client_options=keepalive, server_options=slow_app
    )
    for i in range(50):
        await client.send(f"unread {i}")
    await trio.sleep(30)
    stats = client.statistics()
    assert client.closed is None
    assert server.closed is None
    assert stats.pings_sent >= 25
    assert stats.latency is not None
    assert server.statistics().inbound_dropped == 49
    await client.close()


async def test_a_paused_reader_loses_nothing_and_its_keepalive_waits(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    """Overflow.PAUSE (the default): the reader stops reading at the queue's bound; its own
    pings wait, the pong deadline is not held against the peer whose data waits unread,
    and once the application reads, every message arrives, in order, none dropped."""
    sender = ConnectionOptions(ping_interval=None)
    slow_app = ConnectionOptions(ping_interval=1, pong_timeout=1, inbound_queue_size=2)
    assert slow_app.overflow is Overflow.PAUSE
    client, server = await connection_pair(system, client_options=sender, server_options=slow_app)
    for i in range(50):
        await client.send(f"unread {i}")
    await trio.sleep(30)
    stats = server.statistics()
    assert (client.closed, server.closed) == (None, None)
    assert stats.inbound_depth == 2
    assert stats.inbound_pauses >= 1
    assert stats.inbound_dropped == 0
    assert [await server.receive() for _ in range(50)] == [f"unread {i}" for i in range(50)]
    await trio.sleep(5)  # reading again: its pings are answered
    assert server.closed is None
    assert server.statistics().latency is not None
    await client.close()


async def silent_peer(stream: trio.abc.Stream) -> None:
    """Complete the server handshake on ``stream``, then never read from it again."""
    from transport._adapter._library import server_handshake

    async with trio.open_nursery() as handshake_nursery:
        handshake = await server_handshake(handshake_nursery, stream)
        await handshake.accept(None, (), 5)
        handshake_nursery.cancel_scope.cancel()


async def open_client_to_silent_peer(
    system: actors.ActorSystem,
    options: ConnectionOptions,
    streams: tuple[trio.abc.Stream, trio.abc.Stream],
) -> transport.WebSocketConnection:
    from transport._client._connect import client_opener
    from transport._connection._actor import spawn_connection

    client_stream, server_stream = streams

    async def connect() -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        return client_stream

    async with trio.open_nursery() as nursery:
        nursery.start_soon(silent_peer, server_stream)
        opener = client_opener(connect, host="t", resource="/", options=options)
        connection = await spawn_connection(system, opener, options)
    return connection


async def test_unanswered_ping_aborts_the_connection(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    options = ConnectionOptions(ping_interval=1, pong_timeout=2)
    client = await open_client_to_silent_peer(system, options, trio.testing.memory_stream_pair())
    start = trio.current_time()
    closed = await wait_closed(client)
    assert closed.code == transport.CloseCode.ABNORMAL_CLOSURE
    assert "no pong" in closed.reason
    assert trio.current_time() - start == pytest.approx(3, abs=0.1)
    assert client.statistics().latency is None


async def test_write_that_cannot_finish_aborts_and_is_dead_lettered(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    options = ConnectionOptions(ping_interval=None, write_timeout=2)
    client = await open_client_to_silent_peer(system, options, trio.testing.lockstep_stream_pair())
    with system.dead_letters.subscribe() as letters:
        await client.send("stuck")
        closed = await wait_closed(client)
        letter = letters.receive_nowait()
    assert closed.code == transport.CloseCode.ABNORMAL_CLOSURE
    assert "write" in closed.reason
    assert letter.message == transport.SendText("stuck")
    assert client.statistics().messages_sent == 0


async def test_idle_connection_closes_with_1001(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    options = ConnectionOptions(ping_interval=None, idle_timeout=5)
    client, server = await connection_pair(system, server_options=options)
    await trio.sleep(3)
    await client.send("still here")
    start = trio.current_time()
    closed = await wait_closed(server)
    assert (closed.code, closed.reason) == (1001, "idle timeout")
    assert trio.current_time() - start == pytest.approx(5, abs=0.1)


async def test_failing_handler_closes_that_peer_with_1011(system: actors.ActorSystem) -> None:
    async def application(connection: transport.WebSocketConnection) -> None:
        await connection.receive()
        raise ValueError("handler bug")

    client, server = await connection_pair(system, application=application)
    await client.send("trigger")
    with trio.fail_after(5):
        peer = await wait_closed(client)
        local = await wait_closed(server)
    assert peer.code == transport.CloseCode.INTERNAL_ERROR
    assert local.code == 1011
    assert local.is_failure
    assert isinstance(local.error, ValueError)


async def test_handler_returning_closes_with_1000(system: actors.ActorSystem) -> None:
    async def application(connection: transport.WebSocketConnection) -> None:
        await connection.send(await connection.receive())

    client, _server = await connection_pair(system, application=application)
    await client.send("echo me")
    assert await client.receive() == "echo me"
    with trio.fail_after(5):
        peer = await wait_closed(client)
    assert (peer.code, peer.by_peer, peer.is_failure) == (1000, True, False)


@attrs.define(eq=False)
class Collector(actors.Actor[transport.SubscriberMessage]):
    got: list[object] = attrs.Factory(list)
    done: trio.Event = attrs.Factory(trio.Event)

    @actors.handler
    def received(self, message: transport.Received) -> None:
        self.got.append(message.data)

    @actors.handler
    def closed(self, message: transport.ConnectionClosed) -> None:
        self.got.append(message)
        self.done.set()


async def test_subscriber_gets_every_message_then_the_close(system: actors.ActorSystem) -> None:
    collector = Collector()
    subscriber = await system.spawn(collector, mailbox_size=2)
    _client, server = await connection_pair(system, subscriber=subscriber)
    for i in range(30):
        await server.send(f"s{i}")
    await server.close(3001, "bye")
    with trio.fail_after(5):
        await collector.done.wait()
    assert collector.got[:-1] == [f"s{i}" for i in range(30)]
    assert collector.got[-1] == transport.ConnectionClosed(3001, "bye", by_peer=True)


async def test_send_after_close_is_reported_never_lost(system: actors.ActorSystem) -> None:
    client, _server = await connection_pair(system)
    await client.close()
    with pytest.raises(actors.ActorStoppedError):
        await client.send("too late")
    assert client.closed is not None


async def test_close_rejects_codes_that_cannot_be_sent() -> None:
    with pytest.raises(ValueError, match="1006"):
        transport.Close(1006)


async def test_statistics_by_ask(system: actors.ActorSystem) -> None:
    client, server = await connection_pair(system, client_options=NO_KEEPALIVE)
    await client.send("one")
    assert await server.receive() == "one"
    stats = await client.ref.ask(transport.GetStatistics())
    assert stats.messages_sent == 1
    assert stats.outbound_capacity == NO_KEEPALIVE.outbound_queue_size
    await client.close()
