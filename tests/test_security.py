"""Security defaults: TLS verification, Origin and auth before any actor, limits, no leaked secrets."""

from __future__ import annotations

import functools
import logging
import pathlib
import ssl

import pytest
import trio
import trustme

import actors
import transport
from tests.hostile import HostileClient, request, settled, start_server

OPTIONS = transport.ConnectionOptions(ping_interval=None)
SECRET = "s3cr3t-t0ken-value"


def connection_actors(system: actors.ActorSystem) -> list[str]:
    """Paths of every connection actor alive now."""
    return [a.path for a in system.snapshot().walk() if "/connection-" in a.path]


async def start_tls_server(
    nursery: trio.Nursery, system: actors.ActorSystem, context: ssl.SSLContext
) -> transport.WebSocketServer:
    async def echo(connection: transport.WebSocketConnection) -> None:
        async for message in connection:
            await connection.send(message)

    server: transport.WebSocketServer = await nursery.start(
        functools.partial(
            transport.serve_websocket,
            system,
            echo,
            "127.0.0.1",
            0,
            ssl_context=context,
            options=OPTIONS,
        )
    )
    return server


async def test_tls_client_verifies_certificate_and_host_name_by_default(
    system: actors.ActorSystem,
) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)  # not valid for 127.0.0.1
    async with trio.open_nursery() as nursery:
        server = await start_tls_server(nursery, system, server_context)
        with trio.fail_after(5):
            # No context given: the system trust store, which does not know our CA.
            with pytest.raises(transport.TLSError) as info:
                await transport.connect_websocket(
                    system, f"wss://localhost:{server.port}/", options=OPTIONS
                )
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
            trusting = ssl.create_default_context()
            ca.configure_trust(trusting)
            # Trusted CA, wrong host name: still refused.
            with pytest.raises(transport.TLSError) as info:
                await transport.connect_websocket(
                    system, f"wss://127.0.0.1:{server.port}/", ssl_context=trusting, options=OPTIONS
                )
            assert "match" in str(info.value.__cause__).lower()
            # Trusted CA and the right name: accepted.
            url = f"wss://localhost:{server.port}/"
            async with transport.open_websocket_client(
                system, url, ssl_context=trusting, options=OPTIONS
            ) as ws:
                await ws.send("verified")
                assert await ws.receive() == "verified"
        nursery.cancel_scope.cancel()


async def test_tls_client_without_a_context_checks_the_host_name_with_the_default_trust(
    system: actors.ActorSystem, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No ssl_context anywhere: the default context trusts the test CA through the
    # environment (as a system trust store would), so only the host name can refuse.
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)  # not valid for 127.0.0.1
    async with trio.open_nursery() as nursery:
        server = await start_tls_server(nursery, system, server_context)
        with trio.fail_after(5):
            # The right name: the default context trusts the CA and accepts.
            url = f"wss://localhost:{server.port}/"
            async with transport.open_websocket_client(system, url, options=OPTIONS) as ws:
                await ws.send("trusted")
                assert await ws.receive() == "trusted"
            # A wrong name for the same trusted certificate: refused, by the host name check.
            with pytest.raises(transport.TLSError) as info:
                await transport.connect_websocket(
                    system, f"wss://127.0.0.1:{server.port}/", options=OPTIONS
                )
            cause = info.value.__cause__
            assert isinstance(cause, ssl.SSLCertVerificationError)
            assert "match" in str(cause).lower()
            # The reconnecting client's default context checks it too: it gives up at once.
            reconnecting = await transport.connect_reconnecting_client(
                system,
                transport.ReconnectingClient(
                    url=f"wss://127.0.0.1:{server.port}/", options=OPTIONS
                ),
            )
            reason = await reconnecting.ref.wait_stopped()
            assert isinstance(reason, transport.GaveUp)
            assert reason.attempts == 1
            assert "tls failure, not retried" in reason.reason
            assert "not valid for '127.0.0.1'" in reason.reason
        nursery.cancel_scope.cancel()


async def test_tls_client_never_downgrades_a_given_context(system: actors.ActorSystem) -> None:
    context = ssl.create_default_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    with pytest.raises(ValueError, match="wss://"):
        await transport.connect_websocket(
            system, "ws://127.0.0.1:1/", ssl_context=context, options=OPTIONS
        )


async def test_unauthenticated_handshakes_are_refused_before_any_actor_exists(
    system: actors.ActorSystem,
) -> None:
    seen_actors: list[list[str]] = []

    async def authenticate(request: transport.HandshakeRequest) -> transport.Reject | None:
        seen_actors.append(connection_actors(system))
        await trio.lowlevel.checkpoint()
        if request.header("authorization") != f"Bearer {SECRET}":
            return transport.Reject(401, b"unauthorized")
        return None

    policy = transport.HandshakePolicy(
        allowed_origins={"https://app.example"}, on_handshake=authenticate
    )
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, policy=policy)
        url = f"ws://127.0.0.1:{server.port}/"
        with trio.fail_after(5):
            with pytest.raises(transport.HandshakeRejected) as info:
                await transport.connect_websocket(system, url, options=OPTIONS)
            assert info.value.status == 401
            with pytest.raises(transport.HandshakeRejected) as info:
                await transport.connect_websocket(
                    system,
                    url,
                    headers=[
                        ("Authorization", f"Bearer {SECRET}"),
                        ("Origin", "https://evil.example"),
                    ],
                    options=OPTIONS,
                )
            assert info.value.status == 403
            # A raw client too: the refusal is an HTTP answer, nothing more.
            raw = await HostileClient.connect(server.port)
            status, _ = await raw.http_status_then_eof(request())
            assert status == 401
            await raw.aclose()
            await settled(server)
        assert connection_actors(system) == []
        stats = await server.statistics()
        assert (stats.accepted, stats.handshake_failures) == (0, 3)
        assert seen_actors == [[], []]  # the Origin check refused the second before the hook
        async with transport.open_websocket_client(
            system, url, headers=[("Authorization", f"Bearer {SECRET}")], options=OPTIONS
        ) as ws:
            await ws.send("in")
            assert await ws.receive() == "in"
        nursery.cancel_scope.cancel()


