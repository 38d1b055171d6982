"""Hostile opening handshakes: malformed requests, slowloris, silence, connection floods.

The server reads and judges the request before any connection actor exists, so
none of these costs an actor; every one ends within the handshake deadline. Every
refusal is one whole HTTP/1.1 response, as an HTTP client (h11) reads it, and then the
close.
"""

from __future__ import annotations

import email.utils
import logging

import pytest
import trio
import trio.testing

import actors
import transport
from tests.hostile import (
    BINARY,
    CLOSE,
    HANDSHAKE_CASES,
    SERVER_OPTIONS,
    TEXT,
    HandshakeCase,
    HostileClient,
    close_payload,
    frame,
    request,
    settled,
    start_server,
    still_serves,
)
from tests.http_support import HttpReply, http_request, parse_response
from transport._adapter._answer import check_response, format_response
from transport._adapter._library import server_handshake

DEADLINE = SERVER_OPTIONS.handshake_timeout


@pytest.mark.parametrize("case", HANDSHAKE_CASES, ids=[case.name for case in HANDSHAKE_CASES])
async def test_malformed_request_gets_an_http_error_and_no_actor(
    system: actors.ActorSystem, case: HandshakeCase
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        client = await HostileClient.connect(server.port)
        with trio.fail_after(DEADLINE):  # answered at once, not at the deadline
            status, closed = await client.http_status_then_eof(case.data)
        assert (status, closed) == (case.status, True)
        await client.aclose()
        with trio.fail_after(5):
            await settled(server)
            stats = await server.statistics()
            assert (stats.accepted, stats.handshake_failures, stats.active) == (0, 1, 0)
            await still_serves(system, server.port)
        nursery.cancel_scope.cancel()


async def test_silent_connection_is_cut_at_the_handshake_deadline(
    system: actors.ActorSystem,
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        client = await HostileClient.connect(server.port)
        start = trio.current_time()
        with trio.fail_after(DEADLINE + 2):
            assert await client.closed()
        assert DEADLINE * 0.9 <= trio.current_time() - start < DEADLINE + 1
        await client.aclose()
        assert (await server.statistics()).handshake_failures == 1
        nursery.cancel_scope.cancel()


async def test_slowloris_request_is_cut_at_the_handshake_deadline(
    system: actors.ActorSystem,
) -> None:
    """One byte every 20 ms: the deadline is for the whole request, not between bytes."""
    data = request(headers=(("X-Slow", "s" * 200),))
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        client = await HostileClient.connect(server.port)
        start = trio.current_time()
        sent = 0
        with trio.fail_after(DEADLINE + 2):
            while sent < len(data) and await client.send(data[sent : sent + 1]):
                sent += 1
                await trio.sleep(0.02)  # pacing the attack, not waiting for a result
            assert await client.closed()
        assert sent < len(data)
        assert trio.current_time() - start < DEADLINE + 1
        await client.aclose()
        with trio.fail_after(5):
            await still_serves(system, server.port)
        nursery.cancel_scope.cancel()


async def test_a_flood_of_silent_connections_is_capped_and_cut(
    system: actors.ActorSystem,
) -> None:
    """Handshakes in progress count against the cap; past it clients are refused at once."""
    cap, crowd = 10, 60
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, max_connections=cap)
        clients = [await HostileClient.connect(server.port) for _ in range(crowd)]
        with trio.fail_after(DEADLINE + 3):
            async with trio.open_nursery() as waiters:
                for client in clients:
                    waiters.start_soon(client.closed)
            await settled(server)
        stats = await server.statistics()
        assert stats.refused == crowd - cap
        assert stats.handshake_failures == cap
        for client in clients:
            await client.aclose()
        with trio.fail_after(5):
            await still_serves(system, server.port)
        nursery.cancel_scope.cancel()


async def test_refused_at_the_cap_still_gets_503(system: actors.ActorSystem) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, max_connections=1)
        holder = await HostileClient.open(server.port)
        late = await HostileClient.connect(server.port)
        with trio.fail_after(DEADLINE):
            status, _ = await late.http_status_then_eof(request())
        assert status == 503
        for client in (holder, late):
            await client.aclose()
        nursery.cancel_scope.cancel()


