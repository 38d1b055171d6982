"""permessage-deflate (RFC 7692): negotiation, round trips, bounded inflation, bad answers."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import attrs
import pytest
import trio
import websockets.trio.client
import websockets.trio.server

import actors
import transport
from tests.hostile import (
    CONTINUATION,
    MAX_MESSAGE_SIZE,
    PING,
    SERVER_OPTIONS,
    TEXT,
    HostileClient,
    frame,
    request,
    start_server,
    traced_memory,
)
from tests.ws_support import NO_KEEPALIVE, connection_pair, wait_closed
from transport._adapter._deflate import (
    Agreement,
    NegotiationError,
    client_agreement,
    client_offer,
    parse_parameters,
    server_agreement,
)
from transport._compression import DEFAULT_COMPRESSION, Compression
from transport._reconnect._policy import refusal_reason

TIMEOUT = 30
DEFLATE = DEFAULT_COMPRESSION
#: What ``compression_context_takeover=False, compression_window_bits=10`` asks for.
LOW_MEMORY = Compression(
    server_no_context_takeover=True,
    client_no_context_takeover=True,
    server_max_window_bits=10,
    client_max_window_bits=10,
    memory_level=4,
)
ON = transport.ConnectionOptions(ping_interval=None, compression=True)
#: The server under attack, compression on.
COMPRESSING_SERVER = attrs.evolve(SERVER_OPTIONS, compression=True)
#: Inflated size of the bombs: 4,000 times the message limit of the connections under attack.
BOMB_SIZE = 256 * 2**20
FEED = '{"type":"quote","symbol":"ACME","bid":101.25,"ask":101.5,"venue":"XNAS"}'


def deflate_bomb(size: int = BOMB_SIZE) -> bytes:
    """A permessage-deflate payload of zeros: about ``size / 1000`` bytes inflating to ``size``."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(2**20)
    parts = [compressor.compress(block) for _ in range(size // len(block))]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)[:-4]


# -- negotiation (sans-IO) -----------------------------------------------------------------


def test_the_default_offer_lets_the_server_limit_the_client_window() -> None:
    assert client_offer(DEFLATE) == "client_max_window_bits=12; server_max_window_bits=12"
    assert client_offer(Compression(client_max_window_bits=15, server_max_window_bits=15)) == (
        "client_max_window_bits"
    )
    assert client_offer(LOW_MEMORY) == (
        "server_no_context_takeover; client_no_context_takeover; "
        "client_max_window_bits=10; server_max_window_bits=10"
    )


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        # A browser's offer: the server limits both windows to its settings.
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        ),
        # No client_max_window_bits offered: the client's window cannot be limited.
        ("permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        # What the client asks for is granted; the smaller window wins.
        (
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
        ),
        (
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=10",
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; "
            "client_max_window_bits=10",
        ),
    ],
)
def test_a_server_answers_an_offer_within_its_settings(offer: str, answer: str) -> None:
    agreement = server_agreement(DEFLATE, offer)
    assert agreement is not None
    assert agreement.header() == answer


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=8",  # zlib cannot compress with 256 bytes
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits",  # a value is required here
        "permessage-deflate; x-unknown=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover=1",
    ],
)
def test_a_server_declines_an_offer_it_cannot_honour(offer: str) -> None:
    assert server_agreement(DEFLATE, offer) is None


def test_a_server_imposes_no_context_takeover_from_its_settings() -> None:
    agreement = server_agreement(LOW_MEMORY, "permessage-deflate")
    assert agreement == Agreement(True, True, 10, 15)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("permessage-deflate; x-unknown", "unknown parameter"),
        ("permessage-deflate; server_max_window_bits=7", "not a window size"),
        ("permessage-deflate; server_max_window_bits=13", "exceeds the offered 12"),
        ("permessage-deflate; server_max_window_bits=12; client_max_window_bits=8", "below zlib"),
        ("permessage-deflate", "exceeds the offered 12"),  # the limit requested was dropped
        ("permessage-deflate; server_no_context_takeover=yes", "takes no value"),
        ("permessage-deflate; client_max_window_bits=9; client_max_window_bits=9", "repeated"),
        ("x-webkit-deflate-frame", "unexpected extension"),
    ],
)
def test_a_client_refuses_an_invalid_answer(answer: str, problem: str) -> None:
    with pytest.raises(NegotiationError, match=problem):
        client_agreement(DEFLATE, answer)


