"""The reconnecting client against real loopback servers, in virtual time where possible."""

from __future__ import annotations

import itertools
import random
import ssl
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
import trustme

import actors
import transport
from tests.reconnect_support import (
    EXACT,
    OPTIONS,
    Endpoint,
    closed_port,
    drain,
    spawn_events,
    wait_for_state,
)
from transport import ClientState, Overflow
from transport._reconnect._policy import SendBuffer, close_refusal_reason, refusal_reason


@pytest.fixture
async def endpoint(system: actors.ActorSystem) -> AsyncIterator[Endpoint]:
    async with trio.open_nursery() as nursery:
        endpoint = Endpoint(system, greeting="welcome")
        await endpoint.start(nursery)
        yield endpoint
        nursery.cancel_scope.cancel()


# -- sans-IO policy -------------------------------------------------------------------------


def test_which_failures_are_retried() -> None:
    assert refusal_reason(transport.HandshakeError("refused")) is None
    assert refusal_reason(transport.HandshakeTimeoutError("slow")) is None
    assert refusal_reason(transport.HandshakeRejected(503)) is None
    assert "tls" in (refusal_reason(transport.TLSError("bad cert")) or "")
    assert "HTTP 401" in (refusal_reason(transport.HandshakeRejected(401)) or "")
    assert "HTTP 301" in (refusal_reason(transport.HandshakeRejected(301)) or "")
    assert refusal_reason(ValueError("bug")) is not None
    for code in (1001, 1006, 1011, 1012, 1013, 1014):
        assert close_refusal_reason(transport.ConnectionClosed(code)) is None
    for code in (1000, 1002, 1008, 4000):
        assert str(code) in (close_refusal_reason(transport.ConnectionClosed(code)) or "")


@pytest.mark.parametrize(
    ("policy", "kept", "gave_way"),
    [
        (Overflow.DROP_OLDEST, [2, 3, 4], [0, 1]),
        (Overflow.DROP_NEWEST, [0, 1, 2], [3, 4]),
        (Overflow.FAIL, [0, 1, 2], [3, 4]),
    ],
)
def test_outbox_policies(policy: Overflow, kept: list[int], gave_way: list[int]) -> None:
    outbox: SendBuffer[int] = SendBuffer(3, policy)
    dropped = [d for d in (outbox.put(i) for i in range(5)) if d is not None]
    assert dropped == gave_way
    assert outbox.take_all() == kept


def test_outbox_put_back_keeps_order_and_bound() -> None:
    outbox: SendBuffer[int] = SendBuffer(2, Overflow.DROP_NEWEST)
    outbox.put(1)
    outbox.put(2)
    first = outbox.take()
    outbox.put(3)
    assert outbox.put_back(first) == [3]
    assert outbox.take_all() == [1, 2]
    with pytest.raises(ValueError, match="buffer"):
        SendBuffer(-1, Overflow.FAIL)


def test_bad_configuration_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="ws://"):
        transport.ReconnectingClient(url="http://127.0.0.1/")
    with pytest.raises(ValueError, match="max_attempts"):
        transport.ReconnectingClient(url="ws://127.0.0.1/", max_attempts=0)
    with pytest.raises(ValueError, match="plain-text"):
        transport.ReconnectingClient(
            url="ws://127.0.0.1/", ssl_context=ssl.create_default_context()
        )
    with pytest.raises(TypeError, match="str or bytes"):
        transport.Send(42)  # type: ignore[arg-type]


# -- reconnecting -------------------------------------------------------------------------