async def test_frames_sent_with_the_request_are_not_lost(system: actors.ActorSystem) -> None:
    """A client that does not wait for the 101 (RFC 6455 says it must) and sends its first
    frames in the same packet as its request: they are read and answered in order, instead
    of being dropped with the rest of the request's read."""
    early = frame(TEXT, b"early") + frame(BINARY, b"\x00bytes")
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        client = await HostileClient.connect(server.port)
        with trio.fail_after(DEADLINE):
            assert await client.handshake(request() + early) == 101
            assert await client.next_message() == b"early"
            assert await client.next_message() == b"\x00bytes"
            assert await client.send(frame(CLOSE, close_payload(1000, b"done")))
            ending = await client.ending()
            assert (ending.code, ending.reason) == (1000, "done")
            assert await client.closed()
        await client.aclose()
        nursery.cancel_scope.cancel()


# -- every refusal: one whole HTTP/1.1 response, then the close --------------------------


async def refusal(port: int, data: bytes, *, method: str = "GET") -> HttpReply:
    """Send ``data`` to the server on ``port``; its answer, read until it closed (at once)."""
    client = await HostileClient.connect(port)
    try:
        with trio.fail_after(DEADLINE):  # answered and closed at once, not at the deadline
            received = await client.until_eof(data)
    finally:
        await client.aclose()
    return parse_response(received, method=method)


def assert_whole(reply: HttpReply, status: int, reason: str) -> None:
    """A final response with its reason phrase, a Content-Length that is its body's, a Date,
    and ``Connection: close`` (h11 has read exactly one response, then the close)."""
    assert (reply.status, reply.reason) == (status, reason)
    assert reply.headers["content-length"] == str(len(reply.body))
    assert "transfer-encoding" not in reply.headers
    assert reply.headers["connection"] == "close"
    assert email.utils.parsedate_to_datetime(reply.headers["date"]).tzinfo is not None


INVALID_UPGRADES = [
    ("no-key", request(key=None), 400, "Bad Request", b"Sec-WebSocket-Key", {}),
    (
        "version-12",
        request(version="12"),
        426,
        "Upgrade Required",
        b"unsupported Sec-WebSocket-Version (this server speaks 13)",
        {"sec-websocket-version": "13"},
    ),
    (
        "http-1.0",
        request(http_version="1.0"),
        400,
        "Bad Request",
        b"a websocket upgrade needs HTTP/1.1 or later, not HTTP/1.0",
        {},
    ),
    ("garbage", b"\x16\x03\x01\xff\xff" * 20, 400, "Bad Request", b"Bad HTTP message", {}),
]


@pytest.mark.parametrize(
    ("data", "status", "reason", "says", "headers"),
    [case[1:] for case in INVALID_UPGRADES],
    ids=[case[0] for case in INVALID_UPGRADES],
)
async def test_an_invalid_upgrade_gets_a_whole_response_saying_what_was_wrong(
    system: actors.ActorSystem,
    data: bytes,
    status: int,
    reason: str,
    says: bytes,
    headers: dict[str, str],
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        reply = await refusal(server.port, data)
        assert_whole(reply, status, reason)
        assert reply.headers["content-type"] == "text/plain; charset=utf-8"
        assert reply.body.startswith(b"invalid websocket request: ")
        assert says in reply.body
        assert reply.body.endswith(b"\n")
        assert headers.items() <= reply.headers.items()
        with trio.fail_after(5):
            await settled(server)
            stats = await server.statistics()
            assert (stats.accepted, stats.handshake_failures) == (0, 1)
        nursery.cancel_scope.cancel()


async def test_an_upgrade_in_http_1_1_is_still_accepted(system: actors.ActorSystem) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        client = await HostileClient.connect(server.port)
        with trio.fail_after(DEADLINE):
            assert await client.handshake(request(http_version="1.1")) == 101
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_a_head_upgrade_is_refused_without_a_body(system: actors.ActorSystem) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        reply = await refusal(server.port, request(method="HEAD"), method="HEAD")
        assert (reply.status, reply.reason, reply.body) == (400, "Bad Request", b"")
        assert int(reply.headers["content-length"]) > 0  # the body a GET would have had
        assert reply.headers["connection"] == "close"
        nursery.cancel_scope.cancel()


HOOK_REFUSALS = [
    transport.Reject(
        451, b"<p>not here</p>", (("x-reason", "legal"), ("Content-Type", "text/html"))
    ),
    transport.Reject(499, b"no phrase for this one"),  # the standard names no 499
    transport.Reject(301, headers=(("Location", "ws://127.0.0.1:1/elsewhere"),)),
]


@pytest.mark.parametrize("verdict", HOOK_REFUSALS, ids=lambda verdict: str(verdict.status))
async def test_a_hook_refusal_is_a_whole_response_with_its_status_headers_and_body(
    system: actors.ActorSystem, verdict: transport.Reject
) -> None:
    async def hook(request: transport.HandshakeRequest) -> transport.Reject:
        await trio.lowlevel.checkpoint()
        return verdict

    policy = transport.HandshakePolicy(on_handshake=hook)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, policy=policy)
        reply = await refusal(server.port, request())
        phrase = {451: "Unavailable For Legal Reasons", 499: "", 301: "Moved Permanently"}
        assert_whole(reply, verdict.status, phrase[verdict.status])
        assert reply.body == verdict.body
        for name, value in verdict.headers:
            assert reply.headers[name.lower()] == value
        if verdict.body and "Content-Type" not in dict(verdict.headers):
            assert reply.headers["content-type"] == "text/plain; charset=utf-8"
        elif not verdict.body:
            assert "content-type" not in reply.headers
        nursery.cancel_scope.cancel()