def test_a_client_refuses_an_answer_that_drops_what_it_required() -> None:
    settings = Compression(server_no_context_takeover=True)
    with pytest.raises(NegotiationError, match="drops server_no_context_takeover"):
        client_agreement(settings, "permessage-deflate; server_max_window_bits=12")
    answer = "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
    assert client_agreement(settings, answer) == Agreement(True, False, 10, 12)


def test_quoted_values_are_read() -> None:
    assert parse_parameters('permessage-deflate; client_max_window_bits="10"') == {
        "client_max_window_bits": "10"
    }


def test_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="compression_window_bits must be between 9 and 15"):
        transport.ConnectionOptions(compression_window_bits=8)
    with pytest.raises(ValueError, match="compression_memory_level must be between 1 and 9"):
        transport.ConnectionOptions(compression_memory_level=0)
    with pytest.raises(ValueError, match="server_max_window_bits must be between 9 and 15"):
        Compression(server_max_window_bits=8)
    with pytest.raises(ValueError, match="level must be between 0 and 9"):
        Compression(level=10)


def test_an_invalid_extension_answer_is_not_retried() -> None:
    error = transport.HandshakeError("invalid permessage-deflate answer", 1002)
    assert refusal_reason(transport.HandshakeError("the connection broke")) is None
    reason = refusal_reason(error)
    assert reason is not None
    assert "not retried" in reason


# -- round trips between our client and our server ----------------------------------------


LOW_MEMORY_OPTIONS = attrs.evolve(
    ON, compression_context_takeover=False, compression_window_bits=10, compression_memory_level=4
)


@pytest.mark.parametrize("options", [ON, LOW_MEMORY_OPTIONS], ids=["default", "low-memory"])
async def test_messages_round_trip_compressed(
    actor_system: actors.ActorSystem, options: transport.ConnectionOptions
) -> None:
    client, server = await connection_pair(
        actor_system, client_options=options, server_options=options
    )
    client_info, server_info = client.info, server.info
    assert client_info.compression is not None
    assert client_info.compression == server_info.compression
    messages: list[str | bytes] = [FEED] * 20
    messages += [FEED * 5000, bytes(300_000), "é" * 1000, b""]
    for message in messages:
        await client.send(message)
        assert await server.receive() == message
        await server.send(message)
        assert await client.receive() == message


@pytest.mark.parametrize("off", ["client", "server"])
async def test_compression_off_on_either_side_is_not_negotiated(
    actor_system: actors.ActorSystem, off: str
) -> None:
    client, server = await connection_pair(
        actor_system,
        client_options=NO_KEEPALIVE if off == "client" else ON,
        server_options=NO_KEEPALIVE if off == "server" else ON,
    )
    assert client.info.compression is None
    assert server.info.compression is None
    await client.send(FEED)
    assert await server.receive() == FEED


# -- bounded inflation ---------------------------------------------------------------------


async def test_a_compression_bomb_to_the_server_is_refused_with_1009_while_inflating(
    actor_system: actors.ActorSystem,
) -> None:
    """256 MiB of zeros in ~256 KB of deflate, to a server whose limit is 64 KiB: the server
    holds about the limit of inflated bytes, never the bomb."""
    bomb = frame(TEXT, deflate_bomb(), rsv=4)
    extension = (("Sec-WebSocket-Extensions", "permessage-deflate"),)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, actor_system, options=COMPRESSING_SERVER)
            client = await HostileClient.connect(server.port)
            assert await client.handshake(request(headers=extension)) == 101
            with traced_memory() as peak:
                await client.send(bomb)
                ending = await client.ending()
            await client.aclose()
            nursery.cancel_scope.cancel()
    assert ending.code == 1009
    assert "inflates past the limit of 65536 bytes" in ending.reason
    # The bomb's frame (~256 KB) and the receive buffers, not its 256 MiB.
    assert peak[0] < 4 * 2**20, peak