async def test_server_drop_reconnects_reruns_hook_and_flushes_the_buffer(
    system: actors.ActorSystem, endpoint: Endpoint, autojump_clock: trio.testing.MockClock
) -> None:
    hooks: list[str] = []

    async def log_in(connection: transport.WebSocketConnection) -> None:
        hooks.append(connection.ref.name)
        await connection.send("login")
        assert await connection.receive() == f"welcome {len(hooks) - 1}"

    subscriber, events = await spawn_events(system)
    client = await transport.connect_reconnecting_client(
        system,
        transport.ReconnectingClient(
            url=endpoint.url,
            options=OPTIONS,
            backoff=EXACT,
            on_connected=log_in,
            subscriber=subscriber,
        ),
    )
    first = await events.receive()
    assert isinstance(first, transport.Connected)
    assert first.connects == 1
    for i in range(5):
        await client.send(f"a{i}")
    assert await endpoint.take(6) == [(0, "login")] + [(0, f"a{i}") for i in range(5)]

    await endpoint.connections[0].close(1012, "restarting")
    dropped = await events.receive()
    assert dropped == transport.Disconnected(
        client.ref.path, transport.ConnectionClosed(1012, "restarting", by_peer=True), True
    )
    stats = client.statistics()
    assert stats.state is ClientState.BACKING_OFF
    assert stats.next_attempt_at == trio.current_time() + 1
    for i in range(5):
        await client.send(f"b{i}")  # buffered while disconnected
    assert client.statistics().buffered == 5
    before = trio.current_time()
    again = await events.receive()
    assert isinstance(again, transport.Connected)
    assert again.connects == 2
    assert trio.current_time() - before == 1
    # The hook ran first on the new connection, then the buffer was flushed in order.
    assert await endpoint.take(6) == [(1, "login")] + [(1, f"b{i}") for i in range(5)]
    assert hooks == ["connection-1", "connection-2"]
    await client.send("c0")
    assert await endpoint.take(1) == [(1, "c0")]
    stats = client.statistics()
    assert (stats.sent, stats.buffered, stats.dropped, stats.connects) == (13, 0, 0, 2)
    assert system.dead_letters.count == 0
    await client.close()


async def test_inbound_keeps_flowing_to_the_same_reader_across_reconnects(
    system: actors.ActorSystem, endpoint: Endpoint, autojump_clock: trio.testing.MockClock
) -> None:
    async with transport.open_reconnecting_client(
        system, transport.ReconnectingClient(url=endpoint.url, options=OPTIONS, backoff=EXACT)
    ) as client:
        assert await client.receive() == "welcome 0"
        await endpoint.connections[0].close(1001)
        assert await client.receive() == "welcome 1"
        await endpoint.connections[1].send("more")
        assert await client.receive() == "more"
        assert client.statistics().received == 3
    with pytest.raises(trio.EndOfChannel):
        await client.receive()
    assert client.state is ClientState.CLOSED


