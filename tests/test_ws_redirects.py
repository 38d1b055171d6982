"""Redirects and URL credentials: a real server that redirects, and what is never shown."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator

import pytest
import trio
import trustme

import actors
import transport
from tests.ws_support import NO_KEEPALIVE, serve_echo
from transport._client._proxy import bypasses_proxy, environment_proxy
from transport._client._url import RedirectRefused, follow_redirect, parse_url
from transport._redact import redact_url

SECRET = "s3cr%40t"  # percent-encoded "s3cr@t"
CREDENTIALS = f"alice:{SECRET}@"

#: Where each path of the redirecting server sends the client: (status, Location).
REDIRECTS: dict[str, tuple[int, str]] = {
    "/301": (301, "/302"),
    "/302": (302, "https-later"),  # replaced by the test with an absolute http:// URL
    "/303": (303, "/307"),
    "/307": (307, "/308?token=hidden"),
    "/308": (308, "/final"),
    "/loop": (302, "/loop"),
    "/no-location": (302, ""),
    "/ftp": (301, "ftp://example.com/"),
}


def redirecting_policy(
    seen: list[tuple[str, str | None]], port: list[int]
) -> transport.HandshakePolicy:
    async def on_handshake(request: transport.HandshakeRequest) -> transport.Reject | None:
        await trio.lowlevel.checkpoint()
        path = request.path.partition("?")[0]
        seen.append((request.path, request.header("authorization")))
        if path not in REDIRECTS:
            return None
        status, location = REDIRECTS[path]
        if path == "/302":
            location = f"http://127.0.0.1:{port[0]}/303"
        headers = (("Location", location),) if location else ()
        return transport.Reject(status, headers=headers)

    return transport.HandshakePolicy(on_handshake=on_handshake)


@pytest.fixture
async def redirecting(
    system: actors.ActorSystem,
) -> AsyncIterator[tuple[int, list[tuple[str, str | None]]]]:
    seen: list[tuple[str, str | None]] = []
    port: list[int] = []
    async with trio.open_nursery() as nursery:
        server = await serve_echo(nursery, system, policy=redirecting_policy(seen, port))
        port.append(server.port)
        yield server.port, seen
        nursery.cancel_scope.cancel()


async def test_follows_every_redirect_status_and_reports_the_final_url(
    system: actors.ActorSystem, redirecting: tuple[int, list[tuple[str, str | None]]]
) -> None:
    port, seen = redirecting
    async with transport.open_websocket_client(
        system, f"ws://{CREDENTIALS}127.0.0.1:{port}/301", options=NO_KEEPALIVE
    ) as ws:
        await ws.send("arrived")
        assert await ws.receive() == "arrived"
        info = ws.info
    assert info.url == f"ws://127.0.0.1:{port}/final"
    assert info.path == "/final"
    assert [path for path, _ in seen] == [
        "/301",
        "/302",
        "/303",
        "/307",
        "/308?token=hidden",
        "/final",
    ]
    # The credentials went along on every hop (same origin), as HTTP Basic, percent-decoded.
    assert {auth for _, auth in seen} == {"Basic YWxpY2U6czNjckB0"}  # alice:s3cr@t


async def test_too_many_redirects_and_bad_locations_are_clear_errors(
    system: actors.ActorSystem,
    redirecting: tuple[int, list[tuple[str, str | None]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    port, seen = redirecting
    caplog.set_level(logging.DEBUG, logger="transport")
    base = f"ws://{CREDENTIALS}127.0.0.1:{port}"
    with pytest.raises(transport.HandshakeRejected, match="redirected more than 10 times") as loop:
        await transport.connect_websocket(system, f"{base}/loop", options=NO_KEEPALIVE)
    assert len(seen) == 11
    assert loop.value.status == 302  # the redirect not followed
    few = transport.ConnectionOptions(ping_interval=None, max_redirects=2)
    with pytest.raises(transport.HandshakeRejected, match=r"more than 2 times \(max_redirects\)"):
        await transport.connect_websocket(system, f"{base}/301", options=few)
    none = transport.ConnectionOptions(ping_interval=None, max_redirects=0)
    with pytest.raises(transport.HandshakeRejected, match="more than 0 times"):
        await transport.connect_websocket(system, f"{base}/308", options=none)
    # The reconnecting client does not retry what only the server's configuration can fix.
    client = transport.ReconnectingClient(url=f"{base}/loop", options=NO_KEEPALIVE)
    reason = await (await system.spawn(client)).wait_stopped()
    assert isinstance(reason, transport.GaveUp)
    assert isinstance(reason.error, transport.HandshakeRejected)
    assert client.statistics().attempts == 1
    # A redirect without a Location is the rejection it is.
    with pytest.raises(transport.HandshakeRejected) as bare:
        await transport.connect_websocket(system, f"{base}/no-location", options=NO_KEEPALIVE)
    assert bare.value.status == 302
    with pytest.raises(transport.HandshakeRejected, match="not a ws, wss, http or https url"):
        await transport.connect_websocket(system, f"{base}/ftp", options=NO_KEEPALIVE)
    # No error and no log line shows the credentials.
    shown = str(loop.value) + repr(loop.value) + repr(reason) + caplog.text
    assert "redirected (HTTP 302)" in caplog.text
    assert "alice" not in shown
    assert "s3cr" not in shown


async def test_a_wss_connection_never_follows_a_redirect_to_ws(
    system: actors.ActorSystem, ca: trustme.CA, client_ssl: ssl.SSLContext
) -> None:
    async def downgrade(request: transport.HandshakeRequest) -> transport.Reject:
        await trio.lowlevel.checkpoint()
        return transport.Reject(301, headers=(("Location", "ws://127.0.0.1:1/clear"),))

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    policy = transport.HandshakePolicy(on_handshake=downgrade)
    async with trio.open_nursery() as nursery:
        server = await serve_echo(nursery, system, ssl_context=context, policy=policy)
        with pytest.raises(transport.HandshakeRejected, match="never follows a redirect to ws"):
            await transport.connect_websocket(
                system,
                f"wss://127.0.0.1:{server.port}/",
                ssl_context=client_ssl,
                options=NO_KEEPALIVE,
            )
        nursery.cancel_scope.cancel()


async def test_url_credentials_never_show_in_reprs_errors_or_connection_info(
    system: actors.ActorSystem, redirecting: tuple[int, list[tuple[str, str | None]]]
) -> None:
    port, seen = redirecting
    url = f"ws://{CREDENTIALS}127.0.0.1:{port}/final?token=t0ken"
    async with transport.open_websocket_client(system, url, options=NO_KEEPALIVE) as ws:
        info = ws.info
        shown = [repr(info), repr(ws)]
    # The attribute keeps the query (like ``path``), never the credentials.
    assert info.url == f"ws://127.0.0.1:{port}/final?token=t0ken"
    assert seen[-1] == ("/final?token=t0ken", "Basic YWxpY2U6czNjckB0")
    client = transport.ReconnectingClient(url=url, options=NO_KEEPALIVE)
    options = transport.ConnectionOptions(proxy=f"http://bob:{SECRET}@127.0.0.1:3128")
    shown += [repr(client), repr(options), repr(parse_url(url))]
    with pytest.raises(ValueError, match="start with ws:// or wss://") as bad_scheme:
        parse_url(f"http://{CREDENTIALS}example.com/?token=t0ken")
    with pytest.raises(ValueError, match="has an invalid port") as bad_port:
        transport.ReconnectingClient(url=f"ws://{CREDENTIALS}example.com:99999/")
    with pytest.raises(ValueError, match="unsupported scheme") as bad_proxy:
        transport.ConnectionOptions(proxy=f"ftp://bob:{SECRET}@proxy/")
    shown += [str(bad_scheme.value), str(bad_port.value), str(bad_proxy.value)]
    for text in shown:
        assert "alice" not in text
        assert "bob" not in text
        assert "s3cr" not in text
        assert "t0ken" not in text
    assert f"127.0.0.1:{port}/final?token=..." in repr(info)
    assert "http://...@127.0.0.1:3128" in repr(options)


async def test_an_authorization_header_of_the_caller_wins_over_url_credentials(
    system: actors.ActorSystem, redirecting: tuple[int, list[tuple[str, str | None]]]
) -> None:
    port, seen = redirecting
    async with transport.open_websocket_client(
        system,
        f"ws://{CREDENTIALS}127.0.0.1:{port}/final",
        headers=[("Authorization", "Bearer mine")],
        options=NO_KEEPALIVE,
    ):
        pass
    assert seen == [("/final", "Bearer mine")]


# -- the pure parts ----------------------------------------------------------------------


def test_follow_redirect_resolves_locations_and_keeps_credentials_on_the_same_origin() -> None:
    current = parse_url("wss://u:p@example.com/a/b?x=1")
    assert follow_redirect(current, "c").url == "wss://example.com/a/c"
    assert follow_redirect(current, "/d").credentials == ("u", "p")
    assert follow_redirect(current, "https://example.com:8443/e").url == (
        "wss://example.com:8443/e"
    )
    assert follow_redirect(current, "https://example.com:8443/e").credentials is None
    assert follow_redirect(current, "wss://other.example/f").credentials is None
    assert follow_redirect(current, "wss://v:w@other.example/").credentials == ("v", "w")
    plain = parse_url("ws://example.com/")
    assert follow_redirect(plain, "https://example.com/").secure  # an upgrade is fine
    assert follow_redirect(plain, "//other.example:81/g").url == "ws://other.example:81/g"
    for downgrade in ("ws://example.com/", "http://example.com/"):
        with pytest.raises(RedirectRefused, match="never follows a redirect to ws"):
            follow_redirect(current, downgrade)


def test_redact_url_hides_user_information_and_query_values() -> None:
    assert redact_url("wss://u:p@h:1/x?t=1&a") == "wss://...@h:1/x?t=...&..."
    assert redact_url("ws://h?x=1") == "ws://h?x=..."
    assert redact_url("socks5://a%40b:c@h:1") == "socks5://...@h:1"
    assert redact_url("http://h/p") == "http://h/p"


def test_no_proxy_matches_hosts_domains_ports_and_networks() -> None:
    assert bypasses_proxy("*", "anything", 1)
    assert bypasses_proxy("example.com", "example.com", 443)
    assert bypasses_proxy("example.com", "api.example.com", 443)
    assert bypasses_proxy(".example.com", "api.Example.COM.", 443)
    assert not bypasses_proxy("example.com", "badexample.com", 443)
    assert bypasses_proxy("example.com:8443", "example.com", 8443)
    assert not bypasses_proxy("example.com:8443", "example.com", 443)
    assert bypasses_proxy("10.0.0.0/8, 192.168.1.1", "10.2.3.4", 80)
    assert bypasses_proxy("10.0.0.0/8 192.168.1.1", "192.168.1.1", 80)
    assert not bypasses_proxy("10.0.0.0/8", "11.0.0.1", 80)
    assert bypasses_proxy("[::1]:8080", "::1", 8080)
    assert bypasses_proxy("::1", "::1", 8080)
    assert not bypasses_proxy(",, ", "example.com", 80)


def test_environment_proxy_by_scheme_with_all_proxy_and_lower_case_first() -> None:
    secure, plain = parse_url("wss://h/"), parse_url("ws://h/")
    environ = {"HTTPS_PROXY": "http://s:1", "http_proxy": "http://p:2", "HTTP_PROXY": "http://P:3"}
    assert environment_proxy(environ, secure) == "http://s:1"
    assert environment_proxy(environ, plain) == "http://p:2"
    assert environment_proxy({"ALL_PROXY": "socks5://a:4"}, secure) == "socks5://a:4"
    assert environment_proxy({"all_proxy": "socks5://a:4", "NO_PROXY": "h"}, plain) is None
    assert environment_proxy({"https_proxy": "http://s:1"}, plain) is None
    assert environment_proxy({"http_proxy": "  "}, plain) is None
