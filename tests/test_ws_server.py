"""Servers and clients over real loopback sockets and TLS: echo, rejection, containment."""

from __future__ import annotations

import contextlib
import functools
import ssl
from collections.abc import AsyncIterator

import pytest
import trio
import trustme
import wsproto.events

import actors
import transport
from tests.ws_support import raw_client, raw_close_code, threads_and_tasks_send, wait_closed
from transport._connection._actor import Application
from transport._server._handshake import DEFAULT_POLICY

OPTIONS = transport.ConnectionOptions(ping_interval=None)


async def echo(connection: transport.WebSocketConnection) -> None:
    async for message in connection:
        await connection.send(message)


@pytest.fixture
def server_ssl(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def start_server(
    nursery: trio.Nursery,
    system: actors.ActorSystem,
    handler: Application = echo,
    *,
    ssl_context: ssl.SSLContext | None = None,
    policy: transport.HandshakePolicy = DEFAULT_POLICY,
    max_connections: int = 100,
    options: transport.ConnectionOptions = OPTIONS,
) -> transport.WebSocketServer:
    server: transport.WebSocketServer = await nursery.start(
        functools.partial(
            transport.serve_websocket,
            system,
            handler,
            "127.0.0.1",
            0,
            ssl_context=ssl_context,
            policy=policy,
            options=options,
            max_connections=max_connections,
        )
    )
    return server


@pytest.fixture
async def served(system: actors.ActorSystem) -> AsyncIterator[tuple[trio.Nursery, str]]:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        yield nursery, f"ws://127.0.0.1:{server.port}/echo"
        nursery.cancel_scope.cancel()


async def test_echo_over_ws(system: actors.ActorSystem, served: tuple[trio.Nursery, str]) -> None:
    _, url = served
    async with transport.open_websocket_client(system, url, options=OPTIONS) as ws:
        for i in range(10):
            await ws.send(f"hello {i}")
            await ws.send(bytes([i]))
        got = [await ws.receive() for _ in range(20)]
        assert ws.info.remote.startswith("127.0.0.1:")
    assert got == [x for i in range(10) for x in (f"hello {i}", bytes([i]))]
    assert ws.closed == transport.ConnectionClosed(1000, "", by_peer=False)


async def test_echo_over_wss_verifies_the_certificate(
    system: actors.ActorSystem, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, ssl_context=server_ssl)
        url = f"wss://127.0.0.1:{server.port}/"
        async with transport.open_websocket_client(
            system, url, ssl_context=client_ssl, options=OPTIONS
        ) as ws:
            await ws.send("secure")
            assert await ws.receive() == "secure"
        nursery.cancel_scope.cancel()


async def test_untrusted_certificate_is_a_tls_error_at_once(
    system: actors.ActorSystem, server_ssl: ssl.SSLContext
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, ssl_context=server_ssl)
        url = f"wss://127.0.0.1:{server.port}/"
        untrusting = ssl.create_default_context()  # the system store knows nothing of our CA
        start = trio.current_time()
        with pytest.raises(transport.TLSError) as info:
            await transport.connect_websocket(system, url, ssl_context=untrusting, options=OPTIONS)
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        assert not isinstance(info.value, transport.HandshakeTimeoutError)
        assert trio.current_time() - start < OPTIONS.handshake_timeout / 2
        # The server shrugs it off and serves the next client.
        with pytest.raises(transport.TLSError):
            await transport.connect_websocket(
                system, f"wss://localhost:{server.port}/", ssl_context=untrusting, options=OPTIONS
            )
        insecure = transport.insecure_ssl_context()
        async with transport.open_websocket_client(
            system, url, ssl_context=insecure, options=OPTIONS
        ) as ws:
            await ws.send("explicitly unverified")
            assert await ws.receive() == "explicitly unverified"
        nursery.cancel_scope.cancel()


async def test_handshake_policy_rejects_with_http_status_before_any_handler(
    system: actors.ActorSystem,
) -> None:
    handled: list[str] = []

    async def handler(connection: transport.WebSocketConnection) -> None:
        handled.append(connection.info.path)
        await echo(connection)

    async def authenticate(request: transport.HandshakeRequest) -> transport.Reject | None:
        await trio.lowlevel.checkpoint()
        if request.header("Authorization") != "Bearer good":
            return transport.Reject(401, b"who are you?")
        return None

    policy = transport.HandshakePolicy(
        subprotocols=("v2", "v1"),
        allowed_origins={"https://ok.example"},
        on_handshake=authenticate,
    )
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, handler, policy=policy)
        url = f"ws://127.0.0.1:{server.port}/room"
        good = [("Authorization", "Bearer good")]
        with pytest.raises(transport.HandshakeRejected) as info:
            await transport.connect_websocket(system, url, options=OPTIONS)
        assert (info.value.status, info.value.body) == (401, b"who are you?")
        with pytest.raises(transport.HandshakeRejected) as info:
            await transport.connect_websocket(
                system, url, headers=[*good, ("Origin", "https://evil.example")], options=OPTIONS
            )
        assert info.value.status == 403
        assert handled == []
        async with transport.open_websocket_client(
            system,
            url,
            headers=[*good, ("Origin", "https://ok.example")],
            subprotocols=["v1", "v2"],
            options=OPTIONS,
        ) as ws:
            assert ws.info.subprotocol == "v2"
            await ws.send("in")
            assert await ws.receive() == "in"
        assert handled == ["/room"]
        stats = await server.statistics()
        assert (stats.accepted, stats.handshake_failures) == (1, 2)
        nursery.cancel_scope.cancel()


