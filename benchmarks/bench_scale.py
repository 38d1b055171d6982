"""Scale benchmark: one server process filled with idle WebSocket connections.

Prints one JSON line. An echo server runs in its own process, once as ``raw`` (bare
trio-websocket: ``trio_websocket.serve_websocket`` and an echo handler) and once as
``ours`` (``transport.serve_websocket``, the default :class:`transport.ConnectionOptions`,
keepalive included, and an echo handler); each is filled the same way, one after the
other, in the same run. The fill comes from ``--clients`` separate client processes
(plain non-blocking sockets and ``epoll``, pre-built masked frames, no WebSocket library),
each bound to its own loopback source address (``127.0.0.2``, ``127.0.0.3``, ...) so that
no address runs out of ephemeral ports, and each keeping ``--window`` handshakes in flight
(100 at a time in all, by default). While they hold their connections the clients answer
every Ping with its Pong, so the server's keepalive (a Ping every 20 s per connection by
default) keeps them open. At the end every connection sends one message and must get its
echo back.

Keys:

- ``idle_connections``: connections our server holds at the end that each answered an
  echo (the server's own count of open connections and the clients' count of echoes, the
  smaller). By default the fill aims just below the file-descriptor limit of one process
  (``resource.getrlimit(RLIMIT_NOFILE)``, the soft limit raised to the hard one in every
  process of the run), less ``FD_MARGIN``;
- ``idle_conn_bytes``: growth of our server's RSS (resident pages; the kernel's socket
  memory is not in it, see ``kernel_bytes_per_conn``) per open connection, after the
  fill, over the RSS after a warm-up of ``WARM_UP`` connections opened and dropped;
- ``accept_rate_ratio``: connections accepted per second during the whole fill (the first
  handshake request sent to the last 101 read), ours over raw;
  ``fill``/``<stack>``/``slice_rates`` give the rate of each ``slice``-connection slice
  of the fill in order, which shows how accepting slows as the process fills;
- ``accept_cpu_us``: the server's on-CPU time (``/proc/PID/schedstat``) per accepted
  connection during the fill; ``gc``: the server's garbage collections and the seconds
  they took during the fill (``gc.callbacks``);
- ``est_rss_50k_mb``: the RSS a server process holding 50,000 such connections would
  need by these figures (its RSS before the fill plus 50,000 times ``idle_conn_bytes``);
  ``est_kernel_50k_mb``: the kernel memory of their sockets on the server's side (the
  growth of the machine's slab and TCP buffer memory during the fill, halved: both ends
  of a loopback connection are on this machine; other processes add noise to it);
- ``accept_rate_ratio_tuned_gc``: the same ratio with both servers calling
  :func:`actors.tune_gc` after start-up (its ``young`` threshold from ``--gc-threshold``,
  20,000 by default), filled after the default pair, and
  ``accept_rate_tuned_over_default``: our tuned rate over our default one;
- ``idle_cpu_pct``: the full server's CPU use (percent of one core) while every
  connection is idle, read right after the fill over one keepalive interval for ours
  (20 s: each connection gets one Ping and answers it) and over 5 s for raw (no
  keepalive);
- ``limits``: the limits met on the way (file descriptors, ephemeral ports per source
  address, the listen backlog).

Every phase is bounded in time (``FILL_TIMEOUT_S``, ``IO_TIMEOUT_S``) and every process of
the run is stopped on the way out, also on a failure. ``--connections N`` runs a smaller
fill; ``--no-tuned-gc`` skips the tuned pair. Then ``benchmarks/workers_speedup.py`` runs
and its figures join the line (``workers_speedup``: chat fan-out with 2 worker processes
over 1; ``--no-workers`` skips it). Run: ``python benchmarks/bench_scale.py
[--connections N] [--clients K] [--window W] [--gc-threshold T] [--no-tuned-gc]
[--no-workers]``.
"""

from __future__ import annotations

import argparse
import errno
import gc
import json
import math
import os
import platform
import resource
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from functools import partial
from importlib.metadata import version

