"""``trio-actors chat --workers 2 --redis URL``: two chat servers on one port, one parent.

The parent runs as users run it (a subprocess), against a real redis-server on a free
loopback port (the ``redis_server`` fixture). Each client learns its worker from the
``Chat-Worker`` response header; the parent's output carries every worker's lines after
``worker N:``. Every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import attrs
import trio

import actors
import transport
from tests.redis_support import (
    COREDIS_MARKS,
    COREDIS_WARNINGS,
    RedisServer,
    collect_coredis_garbage as collect_coredis_garbage,
    redis_server as redis_server,
)
from tests.test_examples_chat import NO_KEEPALIVE, ROOT, ChatClient, joined, said
from tests.test_workers import stranger_on
from transport.apps import chat_protocol as protocol
from transport.apps.chat_server import WORKER_HEADER

pytestmark = COREDIS_MARKS

TIMEOUT = 30  # generous: each wait takes far less; the bound turns a hang into a failure
#: Warnings are errors in the parent and (it passes its -W options on) in every worker, except
#: coredis's own (see ``COREDIS_WARNINGS``).
COMMAND = [sys.executable, "-W", "error", *COREDIS_WARNINGS, "-m", "transport.apps", "chat"]


@attrs.define(eq=False)
class Parent:
    """The parent process and what it has printed so far."""

    process: trio.Process
    url: str = ""
    out: str = ""
    err: str = ""
    _changed: trio.Event = attrs.field(factory=trio.Event)

    async def read(self, stream: trio.abc.ReceiveStream, name: str) -> None:
        while chunk := await stream.receive_some():
            setattr(self, name, getattr(self, name) + chunk.decode())
            self._changed.set()
            self._changed = trio.Event()

    async def expect(self, pattern: str) -> re.Match[str]:
        """Wait until the parent's stdout holds a line that matches ``pattern``."""
        with trio.fail_after(TIMEOUT):
            while (match := re.search(pattern, self.out, re.MULTILINE)) is None:
                if self.process.poll() is not None:
                    raise AssertionError(f"the parent ended: {self.out!r} {self.err!r}")
                await self._changed.wait()
        return match

    def worker_pids(self) -> dict[int, int]:
        """The latest pid of each worker, from its ``listening on`` lines."""
        lines = re.findall(r"^worker (\d+): listening on \S+ \(pid (\d+)\)$", self.out, re.M)
        return {int(index): int(pid) for index, pid in lines}


