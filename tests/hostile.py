"""A hostile WebSocket client over raw loopback TCP: frames and handshakes built by hand.

Nothing here goes through wsproto or trio-websocket: frame headers, masks, RSV bits,
opcodes and declared lengths are whatever the test says, so a client can lie in every
way a real attacker can. The case tables (:data:`FRAME_CASES`, :data:`HANDSHAKE_CASES`)
are shared by the tests and by ``benchmarks/reliability_report.py``, which prints the
outcomes for the reliability page of the docs.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import socket
import struct
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from typing import final

import attrs
import trio

import actors
import transport

GOOD_KEY = base64.b64encode(b"0123456789abcdef").decode()

# Opcodes (RFC 6455 section 5.2).
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
    length_bytes: int | None = None,
) -> bytes:
    """One frame, built by hand.

    ``rsv`` sets the RSV bits (0-7); ``length`` declares a payload length other
    than ``len(payload)`` (a lying header); ``length_bytes`` forces the length
    encoding (0 for 7-bit, 2 or 8 for the extended forms), minimal or not.
    """
    declared = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    mask_bit = 0x80 if mask else 0
    if length_bytes is None:
        length_bytes = 0 if declared <= 125 else 2 if declared <= 0xFFFF else 8
    if length_bytes == 0:
        header = bytes([first, mask_bit | declared])
    elif length_bytes == 2:
        header = bytes([first, mask_bit | 126]) + struct.pack("!H", declared)
    else:
        header = bytes([first, mask_bit | 127]) + struct.pack("!Q", declared)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    """The payload of a Close frame."""
    return struct.pack("!H", code) + reason


def request(
    path: str = "/",
    *,
    method: str = "GET",
    key: str | None = GOOD_KEY,
    version: str | None = "13",
    upgrade: str | None = "websocket",
    headers: tuple[tuple[str, str], ...] = (),
    http_version: str = "1.1",
) -> bytes:
    """An opening request; ``None`` leaves a header out."""
    lines = [f"{method} {path} HTTP/{http_version}", "Host: 127.0.0.1", "Connection: Upgrade"]
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@final
@attrs.frozen
class Ending:
    """How the server ended a hostile connection: its Close code (``None``: TCP closed
    without a Close frame), the reason, and what came before it."""

    code: int | None
    reason: str = ""
    pongs: int = 0


@final
class HostileClient:
    """One raw connection to a server under test (loopback TCP, or a memory stream)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    @classmethod
    async def connect(cls, port: int) -> HostileClient:
        """Open a TCP connection to 127.0.0.1:``port``."""
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    @classmethod
    async def open(cls, port: int, path: str = "/") -> HostileClient:
        """Connect and complete a well-formed opening handshake."""
        client = await cls.connect(port)
        status = await client.handshake(request(path))
        assert status == 101, f"handshake failed with HTTP {status}"
        return client

    async def send(self, data: bytes) -> bool:
        """Send raw bytes; false if the server had already gone away."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def handshake(self, data: bytes) -> int | None:
        """Send ``data`` as the request; the response's HTTP status (``None``: no answer)."""
        await self.send(data)
        while b"\r\n\r\n" not in self._buffer:
            chunk = await self._receive()
            if not chunk:
                return None
            self._buffer += chunk
        head, _, rest = bytes(self._buffer).partition(b"\r\n\r\n")
        self._buffer = bytearray(rest)
        return int(head.split(b" ", 2)[1])

    async def http_status_then_eof(self, data: bytes) -> tuple[int | None, bool]:
        """Send a request; the answer's status and whether the server then closed TCP."""
        head, found, _ = (await self.until_eof(data)).partition(b"\r\n\r\n")
        return (int(head.split(b" ", 2)[1]) if found else None), True

    async def until_eof(self, data: bytes) -> bytes:
        """Send ``data``; every byte the server sends until it closes TCP (the caller bounds it)."""
        await self.send(data)
        received = bytearray(self._buffer)
        self._buffer.clear()
        while chunk := await self._receive():
            received += chunk
        return bytes(received)

    async def ending(self) -> Ending:
        """Read server frames until its Close frame or the end of TCP."""
        pongs = 0
        while True:
            parsed = await self._next_frame()
            if parsed is None:
                return Ending(None, "", pongs)
            opcode, payload = parsed
            if opcode == PONG:
                pongs += 1
            elif opcode == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return Ending(code, payload[2:].decode("utf-8", "replace"), pongs)

    async def next_message(self) -> bytes:
        """The payload of the next Text or Binary frame from the server (pongs skipped)."""
        while True:
            parsed = await self._next_frame()
            assert parsed is not None, "the server closed instead of answering"
            opcode, payload = parsed
            assert opcode != CLOSE, f"the server closed with {payload[:2]!r}"
            if opcode in (TEXT, BINARY):
                return payload

    async def pongs(self, count: int) -> int:
        """Read until ``count`` Pongs arrived (or the server closed); how many did."""
        seen = 0
        while seen < count:
            parsed = await self._next_frame()
            if parsed is None or parsed[0] == CLOSE:
                break
            seen += parsed[0] == PONG
        return seen

    async def closed(self) -> bool:
        """Wait until the server closes TCP (true), discarding anything it sends."""
        while await self._receive():
            pass
        return True

    async def abort(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
        assert isinstance(self.stream, trio.SocketStream)
        self.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.stream.aclose()

    async def aclose(self) -> None:
        """Close TCP."""
        await self.stream.aclose()

    async def _receive(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(65536))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def _need(self, count: int) -> bool:
        while len(self._buffer) < count:
            chunk = await self._receive()
            if not chunk:
                return False
            self._buffer += chunk
        return True

    async def _next_frame(self) -> tuple[int, bytes] | None:
        if not await self._need(2):
            return None
        opcode = self._buffer[0] & 0x0F
        short = self._buffer[1] & 0x7F
        header = 2 + {126: 2, 127: 8}.get(short, 0)
        if not await self._need(header):
            return None
        if short == 126:
            length = struct.unpack("!H", self._buffer[2:4])[0]
        elif short == 127:
            length = struct.unpack("!Q", self._buffer[2:10])[0]
        else:
            length = short
        if not await self._need(header + length):
            return None
        payload = bytes(self._buffer[header : header + length])
        del self._buffer[: header + length]
        return opcode, payload


@final
@attrs.frozen
class FrameCase:
    """Hostile bytes sent right after a good handshake, and the Close code they earn."""

    name: str
    what: str
    data: bytes
    code: int


# The server under test uses this message limit (small, so "too big" is cheap to reach).
MAX_MESSAGE_SIZE = 64 * 1024
TOO_BIG = MAX_MESSAGE_SIZE + 1

FRAME_CASES = [
    FrameCase("unmasked", "a client frame without a mask", frame(TEXT, b"hi", mask=False), 1002),
    FrameCase("rsv1", "RSV1 set, no extension negotiated", frame(TEXT, b"hi", rsv=4), 1002),
    FrameCase("rsv2", "RSV2 set", frame(TEXT, b"hi", rsv=2), 1002),
    FrameCase("rsv3", "RSV3 set", frame(BINARY, b"hi", rsv=1), 1002),
    FrameCase("opcode-3", "reserved data opcode 0x3", frame(0x3, b"hi"), 1002),
    FrameCase("opcode-b", "reserved control opcode 0xB", frame(0xB, b"hi"), 1002),
    FrameCase("fragmented-ping", "a Ping without FIN", frame(PING, b"p", fin=False), 1002),
    FrameCase("long-ping", "a Ping with a 126-byte payload", frame(PING, b"p" * 126), 1002),
    FrameCase("lone-continuation", "a continuation with no message started", frame(0, b"x"), 1002),
    FrameCase(
        "interleaved-text",
        "a new Text frame inside a fragmented message",
        frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),
        1002,
    ),
    FrameCase(
        "non-minimal-length",
        "a 5-byte payload with a 64-bit length",
        frame(TEXT, b"hello", length_bytes=8),
        1002,
    ),
    FrameCase(
        "length-2^63",
        "a length header with the top bit set (2^63)",
        frame(BINARY, length=2**63, length_bytes=8),
        1002,
    ),
    FrameCase(
        "length-2^63-1",
        "a frame header announcing 2^63-1 bytes (then nothing)",
        frame(BINARY, length=2**63 - 1),
        1009,
    ),
    FrameCase(
        "length-2^62",
        "a frame header announcing 2^62 bytes (then nothing)",
        frame(BINARY, length=2**62),
        1009,
    ),
    FrameCase(
        "length-limit+1",
        "a frame header announcing one byte over the limit",
        frame(TEXT, length=TOO_BIG),
        1009,
    ),
    FrameCase(
        "fragments-over-limit",
        "two fragments whose sizes add up past the limit",
        frame(BINARY, b"x" * 40_000, fin=False) + frame(CONTINUATION, length=30_000),
        1009,
    ),
    FrameCase("bad-utf8", "a Text frame that is not UTF-8", frame(TEXT, b"\xff\xfe"), 1007),
    FrameCase(
        "bad-utf8-split",
        "invalid UTF-8 across two fragments",
        frame(TEXT, b"ok \xe2\x82", fin=False) + frame(CONTINUATION, b"\x28"),
        1007,
    ),
    FrameCase(
        "surrogate-utf8",
        "an encoded surrogate (ED A0 80) in a Text frame",
        frame(TEXT, b"\xed\xa0\x80"),
        1007,
    ),
    FrameCase(
        "close-bad-utf8",
        "a Close frame whose reason is not UTF-8",
        frame(CLOSE, close_payload(1000, b"\xff")),
        1007,
    ),
    FrameCase(
        "close-1005", "a Close frame with code 1005", frame(CLOSE, close_payload(1005)), 1002
    ),
    FrameCase("close-999", "a Close frame with code 999", frame(CLOSE, close_payload(999)), 1002),
    FrameCase("close-1-byte", "a Close frame with a 1-byte payload", frame(CLOSE, b"\x03"), 1002),
]