async def test_an_origin_refusal_is_a_whole_response(system: actors.ActorSystem) -> None:
    policy = transport.HandshakePolicy(allowed_origins={"https://ok.example"})
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, policy=policy)
        reply = await refusal(server.port, request(headers=(("Origin", "https://evil.example"),)))
        assert_whole(reply, 403, "Forbidden")
        assert reply.body == b"origin not allowed"
        nursery.cancel_scope.cancel()


async def test_a_full_server_refuses_with_a_whole_503(system: actors.ActorSystem) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, max_connections=1)
        holder = await HostileClient.open(server.port)
        reply = await refusal(server.port, request())
        assert_whole(reply, 503, "Service Unavailable")
        assert reply.body == b"too many connections, try again later"
        assert reply.headers["content-type"] == "text/plain; charset=utf-8"
        await holder.aclose()
        nursery.cancel_scope.cancel()


async def test_plain_http_answers_are_whole_responses(system: actors.ActorSystem) -> None:
    async def health(request: transport.HandshakeRequest) -> transport.HttpResponse:
        await trio.lowlevel.checkpoint()
        return transport.HttpResponse(200, b"ok\n", (("content-type", "text/plain"),))

    policy = transport.HandshakePolicy(http=health)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, policy=policy)
        with trio.fail_after(DEADLINE):  # http_request reads until the server closes
            get = await http_request(server.port, "/health")
            head = await http_request(server.port, "/health", method="HEAD")
            post = await http_request(server.port, "/health", method="POST")
        assert_whole(get, 200, "OK")
        assert (get.body, get.headers["content-type"]) == (b"ok\n", "text/plain")
        assert (head.status, head.reason, head.body) == (200, "OK", b"")
        assert head.headers["content-length"] == "3"
        assert_whole(post, 405, "Method Not Allowed")
        assert post.headers["allow"] == "GET, HEAD"
        nursery.cancel_scope.cancel()


