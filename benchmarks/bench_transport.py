"""Transport benchmark: same-run ratios of our WebSocket server against raw trio-websocket.

Prints one JSON line. Every figure is a server measured from outside by the same
cheap client: plain blocking sockets with pre-built, pre-masked WebSocket frames,
no WebSocket library and no trio on the client side.

**Why the server runs in a subprocess** (and not in the client's ``trio.run``):
in one process the client's own per-message work (a trio-websocket client costs
about as much as the server) is added to both variants and pulls every ratio
towards 1; a separate process measures the server stack alone, lets client and
server run on their own CPUs, and gives the server's own CPU time
(``/proc/PID/schedstat``) and RSS, the honest memory figure. The ratios are
therefore stricter than in-process ones.

The throughput figures come from three server processes, each started once:
``raw`` (trio-websocket's ``serve_websocket`` with its defaults, handlers that
echo or count), ``ours`` (``transport.serve_websocket`` with the default
:class:`transport.ConnectionOptions`) and ``ours_deep`` (the same with an
``inbound_queue_size`` of ``DEEP_INBOUND`` and byte budgets of ``DEEP_INBOUND_BYTES``, for
the one-way phases only: our
reader never waits for the application, by design, so a client that streams
faster than the handler consumes can overflow the default 1,024-message queue and be
closed with 1013; the deep queue lets the whole stream in, and the rate measured
is what the application consumed). Phases are interleaved (raw, ours, raw,
ours, ...) and each variant's median over the repetitions is compared; N is
calibrated to about ``BENCH_TARGET_S`` seconds per phase.

- ``echo_ratio``: 32-byte binary echo round trips per second. ours: the handler
  does ``async for m in conn: await conn.send(m)`` (reader, inbound queue,
  handler, the actor's mailbox, writer); raw: ``get_message`` -> ``send_message``.
- ``oneway_ratio``: 32-byte messages per second delivered into an actor. ours:
  the handler tells each message as :class:`transport.Received` to a counting
  actor; raw: the handler counts. The client streams pre-built frames in 64 KiB
  writes, then a text ``end``, and the server answers with its count, which is
  checked. ``oneway_handler_ratio`` is the same with our handler counting itself.
- ``large_throughput_ratio``: the same with 64 KiB messages, into the actor;
  raw keeps trio-websocket's default 4 KiB receive buffer.
- ``echo_server_cpu_ratio`` and ``oneway_server_cpu_ratio``: server on-CPU time
  per echo or per one-way message (into the actor), ours over raw; steadier
  than the rate ratios on a shared machine.
- ``idle_conn_bytes_ws`` / ``idle_conn_bytes_wss``: growth of the server's
  **RSS** (``VmRSS``; kernel socket memory not included) per idle open
  connection, ``BENCH_CONNS`` (1,000) of them, measured on a fresh server
  process for each repetition after a warm-up; our figure includes the connection
  actor, its handler task (blocked in ``receive``) and its keepalive task.
  Same-run raw trio-websocket figures and server CPU per accepted connection
  are reported beside them. Every connection is reset by the client afterwards
  and each server is shut down through its standard input.

- ``control_p99_ms``: the 99th percentile, in milliseconds, of the latency of
  ``ref.ask(transport.GetStatistics())`` to one client connection while 50 trio
  tasks (``connection.send``) and 8 OS threads (``ref.tell_from_thread``) send
  32-byte text messages on it as fast as it takes them; the server is raw
  trio-websocket, reading and discarding. Control never waits behind data, so this
  stays near one frame write however many senders wait (target: 50 ms or less).

``rates`` holds the medians: round trips or messages per second, MB/s (10^6
payload bytes) for 64 KiB, server CPU microseconds per message. Loopback only.

Run: ``python benchmarks/bench_transport.py`` (env ``BENCH_REPS`` (5),
``BENCH_IDLE_REPS`` (3), ``BENCH_CONNS`` (1000), ``BENCH_TARGET_S`` (0.25),
``BENCH_CONTROL_ASKS`` (400)).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import select
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from importlib.metadata import version
from typing import IO

import attrs
import trio
import trio_websocket as tw

import actors
import transport

HOST = "127.0.0.1"
REPS = int(os.environ.get("BENCH_REPS", "5"))
IDLE_REPS = int(os.environ.get("BENCH_IDLE_REPS", "3"))
CONNS = int(os.environ.get("BENCH_CONNS", "1000"))
TARGET_S = float(os.environ.get("BENCH_TARGET_S", "0.25"))
#: Inbound queue of the server for the one-way phases: more than one phase sends.
DEEP_INBOUND = 2**18
DEEP_INBOUND_BYTES = 2**32
#: Throughput repetitions past the second start only before this many seconds.
THROUGHPUT_BUDGET_S = 25.0
#: An idle-memory repetition past the first starts only if it can end before this.
BUDGET_S = 105.0
#: Statistics asks of the control phase, and its senders (trio tasks, OS threads).
CONTROL_ASKS = int(os.environ.get("BENCH_CONTROL_ASKS", "400"))
CONTROL_TASKS = 50
CONTROL_THREADS = 8
#: Seconds between two asks of the control phase, and its budget (past it, no more asks).
CONTROL_PAUSE_S = 0.002
CONTROL_BUDGET_S = 20.0
#: No socket read, server start or server exit is waited for longer than this.
IO_TIMEOUT_S = 20.0


def raise_fd_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        cap = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (cap, hard))


# ==================================================================================== servers


@attrs.frozen
class TakeCount(actors.Request[int]):
    """Ask the counter for its count and reset it."""


@attrs.define(eq=False)
class Counter(actors.Actor[transport.Received | TakeCount]):
    """The actor one-way messages are delivered into."""

    count: int = 0

    @actors.handler
    def received(self, message: transport.Received) -> None:
        self.count += 1

    @actors.handler
    def take(self, message: TakeCount) -> int:
        count, self.count = self.count, 0
        return count


async def raw_handler(request: tw.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        if request.path == "/echo":
            while True:
                await ws.send_message(await ws.get_message())
        elif request.path in ("/sink", "/count"):
            count = 0
            while True:
                message = await ws.get_message()
                if isinstance(message, str):
                    await ws.send_message(str(count))
                    count = 0
                else:
                    count += 1
        else:
            while True:
                await ws.get_message()
    except tw.ConnectionClosed:
        pass


def our_application(
    counter: actors.ActorRef[transport.Received | TakeCount],
) -> Callable[[transport.WebSocketConnection], Awaitable[None]]:
    async def application(conn: transport.WebSocketConnection) -> None:
        path = conn.info.path
        if path == "/echo":
            async for message in conn:
                await conn.send(message)
        elif path == "/sink":
            async for message in conn:
                if isinstance(message, str):
                    await conn.send(str(await counter.ask(TakeCount())))
                else:
                    await counter.tell(transport.Received(message))
        elif path == "/count":
            count = 0
            async for message in conn:
                if isinstance(message, str):
                    await conn.send(str(count))
                    count = 0
                else:
                    count += 1
        else:
            async for _message in conn:
                pass

    return application


async def serve(stack: str, ssl_context: ssl.SSLContext | None) -> None:
    """Print ``PORT n`` once listening; serve until standard input is closed."""
    if stack == "raw":
        async with trio.open_nursery() as nursery:
            raw = await nursery.start(tw.serve_websocket, raw_handler, HOST, 0, ssl_context)
            await serve_until_stdin_closes(raw.port)
            nursery.cancel_scope.cancel()
        return
    options = transport.ConnectionOptions()
    budget = 128 * 2**20  # serve_websocket's default
    if stack == "ours_deep":
        options = transport.ConnectionOptions(
            inbound_queue_size=DEEP_INBOUND, inbound_max_bytes=DEEP_INBOUND_BYTES
        )
        budget = DEEP_INBOUND_BYTES
    async with actors.open_system("bench") as system:
        counter = await system.spawn(Counter(), name="counter")
        async with trio.open_nursery() as nursery:
            ours = await nursery.start(
                partial(
                    transport.serve_websocket,
                    system,
                    our_application(counter),
                    HOST,
                    0,
                    ssl_context=ssl_context,
                    options=options,
                    max_connections=CONNS + 256,
                    max_inbound_bytes=budget,
                )
            )
            await serve_until_stdin_closes(ours.port)
            nursery.cancel_scope.cancel()


async def serve_until_stdin_closes(port: int) -> None:
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
        while await stdin.receive_some():
            pass


def server_main(stack: str, pem: str) -> None:
    raise_fd_limit(2 * CONNS + 256)
    ssl_context = None
    if pem != "-":
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(pem)
    trio.run(serve, stack, ssl_context)


# ===================================================================================== client

MASK = b"\x37\xfa\x21\x3d"


def frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """A final, masked client frame."""
    n = len(payload)
    if n < 126:
        header = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        header = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", n)
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", n)
    key = (MASK * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return header + MASK + masked


SMALL = b"x" * 32
F32 = frame(SMALL)
F64K = frame(b"y" * 65536)
BLOB32 = F32 * (65536 // len(F32))
FEND = frame(b"end", opcode=0x1)
FCLOSE = frame(struct.pack("!H", 1000), opcode=0x8)
UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
)


@attrs.frozen
class Server:
    pid: int
    port: int


@contextmanager
def server_process(stack: str, pem: str) -> Iterator[Server]:
    """A server subprocess (this file with ``--server``); shut down through its stdin."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--server", stack, pem],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        line = _readline(proc.stdout)
        if not line.startswith("PORT "):
            raise RuntimeError(f"the {stack} server did not start ({line!r})")
        yield Server(proc.pid, int(line.split()[1]))
        if proc.poll() is not None:
            raise RuntimeError(f"the {stack} server died (exit status {proc.returncode})")
    finally:
        proc.stdin.close()
        try:
            proc.wait(IO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _readline(stream: IO[str]) -> str:
    ready, _, _ = select.select([stream], [], [], IO_TIMEOUT_S)
    return stream.readline() if ready else ""


def server_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def server_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("the server closed the connection")
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload); a Close frame raises."""
    first, second = recv_exact(sock, 2)
    n = second & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(sock, 8))[0]
    payload = recv_exact(sock, n)
    if first & 0x0F == 0x8:
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        raise RuntimeError(f"the server closed the connection with {code} {payload[2:]!r}")
    return first & 0x0F, payload


def connect(port: int, path: str, client_tls: ssl.SSLContext | None = None) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT_S)
    # Without NODELAY, Nagle and delayed ACKs stall small writes by ~40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if client_tls is not None:
        sock = client_tls.wrap_socket(sock, server_hostname=HOST)
    sock.sendall(UPGRADE.format(path=path, host=HOST, port=port).encode())
    read_upgrade(sock)
    return sock


def read_upgrade(sock: socket.socket) -> None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("the server closed the connection during the handshake")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 101") or not buf.endswith(b"\r\n\r\n"):
        raise RuntimeError(f"handshake refused: {buf[:80]!r}")


def close(sock: socket.socket) -> None:
    """Close handshake: send Close, read to the end of the stream."""
    try:
        sock.sendall(FCLOSE)
        while sock.recv(65536):
            pass
    finally:
        sock.close()


# ==================================================================================== phases

Phase = Callable[[Server, int], "tuple[float, float]"]


@contextmanager
def websocket(server: Server, path: str) -> Iterator[socket.socket]:
    """A connection that ends with a close handshake, or at once if the block failed."""
    sock = connect(server.port, path)
    try:
        yield sock
    except BaseException:
        sock.close()
        raise
    close(sock)


def echo(server: Server, n: int) -> tuple[float, float]:
    """``n`` round trips of 32 bytes: (round trips/s, server CPU microseconds per round trip)."""
    with websocket(server, "/echo") as sock:
        for _ in range(20):
            sock.sendall(F32)
            assert read_frame(sock) == (0x2, SMALL)
        cpu, start = server_cpu_s(server.pid), time.perf_counter()
        for _ in range(n):
            sock.sendall(F32)
            read_frame(sock)
        elapsed, cpu = time.perf_counter() - start, server_cpu_s(server.pid) - cpu
    return n / elapsed, cpu / n * 1e6


def oneway(path: str, big: bool, server: Server, n: int) -> tuple[float, float]:
    """``n`` one-way messages (rounded to whole writes), then ``end`` and the server's count."""
    chunk, per_chunk = (F64K, 1) if big else (BLOB32, len(BLOB32) // len(F32))
    writes = max(1, n // per_chunk)
    with websocket(server, path) as sock:
        sock.sendall(chunk)
        sock.sendall(FEND)
        assert read_frame(sock) == (0x1, str(per_chunk).encode())
        cpu, start = server_cpu_s(server.pid), time.perf_counter()
        for _ in range(writes):
            sock.sendall(chunk)
        sock.sendall(FEND)
        _, payload = read_frame(sock)
        elapsed, cpu = time.perf_counter() - start, server_cpu_s(server.pid) - cpu
    sent = writes * per_chunk
    if int(payload) != sent:
        raise RuntimeError(f"{path}: the server counted {int(payload)} of {sent} messages")
    return sent / elapsed, cpu / sent * 1e6


#: name -> (stack, phase, calibration count); raw and ours alternate.
PHASES: dict[str, tuple[str, Phase, int]] = {
    "raw_echo32": ("raw", echo, 300),
    "ours_echo32": ("ours", echo, 300),
    "raw_oneway32": ("raw", partial(oneway, "/sink", False), 4 * 1927),
    "ours_oneway32_actor": ("ours_deep", partial(oneway, "/sink", False), 4 * 1927),
    "ours_oneway32_handler": ("ours_deep", partial(oneway, "/count", False), 4 * 1927),
    "raw_oneway64k": ("raw", partial(oneway, "/sink", True), 50),
    "ours_oneway64k_actor": ("ours_deep", partial(oneway, "/sink", True), 50),
}


def throughput(began: float) -> tuple[dict[str, float], dict[str, float], int]:
    """Median rate and server CPU microseconds per message of every phase, interleaved."""
    with (
        server_process("raw", "-") as raw,
        server_process("ours", "-") as ours,
        server_process("ours_deep", "-") as deep,
    ):
        servers = {"raw": raw, "ours": ours, "ours_deep": deep}
        sizes: dict[str, int] = {}
        for name, (stack, phase, n0) in PHASES.items():
            phase(servers[stack], n0)
            rate, _ = phase(servers[stack], n0)
            sizes[name] = min(max(n0, round(rate * TARGET_S)), DEEP_INBOUND)
        rates: dict[str, list[float]] = {name: [] for name in PHASES}
        cpus: dict[str, list[float]] = {name: [] for name in PHASES}
        reps = 0
        while reps < REPS and (reps < 2 or time.perf_counter() - began < THROUGHPUT_BUDGET_S):
            for name, (stack, phase, _) in PHASES.items():
                rate, cpu = phase(servers[stack], sizes[name])
                rates[name].append(rate)
                cpus[name].append(cpu)
            reps += 1
    return (
        {name: statistics.median(values) for name, values in rates.items()},
        {name: statistics.median(values) for name, values in cpus.items()},
        reps,
    )


# ============================================================================ control latency


async def control_latencies(port: int) -> list[float]:
    """Seconds each statistics ask took while 50 tasks and 8 threads sent on the connection."""
    options = transport.ConnectionOptions(ping_interval=None)
    latencies: list[float] = []
    sending = True

    def thread_sender(ref: actors.ActorRef[transport.ConnectionMessage]) -> None:
        message = transport.SendText("t" * 32)
        while sending:
            try:
                ref.tell_from_thread(message)
            except (actors.ActorStoppedError, trio.RunFinishedError):
                return

    async with actors.open_system("bench-control") as system:
        connection = await transport.connect_websocket(
            system, f"ws://{HOST}:{port}/", options=options
        )
        ref = connection.ref

        async def task_sender() -> None:
            while True:
                await connection.send("x" * 32)

        async with trio.open_nursery() as nursery:
            for _ in range(CONTROL_TASKS):
                nursery.start_soon(task_sender)
            for _ in range(CONTROL_THREADS):
                nursery.start_soon(
                    partial(trio.to_thread.run_sync, thread_sender, ref, abandon_on_cancel=True)
                )
            await trio.sleep(0.2)  # every sender running, the connection's queue full
            began = time.perf_counter()
            while len(latencies) < CONTROL_ASKS and (
                len(latencies) < 20 or time.perf_counter() - began < CONTROL_BUDGET_S
            ):
                asked = time.perf_counter()
                await ref.ask(transport.GetStatistics(), timeout=IO_TIMEOUT_S)
                latencies.append(time.perf_counter() - asked)
                await trio.sleep(CONTROL_PAUSE_S)
            sending = False
            nursery.cancel_scope.cancel()
        await connection.close()
    return latencies


def control_p99_ms() -> float:
    """The 99th percentile of the statistics asks' latency, in milliseconds."""
    with server_process("raw", "-") as raw:
        latencies = trio.run(control_latencies, raw.port)
    return round(statistics.quantiles(latencies, n=100)[98] * 1e3, 1)


# ============================================================================== idle memory


def open_idle(port: int, n: int, client_tls: ssl.SSLContext | None) -> list[socket.socket]:
    """``n`` open WebSocket connections (reset, not closed, when dropped)."""
    request = UPGRADE.format(path="/", host=HOST, port=port).encode()
    batch = 1 if client_tls else 50
    socks: list[socket.socket] = []
    try:
        while len(socks) < n:
            group = []
            for _ in range(min(batch, n - len(socks))):
                sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT_S)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                if client_tls is not None:
                    sock = client_tls.wrap_socket(sock, server_hostname=HOST)
                group.append(sock)
                socks.append(sock)
                sock.sendall(request)
            for sock in group:
                read_upgrade(sock)
    except BaseException:
        drop(socks)
        raise
    return socks


def drop(socks: list[socket.socket]) -> None:
    for sock in socks:
        with suppress(OSError):
            sock.close()


def idle(stack: str, pem: str, client_tls: ssl.SSLContext | None) -> tuple[float, float]:
    """Server RSS bytes and CPU microseconds per idle connection, on a fresh server process."""
    with server_process(stack, pem) as server:
        drop(open_idle(server.port, 50, client_tls))  # warm the code paths
        time.sleep(0.3)
        rss, cpu = server_rss(server.pid), server_cpu_s(server.pid)
        socks = open_idle(server.port, CONNS, client_tls)
        try:
            time.sleep(0.5)
            rss, cpu = server_rss(server.pid) - rss, server_cpu_s(server.pid) - cpu
        finally:
            drop(socks)
    return rss / CONNS, cpu / CONNS * 1e6


def idle_memory(
    began: float, pem: str, client_tls: ssl.SSLContext
) -> tuple[dict[str, float], dict[str, float], int]:
    kinds = {
        f"{stack}_{scheme}": (stack, pem if scheme == "wss" else "-", tls)
        for scheme, tls in (("ws", None), ("wss", client_tls))
        for stack in ("raw", "ours")
    }
    rss: dict[str, list[float]] = {name: [] for name in kinds}
    cpu: dict[str, list[float]] = {name: [] for name in kinds}
    reps = 0
    rep_s = 0.0
    while reps < IDLE_REPS and (reps < 1 or time.perf_counter() - began + rep_s < BUDGET_S):
        rep_began = time.perf_counter()
        for name, (stack, server_pem, tls) in kinds.items():
            per_conn, cpu_us = idle(stack, server_pem, tls)
            rss[name].append(per_conn)
            cpu[name].append(cpu_us)
        rep_s = time.perf_counter() - rep_began
        reps += 1
    return (
        {name: statistics.median(values) for name, values in rss.items()},
        {name: statistics.median(values) for name, values in cpu.items()},
        reps,
    )


# ====================================================================================== main


def main() -> dict[str, object]:
    import trustme

    began = time.perf_counter()
    raise_fd_limit(2 * CONNS + 256)
    ca = trustme.CA()
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    with tempfile.TemporaryDirectory(prefix="bench-transport-") as tmp:
        pem = os.path.join(tmp, "server.pem")
        ca.issue_cert(HOST).private_key_and_cert_chain_pem.write_to_path(pem)
        rate, cpu, reps = throughput(began)
        rss, accept_cpu, idle_reps = idle_memory(began, pem, client_tls)
        control = control_p99_ms()

    def ratio(a: float, b: float) -> float:
        return round(a / b, 3)

    rates: dict[str, float] = {name: round(value) for name, value in rate.items()}
    for name in ("raw_oneway64k", "ours_oneway64k_actor"):
        rates[f"{name}_MB_s"] = round(rate[name] * 65536 / 1e6, 1)
    rates |= {f"{name}_server_cpu_us": round(value, 1) for name, value in cpu.items()}
    return {
        "bench": "transport",
        "echo_ratio": ratio(rate["ours_echo32"], rate["raw_echo32"]),
        "oneway_ratio": ratio(rate["ours_oneway32_actor"], rate["raw_oneway32"]),
        "large_throughput_ratio": ratio(rate["ours_oneway64k_actor"], rate["raw_oneway64k"]),
        "idle_conn_bytes_ws": round(rss["ours_ws"]),
        "idle_conn_bytes_wss": round(rss["ours_wss"]),
        "echo_server_cpu_ratio": ratio(cpu["ours_echo32"], cpu["raw_echo32"]),
        "oneway_server_cpu_ratio": ratio(cpu["ours_oneway32_actor"], cpu["raw_oneway32"]),
        "oneway_handler_ratio": ratio(rate["ours_oneway32_handler"], rate["raw_oneway32"]),
        "idle_conn_bytes_ws_raw": round(rss["raw_ws"]),
        "idle_conn_bytes_wss_raw": round(rss["raw_wss"]),
        "accept_cpu_ratio_ws": ratio(accept_cpu["ours_ws"], accept_cpu["raw_ws"]),
        "accept_cpu_ratio_wss": ratio(accept_cpu["ours_wss"], accept_cpu["raw_wss"]),
        "accept_cpu_us": {name: round(value) for name, value in accept_cpu.items()},
        "control_p99_ms": control,
        "idle_memory": f"server process VmRSS growth over {CONNS} idle connections",
        "rates": rates,
        "reps": reps,
        "idle_reps": idle_reps,
        "python": platform.python_version(),
        "trio": version("trio"),
        "trio_websocket": version("trio-websocket"),
        "wsproto": version("wsproto"),
        "openssl": ssl.OPENSSL_VERSION,
        "cpus": os.cpu_count(),
        "elapsed_s": round(time.perf_counter() - began, 1),
    }


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--server":
        server_main(sys.argv[2], sys.argv[3])
    else:
        print(json.dumps(main()))