@asynccontextmanager
async def chat_workers(redis: RedisServer, workers: int = 2) -> AsyncIterator[Parent]:
    """``trio-actors chat --workers N --redis URL`` until every worker listens; leaving the
    block sends SIGTERM and checks that the parent drained them and exited 0 (unless the
    test ended the parent itself)."""
    options = ["--port", "0", "--no-page", "--workers", str(workers), "--redis", redis.url]
    process = await trio.lowlevel.open_process(
        [*COMMAND, *options], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stderr is not None
    parent = Parent(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(parent.read, process.stdout, "out")
            nursery.start_soon(parent.read, process.stderr, "err")
            started = await parent.expect(r"^listening on (\S+)\n(.*)\n")
            parent.url = started.group(1)
            shared = f"{workers} workers share the rooms through {redis.url}"
            assert started.group(2) == shared
            assert len(re.findall(r"^listening on", parent.out, re.M)) == 1  # said once
            yield parent
            if process.returncode is None:  # a test that killed it has checked the rest
                process.send_signal(signal.SIGTERM)
                with trio.fail_after(TIMEOUT):
                    assert await process.wait() == 0, parent.err
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


@asynccontextmanager
async def client_on(system: actors.ActorSystem, url: str, worker: int) -> AsyncIterator[ChatClient]:
    """A chat client served by ``worker`` (connections to others are closed at once, and
    one the kernel had queued for a worker that was killed is tried again)."""
    kept = AsyncExitStack()
    with trio.fail_after(TIMEOUT):
        while True:
            async with AsyncExitStack() as stack:
                try:
                    ws = await stack.enter_async_context(
                        transport.open_websocket_client(system, url, options=NO_KEEPALIVE)
                    )
                except transport.HandshakeError:
                    continue
                if dict(ws.info.headers).get(WORKER_HEADER.lower()) == str(worker):
                    kept = stack.pop_all()
                    break
    async with kept:
        yield ChatClient(ws)


async def who(client: ChatClient, room: str) -> set[str]:
    await client.send(protocol.AskWho(room))
    members = await client.expect(lambda m: isinstance(m, protocol.Members))
    assert isinstance(members, protocol.Members)
    return set(members.names)


async def test_a_room_spans_the_workers_of_one_port(
    system: actors.ActorSystem, redis_server: RedisServer
) -> None:
    async with chat_workers(redis_server) as parent:
        pids = parent.worker_pids()
        assert set(pids) == {1, 2}
        assert os.getpid() not in pids.values()
        async with (
            client_on(system, parent.url, 1) as alice,
            client_on(system, parent.url, 2) as bob,
        ):
            assert await alice.join("lobby", "alice") == protocol.Members("lobby", ("alice",))
            assert "bob" in (await bob.join("lobby", "bob")).names
            await alice.expect(joined("bob"))
            await bob.send(protocol.SayInRoom("lobby", "hello from worker 2"))
            await alice.expect(said("bob", "hello from worker 2"))
            await alice.send(protocol.SayInRoom("lobby", "hello from worker 1"))
            await bob.expect(said("alice", "hello from worker 1"))
            # /who lists the room across both workers, on either of them.
            assert await who(alice, "lobby") == await who(bob, "lobby") == {"alice", "bob"}
    # The drain: each worker said nothing on stderr, and neither had to be killed.
    assert parent.err == ""


async def test_a_killed_worker_comes_back_and_the_other_keeps_chatting(
    system: actors.ActorSystem, redis_server: RedisServer
) -> None:
    async with chat_workers(redis_server) as parent:
        doomed = parent.worker_pids()[2]
        async with (
            client_on(system, parent.url, 1) as alice,
            client_on(system, parent.url, 1) as carol,
            client_on(system, parent.url, 2) as dave,
        ):
            await alice.join("lobby", "alice")
            await carol.join("lobby", "carol")
            await dave.join("lobby", "dave")
            await alice.expect(joined("dave"))
            os.kill(doomed, signal.SIGKILL)
            restarted = await parent.expect(r"^worker 2: listening on \S+ \(pid (\d+)\)\n(?!.*\n)")
            assert int(restarted.group(1)) != doomed
            assert re.search(r"^worker 2 was killed by SIGKILL; restarting it in", parent.err, re.M)
            # Alice and Carol, on the worker that lived, never noticed.
            await alice.send(protocol.SayInRoom("lobby", "still here"))
            await carol.expect(said("alice", "still here"))
            # The new worker 2 serves the same rooms.
            async with client_on(system, parent.url, 2) as bob:
                assert "bob" in (await bob.join("lobby", "bob")).names
                await bob.send(protocol.SayInRoom("lobby", "back again"))
                await alice.expect(said("bob", "back again"))
                await carol.expect(said("bob", "back again"))
                # Dave died with his worker: once its presence has expired, the rooms
                # forget him, and his name is free again.
                with trio.fail_after(TIMEOUT):
                    while "dave" in await who(alice, "lobby"):  # noqa: ASYNC110 - another process
                        await trio.sleep(0.2)
                async with client_on(system, parent.url, 1) as dave_again:
                    names = (await dave_again.join("lobby", "dave")).names
                    assert set(names) == {"alice", "carol", "bob", "dave"}


async def test_sigterm_drains_every_worker_with_1001(
    system: actors.ActorSystem, redis_server: RedisServer
) -> None:
    connections: list[transport.WebSocketConnection] = []
    async with chat_workers(redis_server) as parent:
        async with AsyncExitStack() as stack:
            for worker in (1, 2):
                client = await stack.enter_async_context(client_on(system, parent.url, worker))
                await client.join("lobby", f"user{worker}")
                connections.append(client.connection)
            parent.process.send_signal(signal.SIGTERM)
            with trio.fail_after(TIMEOUT):
                assert await parent.process.wait() == 0
                for connection in connections:
                    await drained(connection)
    for connection in connections:
        assert connection.closed is not None
        assert connection.closed.code == transport.CloseCode.GOING_AWAY
    assert parent.err == ""


async def drained(connection: transport.WebSocketConnection) -> None:
    """Read what is left until the connection's end."""
    with contextlib.suppress(trio.EndOfChannel):
        while True:
            await connection.receive()


async def test_workers_whose_parent_dies_stop_too(redis_server: RedisServer) -> None:
    async with chat_workers(redis_server) as parent:
        port = int(parent.url.rsplit(":", 1)[1].rstrip("/"))
        parent.process.kill()  # no SIGTERM to forward: the workers notice on their own
        await parent.process.wait()
        with trio.fail_after(TIMEOUT):
            while await accepts(port):  # noqa: ASYNC110 - other processes
                await trio.sleep(0.1)


async def accepts(port: int) -> bool:
    """Whether something listens on ``port`` of loopback."""
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    await stream.aclose()
    return True


# -- what the parent refuses, in one line -----------------------------------------------------


def one_error_line(options: list[str]) -> str:
    # Without -W error: coredis leaves the streams of a refused connection to the collector.
    result = subprocess.run(
        [sys.executable, "-m", "transport.apps", "chat", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("trio-actors chat: error: ")
    return lines[0]


def test_more_than_one_worker_needs_redis() -> None:
    line = one_error_line(["--port", "0", "--workers", "2"])
    assert line.endswith(
        "--workers 2 needs --redis URL: the workers share their rooms through Redis "
        "(or run one worker)"
    )


def test_workers_with_a_redis_that_does_not_answer_never_start() -> None:
    with socket.socket() as unused:  # bound, never listening: connections are refused
        unused.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{unused.getsockname()[1]}/0"
        line = one_error_line(["--port", "0", "--no-page", "--workers", "2", "--redis", url])
    assert f"redis at {url} cannot be reached" in line


def test_workers_on_a_port_a_stranger_holds_are_refused(redis_server: RedisServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with stranger_on(port):
        options = ["--port", str(port), "--no-page", "--workers", "2", "--redis", redis_server.url]
        line = one_error_line(options)
    assert f"cannot listen on 127.0.0.1:{port} (--port): address already in use" in line


def test_zero_workers_is_a_usage_error() -> None:
    line = one_error_line(["--workers", "0"])
    assert "workers '0' is not a number of processes >= 1" in line