@final
@attrs.frozen
class HandshakeCase:
    """A malformed opening request and the HTTP status it earns."""

    name: str
    what: str
    data: bytes
    status: int


HANDSHAKE_CASES = [
    HandshakeCase("garbage", "bytes that are not HTTP", b"\x16\x03\x01\xff\xff" * 20, 400),
    HandshakeCase("no-key", "no Sec-WebSocket-Key", request(key=None), 400),
    HandshakeCase("key-not-base64", "Sec-WebSocket-Key not base64", request(key="%%%%"), 400),
    HandshakeCase(
        "key-wrong-length",
        "Sec-WebSocket-Key of 4 bytes",
        request(key=base64.b64encode(b"abcd").decode()),
        400,
    ),
    HandshakeCase("version-12", "Sec-WebSocket-Version: 12", request(version="12"), 426),
    HandshakeCase("no-version", "no Sec-WebSocket-Version", request(version=None), 400),
    HandshakeCase("no-upgrade", "no Upgrade header", request(upgrade=None), 400),
    HandshakeCase("post", "POST instead of GET", request(method="POST"), 400),
    HandshakeCase(
        "huge-header",
        "a 64 KiB header (h11 allows 16 KiB)",
        request(headers=(("X-Filler", "x" * 65_536),)),
        400,
    ),
]


