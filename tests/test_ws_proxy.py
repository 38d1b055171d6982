"""Clients through real proxies: tinyproxy (HTTP CONNECT) and danted (SOCKS5) on loopback."""

from __future__ import annotations

import functools
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
import trustme

import actors
import transport
from tests.proxy_support import (
    SOCKS_PASSWORD,
    SOCKS_USER,
    ProxyServer,
    danted,
    ensure_socks_user,
    tinyproxy,
)
from tests.redis_support import free_port
from tests.ws_support import serve_echo

OPTIONS = transport.ConnectionOptions(ping_interval=None, handshake_timeout=10)
FAST_RETRIES = actors.Backoff(minimum=0.01, maximum=0.02, jitter=0.0)


def via(proxy: str) -> transport.ConnectionOptions:
    return transport.ConnectionOptions(ping_interval=None, handshake_timeout=10, proxy=proxy)


def running(server: ProxyServer) -> Iterator[ProxyServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http_proxy(tmp_path: Path) -> Iterator[ProxyServer]:
    yield from running(tinyproxy(tmp_path))


@pytest.fixture
def http_proxy_with_auth(tmp_path: Path) -> Iterator[ProxyServer]:
    yield from running(tinyproxy(tmp_path, basic_auth=("alice", "s3cret")))


@pytest.fixture
def socks_proxy(tmp_path: Path) -> Iterator[ProxyServer]:
    yield from running(danted(tmp_path))


async def start_echo(
    nursery: trio.Nursery, system: actors.ActorSystem, ssl_context: ssl.SSLContext | None = None
) -> int:
    server = await serve_echo(nursery, system, ssl_context=ssl_context, options=OPTIONS)
    return server.port


@pytest.fixture
async def echo_port(system: actors.ActorSystem) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        yield await start_echo(nursery, system)
        nursery.cancel_scope.cancel()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


async def round_trip(
    system: actors.ActorSystem,
    url: str,
    options: transport.ConnectionOptions,
    ssl_context: ssl.SSLContext | None = None,
) -> transport.ConnectionInfo:
    async with transport.open_websocket_client(
        system, url, options=options, ssl_context=ssl_context
    ) as ws:
        await ws.send("through the proxy")
        assert await ws.receive() == "through the proxy"
        return ws.info


def tunnels_logged(proxy: ProxyServer, port: int) -> int:
    """How many tunnels to 127.0.0.1:``port`` the proxy's log shows."""
    return proxy.output().count(f"127.0.0.1:{port}") + proxy.output().count(f"127.0.0.1.{port}")


async def tunnels_logged_at_least(proxy: ProxyServer, port: int, count: int) -> int:
    """The proxy's count of tunnels to ``port``, once it reaches ``count``: the proxy writes its
    log line from its own process, which may come a moment after the tunnel carried traffic
    (waited for in a thread, bounded; the count it reached otherwise)."""

    def reached(_: str) -> bool:
        return tunnels_logged(proxy, port) >= count

    await trio.to_thread.run_sync(proxy.wait_for, reached, 5.0)
    return tunnels_logged(proxy, port)


# -- HTTP CONNECT (tinyproxy) ------------------------------------------------------------


async def test_ws_through_an_http_proxy(
    system: actors.ActorSystem, http_proxy: ProxyServer, echo_port: int
) -> None:
    url = f"ws://127.0.0.1:{echo_port}/feed"
    info = await round_trip(system, url, via(f"http://127.0.0.1:{http_proxy.port}"))
    assert info.url == url
    assert await tunnels_logged_at_least(http_proxy, echo_port, 1) >= 1


async def test_wss_through_an_http_proxy_checks_the_servers_certificate_and_name(
    system: actors.ActorSystem, http_proxy: ProxyServer, ca: trustme.CA, client_ssl: ssl.SSLContext
) -> None:
    options = via(f"http://127.0.0.1:{http_proxy.port}")
    async with trio.open_nursery() as nursery:
        port = await start_echo(nursery, system, server_context(ca, "127.0.0.1"))
        await round_trip(system, f"wss://127.0.0.1:{port}/", options, client_ssl)
        # The same server under a name its certificate does not have: refused, through the
        # tunnel, by the client's check of the server's name (not the proxy's).
        with pytest.raises(transport.TLSError) as info:
            await transport.connect_websocket(
                system, f"wss://localhost:{port}/", options=options, ssl_context=client_ssl
            )
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        assert "localhost" in str(info.value.__cause__)
        # And a client that does not trust the CA refuses it too.
        with pytest.raises(transport.TLSError):
            await transport.connect_websocket(system, f"wss://127.0.0.1:{port}/", options=options)
        nursery.cancel_scope.cancel()


async def test_an_http_proxy_with_basic_auth_takes_the_credentials_of_the_proxy_url(
    system: actors.ActorSystem, http_proxy_with_auth: ProxyServer, echo_port: int
) -> None:
    proxy = f"127.0.0.1:{http_proxy_with_auth.port}"
    url = f"ws://127.0.0.1:{echo_port}/"
    await round_trip(system, url, via(f"http://alice:s3cret@{proxy}"))

    with pytest.raises(transport.ProxyError) as missing:
        await transport.connect_websocket(system, url, options=via(f"http://{proxy}"))
    assert missing.value.status == 407
    assert not missing.value.transient
    assert "requires credentials" in str(missing.value)

    with pytest.raises(transport.ProxyError) as wrong:
        await transport.connect_websocket(system, url, options=via(f"http://alice:wrong@{proxy}"))
    assert wrong.value.status in (401, 407)  # tinyproxy answers wrong credentials with 401
    assert "refused the credentials" in str(wrong.value)
    assert "wrong" not in str(wrong.value)
    assert "alice" not in str(wrong.value)


async def test_an_http_proxy_that_refuses_the_tunnel_is_a_clear_error_never_retried(
    system: actors.ActorSystem, tmp_path: Path, echo_port: int
) -> None:
    for proxy in running(tinyproxy(tmp_path, connect_ports=[443])):
        options = via(f"http://127.0.0.1:{proxy.port}")
        url = f"ws://127.0.0.1:{echo_port}/"
        with pytest.raises(transport.ProxyError) as info:
            await transport.connect_websocket(system, url, options=options)
        assert info.value.status == 403
        assert not info.value.transient
        assert "refused to open a tunnel" in str(info.value)

        _, attempts = await attempts_until_given_up(system, url, options, max_attempts=5)
        assert attempts == 1


async def attempts_until_given_up(
    system: actors.ActorSystem, url: str, options: transport.ConnectionOptions, max_attempts: int
) -> tuple[transport.ProxyError, int]:
    """Run a reconnecting client until it gives up: its proxy error and its attempts."""
    client = transport.ReconnectingClient(
        url=url, options=options, backoff=FAST_RETRIES, max_attempts=max_attempts
    )
    reason = await (await system.spawn(client)).wait_stopped()
    assert isinstance(reason, transport.GaveUp)
    assert isinstance(reason.error, transport.ProxyError)
    return reason.error, client.statistics().attempts


async def closing_proxy(
    stream: trio.SocketStream, requests: list[bytes]
) -> None:  # answers nothing: reads the request, then hangs up
    data = await stream.receive_some()
    requests.append(bytes(data))
    await stream.aclose()


async def test_a_proxy_that_closes_mid_handshake_is_a_transient_error_and_retried(
    system: actors.ActorSystem,
) -> None:
    requests: list[bytes] = []
    async with trio.open_nursery() as nursery:
        handler = functools.partial(closing_proxy, requests=requests)
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        options = via(f"http://u%40x:p%3Aw@127.0.0.1:{port}")
        url = "ws://example.invalid:8765/"
        with pytest.raises(transport.ProxyError) as info:
            await transport.connect_websocket(system, url, options=options)
        assert info.value.transient
        assert info.value.status is None
        assert "closed the connection during the CONNECT handshake" in str(info.value)
        assert requests[0].startswith(b"CONNECT example.invalid:8765 HTTP/1.1\r\n")
        assert b"Proxy-Authorization: Basic dUB4OnA6dw==\r\n" in requests[0]  # u@x:p:w

        _, attempts = await attempts_until_given_up(system, url, options, max_attempts=3)
        assert attempts == 3
        # The same from a SOCKS5 proxy that hangs up after the client's greeting.
        socks = via(f"socks5://127.0.0.1:{port}")
        with pytest.raises(transport.ProxyError) as socks_info:
            await transport.connect_websocket(system, url, options=socks)
        assert socks_info.value.transient
        assert "closed the connection during the socks handshake" in str(socks_info.value)
        assert requests[-1].startswith(b"\x05")  # SOCKS version 5
        nursery.cancel_scope.cancel()


async def test_an_unreachable_proxy_names_the_proxy(system: actors.ActorSystem) -> None:
    options = via(f"http://user:hunter2@127.0.0.1:{free_port()}")
    with pytest.raises(transport.ProxyError) as info:
        await transport.connect_websocket(system, "ws://127.0.0.1:1/", options=options)
    assert info.value.transient
    assert "could not connect to the proxy http://127.0.0.1:" in str(info.value)
    assert "hunter2" not in str(info.value)


# -- SOCKS5 (danted) ---------------------------------------------------------------------


async def test_ws_and_wss_through_a_socks5_proxy(
    system: actors.ActorSystem, socks_proxy: ProxyServer, ca: trustme.CA, client_ssl: ssl.SSLContext
) -> None:
    async with trio.open_nursery() as nursery:
        port = await start_echo(nursery, system)
        for scheme in ("socks5", "socks5h"):
            options = via(f"{scheme}://127.0.0.1:{socks_proxy.port}")
            await round_trip(system, f"ws://127.0.0.1:{port}/", options)
        tls_port = await start_echo(nursery, system, server_context(ca, "127.0.0.1"))
        options = via(f"socks5://127.0.0.1:{socks_proxy.port}")
        info = await round_trip(system, f"wss://127.0.0.1:{tls_port}/x", options, client_ssl)
        assert info.url == f"wss://127.0.0.1:{tls_port}/x"
        with pytest.raises(transport.TLSError) as wrong_name:
            await transport.connect_websocket(
                system, f"wss://localhost:{tls_port}/", options=options, ssl_context=client_ssl
            )
        assert isinstance(wrong_name.value.__cause__, ssl.SSLCertVerificationError)
        nursery.cancel_scope.cancel()


async def test_a_socks5_proxy_with_user_and_password(
    system: actors.ActorSystem, tmp_path: Path, echo_port: int
) -> None:
    ensure_socks_user()
    password = urllib.parse.quote(SOCKS_PASSWORD, safe="")
    url = f"ws://127.0.0.1:{echo_port}/"
    for proxy in running(danted(tmp_path, username_auth=True)):
        where = f"127.0.0.1:{proxy.port}"
        await round_trip(system, url, via(f"socks5://{SOCKS_USER}:{password}@{where}"))
        with pytest.raises(transport.ProxyError) as wrong:
            await transport.connect_websocket(
                system, url, options=via(f"socks5://{SOCKS_USER}:nope@{where}")
            )
        assert not wrong.value.transient
        assert "authentication" in str(wrong.value)
        assert "nope" not in str(wrong.value)
        with pytest.raises(transport.ProxyError) as missing:
            await transport.connect_websocket(system, url, options=via(f"socks5://{where}"))
        assert not missing.value.transient


async def test_a_socks5_proxy_that_refuses_the_destination(
    system: actors.ActorSystem, tmp_path: Path, echo_port: int
) -> None:
    for proxy in running(danted(tmp_path, blocked_port=echo_port)):
        with pytest.raises(transport.ProxyError) as info:
            await transport.connect_websocket(
                system,
                f"ws://127.0.0.1:{echo_port}/",
                options=via(f"socks5://127.0.0.1:{proxy.port}"),
            )
        assert info.value.status == 2  # connection not allowed by ruleset
        assert not info.value.transient
        assert "did not open a tunnel to 127.0.0.1:" in str(info.value)


# -- the environment ---------------------------------------------------------------------


async def test_the_environment_names_the_proxy_unless_no_proxy_or_false(
    system: actors.ActorSystem,
    http_proxy: ProxyServer,
    echo_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"ws://127.0.0.1:{echo_port}/"
    nowhere = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{http_proxy.port}")
    await round_trip(system, url, OPTIONS)
    assert await tunnels_logged_at_least(http_proxy, echo_port, 1) >= 1

    monkeypatch.setenv("HTTP_PROXY", nowhere)
    with pytest.raises(transport.ProxyError, match="could not connect to the proxy"):
        await transport.connect_websocket(system, url, options=OPTIONS)
    # proxy=False: direct, whatever the environment says.
    await round_trip(system, url, transport.ConnectionOptions(ping_interval=None, proxy=False))
    # NO_PROXY by host, and by host and port.
    for no_proxy in ("127.0.0.1", f"localhost, 127.0.0.1:{echo_port}"):
        monkeypatch.setenv("no_proxy", no_proxy)
        await round_trip(system, url, OPTIONS)
    monkeypatch.setenv("no_proxy", "127.0.0.1:1")
    with pytest.raises(transport.ProxyError):
        await transport.connect_websocket(system, url, options=OPTIONS)

    # ALL_PROXY for ws when HTTP_PROXY is absent; HTTPS_PROXY is only for wss.
    monkeypatch.delenv("no_proxy")
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.setenv("HTTPS_PROXY", nowhere)
    await round_trip(system, url, OPTIONS)
    monkeypatch.setenv("ALL_PROXY", nowhere)
    with pytest.raises(transport.ProxyError):
        await transport.connect_websocket(system, url, options=OPTIONS)


async def test_the_pool_and_the_reconnecting_client_go_through_the_proxy(
    system: actors.ActorSystem, http_proxy_with_auth: ProxyServer, echo_port: int
) -> None:
    options = via(f"http://alice:s3cret@127.0.0.1:{http_proxy_with_auth.port}")
    url = f"ws://127.0.0.1:{echo_port}/"
    template = transport.ReconnectingClient(url=url, options=options)
    async with transport.open_reconnecting_client(system, template) as handle:
        await handle.send("reconnecting")
        assert await handle.receive() == "reconnecting"
    before = await tunnels_logged_at_least(http_proxy_with_auth, echo_port, 1)
    async with transport.open_connection_pool(system, template, size=2) as pool:
        await pool.wait_connected()
        await pool.send("pooled")
        assert await pool.receive() == "pooled"
    assert await tunnels_logged_at_least(http_proxy_with_auth, echo_port, before + 2) >= before + 2
    # Without the proxy's credentials, none of them gets through: 407 is not retried.
    refused = via(f"http://127.0.0.1:{http_proxy_with_auth.port}")
    error, attempts = await attempts_until_given_up(system, url, refused, max_attempts=5)
    assert (error.status, attempts) == (407, 1)