async def test_a_late_rejection_is_the_same_whole_response() -> None:
    """``ServerHandshake.reject``: a request already handed to the library, refused."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    client = HostileClient(client_stream)
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            handshake = await server_handshake(nursery, server_stream)
            await handshake.reject(403, b"go away", (("x-why", "late"),), 5)

        nursery.start_soon(serve)
        with trio.fail_after(5):
            reply = parse_response(await client.until_eof(request()))
    assert_whole(reply, 403, "Forbidden")
    assert (reply.body, reply.headers["x-why"]) == (b"go away", "late")


async def test_a_hook_smuggling_a_header_gets_a_clear_error_and_the_client_a_whole_500(
    system: actors.ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    async def hook(request: transport.HandshakeRequest) -> transport.Reject:
        await trio.lowlevel.checkpoint()
        smuggled = 'Basic realm="x"\r\nset-cookie: session=stolen'
        return transport.Reject(401, b"no", (("www-authenticate", smuggled),))

    caplog.set_level(logging.ERROR, logger="transport")
    policy = transport.HandshakePolicy(on_handshake=hook)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, policy=policy)
        reply = await refusal(server.port, request())
        nursery.cancel_scope.cancel()
    assert_whole(reply, 500, "Internal Server Error")
    assert "set-cookie" not in reply.headers
    assert "www-authenticate" not in reply.headers
    assert "the handshake hook raised" in caplog.text
    assert "the value of header 'www-authenticate' contains CR or LF" in caplog.text
    assert "stolen" not in caplog.text  # the value itself is not logged


# -- the answer's bytes (sans-IO) -------------------------------------------------------


def without_date(data: bytes) -> bytes:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.startswith(b"date: ")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def test_format_response_writes_a_whole_response() -> None:
    data = format_response(
        426, (("Sec-WebSocket-Version", "13"),), b"use 13\n", default_type="text/plain"
    )
    assert without_date(data) == (
        b"HTTP/1.1 426 Upgrade Required\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"content-type: text/plain\r\n"
        b"content-length: 7\r\n"
        b"connection: close\r\n"
        b"\r\n"
        b"use 13\n"
    )
    assert b"\r\ndate: " in data
    assert parse_response(data).body == b"use 13\n"


def test_format_response_for_head_unknown_and_bodiless_statuses() -> None:
    head = format_response(200, (), b"12345", head=True)
    assert without_date(head) == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"
    )
    assert without_date(format_response(499, (), b"")).startswith(b"HTTP/1.1 499 \r\n")
    no_content = format_response(204, (), b"")
    assert b"content-length" not in no_content
    assert parse_response(no_content).status == 204
    # A Content-Type given by the caller is the only one.
    typed = format_response(400, (("Content-Type", "text/html"),), b"<p>", default_type="x/y")
    assert b"x/y" not in typed


@pytest.mark.parametrize(
    ("status", "headers", "body", "error"),
    [
        (200, (("x-a", "b\r\nset-cookie: x=1"),), b"", "contains CR or LF"),
        (200, (("x-a", "b\nc"),), b"", "contains CR or LF"),
        (200, (("x-a\r\nset-cookie", "x=1"),), b"", "is not an HTTP token"),
        (200, (("x a", "b"),), b"", "is not an HTTP token"),
        (200, (("", "b"),), b"", "is not an HTTP token"),
        (200, (("x-a", "b\x00"),), b"", "not a valid HTTP field value"),
        (200, (("x-a", " b"),), b"", "not a valid HTTP field value"),
        (200, (("x-a", "\u20ac"),), b"", "not a valid HTTP field value"),
        (200, (("Content-Length", "0"),), b"", "written by the server itself"),
        (200, (("transfer-encoding", "chunked"),), b"", "written by the server itself"),
        (200, (("Connection", "keep-alive"),), b"", "written by the server itself"),
        (200, (("date", "today"),), b"", "written by the server itself"),
        (101, (), b"", "200 to 599"),
        (600, (), b"", "200 to 599"),
        (True, (), b"", "200 to 599"),
        (204, (), b"body", "has no body"),
    ],
)
def test_a_response_that_cannot_be_written_whole_is_a_value_error(
    status: int, headers: tuple[tuple[str, str], ...], body: bytes, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        format_response(status, headers, body)
    with pytest.raises(ValueError, match=error):
        transport.HttpResponse(status, body, headers)
    if status != 204:
        with pytest.raises(ValueError, match=error):
            transport.Reject(status, body, headers)


def test_latin_1_values_and_tabs_are_valid() -> None:
    check_response(200, (("x-a", "caf\u00e9"), ("x-b", "a\tb c")), b"")
    assert b"x-a: caf\xe9\r\n" in format_response(200, (("x-a", "caf\u00e9"),), b"")


def test_a_body_that_is_not_bytes_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="body is bytes, not str; encode it"):
        transport.Reject(400, "text")  # type: ignore[arg-type]
