"""Chat fan-out throughput with 2 workers over 1 worker, in one run (``workers_speedup``).

Starts its own redis-server (no persistence, a free port) and, for each phase,
``trio-actors chat --workers N --redis URL`` (N = 1, then 2; with 1 worker the chat runs in
one process, with the same backplane and code path). The clients live in their own
processes and use raw sockets in an ``epoll`` loop (no framework), so that the cores go
to the servers:

* ``RECEIVER_PROCESSES`` processes each hold ``members`` members of one room; they only
  count the bytes they receive (every chat message has the same size, so bytes / frame
  size = messages delivered);
* one sender process holds ``senders`` members that post to the room, placed evenly on the
  workers (a sender reconnects until the ``Chat-Worker`` header names the worker it wants).
  Senders pace themselves on what their own worker delivers back to them: a sender posts
  message n only once it has seen message n - ``window`` of every sender, so that at most
  ``senders * (window + 1)`` messages are in flight and no member's queue (64 events)
  overflows.

Each phase warms up, then counts the bytes the receivers got over ``seconds``; the phases
alternate ``reps`` times and the medians are compared. Prints one JSON line::

    {"workers_speedup": x, "delivered_per_s_1": ..., "delivered_per_s_2": ..., ...}

``measure_workers_speedup()`` returns the same figures as a dict. Usage:
``python benchmarks/workers_speedup.py [--members N] [--seconds S] [--reps R]``; one run
takes about a minute.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from transport.apps import chat_protocol as protocol
from transport.apps.chat_server import WORKER_HEADER

ROOT = Path(__file__).resolve().parent.parent
ROOM = "bench"
RECEIVER_PROCESSES = 2
#: Every posted text has this many characters, so that every frame has the same size.
TEXT_DIGITS = 8
START_TIMEOUT = 30.0
WARM_UP = 1.0
#: How long a receiver process sleeps between two passes over its sockets (it batches reads).
RECEIVER_NAP = 0.01


# -- a raw WebSocket client: just enough for the chat ----------------------------------------


def _handshake(host: str, port: int) -> tuple[socket.socket, str]:
    """An open WebSocket on a blocking socket, and the worker it landed on."""
    sock = socket.create_connection((host, port), timeout=START_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the chat server closed the connection during the handshake")
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"handshake refused: {head[:80]!r}")
    assert not rest, "the server spoke before it was spoken to"
    found = re.search(rb"(?im)^" + WORKER_HEADER.encode() + rb":\s*(\S+)", head)
    return sock, found.group(1).decode() if found else "1"


def _frame(message: protocol.ClientMessage) -> bytes:
    """A masked text frame (the mask is zero: the payload is sent as it is)."""
    payload = protocol.encode_client(message).encode()
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def _frames(buffer: bytearray) -> Iterator[bytes]:
    """Take the complete server frames (unmasked) off the front of ``buffer``."""
    while len(buffer) >= 2:
        length, start = buffer[1] & 0x7F, 2
        if length == 126:
            length, start = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            length, start = int.from_bytes(buffer[2:10], "big"), 10
        if len(buffer) < start + length:
            return
        payload = bytes(buffer[start : start + length])
        del buffer[: start + length]
        yield payload


def _join(sock: socket.socket, name: str) -> None:
    """Join the room and wait for the member list (the reply to the join)."""
    sock.sendall(_frame(protocol.JoinRoom(ROOM, name)))
    buffer = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"{name}: closed while joining")
        buffer += chunk
        for payload in _frames(buffer):
            message = protocol.decode_server(payload.decode())
            if isinstance(message, protocol.Members):
                return
            if isinstance(message, protocol.Problem):
                raise ConnectionError(f"{name}: {message.text}")


def posted_frame_size() -> int:
    """The bytes of one posted message as a member receives it (header + JSON)."""
    payload = protocol.encode_server(protocol.Posted(ROOM, "s0", "0" * TEXT_DIGITS))
    return 2 + len(payload.encode())


# -- the client processes ---------------------------------------------------------------------


def _receivers(host: str, port: int, count: int, prefix: str) -> None:
    """Hold ``count`` members; on each line of stdin print the bytes received so far and
    how many members were closed; exit at the end of stdin."""
    socks = []
    for n in range(count):
        sock, _ = _handshake(host, port)
        _join(sock, f"{prefix}{n}")
        sock.setblocking(False)
        socks.append(sock)
    poller = select.epoll()
    for sock in socks:
        poller.register(sock.fileno(), select.EPOLLIN)
    by_fd = {sock.fileno(): sock for sock in socks}
    stdin = sys.stdin.fileno()
    poller.register(stdin, select.EPOLLIN)
    print("ready", flush=True)
    received = closed = 0
    while True:
        for fd, _ in poller.poll():
            if fd == stdin:
                if not os.read(stdin, 4096):
                    return
                print(received, closed, flush=True)
                continue
            try:
                chunk = by_fd[fd].recv(1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                closed += 1
                poller.unregister(fd)
            received += len(chunk)
        time.sleep(RECEIVER_NAP)


def _senders(host: str, port: int, count: int, window: int, workers: int) -> None:
    """Post as fast as the pacing allows (see the module's docstring) until stdin ends."""
    socks = []
    for n in range(count):
        wanted = str(n % workers + 1)
        while True:
            sock, worker = _handshake(host, port)
            if worker == wanted:
                break
            sock.close()
        _join(sock, f"s{n}")
        sock.setblocking(False)
        socks.append(sock)
    # seen[j][k]: the last message of sender k that sender j has seen; sent[j]: its count.
    seen = [[-1] * count for _ in range(count)]
    sent = [0] * count
    buffers = [bytearray() for _ in range(count)]
    index = {sock.fileno(): j for j, sock in enumerate(socks)}
    poller = select.epoll()
    for sock in socks:
        poller.register(sock.fileno(), select.EPOLLIN)
    stdin = sys.stdin.fileno()
    poller.register(stdin, select.EPOLLIN)
    print("ready", flush=True)
    while True:
        for j, sock in enumerate(socks):
            while sent[j] - window - 1 <= min(seen[j]):
                text = f"{sent[j]:0{TEXT_DIGITS}d}"
                sock.send(_frame(protocol.SayInRoom(ROOM, text)))
                sent[j] += 1
        for fd, _ in poller.poll():
            if fd == stdin:
                return  # the coordinator writes nothing: this is the end of stdin
            j = index[fd]
            try:
                chunk = socks[j].recv(1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                raise ConnectionError(f"sender s{j} was disconnected")
            buffers[j] += chunk
            for payload in _frames(buffers[j]):
                if b'"type": "message"' in payload or b'"type":"message"' in payload:
                    message = protocol.decode_server(payload.decode())
                    assert isinstance(message, protocol.Posted)
                    k = int(message.name[1:])
                    seen[j][k] = max(seen[j][k], int(message.text))


# -- the coordinator --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def _redis() -> Iterator[str]:
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server is not installed: sudo apt-get install redis-server")
    port = _free_port()
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if b"Ready to accept connections" in line:
                break
        else:
            sys.exit("redis-server did not start")
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its children (the chat's parent and its workers), whichever of its
    threads started them."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            pids += [int(child) for child in (task / "children").read_text().split()]
    return pids


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds the processes ``pids`` have used so far."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"{process.args!r} ended (status {process.wait()})")
    return line.strip()


def _phase(
    redis_url: str, workers: int, members: int, senders: int, window: int, seconds: float
) -> tuple[float, float, float, int]:
    """Messages delivered per second to the receiving members, the cores the chat servers
    and the client processes used meanwhile, and the members dropped."""
    server = _spawn(
        "-m", "transport.apps", "chat", "--port", "0", "--no-page",
        "--workers", str(workers), "--redis", redis_url,
    )  # fmt: skip
    clients: list[subprocess.Popen[str]] = []
    try:
        while not (line := _line(server)).startswith("listening on "):
            pass
        host, port = re.fullmatch(r"listening on ws://(.+):(\d+)/", line).groups()  # type: ignore[union-attr]
        me = str(Path(__file__).resolve())
        receivers = [
            _spawn(me, "--client", "receivers", host, port, str(members), f"r{n}-")
            for n in range(RECEIVER_PROCESSES)
        ]
        clients += receivers
        for receiver in receivers:
            assert _line(receiver) == "ready"
        sender = _spawn(
            me, "--client", "senders", host, port, str(senders), str(window), str(workers)
        )
        clients.append(sender)
        assert _line(sender) == "ready"
        time.sleep(WARM_UP)

        servers = _process_tree(server.pid)

        def mark() -> tuple[float, float, float, int, int]:
            for receiver in receivers:
                assert receiver.stdin is not None
                receiver.stdin.write("mark\n")
                receiver.stdin.flush()
            counts = [_line(receiver).split() for receiver in receivers]
            received = sum(int(c[0]) for c in counts)
            dropped = sum(int(c[1]) for c in counts)
            cpu = _cpu_seconds(servers), _cpu_seconds([client.pid for client in clients])
            return time.monotonic(), *cpu, received, dropped

        start, cpu_before, clients_before, before, _ = mark()
        time.sleep(seconds)
        end, cpu_after, clients_after, after, dropped = mark()
        elapsed = end - start
        delivered = (after - before) / posted_frame_size()
        servers_used = (cpu_after - cpu_before) / elapsed
        return (
            delivered / elapsed,
            servers_used,
            (clients_after - clients_before) / elapsed,
            dropped,
        )
    finally:
        for client in clients:
            assert client.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                client.stdin.close()
        for client in clients:
            try:
                client.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                client.kill()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()


def measure_workers_speedup(
    members: int = 150, senders: int = 8, window: int = 3, seconds: float = 5.0, reps: int = 2
) -> dict[str, float | int]:
    """Chat fan-out, 2 workers over 1 worker: messages delivered per second to
    ``RECEIVER_PROCESSES * members`` members of one room (medians of ``reps`` phases each)."""
    rates: dict[int, list[float]] = {1: [], 2: []}
    cores: dict[int, list[float]] = {1: [], 2: []}
    client_cores: dict[int, list[float]] = {1: [], 2: []}
    dropped = 0
    with _redis() as url:
        for _ in range(reps):
            for workers in (1, 2):
                rate, used, by_clients, lost = _phase(
                    url, workers, members, senders, window, seconds
                )
                rates[workers].append(rate)
                cores[workers].append(used)
                client_cores[workers].append(by_clients)
                dropped += lost
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    return {
        "workers_speedup": round(two / one, 2),
        "delivered_per_s_1": round(one),
        "delivered_per_s_2": round(two),
        "server_cores_1": round(statistics.median(cores[1]), 2),
        "server_cores_2": round(statistics.median(cores[2]), 2),
        "client_cores_1": round(statistics.median(client_cores[1]), 2),
        "client_cores_2": round(statistics.median(client_cores[2]), 2),
        "room_members": RECEIVER_PROCESSES * members + senders,
        "members_dropped": dropped,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        role, host, port, *rest = sys.argv[2:]
        if role == "receivers":
            _receivers(host, int(port), int(rest[0]), rest[1])
        else:
            _senders(host, int(port), int(rest[0]), int(rest[1]), int(rest[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=150, help="members per receiver process")
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--window", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per phase")
    parser.add_argument("--reps", type=int, default=2)
    arguments = parser.parse_args()
    figures = measure_workers_speedup(
        arguments.members, arguments.senders, arguments.window, arguments.seconds, arguments.reps
    )
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
