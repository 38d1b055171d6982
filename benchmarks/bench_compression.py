"""permessage-deflate benchmark: same-run figures with compression on and off.

Prints one JSON line. Server and clients run in one ``trio.run`` over loopback TCP, so the
rates are the cost of both ends together; every variant is measured interleaved with the
others (off, default, low-memory, off, ...) and the medians are reported.

- ``idle_conn_bytes``: traced Python memory (``tracemalloc``, which sees zlib's buffers)
  per open, idle connection of a :func:`transport.serve_websocket` server, after each
  connection carried one feed message each way, ``BENCH_CONNS`` (200) of them. The clients
  are minimal raw sockets with hand-built frames, so nearly all of it is the server's
  connection (its actor, tasks, queues, and with compression its compressor and inflater).
  ``off``: the default options; ``default``: ``compression=True`` (context takeover: both
  zlib streams stay); ``low_memory``: ``compression=True``,
  ``compression_context_takeover=False``, ``compression_window_bits=10``,
  ``compression_memory_level=4`` (nothing kept between messages).
- ``feed``: a server sends ``BENCH_FEED`` (20,000) messages of a repetitive JSON quote feed
  (about 120 bytes each, values changing) to one of our clients: ``msgs_per_s`` and
  ``wire_bytes_per_msg`` (bytes the client's socket received, frame headers included).
- ``*_ratio``: default over off, in the same run.

Run: ``python benchmarks/bench_compression.py`` (env ``BENCH_REPS`` (3), ``BENCH_CONNS``
(200), ``BENCH_FEED`` (20000)).
"""

from __future__ import annotations

import base64
import gc
import json
import os
import platform
import statistics
import struct
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import attrs
import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actors
import transport
from tests.hostile import echo, start_server
from transport._client._connect import client_opener
from transport._connection._actor import spawn_connection

REPS = int(os.environ.get("BENCH_REPS", "3"))
CONNS = int(os.environ.get("BENCH_CONNS", "200"))
FEED = int(os.environ.get("BENCH_FEED", "20000"))

OFF = transport.ConnectionOptions(ping_interval=None)
VARIANTS = {
    "off": OFF,
    "default": attrs.evolve(OFF, compression=True),
    "low_memory": attrs.evolve(
        OFF,
        compression=True,
        compression_context_takeover=False,
        compression_window_bits=10,
        compression_memory_level=4,
    ),
}
OFFER = "permessage-deflate; client_max_window_bits"


def quote(i: int) -> str:
    """One message of the feed: the same keys every time, a few changing values."""
    return json.dumps(
        {
            "type": "quote",
            "symbol": ("ACME", "INITECH", "GLOBEX", "UMBRELLA")[i % 4],
            "seq": i,
            "bid": round(100 + (i % 97) * 0.25, 2),
            "ask": round(100.25 + (i % 97) * 0.25, 2),
            "venue": "XNAS",
        },
        separators=(",", ":"),
    )


# -- idle memory ---------------------------------------------------------------------------


def client_frame(payload: bytes, compressor: zlib._Compress | None) -> bytes:
    """A masked text frame (compressed with ``compressor`` if given, RSV1 set)."""
    first = 0x81
    if compressor is not None:
        payload = (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        first |= 0x40
    mask = os.urandom(4)
    header = bytes([first, 0x80 | 126]) + struct.pack("!H", len(payload))
    if len(payload) < 126:
        header = bytes([first, 0x80 | len(payload)])
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def raw_connection(port: int, compressed: bool) -> trio.SocketStream:
    """Open, negotiate (offering compression if asked), send one message, read its echo."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET / HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if compressed:
        lines.append(f"Sec-WebSocket-Extensions: {OFFER}")
    await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
    received = b""
    while b"\r\n\r\n" not in received:
        received += await stream.receive_some()
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert (b"permessage-deflate" in head) == compressed, head
    # The server answers client_max_window_bits=12 (default) or 10 (low memory): 10 fits both.
    compressor = zlib.compressobj(6, zlib.DEFLATED, -10) if compressed else None
    await stream.send_all(client_frame(quote(0).encode(), compressor))
    while len(rest) < 2:  # the echo's header: enough to know it came
        rest += await stream.receive_some()
    return stream


async def idle_bytes(options: transport.ConnectionOptions) -> float:
    async with actors.open_system("bench") as system, trio.open_nursery() as nursery:
        server = await start_server(
            nursery, system, options=options, handler=echo, max_connections=CONNS + 10
        )
        for _ in range(5):  # warm-up: first-use allocations are not per connection
            warm = await raw_connection(server.port, options.compression)
            await warm.aclose()
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        streams = [await raw_connection(server.port, options.compression) for _ in range(CONNS)]
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        for stream in streams:
            await stream.aclose()
        nursery.cancel_scope.cancel()
    return (after - before) / CONNS


# -- feed throughput -----------------------------------------------------------------------


class CountingStream(trio.abc.Stream):
    """A client's TCP stream that counts the bytes it receives."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self.received = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self._stream.receive_some(max_bytes)
        self.received += len(data)
        return data

    async def aclose(self) -> None:
        await self._stream.aclose()


async def feed(options: transport.ConnectionOptions) -> tuple[float, float]:
    messages = [quote(i) for i in range(FEED)]

    async def publish(connection: transport.WebSocketConnection) -> None:
        for message in messages:
            await connection.send(message)
        async for _ in connection:  # until the client has read everything and closes
            pass

    async with actors.open_system("bench") as system, trio.open_nursery() as nursery:
        server = await start_server(nursery, system, options=options, handler=publish)
        counted: list[CountingStream] = []

        async def connect() -> trio.abc.Stream:
            counted.append(CountingStream(await trio.open_tcp_stream("127.0.0.1", server.port)))
            return counted[0]

        opener = client_opener(connect, host="127.0.0.1", resource="/", options=options)
        began = time.perf_counter()
        client = await spawn_connection(system, opener, options)
        assert (client.info.compression is not None) == options.compression
        for expected in messages:
            assert await client.receive() == expected
        elapsed = time.perf_counter() - began
        await client.close()
        nursery.cancel_scope.cancel()
    return FEED / elapsed, counted[0].received / FEED


async def measure() -> dict[str, object]:
    idle: dict[str, list[float]] = {name: [] for name in VARIANTS}
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    wire: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(REPS):
        for name, options in VARIANTS.items():
            idle[name].append(await idle_bytes(options))
            rate, per_message = await feed(options)
            rates[name].append(rate)
            wire[name].append(per_message)
    idle_m = {name: round(statistics.median(v)) for name, v in idle.items()}
    rate_m = {name: round(statistics.median(v)) for name, v in rates.items()}
    wire_m = {name: round(statistics.median(v), 1) for name, v in wire.items()}
    return {
        "benchmark": "compression",
        "python": platform.python_version(),
        "reps": REPS,
        "conns": CONNS,
        "feed_messages": FEED,
        "feed_payload_bytes_per_msg": round(sum(len(quote(i)) for i in range(FEED)) / FEED, 1),
        "idle_conn_bytes": idle_m,
        "feed_msgs_per_s": rate_m,
        "feed_wire_bytes_per_msg": wire_m,
        "idle_bytes_ratio": round(idle_m["default"] / idle_m["off"], 2),
        "feed_rate_ratio": round(rate_m["default"] / rate_m["off"], 2),
        "feed_wire_ratio": round(wire_m["default"] / wire_m["off"], 3),
    }


if __name__ == "__main__":
    print(json.dumps(trio.run(measure)))
