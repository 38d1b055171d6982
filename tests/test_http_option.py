"""Plain HTTP on a WebSocket server's port: ``HandshakePolicy.http`` answers non-upgrade GETs."""

from __future__ import annotations

import functools
import ssl

import pytest
import trio
import trustme

import actors
import transport
from tests.http_support import http_request

OPTIONS = transport.ConnectionOptions(ping_interval=None)


async def echo(connection: transport.WebSocketConnection) -> None:
    async for message in connection:
        await connection.send(message)


async def hello(request: transport.HandshakeRequest) -> transport.HttpResponse:
    await trio.lowlevel.checkpoint()
    body = f"hello from {request.path}, agent {request.header('user-agent')}\n".encode()
    return transport.HttpResponse(200, body, (("content-type", "text/plain"),))


async def serve(
    nursery: trio.Nursery,
    system: actors.ActorSystem,
    policy: transport.HandshakePolicy,
    ssl_context: ssl.SSLContext | None = None,
    options: transport.ConnectionOptions = OPTIONS,
) -> transport.WebSocketServer:
    server: transport.WebSocketServer = await nursery.start(
        functools.partial(
            transport.serve_websocket,
            system,
            echo,
            "127.0.0.1",
            0,
            policy=policy,
            options=options,
            ssl_context=ssl_context,
        )
    )
    return server


async def test_a_plain_get_goes_to_the_handler_and_websockets_share_the_port() -> None:
    async with actors.open_system() as system, trio.open_nursery() as nursery:
        server = await serve(nursery, system, transport.HandshakePolicy(http=hello))
        reply = await http_request(server.port, "/health?x=1", headers=(("User-Agent", "t"),))
        assert reply.status == 200
        assert reply.body == b"hello from /health?x=1, agent t\n"
        assert reply.headers["content-type"] == "text/plain"
        assert reply.headers["content-length"] == str(len(reply.body))
        assert reply.headers["connection"] == "close"
        url = f"ws://127.0.0.1:{server.port}/"
        async with transport.open_websocket_client(system, url) as connection:
            await connection.send("still a websocket server")
            assert await connection.receive() == "still a websocket server"
        statistics = await server.statistics()
        # A plain request costs no connection actor and is no handshake failure.
        assert (statistics.accepted, statistics.handshake_failures) == (1, 0)
        nursery.cancel_scope.cancel()


async def test_head_has_no_body_other_methods_get_405() -> None:
    async with actors.open_system() as system, trio.open_nursery() as nursery:
        server = await serve(nursery, system, transport.HandshakePolicy(http=hello))
        head = await http_request(server.port, "/", method="HEAD")
        assert head.status == 200
        assert head.body == b""
        assert int(head.headers["content-length"]) > 0
        post = await http_request(server.port, "/", method="POST")
        assert post.status == 405
        assert post.headers["allow"] == "GET, HEAD"
        nursery.cancel_scope.cancel()


async def test_without_a_handler_a_plain_get_is_still_a_bad_request() -> None:
    async with actors.open_system() as system, trio.open_nursery() as nursery:
        server = await serve(nursery, system, transport.HandshakePolicy())
        reply = await http_request(server.port, "/")
        assert reply.status == 400
        nursery.cancel_scope.cancel()


async def test_a_handler_that_raises_is_a_500_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(request: transport.HandshakeRequest) -> transport.HttpResponse:
        await trio.lowlevel.checkpoint()
        raise ValueError("boom")

    async with actors.open_system() as system, trio.open_nursery() as nursery:
        server = await serve(nursery, system, transport.HandshakePolicy(http=broken))
        assert (await http_request(server.port, "/")).status == 500
        assert "the http handler raised for /" in caplog.text
        assert (await http_request(server.port, "/")).status == 500
        nursery.cancel_scope.cancel()


async def test_a_slow_handler_is_cut_at_the_handshake_timeout_with_503(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow(request: transport.HandshakeRequest) -> transport.HttpResponse:
        await trio.sleep(60)
        return transport.HttpResponse()

    options = transport.ConnectionOptions(ping_interval=None, handshake_timeout=2)
    async with actors.open_system() as system, trio.open_nursery() as nursery:
        server = await serve(nursery, system, transport.HandshakePolicy(http=slow), options=options)
        start = trio.current_time()
        assert (await http_request(server.port, "/")).status == 503
        assert 2 <= trio.current_time() - start < 60
        nursery.cancel_scope.cancel()


async def test_plain_http_over_tls() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with actors.open_system() as system, trio.open_nursery() as nursery:
        policy = transport.HandshakePolicy(http=hello)
        server = await serve(nursery, system, policy, ssl_context=server_context)
        reply = await http_request(server.port, "/tls", ssl_context=client_context)
        assert reply.status == 200
        assert reply.body.startswith(b"hello from /tls")
        nursery.cancel_scope.cancel()