import attrs
import trio
import trio_websocket as tw

import actors
import transport

HOST = "127.0.0.1"
#: File descriptors a server process keeps for itself besides its connections.
FD_MARGIN = 500
#: No fill of one server takes longer than this, nor any other wait than IO_TIMEOUT_S.
FILL_TIMEOUT_S = 150.0
IO_TIMEOUT_S = 60.0
#: Seconds between the end of the fill and the memory reading.
SETTLE_S = 1.0
#: Seconds over which the full server's CPU is read while its connections are idle: ours
#: for one keepalive interval (every connection is pinged once in it), raw (no keepalive)
#: for a short while.
IDLE_WINDOW_S = {"ours": transport.ConnectionOptions().ping_interval or 5.0, "raw": 5.0}
#: Connections opened and dropped before the baseline reading.
WARM_UP = 200
#: The connection count of a 50,000-connection estimate.
ESTIMATE_CONNECTIONS = 50_000


def raise_fd_limit() -> int:
    """Raise the soft limit of open files to the hard one; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ==================================================================================== servers


@attrs.define
class GcTally:
    """Collections of each generation and the seconds they took (through ``gc.callbacks``)."""

    collections: list[int] = attrs.field(factory=lambda: [0, 0, 0])
    seconds: float = 0.0
    _began: float = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began
            self.collections[info["generation"]] += 1


async def raw_echo(opened: list[int], request: tw.WebSocketRequest) -> None:
    ws = await request.accept()
    opened[0] += 1
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except tw.ConnectionClosed:
        pass
    finally:
        opened[0] -= 1


async def our_echo(conn: transport.WebSocketConnection) -> None:
    async for message in conn:
        await conn.send(message)


async def serve(stack: str, capacity: int, threshold: int | None, tally: GcTally) -> None:
    """Print ``PORT n``; answer ``stats`` lines on stdin; serve until stdin closes."""
    if stack == "raw":
        opened = [0]
        async with trio.open_nursery() as nursery:
            raw = await nursery.start(tw.serve_websocket, partial(raw_echo, opened), HOST, 0, None)
            await serve_commands(raw.port, threshold, tally, lambda: opened[0])
            nursery.cancel_scope.cancel()
        return
    async with actors.open_system("scale") as system, trio.open_nursery() as nursery:
        ours = await nursery.start(
            partial(transport.serve_websocket, system, our_echo, HOST, 0, max_connections=capacity)
        )
        await serve_commands(ours.port, threshold, tally, None, ours)
        nursery.cancel_scope.cancel()


async def serve_commands(
    port: int,
    threshold: int | None,
    tally: GcTally,
    raw_open: Callable[[], int] | None,
    ours: transport.WebSocketServer | None = None,
) -> None:
    if threshold is not None:  # start-up is done
        actors.tune_gc(threshold)
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    buffer = b""
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
        while chunk := await stdin.receive_some():
            buffer += chunk
            while b"\n" in buffer:
                _, buffer = buffer.split(b"\n", 1)
                if ours is not None:
                    held = (await ours.statistics()).active
                else:
                    assert raw_open is not None
                    held = raw_open()
                stats = {"open": held, "gc": tally.collections, "gc_s": round(tally.seconds, 3)}
                sys.stdout.write(json.dumps(stats) + "\n")
                sys.stdout.flush()


def server_main(stack: str, threshold: int | None) -> None:
    capacity = raise_fd_limit()
    tally = GcTally()
    gc.callbacks.append(tally)
    trio.run(serve, stack, capacity, threshold, tally)


# ==================================================================================== clients

MASK = b"\x37\xfa\x21\x3d"


def client_frame(payload: bytes, opcode: int) -> bytes:
    """A final, masked client frame with a payload under 126 bytes."""
    key = (MASK * (len(payload) // 4 + 1))[: len(payload)]
    masked = bytes(a ^ b for a, b in zip(payload, key, strict=True))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + MASK + masked


ECHO = b"still here"
ECHO_FRAME = client_frame(ECHO, 0x2)
UPGRADE = (
    "GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
)
CONNECTING, UPGRADING, OPEN = 0, 1, 2


@attrs.define(eq=False)
class Peer:
    """One client connection and what it has read."""

    sock: socket.socket
    state: int = CONNECTING
    buffer: bytes = b""
    echoed: bool = False


@attrs.define(eq=False)
class Client:
    """A client process: opens its share of connections, holds them, answers pings."""

    port: int
    source: str
    count: int
    window: int
    epoll: select.epoll = attrs.field(factory=select.epoll)
    peers: dict[int, Peer] = attrs.field(factory=dict)
    started: int = 0
    in_flight: int = 0
    opened: list[float] = attrs.field(factory=list)
    failures: dict[str, int] = attrs.field(factory=dict)
    lost: int = 0
    pings: int = 0
    echoes: int = 0

    def fail(self, fd: int, why: str) -> None:
        peer = self.peers.pop(fd)
        if peer.state == OPEN:
            self.lost += 1
        else:
            self.in_flight -= 1
            self.failures[why] = self.failures.get(why, 0) + 1
        self.epoll.unregister(fd)
        peer.sock.close()

    def start_one(self) -> None:
        self.started += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        try:
            sock.bind((self.source, 0))
        except OSError as exc:
            sock.close()
            self.failures[errno.errorcode.get(exc.errno or 0, "bind")] = 1 + self.failures.get(
                errno.errorcode.get(exc.errno or 0, "bind"), 0
            )
            return
        self.in_flight += 1
        self.peers[sock.fileno()] = Peer(sock)
        self.epoll.register(sock.fileno(), select.EPOLLOUT)
        sock.connect_ex((HOST, self.port))

    def on_event(self, fd: int, events: int) -> None:
        peer = self.peers[fd]
        if peer.state == CONNECTING:
            error = peer.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self.fail(fd, errno.errorcode.get(error, str(error)))
                return
            peer.sock.send(UPGRADE.format(host=HOST, port=self.port).encode())
            peer.state = UPGRADING
            self.epoll.modify(fd, select.EPOLLIN)
            return
        try:
            data = peer.sock.recv(65536)
        except OSError as exc:
            self.fail(fd, errno.errorcode.get(exc.errno or 0, "recv"))
            return
        if not data:
            self.fail(fd, "closed during the handshake")
            return
        peer.buffer += data
        if peer.state == UPGRADING:
            head, sep, rest = peer.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.fail(fd, head.split(b"\r\n", 1)[0].decode(errors="replace"))
                return
            peer.state, peer.buffer = OPEN, rest
            self.in_flight -= 1
            self.opened.append(time.monotonic())
        self.read_frames(fd, peer)

    def read_frames(self, fd: int, peer: Peer) -> None:
        """Handle the server's complete frames: Pong each Ping, count echoes."""
        buffer = peer.buffer
        while len(buffer) >= 2:
            opcode, n, at = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if n == 126:
                n, at = int.from_bytes(buffer[2:4], "big"), 4
            elif n == 127:
                n, at = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < at + n:
                break
            payload, buffer = buffer[at : at + n], buffer[at + n :]
            if opcode == 0x9:
                self.pings += 1
                peer.sock.send(client_frame(payload, 0xA))
            elif opcode == 0x8:
                peer.buffer = b""
                self.fail(fd, "closed by the server")
                return
            elif payload == ECHO and not peer.echoed:
                peer.echoed = True
                self.echoes += 1
        peer.buffer = buffer

    def poll(self, timeout: float) -> list[int]:
        """Handle the events of up to ``timeout`` seconds; return those of stdin."""
        ours = []
        for fd, events in self.epoll.poll(timeout):
            if fd == 0:
                ours.append(events)
            elif fd in self.peers:
                self.on_event(fd, events)
        return ours

    def fill(self, deadline: float) -> None:
        while (self.started < self.count or self.in_flight) and time.monotonic() < deadline:
            while self.started < self.count and self.in_flight < self.window:
                self.start_one()
            self.poll(0.05)

    def echo(self, deadline: float) -> None:
        for peer in list(self.peers.values()):
            with suppress(OSError):
                peer.sock.send(ECHO_FRAME)
        while self.echoes < len(self.peers) and time.monotonic() < deadline:
            self.poll(0.05)

    def report(self, **extra: object) -> None:
        line = {
            "open": len(self.peers),
            "failures": self.failures,
            "lost": self.lost,
            "pings": self.pings,
            "echoes": self.echoes,
        }
        sys.stdout.write(json.dumps(line | extra) + "\n")
        sys.stdout.flush()