async def echo(connection: transport.WebSocketConnection) -> None:
    """The application of the servers under attack: echo every message."""
    async for message in connection:
        await connection.send(message)


#: Options of a server under attack: a 64 KiB message limit, a short handshake deadline.
SERVER_OPTIONS = transport.ConnectionOptions(
    ping_interval=None, max_message_size=MAX_MESSAGE_SIZE, handshake_timeout=0.5
)


NO_RATE_LIMIT = transport.InboundLimits()
ACCEPT_ALL = transport.HandshakePolicy()


async def start_server(
    nursery: trio.Nursery,
    system: actors.ActorSystem,
    *,
    options: transport.ConnectionOptions = SERVER_OPTIONS,
    limits: transport.InboundLimits = NO_RATE_LIMIT,
    policy: transport.HandshakePolicy = ACCEPT_ALL,
    handler: Callable[[transport.WebSocketConnection], Awaitable[object]] = echo,
    max_connections: int = 100,
) -> transport.WebSocketServer:
    """An echo server on 127.0.0.1, an ephemeral port."""
    server: transport.WebSocketServer = await nursery.start(
        functools.partial(
            transport.serve_websocket,
            system,
            handler,
            "127.0.0.1",
            0,
            options=options,
            limits=limits,
            policy=policy,
            max_connections=max_connections,
        )
    )
    return server


async def still_serves(system: actors.ActorSystem, port: int) -> None:
    """A well-behaved client gets its echo (the server survived)."""
    url = f"ws://127.0.0.1:{port}/"
    options = transport.ConnectionOptions(ping_interval=None)
    async with transport.open_websocket_client(system, url, options=options) as ws:
        await ws.send("still there?")
        assert await ws.receive() == "still there?"


async def settled(server: transport.WebSocketServer, *, active: int = 0) -> None:
    """Wait until the server has ``active`` connections and no handshake in progress.

    Connections end asynchronously after their peer is gone (the server lingers to
    let its Close frame be read), so this polls the host's statistics; the caller
    bounds it with ``trio.fail_after``.
    """
    while True:
        stats = await server.statistics()
        if stats.active == active and stats.handshaking == 0:
            return
        await trio.sleep(0.005)


@contextlib.contextmanager
def traced_memory() -> Iterator[list[int]]:
    """Trace Python allocations in this block; append the peak growth in bytes on exit."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    peak: list[int] = []
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1] - base)
        tracemalloc.stop()


async def flood(client: HostileClient, chunk: bytes, times: int) -> int:
    """Send ``chunk`` up to ``times`` times; how many went out before the server hung up."""
    for sent in range(times):
        if not await client.send(chunk):
            return sent
    return times