async def test_a_slow_auth_hook_is_bounded_by_the_handshake_deadline(
    system: actors.ActorSystem,
) -> None:
    async def stuck(request: transport.HandshakeRequest) -> None:
        await trio.sleep_forever()

    policy = transport.HandshakePolicy(on_handshake=stuck)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, policy=policy)
        with trio.fail_after(3):
            with pytest.raises(transport.HandshakeRejected) as info:
                await transport.connect_websocket(
                    system, f"ws://127.0.0.1:{server.port}/", options=OPTIONS
                )
        assert info.value.status == 503
        assert connection_actors(system) == []
        nursery.cancel_scope.cancel()


async def test_message_size_limit_closes_with_1009(system: actors.ActorSystem) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        url = f"ws://127.0.0.1:{server.port}/"
        with trio.fail_after(5):
            async with transport.open_websocket_client(system, url, options=OPTIONS) as ws:
                await ws.send("é" * (64 * 1024 // 2 + 1))  # within 64 Ki characters, over in bytes
                closed = await ws.ref.wait_stopped()
        assert isinstance(closed, transport.ConnectionClosed)
        assert (closed.code, closed.by_peer) == (1009, True)
        nursery.cancel_scope.cancel()


async def test_secrets_never_reach_logs_or_reprs(
    system: actors.ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    """A token in a header, a cookie, a subprotocol-free query string; none may leak."""
    caplog.set_level(logging.DEBUG)
    requests: list[transport.HandshakeRequest] = []
    infos: list[object] = []

    async def hook(request: transport.HandshakeRequest) -> transport.Reject | None:
        requests.append(request)
        await trio.lowlevel.checkpoint()
        if "boom" in request.path:
            raise RuntimeError("hook bug")
        if request.header("x-api-key") != SECRET:
            return transport.Reject(403, b"forbidden")
        return None

    async def handler(connection: transport.WebSocketConnection) -> None:
        infos.extend([connection, connection.info, connection.statistics()])
        async for message in connection:
            await connection.send(message)

    policy = transport.HandshakePolicy(on_handshake=hook)
    headers = [
        ("Authorization", f"Bearer {SECRET}"),
        ("Cookie", f"session={SECRET}"),
        ("X-Api-Key", SECRET),
    ]
    seen: list[object] = []
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, policy=policy, handler=handler)
        base = f"ws://127.0.0.1:{server.port}"
        seen.append(server)
        with trio.fail_after(10):
            async with transport.open_websocket_client(
                system, f"{base}/feed?token={SECRET}&v=1", headers=headers, options=OPTIONS
            ) as ws:
                await ws.send("hello")
                assert await ws.receive() == "hello"
                seen.extend([ws, ws.info, ws.statistics(), await server.statistics()])
            seen.append(ws.closed)
            for path in (f"/denied?token={SECRET}", f"/boom?token={SECRET}"):
                with pytest.raises(transport.HandshakeRejected) as info:
                    await transport.connect_websocket(
                        system, f"{base}{path}", headers=headers[:2], options=OPTIONS
                    )
                seen.extend([info.value, str(info.value)])
            with pytest.raises(transport.HandshakeTimeoutError) as timeout:
                await transport.connect_websocket(
                    system,
                    f"ws://127.0.0.1:{await silent_port(nursery)}/x?token={SECRET}",
                    headers=headers,
                    options=transport.ConnectionOptions(ping_interval=None, handshake_timeout=0.2),
                )
            seen.extend([timeout.value, str(timeout.value)])
        seen.extend(requests + infos)
        nursery.cancel_scope.cancel()
    assert len(requests) == 3
    assert requests[0].header("authorization") == f"Bearer {SECRET}"  # the values are there
    shown = [repr(obj) for obj in seen] + [caplog.text]
    assert any("hook bug" in text for text in shown)  # the logs were captured
    leaks = [text for text in shown if SECRET in text]
    assert leaks == []
    assert "token=..." in repr(requests[0])
    assert "authorization: ..." in repr(requests[0]).lower()


async def silent_port(nursery: trio.Nursery) -> int:
    """A TCP port that accepts connections and never answers."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    held: list[trio.SocketStream] = []

    async def hold() -> None:
        try:
            async with listeners[0]:
                while True:
                    held.append(await listeners[0].accept())
        finally:
            for stream in held:
                stream.socket.close()

    nursery.start_soon(hold)
    port: int = listeners[0].socket.getsockname()[1]
    return port