@pytest.mark.parametrize("side", ["client", "server"])
async def test_nothing_is_lost_while_connections_keep_dropping(
    system: actors.ActorSystem,
    endpoint: Endpoint,
    side: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Traffic in flight while connections end: every message is written or reported.

    When the client's side ends a connection it writes what it had queued, then its
    Close, so the server reads every written message: delivered + reported == sent.
    When the server closes, trio-websocket discards what arrives after its own Close
    frame (RFC 6455 allows it): those messages were written, so there the exact count
    is the client's (written + reported == sent).
    """
    total = 300
    quick = actors.Backoff(minimum=0.01, maximum=0.01, jitter=0)
    with system.dead_letters.subscribe(buffer=total) as letters:
        async with trio.open_nursery() as nursery:
            async with transport.open_reconnecting_client(
                system,
                transport.ReconnectingClient(
                    url=endpoint.url, options=OPTIONS, backoff=quick, buffer=total
                ),
            ) as client:

                async def drop_every(count: int) -> None:
                    seen = 0
                    async for number, _ in endpoint.messages:
                        seen += 1
                        if seen % count:
                            continue
                        if side == "server":
                            nursery.start_soon(endpoint.connections[number].close, 1012)
                        elif (connection := client._status.connection) is not None:
                            connection.ref.request_stop()

                nursery.start_soon(drop_every, 70)
                for i in range(total):
                    await client.send(f"m{i}")
                    if i % 50 == 0:
                        await trio.sleep(0.01)  # virtual time: the backoff passes meanwhile
            nursery.cancel_scope.cancel()
        # Messages queued in a connection that ended (a Close among them, at the end).
        reported = [r for r in drain(letters) if isinstance(r.message, transport.SendText)]
    stats = client.statistics()
    assert stats.connects >= 3
    assert reported  # some were in flight each time: the test exercises the loss path
    assert stats.sent + len(reported) == total
    if side == "client":
        assert endpoint.received_total() + len(reported) == total
    else:
        assert endpoint.received_total() <= stats.sent


async def test_server_down_at_start_backs_off_then_connects(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    port = await closed_port()
    client = await transport.connect_reconnecting_client(
        system,
        transport.ReconnectingClient(url=f"ws://127.0.0.1:{port}/", options=OPTIONS, backoff=EXACT),
    )
    start = trio.current_time()
    await client.send("waited")
    stats = await wait_for_state(client, ClientState.BACKING_OFF, failed_attempts=3)
    assert trio.current_time() - start == 1 + 2  # attempts at 0, 1, 3
    assert stats.next_attempt_at == trio.current_time() + 4
    assert isinstance(stats.last_error, transport.HandshakeError)
    assert stats.buffered == 1
    async with trio.open_nursery() as nursery:
        endpoint = Endpoint(system)
        await endpoint.start(nursery, port=port)
        await client.wait_connected()
        assert trio.current_time() - start == 1 + 2 + 4
        assert await endpoint.take(1) == [(0, "waited")]
        stats = client.statistics()
        assert (stats.attempts, stats.failed_attempts, stats.connects) == (4, 0, 1)
        await client.close()
        nursery.cancel_scope.cancel()


async def test_http_5xx_is_retried_on_schedule_and_4xx_is_not(
    system: actors.ActorSystem, endpoint: Endpoint, autojump_clock: trio.testing.MockClock
) -> None:
    endpoint.reject = [503, 503, 502]
    client = await transport.connect_reconnecting_client(
        system, transport.ReconnectingClient(url=endpoint.url, options=OPTIONS, backoff=EXACT)
    )
    await client.wait_connected()
    times = endpoint.handshakes
    assert [b - a for a, b in itertools.pairwise(times)] == [1, 2, 4]
    await client.close()

    endpoint.reject = [401]
    client = await transport.connect_reconnecting_client(
        system, transport.ReconnectingClient(url=endpoint.url, options=OPTIONS, backoff=EXACT)
    )
    reason = await client.ref.wait_stopped()
    assert isinstance(reason, transport.GaveUp)
    assert isinstance(reason.error, transport.HandshakeRejected)
    assert (reason.error.status, reason.attempts) == (401, 1)
    assert "HTTP 401" in reason.reason
    assert client.state is ClientState.GAVE_UP


async def test_attempt_cap_gives_up_and_dead_letters_the_buffer(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    port = await closed_port()
    subscriber, events = await spawn_events(system)
    client = await transport.connect_reconnecting_client(
        system,
        transport.ReconnectingClient(
            url=f"ws://127.0.0.1:{port}/",
            options=OPTIONS,
            backoff=EXACT,
            max_attempts=3,
            subscriber=subscriber,
        ),
    )
    start = trio.current_time()
    with system.dead_letters.subscribe() as letters:
        for i in range(4):
            await client.send(f"m{i}")
        reason = await client.ref.wait_stopped()
        undelivered = [letters.receive_nowait() for _ in range(4)]
    assert trio.current_time() - start == 1 + 2  # no wait after the last attempt
    assert isinstance(reason, transport.GaveUp)
    assert reason.attempts == 3
    assert "3 connection attempts failed in a row" in reason.reason
    assert isinstance(reason.error, transport.HandshakeError)
    assert [letter.message for letter in undelivered] == [
        transport.SendText(f"m{i}") for i in range(4)
    ]
    assert {letter.reason for letter in undelivered} == {actors.DeadLetterReason.UNDELIVERABLE}
    assert {letter.recipient for letter in undelivered} == {client.ref.path}
    assert await events.receive() == reason  # the subscriber's last message
    stats = client.statistics()
    assert (stats.state, stats.undelivered, stats.buffered) == (ClientState.GAVE_UP, 4, 0)
    with pytest.raises(actors.ActorStoppedError):
        await client.send("too late")
    with pytest.raises(actors.ActorStoppedError, match="gave up"):
        await client.wait_connected()


async def test_untrusted_certificate_is_not_retried(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ca = trustme.CA()
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
    async with trio.open_nursery() as nursery:
        endpoint = Endpoint(system)
        await endpoint.start(nursery, ssl_context=server_ssl)
        untrusting = ssl.create_default_context()  # the system store knows nothing of our CA
        client = await transport.connect_reconnecting_client(
            system,
            transport.ReconnectingClient(
                url=f"wss://127.0.0.1:{endpoint.port}/",
                ssl_context=untrusting,
                options=OPTIONS,
                backoff=EXACT,
            ),
        )
        start = trio.current_time()
        reason = await client.ref.wait_stopped()
        assert trio.current_time() == start
        assert isinstance(reason, transport.GaveUp)
        assert isinstance(reason.error, transport.TLSError)
        assert reason.attempts == 1
        assert reason.reason.startswith("tls failure, not retried")
        assert endpoint.connections == []
        # With trust in the CA, the same server is fine.
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        async with transport.open_reconnecting_client(
            system,
            transport.ReconnectingClient(
                url=f"wss://127.0.0.1:{endpoint.port}/", ssl_context=trusting, options=OPTIONS
            ),
        ) as client:
            await client.send("secure")
            assert await endpoint.take(1) == [(0, "secure")]
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("policy", [Overflow.DROP_OLDEST, Overflow.DROP_NEWEST, Overflow.FAIL])
async def test_full_buffer_policies_report_every_message(
    system: actors.ActorSystem, policy: Overflow, autojump_clock: trio.testing.MockClock
) -> None:
    port = await closed_port()
    client = await transport.connect_reconnecting_client(
        system,
        transport.ReconnectingClient(
            url=f"ws://127.0.0.1:{port}/",
            options=OPTIONS,
            backoff=EXACT,
            buffer=3,
            when_full=policy,
        ),
    )
    with system.dead_letters.subscribe() as letters:
        refused: dict[int, transport.BufferFullError] = {}
        for i in range(4):
            try:
                await client.send(f"m{i}")
            except transport.BufferFullError as exc:
                refused[i] = exc
        client.send_nowait("told")
        await wait_for_state(client, ClientState.BACKING_OFF, failed_attempts=2)
        reports = drain(letters)
    kept = {
        Overflow.DROP_OLDEST: ["m2", "m3", "told"],
        Overflow.DROP_NEWEST: ["m0", "m1", "m2"],
        Overflow.FAIL: ["m0", "m1", "m2"],
    }[policy]
    if policy is Overflow.FAIL:
        assert list(refused) == [3]
        assert "buffer of 3 messages is full" in str(refused[3])
        assert [r.reason for r in reports] == [actors.DeadLetterReason.REJECTED]
        assert isinstance(reports[0].error, transport.BufferFullError)
    else:
        assert refused == {}
        assert {r.reason for r in reports} == {actors.DeadLetterReason.DROPPED}
    assert client.statistics().dropped == 2
    assert len(reports) + len(refused) == 2
    async with trio.open_nursery() as nursery:
        endpoint = Endpoint(system)
        await endpoint.start(nursery, port=port)
        assert [m for _, m in await endpoint.take(3)] == kept
        await client.close()
        nursery.cancel_scope.cancel()


async def test_a_close_code_that_is_not_transient_ends_the_client(
    system: actors.ActorSystem, endpoint: Endpoint, autojump_clock: trio.testing.MockClock
) -> None:
    subscriber, events = await spawn_events(system)
    client = await transport.connect_reconnecting_client(
        system,
        transport.ReconnectingClient(
            url=endpoint.url, options=OPTIONS, backoff=EXACT, subscriber=subscriber
        ),
    )
    assert isinstance(await events.receive(), transport.Connected)
    assert await events.receive() == transport.Received("welcome 0")
    await endpoint.connections[0].close(4001, "banned")
    closed = transport.ConnectionClosed(4001, "banned", by_peer=True)
    assert await events.receive() == transport.Disconnected(client.ref.path, closed, False)
    gave_up = await events.receive()
    assert isinstance(gave_up, transport.GaveUp)
    assert "4001 'banned', which is not transient" in gave_up.reason
    assert await client.ref.wait_stopped() == gave_up
    assert len(endpoint.connections) == 1


async def test_a_failing_hook_closes_with_1011_and_gives_up(
    system: actors.ActorSystem, endpoint: Endpoint, autojump_clock: trio.testing.MockClock
) -> None:
    async def bad_login(connection: transport.WebSocketConnection) -> None:
        await connection.send("login")
        raise PermissionError("wrong password")

    client = await transport.connect_reconnecting_client(
        system,
        transport.ReconnectingClient(
            url=endpoint.url, options=OPTIONS, backoff=EXACT, on_connected=bad_login
        ),
    )
    reason = await client.ref.wait_stopped()
    assert isinstance(reason, transport.GaveUp)
    assert isinstance(reason.error, PermissionError)
    peer = await endpoint.connections[0].ref.wait_stopped()
    assert isinstance(peer, transport.ConnectionClosed)
    assert (peer.code, peer.reason) == (1011, "on_connected failed")
    assert len(endpoint.connections) == 1


async def test_stopping_the_client_closes_with_1001_and_tells_the_subscriber(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system() as system:
        async with trio.open_nursery() as nursery:
            endpoint = Endpoint(system)
            await endpoint.start(nursery)
            subscriber, events = await spawn_events(system)
            client = await transport.connect_reconnecting_client(
                system,
                transport.ReconnectingClient(
                    url=endpoint.url, options=OPTIONS, subscriber=subscriber
                ),
            )
            await client.wait_connected()
            await client.ref.stop()
            assert isinstance(await events.receive(), transport.Connected)
            last = await events.receive()
            assert isinstance(last, transport.Disconnected)
            assert (last.closed.code, last.reconnecting) == (1001, False)
            peer = await endpoint.connections[0].ref.wait_stopped()
            assert isinstance(peer, transport.ConnectionClosed)
            assert (peer.code, peer.by_peer) == (1001, True)
            assert client.state is ClientState.CLOSED
            nursery.cancel_scope.cancel()


async def test_statistics_by_ask(
    system: actors.ActorSystem, endpoint: Endpoint, autojump_clock: trio.testing.MockClock
) -> None:
    async with transport.open_reconnecting_client(
        system, transport.ReconnectingClient(url=endpoint.url, options=OPTIONS)
    ) as client:
        await client.wait_connected()
        stats = await client.ref.ask(transport.GetReconnectStatistics())
        assert stats.state is ClientState.CONNECTED
        assert stats.buffer_capacity == 100


# -- the flush path: the connection dies while the buffer is handed to it ------------------


class BreakableStream(trio.abc.Stream):
    """A client stream whose writes hang once ``stall`` is set, until the test breaks it."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.stall = False
        self.broken = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.stall:
            await self.broken.wait()
            raise trio.BrokenResourceError("the test broke this connection")
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_connection_dying_mid_flush_puts_back_reports_and_keeps_order(
    system: actors.ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reconnecting client connects through this stand-in for connect_websocket: each
    # connection is a real connection actor over a memory stream, with a one-message
    # mailbox (its outbound queue), so handing the buffer to the first one (whose writes hang)
    # blocks in the middle. Meanwhile new sends fill the buffer; then the connection dies.
    from transport._client._connect import client_opener
    from transport._connection._actor import ConnectionActor, Spawner, spawn_connection
    from transport._server._handshake import DEFAULT_POLICY, server_opener

    options = transport.ConnectionOptions(ping_interval=None, outbound_queue_size=1)
    first_attempt, second_attempt, reconnected = trio.Event(), trio.Event(), trio.Event()
    streams: list[BreakableStream] = []
    servers: list[transport.WebSocketConnection] = []
    handles: list[transport.WebSocketConnection] = []

    async def connect_websocket(
        parent: Spawner, url: str, *, name: str, **_: object
    ) -> transport.WebSocketConnection:
        await (second_attempt if streams else first_attempt).wait()
        client_side, server_side = trio.testing.memory_stream_pair()
        stream = BreakableStream(client_side)

        async def connect() -> trio.abc.Stream:
            await trio.lowlevel.checkpoint()
            return stream

        async def open_server() -> None:
            opener = server_opener(server_side, DEFAULT_POLICY, options)
            servers.append(await spawn_connection(system, opener, options))
            if len(servers) == 2:
                reconnected.set()

        actor = ConnectionActor(
            client_opener(connect, host="h", resource="/", options=options), options
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(open_server)
            await parent.spawn(actor, name=name, mailbox_size=1)
        stream.stall = not streams  # the first connection's writes hang
        streams.append(stream)
        handles.append(actor.handle())
        return handles[-1]

    monkeypatch.setattr("transport._reconnect._client.connect_websocket", connect_websocket)
    buffer = 6
    client = await transport.connect_reconnecting_client(
        system,
        transport.ReconnectingClient(
            url="ws://test.invalid/",
            options=options,
            backoff=actors.Backoff(minimum=0.001, maximum=0.001, jitter=0),
            buffer=buffer,
            when_full=Overflow.DROP_NEWEST,
        ),
    )
    sent: list[str] = []
    with system.dead_letters.subscribe() as letters:
        for i in range(buffer):
            sent.append(f"m{i}")
            await client.send(sent[-1])
        first_attempt.set()
        await trio.testing.wait_all_tasks_blocked()
        # The flush is stuck handing one message to the stalled connection; the rest of
        # the buffer went into that connection or still waits. New sends fill the buffer.
        stats = client.statistics()
        assert stats.state is ClientState.CONNECTED
        assert 0 < stats.buffered < buffer
        while client.statistics().buffered < buffer:
            sent.append(f"m{len(sent)}")
            await client.send(sent[-1])
        assert client.statistics().dropped == 0
        # The connection is stopped: the message the flush held goes back to the front of
        # a full buffer, and the newest buffered message gives way, counted and reported.
        # (A stop waits for the write under way, never cut short: here it fails.)
        handles[0].ref.request_stop()
        streams[0].broken.set()
        await handles[0].ref.wait_stopped()
        await trio.testing.wait_all_tasks_blocked()
        assert client.statistics().dropped == 1
        assert client.statistics().buffered == buffer
        second_attempt.set()
        await reconnected.wait()
        delivered = [str(await servers[1].receive()) for _ in range(buffer)]
        stats = client.statistics()
        await client.close()
        reports = drain(letters)
    assert stats.dropped == 1
    dropped = [r for r in reports if r.reason is actors.DeadLetterReason.DROPPED]
    assert [r.message for r in dropped] == [transport.SendText(sent[-1])]
    # Every message is delivered once, in order, or reported: the ones inside the first
    # connection when it died as STOPPED, the one the full buffer gave up as DROPPED.
    stopped = [r.message for r in reports if r.reason is actors.DeadLetterReason.STOPPED]
    lost = [m.text for m in stopped if isinstance(m, transport.SendText)]
    assert len(lost) == len(stopped)
    assert sorted([*lost, *delivered, sent[-1]], key=sent.index) == sent
    assert delivered == [m for m in sent if m not in lost and m != sent[-1]]
    assert servers[0].statistics().messages_received == 0


async def test_reconnect_delays_follow_the_jittered_schedule_of_a_seeded_source(
    system: actors.ActorSystem, endpoint: Endpoint, autojump_clock: trio.testing.MockClock
) -> None:
    backoff = actors.Backoff(minimum=1, maximum=30, factor=2, jitter=0.5)
    endpoint.reject = [503, 503, 502, 503]
    client = transport.ReconnectingClient(url=endpoint.url, options=OPTIONS, backoff=backoff)
    client._random = random.Random(1234)  # the client's only random source, seeded
    await system.spawn(client)
    handle = client.handle()
    await handle.wait_connected()
    expected_source = random.Random(1234)
    expected = [backoff.delay(n, expected_source.random()) for n in range(4)]
    gaps = [b - a for a, b in itertools.pairwise(endpoint.handshakes)]
    assert gaps == pytest.approx(expected)
    # Jitter is on: each delay moved off its base by up to half, and not all by nothing.
    for gap, base in zip(gaps, [1, 2, 4, 8], strict=True):
        assert base * 0.5 <= gap <= base * 1.5
    assert gaps != pytest.approx([1, 2, 4, 8])
    await handle.close()