async def test_connection_cap_refuses_with_503(system: actors.ActorSystem) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, max_connections=1)
        url = f"ws://127.0.0.1:{server.port}/"
        async with transport.open_websocket_client(system, url, options=OPTIONS) as first:
            with pytest.raises(transport.HandshakeRejected) as info:
                await transport.connect_websocket(system, url, options=OPTIONS)
            assert info.value.status == 503
            await first.send("first still served")
            assert await first.receive() == "first still served"
        assert (await server.statistics()).refused == 1
        nursery.cancel_scope.cancel()


async def test_one_bad_connection_never_takes_down_the_server(system: actors.ActorSystem) -> None:
    async def handler(connection: transport.WebSocketConnection) -> None:
        message = await connection.receive()
        if message == "crash":
            raise RuntimeError("handler bug")
        if message == "close-now":
            return  # local close while the peer keeps pinging: trio-websocket #184
        await connection.send(message)
        await echo(connection)

    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, handler)
        url = f"ws://127.0.0.1:{server.port}/"
        with trio.fail_after(10):
            # 1. A handler exception: 1011 to that peer only.
            async with transport.open_websocket_client(system, url, options=OPTIONS) as ws:
                await ws.send("crash")
                assert (await wait_closed(ws)).code == transport.CloseCode.INTERNAL_ERROR
            # 2. Pings arriving after the server closed locally (#184), many times over.
            for _ in range(10):
                stream, raw = await raw_client(server.port)
                data = raw.send(wsproto.events.TextMessage(data="close-now"))
                pings = b"".join(
                    raw.send(wsproto.events.Ping(payload=b"%d" % i)) for i in range(200)
                )
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(data + pings)
                assert await raw_close_code(stream, raw) in (1000, None)
                await stream.aclose()
            # 3. A reset in the middle of a frame.
            stream, raw = await raw_client(server.port)
            frame = raw.send(wsproto.events.TextMessage(data="x" * 10_000))
            await stream.send_all(frame[: len(frame) // 2])
            await stream.aclose()
            # 4. Garbage instead of a frame: a protocol error.
            stream, raw = await raw_client(server.port)
            await stream.send_all(b"\xff" * 64)
            await raw_close_code(stream, raw)
            await stream.aclose()
            # The server still serves.
            async with transport.open_websocket_client(system, url, options=OPTIONS) as ws:
                await ws.send("still alive?")
                assert await ws.receive() == "still alive?"
        assert server.ref.is_alive
        nursery.cancel_scope.cancel()


async def test_cancelling_the_server_closes_connections_with_1001(
    system: actors.ActorSystem,
) -> None:
    async with trio.open_nursery() as outer:
        with trio.CancelScope() as serving:
            async with trio.open_nursery() as nursery:
                server = await start_server(nursery, system)
                url = f"ws://127.0.0.1:{server.port}/"
                clients = [
                    await transport.connect_websocket(system, url, options=OPTIONS)
                    for _ in range(3)
                ]
                for ws in clients:
                    await ws.send("hi")
                    assert await ws.receive() == "hi"
                serving.cancel()
        with trio.fail_after(5):
            for ws in clients:
                closed = await wait_closed(ws)
                assert (closed.code, closed.by_peer) == (1001, True)
        assert not server.ref.is_alive
        with pytest.raises(transport.HandshakeError):
            await transport.connect_websocket(system, url, options=OPTIONS)
        outer.cancel_scope.cancel()


async def test_threads_and_tasks_share_one_wss_connection_without_loss_or_reordering(
    system: actors.ActorSystem, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    """The original crash: many writers on one TLS websocket. Here they only hold a ref."""
    threads, per_thread, tasks, per_task = 8, 100, 50, 20
    options = transport.ConnectionOptions(
        ping_interval=0.05,  # pings and pongs interleave with the traffic
        inbound_queue_size=4096,
        overflow=transport.Overflow.CLOSE_POLICY_VIOLATION,  # a drop fails the test
    )
    # The writer sends what its senders queued in one write per busy spell, so the
    # echo server receives the burst faster than its handler echoes it: its inbound
    # queue holds the whole burst, as the client's does (a drop there fails the test too).
    server_options = transport.ConnectionOptions(ping_interval=None, inbound_queue_size=4096)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, ssl_context=server_ssl, options=server_options)
        url = f"wss://127.0.0.1:{server.port}/"
        async with transport.open_websocket_client(
            system, url, ssl_context=client_ssl, options=options
        ) as ws:
            with trio.fail_after(60):
                received = await threads_and_tasks_send(
                    ws, threads=threads, per_thread=per_thread, tasks=tasks, per_task=per_task
                )
            assert ws.statistics().closed is None
        assert len(received) == threads + tasks
        for name, seqs in received.items():
            expected = per_thread if name.startswith("t") else per_task
            assert seqs == list(range(expected)), name
        final = ws.closed
        assert final is not None
        assert final.code == 1000
        nursery.cancel_scope.cancel()
