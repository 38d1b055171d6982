"""The outcome table of docs/reliability.rst, measured: every hostile case against a live server.

Runs each case of ``tests/hostile.py`` (the same tables the tests assert) against an
echo server on 127.0.0.1 and prints one JSON object per case: what the server answered
(a Close code, an HTTP status, or a disconnect), how long it took, and the peak growth
of Python allocations (tracemalloc, client and server in this process) during it.

    python benchmarks/reliability_report.py          # JSON lines
    python benchmarks/reliability_report.py --rst    # the table for the docs
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actors
import transport
from tests.hostile import (
    CONTINUATION,
    FRAME_CASES,
    HANDSHAKE_CASES,
    PING,
    TEXT,
    HostileClient,
    frame,
    request,
    settled,
    start_server,
    still_serves,
    traced_memory,
)

Row = dict[str, object]
Probe = Callable[[int], Awaitable[str]]


async def frame_case(data: bytes, port: int) -> str:
    client = await HostileClient.open(port)
    await client.send(data)
    ending = await client.ending()
    await client.aclose()
    return "disconnect (no Close frame)" if ending.code is None else f"close {ending.code}"


async def handshake_case(data: bytes, port: int) -> str:
    client = await HostileClient.connect(port)
    status, _ = await client.http_status_then_eof(data)
    await client.aclose()
    return "disconnect" if status is None else f"HTTP {status}, closed"


async def continuation_flood(fragment: bytes, port: int) -> str:
    client = await HostileClient.open(port)
    await client.send(frame(TEXT, b"", fin=False))
    chunk = fragment * 1000
    for _ in range(100):
        if not await client.send(chunk):
            break
    ending = await client.ending()
    await client.aclose()
    return f"close {ending.code}"


async def ping_flood(port: int) -> str:
    client = await HostileClient.open(port)
    count = 2000
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send, b"".join(frame(PING, b"%d" % i) for i in range(count)))
        pongs = await client.pongs(count)
    await client.abort()
    return f"{pongs} pongs, stays open"


async def silent(port: int) -> str:
    client = await HostileClient.connect(port)
    await client.closed()
    await client.aclose()
    return "disconnect at the handshake deadline"


async def slowloris(port: int) -> str:
    client = await HostileClient.connect(port)
    data = request(headers=(("X-Slow", "s" * 200),))
    sent = 0
    while sent < len(data) and await client.send(data[sent : sent + 1]):
        sent += 1
        await trio.sleep(0.02)
    await client.aclose()
    return f"disconnect at the handshake deadline ({sent} of {len(data)} bytes sent)"


async def rate_flood(port: int) -> str:
    client = await HostileClient.open(port)
    await client.send(frame(TEXT, b"spam") * 200)
    ending = await client.ending()
    await client.aclose()
    return f"close {ending.code}"


def cases() -> list[tuple[str, str, Probe, transport.InboundLimits | None]]:
    budget = transport.InboundLimits(max_fragments=256)
    rated = transport.InboundLimits(max_messages_per_second=20, burst=10)
    table: list[tuple[str, str, Probe, transport.InboundLimits | None]] = []
    for bad in HANDSHAKE_CASES:
        probe: Probe = functools.partial(handshake_case, bad.data)
        table.append((f"handshake: {bad.name}", bad.what, probe, None))
    table.append(("handshake: silent", "connects and sends nothing", silent, None))
    table.append(("handshake: slowloris", "one byte of the request every 20 ms", slowloris, None))
    for case in FRAME_CASES:
        probe = functools.partial(frame_case, case.data)
        table.append((f"frame: {case.name}", case.what, probe, None))
    for name, fragment in (("empty", b""), ("1-byte", b"x")):
        part = frame(CONTINUATION, fragment, fin=False)
        probe = functools.partial(continuation_flood, part)
        what = f"100,000 {name} continuation frames (budget 256)"
        table.append((f"flood: {name} continuations", what, probe, budget))
    table.append(("flood: pings", "2,000 pings, pongs read", ping_flood, None))
    what = "200 messages at once, limit 20/s burst 10"
    table.append(("flood: messages", what, rate_flood, rated))
    return table


async def measure() -> list[Row]:
    rows: list[Row] = []
    async with actors.open_system("reliability") as system:
        for name, what, probe, limits in cases():
            async with trio.open_nursery() as nursery:
                server = await start_server(
                    nursery, system, limits=limits or transport.InboundLimits()
                )
                start = trio.current_time()
                with trio.fail_after(10), traced_memory() as peak:
                    outcome = await probe(server.port)
                seconds = trio.current_time() - start
                with trio.fail_after(10):
                    await settled(server)
                    await still_serves(system, server.port)
                rows.append(
                    {
                        "case": name,
                        "what": what,
                        "outcome": outcome,
                        "seconds": round(seconds, 3),
                        "peak_kib": round(peak[0] / 1024),
                        "server_still_serves": True,
                    }
                )
                nursery.cancel_scope.cancel()
    return rows


def rst(rows: list[Row]) -> str:
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 22 40 26 6 6",
        "",
        "   * - Case",
        "     - What the client sends",
        "     - Outcome",
        "     - Time (s)",
        "     - Peak (KiB)",
    ]
    for row in rows:
        lines.append(f"   * - {row['case']}")
        for key in ("what", "outcome", "seconds", "peak_kib"):
            lines.append(f"     - {row[key]}")
    return "\n".join(lines)


def main() -> None:
    rows = trio.run(measure)
    if "--rst" in sys.argv[1:]:
        print(rst(rows))
    else:
        for row in rows:
            print(json.dumps(row))


if __name__ == "__main__":
    main()