def client_main(port: int, source: str, count: int, window: int) -> None:
    """Commands on stdin: ``fill``, ``echo``; end of stdin resets every connection."""
    raise_fd_limit()
    client = Client(port, source, count, window)
    client.epoll.register(0, select.EPOLLIN)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    pending = b""
    while True:
        if not client.poll(1.0):
            continue
        chunk = os.read(0, 4096)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line == b"fill":
                client.fill(time.monotonic() + FILL_TIMEOUT_S)
                client.report(opened=client.opened)
            elif line == b"echo":
                client.echo(time.monotonic() + IO_TIMEOUT_S)
                client.report()
    for peer in client.peers.values():
        peer.sock.close()  # SO_LINGER 0: a reset, no TIME_WAIT left behind


# ===================================================================================== driver


@attrs.frozen
class ClientReport:
    """A client process's counts: failures by reason, connections the server closed,
    pings answered, echoes received, and when each handshake of a fill ended."""

    failures: dict[str, int]
    lost: int
    pings: int
    echoes: int
    opened: list[float]


@attrs.frozen
class ServerStats:
    """A server process's open connections, collections per generation and their seconds."""

    open: int
    gc: list[int]
    gc_s: float


@attrs.define(eq=False)
class Child:
    """A process of the run, talked to through its stdin and stdout."""

    proc: subprocess.Popen[str]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self, timeout: float) -> str:
        stdout = self.proc.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"process {self.proc.args!r} did not answer within {timeout}s")
        return line

    def client_report(self, timeout: float) -> ClientReport:
        report = json.loads(self.read(timeout))
        return ClientReport(
            failures={str(why): int(n) for why, n in report["failures"].items()},
            lost=int(report["lost"]),
            pings=int(report["pings"]),
            echoes=int(report["echoes"]),
            opened=[float(t) for t in report.get("opened", ())],
        )

    def server_stats(self) -> ServerStats:
        self.send("stats")
        stats = json.loads(self.read(IO_TIMEOUT_S))
        return ServerStats(int(stats["open"]), [int(n) for n in stats["gc"]], float(stats["gc_s"]))

    def stop(self) -> None:
        """Close its stdin (its signal to end), wait a little, then kill it."""
        with suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(IO_TIMEOUT_S / 3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def child(*args: str) -> Iterator[Child]:
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    spawned = Child(proc)
    try:
        yield spawned
    finally:
        spawned.stop()


def kernel_bytes() -> tuple[int, int]:
    """The machine's kernel slab memory (``/proc/meminfo``) and TCP buffer memory
    (``/proc/net/sockstat``)."""
    slab = tcp = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                slab = int(line.split()[1]) * 1024
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                tcp = int(fields[fields.index("mem") + 1]) * resource.getpagesize()
    return slab, tcp


def rss_and_cpu(pid: int) -> tuple[int, float]:
    """A process's resident memory (bytes) and the CPU seconds it has run."""
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * resource.getpagesize()
    with open(f"/proc/{pid}/schedstat") as f:
        return rss, int(f.read().split()[0]) / 1e9


def read_int(path: str) -> int:
    with open(path) as f:
        return int(f.read().split()[0])


@attrs.frozen
class Options:
    connections: int
    clients: int
    window: int
    #: The first gc threshold of the tuned fills (None: no tuned fills).
    threshold: int | None
    slice: int
    #: Whether to measure workers_speedup as well.
    workers: bool


@attrs.frozen
class Fill:
    """What one fill of one server measured."""

    opened: int
    held_after_fill: int
    held_at_end: int
    echoed: int
    failures: dict[str, int]
    lost: int
    pings_answered: int
    fill_s: float
    rate: float
    slice_rates: list[int]
    accept_cpu_us: float
    gc: list[int]
    gc_s: float
    rss_before_mb: float
    rss_mb: float
    conn_bytes: int
    kernel_bytes_per_conn: int
    idle_cpu_pct: float


def shares(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def fill_server(stack: str, first_address: int, options: Options, threshold: int | None) -> Fill:
    """Start a server, fill it from the client processes, check every echo, stop it all."""
    flags = [] if threshold is None else ["--tune-gc", str(threshold)]
    with ExitStack() as processes:
        server = processes.enter_context(child("--server", stack, *flags))
        line = server.read(IO_TIMEOUT_S)
        if not line.startswith("PORT "):
            raise RuntimeError(f"the {stack} server did not start ({line!r})")
        port = line.split()[1]

        def start_clients(address: int, counts: list[int], window: int) -> list[Child]:
            started = [
                processes.enter_context(
                    child("--client", port, f"127.0.0.{address + i}", str(count), str(window))
                )
                for i, count in enumerate(counts)
            ]
            for client in started:
                if client.read(IO_TIMEOUT_S) != "READY\n":
                    raise RuntimeError("a client process did not start")
            return started

        # Warm-up: the code paths run once, then the baseline.
        (warm,) = start_clients(first_address + options.clients, [WARM_UP], 25)
        warm.send("fill")
        warm.client_report(IO_TIMEOUT_S)
        warm.stop()
        time.sleep(SETTLE_S)
        clients = start_clients(
            first_address,
            shares(options.connections, options.clients),
            max(1, options.window // options.clients),
        )
        pid = server.proc.pid
        before = server.server_stats()
        rss0, cpu0 = rss_and_cpu(pid)
        slab0, tcp0 = kernel_bytes()
        began = time.monotonic()
        for client in clients:
            client.send("fill")
        filled = [client.client_report(FILL_TIMEOUT_S + IO_TIMEOUT_S) for client in clients]
        cpu = rss_and_cpu(pid)[1] - cpu0
        time.sleep(SETTLE_S)
        rss, idle0 = rss_and_cpu(pid)
        time.sleep(IDLE_WINDOW_S[stack])
        idle_cpu = rss_and_cpu(pid)[1] - idle0
        slab, tcp = kernel_bytes()
        after = server.server_stats()
        for client in clients:
            client.send("echo")
        echoed = [client.client_report(IO_TIMEOUT_S * 1.5) for client in clients]
        at_end = server.server_stats()

    opened = sorted(t for report in filled for t in report.opened)
    held = after.open
    failures: dict[str, int] = {}
    for report in filled + echoed:
        for why, n in report.failures.items():
            failures[why] = failures.get(why, 0) + n
    size = options.slice
    slices = [
        round(size / max(opened[end - 1] - (opened[end - size - 1] if end > size else began), 1e-9))
        for end in range(size, len(opened) + 1, size)
    ]
    fill_s = opened[-1] - began if opened else math.inf
    return Fill(
        opened=len(opened),
        held_after_fill=held,
        held_at_end=at_end.open,
        echoed=sum(report.echoes for report in echoed),
        failures=failures,
        lost=sum(report.lost for report in echoed),
        pings_answered=sum(report.pings for report in echoed),
        fill_s=round(fill_s, 2),
        rate=round(len(opened) / fill_s, 1),
        slice_rates=slices,
        accept_cpu_us=round(cpu / max(len(opened), 1) * 1e6),
        gc=[b - a for a, b in zip(before.gc, after.gc, strict=True)],
        gc_s=round(after.gc_s - before.gc_s, 2),
        rss_before_mb=round(rss0 / 1e6, 1),
        rss_mb=round(rss / 1e6, 1),
        conn_bytes=round((rss - rss0) / max(held, 1)),
        # Both ends of every connection are sockets of this machine: half is the server's.
        kernel_bytes_per_conn=round((slab - slab0 + tcp - tcp0) / 2 / max(held, 1)),
        idle_cpu_pct=round(idle_cpu / IDLE_WINDOW_S[stack] * 100, 1),
    )


def main(options: Options) -> dict[str, object]:
    began = time.perf_counter()
    fds = raise_fd_limit()
    # Source addresses: each fill has its own (its clients' and a warm-up's), so no port
    # of one fill is still in use when the next begins.
    fills: dict[str, Fill] = {}
    address = 2
    variants = (
        [("", None)]
        if options.threshold is None
        else [("", None), ("_tuned_gc", options.threshold)]
    )
    for suffix, threshold in variants:
        for stack in ("raw", "ours"):
            fills[stack + suffix] = fill_server(stack, address, options, threshold)
            address += options.clients + 1
    raw, ours = fills["raw"], fills["ours"]
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(p) for p in f.read().split())
    result: dict[str, object] = {
        "bench": "scale",
        "idle_connections": min(ours.held_at_end, ours.echoed),
        "idle_conn_bytes": ours.conn_bytes,
        "accept_rate_ratio": round(ours.rate / max(raw.rate, 1e-9), 3),
        "est_rss_50k_mb": round(ours.rss_before_mb + ESTIMATE_CONNECTIONS * ours.conn_bytes / 1e6),
        "est_kernel_50k_mb": round(ESTIMATE_CONNECTIONS * ours.kernel_bytes_per_conn / 1e6),
    }
    if "ours_tuned_gc" in fills:
        tuned, raw_tuned = fills["ours_tuned_gc"], fills["raw_tuned_gc"]
        result["accept_rate_ratio_tuned_gc"] = round(tuned.rate / max(raw_tuned.rate, 1e-9), 3)
        result["accept_rate_tuned_over_default"] = round(tuned.rate / max(ours.rate, 1e-9), 3)
    if options.workers:
        # Chat fan-out with 2 worker processes over 1, by its own script (its JSON line).
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers_speedup.py")
        ran = subprocess.run([sys.executable, script], capture_output=True, check=True)
        result |= json.loads(ran.stdout.decode().strip().splitlines()[-1])
    result |= {
        "connections": options.connections,
        "slice": options.slice,
        "gc_threshold_tuned": options.threshold,
        "fill": {name: attrs.asdict(fill) for name, fill in fills.items()},
        "limits": {
            "open_files_per_process": fds,
            "ephemeral_ports_per_source_address": high - low + 1,
            "listen_backlog": read_int("/proc/sys/net/core/somaxconn"),
            "client_processes": options.clients,
            "handshakes_in_flight": options.window,
        },
        "python": platform.python_version(),
        "trio": version("trio"),
        "trio_websocket": version("trio-websocket"),
        "cpus": os.cpu_count(),
        "elapsed_s": round(time.perf_counter() - began, 1),
    }
    return result


def parse(argv: list[str]) -> Options:
    fds = raise_fd_limit()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--connections", type=int, default=fds - FD_MARGIN)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--gc-threshold", type=int, default=20_000)
    parser.add_argument("--no-tuned-gc", action="store_true")
    parser.add_argument(
        "--no-workers", action="store_true", help="skip workers_speedup (about a minute)"
    )
    args = parser.parse_args(argv)
    threshold = None if args.no_tuned_gc else args.gc_threshold
    size = 2000 if args.connections >= 10_000 else max(1, args.connections // 5)
    return Options(
        args.connections, args.clients, args.window, threshold, size, not args.no_workers
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--server"]:
        tune = sys.argv[3:5]
        server_main(sys.argv[2], int(tune[1]) if tune[:1] == ["--tune-gc"] else None)
    elif sys.argv[1:2] == ["--client"]:
        port, source, count, window = sys.argv[2:6]
        client_main(int(port), source, int(count), int(window))
    else:
        print(json.dumps(main(parse(sys.argv[1:]))))
