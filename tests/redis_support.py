"""A real redis-server for the backplane tests, and the child processes they talk to.

``redis_server`` starts ``redis-server`` on a free loopback port without persistence
and kills it at teardown. Without ``redis-server`` the tests are skipped, with the
command that installs it, except under ``CI=true``, where they fail: there they must run.

The child processes run this module: ``python -c "from tests.redis_support import
child_main; child_main()" ROLE URL ...``. They print one line per event, which the
tests read with :meth:`Child.expect`.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, final

import attrs
import pytest
import trio

import actors
import transport

ROOT = Path(__file__).resolve().parent.parent
INSTALL_HINT = "redis-server is not installed: sudo apt-get install redis-server"
#: Real-time bound on the start of redis-server and of a child process.
START_TIMEOUT = 10.0


def require_redis_server() -> str:
    """The path of redis-server; skip the test without it (fail under ``CI=true``)."""
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{INSTALL_HINT} (CI=true: the backplane tests must run here)")
        pytest.skip(INSTALL_HINT)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@final
@attrs.define(eq=False)
class RedisServer:
    """One redis-server process on 127.0.0.1:``port``; :meth:`restart` keeps the port."""

    executable: str
    port: int
    #: With a directory, the server keeps an append-only file there (fsync on every write),
    #: so a restart (even after SIGKILL) finds its data again.
    data_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--protected-mode",
                "yes",
                *(
                    ("--appendonly", "no")
                    if self.data_dir is None
                    else (
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "always",
                        "--dir",
                        str(self.data_dir),
                    )
                ),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.process = process
        assert process.stdout is not None
        # redis-server says when it accepts connections; a watchdog bounds the wait.
        watchdog = threading.Timer(START_TIMEOUT, process.kill)
        watchdog.start()
        seen = []
        try:
            for line in process.stdout:
                seen.append(line)
                if b"Ready to accept connections" in line:
                    break
            else:
                raise RuntimeError(f"redis-server did not start: {b''.join(seen)!r}")
        finally:
            watchdog.cancel()
        # Keep draining its output so it never blocks on a full pipe.
        self.drain = threading.Thread(target=_drain, args=(process.stdout,), daemon=True)
        self.drain.start()

    def stop(self, sig: int = signal.SIGKILL) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
        process.wait(timeout=START_TIMEOUT)
        if self.drain is not None:
            self.drain.join(timeout=START_TIMEOUT)  # it ends at the end of the output
        assert process.stdout is not None
        process.stdout.close()

    def restart(self, down_for: float = 0.0) -> None:
        """Kill the server and start it again on the same port after ``down_for`` seconds."""
        self.stop()
        time.sleep(down_for)
        self.start()


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


#: The marks of a test that uses Redis in its own process: coredis 6.9 leaves the anyio
#: streams of broken connections for the garbage collector, which warns about them; the
#: fixture collects them at teardown, the filter covers a collection during the test.
COREDIS_GARBAGE_WARNINGS = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <function MemoryObject(Send|Receive)Stream.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)
COREDIS_MARKS = [pytest.mark.usefixtures("collect_coredis_garbage"), COREDIS_GARBAGE_WARNINGS]

#: The ``-W`` options for a program that uses Redis, run with warnings as errors: coredis 6.9
#: leaves two things to the garbage collector, which warn when collected (and under
#: ``-W error`` the interpreter prints "Exception ignored in" for each): the anyio streams of
#: each refused attempt to (re)connect, and sometimes its Pub/Sub reader (an async generator)
#: when the process stops. Only those two are let through; every other warning stays an error.
COREDIS_WARNINGS = [
    "-W",
    "ignore:Unclosed <MemoryObject:ResourceWarning",
    "-W",
    "ignore:Async generator 'coredis.:ResourceWarning",
]


@pytest.fixture
def collect_coredis_garbage() -> Iterator[None]:
    """Collect, without warnings, what coredis leaves for the garbage collector.

    coredis 6.9 leaves the anyio memory streams of connections that failed (to
    connect, or when the server went away) unclosed; they warn when collected, which
    would fail whichever later test the collector happens to run in.
    """
    yield
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Unclosed <MemoryObject", ResourceWarning)
        gc.collect()


@pytest.fixture
def redis_server(collect_coredis_garbage: None) -> Iterator[RedisServer]:
    server = RedisServer(require_redis_server(), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def persistent_redis_server(collect_coredis_garbage: None, tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server that keeps its data across :meth:`RedisServer.restart`."""
    server = RedisServer(require_redis_server(), free_port(), data_dir=tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- child processes -----------------------------------------------------------------------


@attrs.frozen
class Echo(actors.Request["Echoed"]):
    """Asked of the remote echo actor."""

    text: str


@attrs.frozen
class Echoed:
    """Its reply."""

    text: str


@attrs.frozen
class Hang(actors.Request["Echoed"]):
    """Asked of the remote echo actor: it never answers."""


CODEC = transport.JsonCodec(Echo, Echoed, Hang)


@final
class Child:
    """A child process started by a test, with its stdout read line by line."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""

    async def line(self) -> str:
        """The next line the child printed (bound it with ``trio.fail_after``)."""
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some()
            if not chunk:
                raise EOFError(f"child exited (returncode {self.process.poll()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    async def expect(self, prefix: str) -> str:
        """Skip lines until one starts with ``prefix``; return the rest of it."""
        while True:
            line = await self.line()
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)


async def start_child(nursery: trio.Nursery, *args: str) -> Child:
    """Start ``python -c child_main() *args`` in ``nursery``; it is killed when the test ends."""
    code = "from tests.redis_support import child_main; child_main()"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process: trio.Process = await nursery.start(
        _run_child, [sys.executable, "-c", code, *args], env
    )
    return Child(process)


async def _run_child(
    command: list[str], env: dict[str, str], *, task_status: trio.TaskStatus[trio.Process]
) -> None:
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, cwd=ROOT
    )
    try:
        task_status.started(process)
        await process.wait()
    finally:
        with trio.CancelScope(shield=True):
            if process.poll() is None:
                process.kill()
            with trio.move_on_after(START_TIMEOUT):
                await process.wait()


def say(*words: object) -> None:
    print(*words, flush=True)  # noqa: T201 - the child's protocol is its stdout


def child_main() -> None:
    """Entry point of a child process: ``ROLE URL ARGS...``."""
    role, url, *args = sys.argv[1:]
    trio.run(_ROLES[role], url, *args)


async def _subscriber(url: str, topic_name: str, count: str) -> None:
    async with actors.open_system("child") as system:
        async with transport.backplane.open_redis_backplane(system, url) as backplane:
            topic = await backplane.topic(topic_name)
            with topic.subscribe() as messages:
                say("ready")
                for _ in range(int(count)):
                    message = await messages.receive()
                    say("got", message if isinstance(message, str) else type(message).__name__)


async def _publisher(url: str, topic_name: str, count: str) -> None:
    async with actors.open_system("child") as system:
        async with transport.backplane.open_redis_backplane(system, url) as backplane:
            topic = await backplane.topic(topic_name)
            for n in range(int(count)):
                await topic.publish(f"m{n}")
            say("done")


@final
@attrs.define(eq=False)
class _StuckConsumer(actors.Actor[transport.backplane.StreamMessage[str]]):
    """Acknowledges ``left`` entries, then hangs in the next handler, for good."""

    left: int

    @actors.handler
    async def on_entry(self, entry: transport.backplane.StreamMessage[str]) -> None:
        if self.left == 0:
            say("stuck", entry.id)
            await trio.sleep_forever()
        self.left -= 1
        say("handled", entry.id)


async def _consumer(url: str, stream_name: str, group: str, stuck_after: str) -> None:
    async with actors.open_system("child") as system:
        async with transport.backplane.open_redis_backplane(system, url) as backplane:
            worker = await system.spawn(_StuckConsumer(int(stuck_after)))
            stream = backplane.stream(stream_name)
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: stream.serve_consumer(
                        worker,
                        group=group,
                        consumer="doomed",
                        handler_timeout=3600,
                        task_status=task_status,
                    )
                )
                say("ready")


@final
@attrs.define(eq=False)
class _EchoActor(actors.Actor[Echo | Hang]):
    """Answers an Echo in capitals (``"stop"`` then stops); a Hang never."""

    @actors.handler
    async def on_echo(self, message: Echo) -> Echoed:
        if message.text == "stop":
            self.ctx.stop()
        return Echoed(message.text.upper())

    @actors.handler
    async def on_hang(self, message: Hang) -> Echoed:
        say("hanging")
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def _owner(url: str, name: str, *ttl: str) -> None:
    """Holds ``name`` for an echo actor; ``ttl`` (optional): name_ttl and heartbeat."""
    name_ttl, heartbeat = (float(ttl[0]), float(ttl[1])) if ttl else (3.0, 1.0)
    async with actors.open_system("child") as system:
        async with transport.backplane.open_redis_backplane(
            system, url, codec=CODEC, name_ttl=name_ttl, heartbeat=heartbeat
        ) as backplane:
            echo = await system.spawn(_EchoActor())
            await backplane.register(name, echo)
            say("ready")
            await echo.wait_stopped()
            say("stopped")
            await trio.sleep_forever()


@final
@attrs.define(eq=False)
class _GroupMember(actors.Actor[str]):
    """Says what it is told; ``"stop"`` stops it."""

    @actors.handler
    async def on_text(self, message: str) -> None:
        say("got", message)
        if message == "stop":
            self.ctx.stop()


async def _member(url: str, group: str, name_ttl: str, heartbeat: str) -> None:
    """Joins ``group`` with one actor, prints its node and path, and stays."""
    async with actors.open_system("child") as system:
        async with transport.backplane.open_redis_backplane(
            system, url, name_ttl=float(name_ttl), heartbeat=float(heartbeat)
        ) as backplane:
            member = await system.spawn(_GroupMember(), name="member")
            await backplane.join_group(group, member)
            say("ready", backplane.node, member.path)
            await trio.sleep_forever()


_ROLES: dict[str, Any] = {
    "subscriber": _subscriber,
    "publisher": _publisher,
    "consumer": _consumer,
    "owner": _owner,
    "member": _member,
}