async def test_a_compressed_message_just_within_the_limit_gets_through(
    actor_system: actors.ActorSystem,
) -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = (compressor.compress(b"a" * MAX_MESSAGE_SIZE) + compressor.flush(zlib.Z_SYNC_FLUSH))[
        :-4
    ]
    extension = (("Sec-WebSocket-Extensions", "permessage-deflate"),)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, actor_system, options=COMPRESSING_SERVER)
            client = await HostileClient.connect(server.port)
            assert await client.handshake(request(headers=extension)) == 101
            await client.send(frame(TEXT, payload, rsv=4))
            echoed = await client.next_message()  # compressed by the server in turn
            await client.aclose()
            nursery.cancel_scope.cancel()
    assert (
        zlib.decompressobj(-15).decompress(echoed + b"\x00\x00\xff\xff") == b"a" * MAX_MESSAGE_SIZE
    )


async def test_pings_between_compressed_messages_and_fragments_leave_them_intact(
    actor_system: actors.ActorSystem,
) -> None:
    """A control frame is never compressed: before, between and inside compressed
    messages (context takeover), it does not disturb their inflation."""
    deflater = zlib.compressobj(6, zlib.DEFLATED, -12)

    def deflate(data: bytes) -> bytes:
        return deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)

    first, second = deflate(FEED.encode())[:-4], deflate(FEED.encode())[:-4]
    head, tail = deflate(b"abc" * 100), deflate(b"xyz" * 100)[:-4]
    extension = (("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),)
    inflater = zlib.decompressobj(-15)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, actor_system, options=COMPRESSING_SERVER)
            client = await HostileClient.connect(server.port)
            assert await client.handshake(request(headers=extension)) == 101
            await client.send(frame(PING, b"1") + frame(TEXT, first, rsv=4) + frame(PING, b"2"))
            await client.send(frame(TEXT, second, rsv=4))
            await client.send(frame(TEXT, head, rsv=4, fin=False) + frame(PING, b"3"))
            await client.send(frame(CONTINUATION, tail))
            echoes = [await client.next_message() for _ in range(3)]
            await client.aclose()
            nursery.cancel_scope.cancel()
    inflated = [inflater.decompress(echo + b"\x00\x00\xff\xff") for echo in echoes]
    assert inflated == [FEED.encode(), FEED.encode(), b"abc" * 100 + b"xyz" * 100]


# -- a hand-made server, for what a well-behaved server never answers ----------------------

Serve = Callable[[trio.SocketStream, bytes], Awaitable[None]]


@asynccontextmanager
async def raw_server(serve: Serve) -> AsyncIterator[int]:
    """A one-connection server on loopback: ``serve(stream, request_head)``; yields its port."""

    async def handle(stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some()
            if not chunk:
                return
            head += chunk
        await serve(stream, head)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1")
        )
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def switching_protocols(head: bytes, extensions: str | None) -> bytes:
    """A 101 response to the request ``head``, with ``Sec-WebSocket-Extensions: extensions``."""
    key = next(
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + accept,
    ]
    if extensions is not None:
        lines.append(b"Sec-WebSocket-Extensions: " + extensions.encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def client_close_code(stream: trio.SocketStream) -> int | None:
    """Read the client's frames until its (masked) Close frame: its code, or ``None`` at EOF."""
    data = b""
    while True:
        if len(data) >= 8 and data[0] & 0x0F == 0x8:
            mask, payload = data[2:6], data[6 : 6 + (data[1] & 0x7F)]
            unmasked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            return int(struct.unpack("!H", unmasked[:2])[0])
        try:
            chunk = await stream.receive_some()
        except trio.BrokenResourceError:
            return None
        if not chunk:
            return None
        data += chunk


@pytest.mark.parametrize(
    ("answer", "offered", "problem"),
    [
        ("x-webkit-deflate-frame", True, "unrecognized extension x-webkit-deflate-frame"),
        ("permessage-deflate", False, "unrecognized extension permessage-deflate"),
        ("permessage-deflate; server_max_window_bits=7", True, "not a window size"),
        ("permessage-deflate; x-unknown", True, "unknown parameter"),
        (
            "permessage-deflate; server_max_window_bits=9, permessage-deflate; server_max_window_bits=9",
            True,
            "names permessage-deflate twice",
        ),
    ],
)
async def test_an_invalid_extension_answer_fails_the_handshake_with_1002(
    actor_system: actors.ActorSystem,
    answer: str,
    offered: bool,
    problem: str,
) -> None:
    codes: list[int | None] = []
    read = trio.Event()

    async def serve(stream: trio.SocketStream, head: bytes) -> None:
        await stream.send_all(switching_protocols(head, answer))
        codes.append(await client_close_code(stream))
        read.set()

    options = transport.ConnectionOptions(ping_interval=None, compression=offered)
    with trio.fail_after(TIMEOUT):
        async with raw_server(serve) as port:
            with pytest.raises(transport.HandshakeError, match=problem) as caught:
                await transport.connect_websocket(
                    actor_system, f"ws://127.0.0.1:{port}/", options=options
                )
            await read.wait()
    assert caught.value.code == 1002
    assert codes == [1002]  # the client said why before it closed


async def test_a_compressed_frame_without_negotiation_is_a_protocol_error_for_the_client(
    actor_system: actors.ActorSystem,
) -> None:
    async def serve(stream: trio.SocketStream, head: bytes) -> None:
        await stream.send_all(switching_protocols(head, None))
        await stream.send_all(frame(TEXT, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv=4, mask=False))
        await client_close_code(stream)

    with trio.fail_after(TIMEOUT):
        async with raw_server(serve) as port:
            connection = await transport.connect_websocket(
                actor_system, f"ws://127.0.0.1:{port}/", options=NO_KEEPALIVE
            )
            assert connection.info.compression is None
            closed = await wait_closed(connection)
    assert closed.code == 1002
    assert not closed.by_peer


async def test_a_compression_bomb_to_the_client_is_refused_with_1009_while_inflating(
    actor_system: actors.ActorSystem,
) -> None:
    bomb = frame(TEXT, deflate_bomb(), rsv=4, mask=False)
    codes: list[int | None] = []

    async def serve(stream: trio.SocketStream, head: bytes) -> None:
        await stream.send_all(
            switching_protocols(head, "permessage-deflate; server_max_window_bits=12")
        )
        with contextlib.suppress(trio.BrokenResourceError):  # the client may hang up first
            await stream.send_all(bomb)
        codes.append(await client_close_code(stream))

    options = attrs.evolve(ON, max_message_size=MAX_MESSAGE_SIZE)
    with trio.fail_after(TIMEOUT):
        async with raw_server(serve) as port:
            with traced_memory() as peak:
                connection = await transport.connect_websocket(
                    actor_system, f"ws://127.0.0.1:{port}/", options=options
                )
                closed = await wait_closed(connection)
    assert closed.code == 1009
    assert "inflates past the limit" in closed.reason
    assert peak[0] < 4 * 2**20, peak


# -- against websockets, both ways ---------------------------------------------------------


async def test_our_client_and_a_websockets_server_negotiate_compression(
    actor_system: actors.ActorSystem,
) -> None:
    agreed: list[str] = []

    async def echo(ws: websockets.trio.server.ServerConnection) -> None:
        agreed.extend(str(extension.name) for extension in ws.protocol.extensions)
        async for message in ws:
            await ws.send(message)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                functools.partial(websockets.trio.server.serve, echo, 0, host="127.0.0.1")
            )
            port = server.listeners[0].socket.getsockname()[1]
            url = f"ws://127.0.0.1:{port}/"
            async with transport.open_websocket_client(actor_system, url, options=ON) as ws:
                assert ws.info.compression is not None
                for message in (FEED, FEED * 2000, bytes(100_000), "é" * 500):
                    await ws.send(message)
                    assert await ws.receive() == message
            nursery.cancel_scope.cancel()
    assert agreed == ["permessage-deflate"]


async def test_a_websockets_client_and_our_server_negotiate_compression(
    actor_system: actors.ActorSystem,
) -> None:
    infos: list[transport.ConnectionInfo] = []

    async def echo(connection: transport.WebSocketConnection) -> None:
        infos.append(connection.info)
        async for message in connection:
            await connection.send(message)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start_server(
                nursery, actor_system, options=COMPRESSING_SERVER, handler=echo
            )
            async with websockets.trio.client.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                assert [e.name for e in ws.protocol.extensions] == ["permessage-deflate"]
                for message in (FEED, FEED * 800, bytes(60_000), "é" * 500):
                    await ws.send(message)
                    assert await ws.recv() == message
            nursery.cancel_scope.cancel()
    assert infos[0].compression is not None
    assert infos[0].compression.startswith("permessage-deflate")
