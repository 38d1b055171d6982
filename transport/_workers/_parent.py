"""The parent of worker processes: one port for all, restarts, draining, labelled output.

The parent binds the port first (``SO_REUSEPORT``, not listening), so that port 0 becomes
one real port every worker and every restarted worker can bind, and so that a port held by
a stranger fails at once, before any worker starts. The bound socket takes no connections
(only listening sockets do), and it keeps the port for the workers while one restarts.

Each worker's stdout and stderr come through pipes and are written on the parent's own,
every line prefixed with ``worker N:``. A worker that exits while it should serve is
started again after a backoff; more exits than ``max_restarts`` within ``within`` seconds
(counted over all the workers, as a supervisor counts its children) make the parent give
up: it drains the others and raises :class:`WorkersFailedError`. A worker that exits before
it reports listening counts the same way, so one that cannot start is never restarted
forever; a command that cannot be run at all fails at once.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import BinaryIO, final

import attrs
import trio

import actors

from .._exceptions import TransportError
from .._server._reuse_port import bind_reuse_port
from ._worker import READY, WorkerInfo

logger = logging.getLogger("transport.workers")

#: Longest line copied as it is; a longer one is cut into pieces of this size.
_LINE_LIMIT = 64 * 1024
#: Seconds the output of an exited worker may still take to arrive before it is dropped.
_OUTPUT_GRACE = 2.0


_DEFAULT_BACKOFF = actors.Backoff(minimum=0.1, maximum=5.0, reset_after=30.0)


class WorkersFailedError(TransportError):
    """The workers kept failing (past the restart intensity): the parent gave up."""


@final
@attrs.frozen
class WorkerRestarts:
    """How the parent restarts a worker that exited while it should serve.

    More than ``max_restarts`` exits within ``within`` seconds, all workers counted
    together, and the parent gives up (:class:`WorkersFailedError`). Each worker waits
    ``backoff`` before its next start (its n-th consecutive restart waits longer).
    """

    max_restarts: int = 3
    within: float = 30.0
    backoff: actors.Backoff = attrs.field(factory=lambda: _DEFAULT_BACKOFF)

    def __attrs_post_init__(self) -> None:
        if self.max_restarts < 0 or not self.within > 0:
            raise ValueError(
                "worker restart intensity must be max_restarts >= 0 within > 0 seconds, "
                f"not {self.max_restarts} within {self.within}"
            )


@final
@attrs.frozen
class WorkersStatistics:
    """The workers now: the pid of each (0 while one is between two starts), how many
    listen, and how many restarts there were."""

    pids: tuple[int, ...]
    listening: int
    restarts: int


@final
@attrs.define(eq=False)
class Workers:
    """Running workers: where they listen, their statistics."""

    #: The address they listen on (``None``: every address of the host).
    host: str | None
    #: The port they share (the one the kernel chose, if 0 was asked for).
    port: int
    #: How many workers run.
    count: int
    _pids: list[int] = attrs.field(init=False)
    _listening: set[int] = attrs.field(init=False, factory=set)
    _restarts: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._pids = [0] * self.count

    def statistics(self) -> WorkersStatistics:
        """A snapshot of the workers' pids, how many listen, and the restarts so far."""
        return WorkersStatistics(tuple(self._pids), len(self._listening), self._restarts)


@attrs.define(eq=False)
class _Supervisor:
    command: Sequence[str]
    workers: Workers
    restarts: WorkerRestarts
    env: Mapping[str, str]
    start_timeout: float
    shutdown_timeout: float
    #: Set when every worker listens for the first time, or when the parent gives up.
    settled: trio.Event = attrs.field(factory=trio.Event)
    #: Set when the parent gives up (``failure`` says why).
    gave_up: trio.Event = attrs.field(factory=trio.Event)
    #: Set when the workers are to stop (no more restarts).
    stop: trio.Event = attrs.field(factory=trio.Event)
    failure: WorkersFailedError | None = None
    exits: collections.deque[float] = attrs.field(factory=collections.deque)
    processes: dict[int, trio.Process] = attrs.field(factory=dict)

    async def supervise(self, index: int) -> None:
        """Run worker ``index`` again and again, until the parent gives up or drains.

        Shielded: a worker is never left running by a cancelled parent; :meth:`drain`
        stops it, and this task ends when its process has exited.
        """
        attempt = 0
        await trio.lowlevel.checkpoint()
        # Each pass waits for a process; drain() ends them, and with them this loop.
        with trio.CancelScope(shield=True):  # noqa: ASYNC912
            while not self.stop.is_set():
                started_at = trio.current_time()
                try:
                    status, listened, last_words = await self._run_once(index)
                except OSError as exc:
                    # The command itself cannot be run (missing, not executable): no
                    # restart can help. The first worker to find out speaks for all.
                    if self.failure is None:
                        self.failure = WorkersFailedError(
                            f"worker {index} could not be run: {self.command[0]!r}: "
                            f"{exc.strerror or exc}; check the command"
                        )
                        self.failure.__cause__ = exc
                    self.gave_up.set()
                    self.settled.set()
                    return
                if self.stop.is_set():
                    return
                how = _describe_exit(status)
                if not listened:
                    how = f"could not start: it {how} before it reported listening"
                if last_words:
                    how += f" (last words: {last_words!r})"
                if not self._count_exit():
                    self.failure = WorkersFailedError(
                        f"worker {index} {how}; {len(self.exits)} exits within "
                        f"{self.restarts.within:g}s exceed the restart intensity of "
                        f"{self.restarts.max_restarts}: giving up, fix the worker and "
                        "start again"
                    )
                    self.gave_up.set()
                    self.settled.set()
                    return
                if trio.current_time() - started_at >= self.restarts.backoff.reset_after:
                    attempt = 0
                delay = self.restarts.backoff.delay(attempt, random.random())
                attempt += 1
                self.workers._restarts += 1
                logger.warning("worker %d %s; restarting it in %.1fs", index, how, delay)
                with trio.move_on_after(delay):
                    await self.stop.wait()

    def _count_exit(self) -> bool:
        """Count one exit; False past the intensity."""
        now = trio.current_time()
        self.exits.append(now)
        while self.exits and self.exits[0] < now - self.restarts.within:
            self.exits.popleft()
        return len(self.exits) <= self.restarts.max_restarts

    async def _run_once(self, index: int) -> tuple[int, bool, str]:
        """Start worker ``index``, wait for its exit: (status, whether it listened, its last
        stderr line)."""
        ours, theirs = socket.socketpair()
        info = WorkerInfo(
            index, self.workers.count, self.workers.host, self.workers.port, theirs.fileno()
        )
        env = {**os.environ, **self.env, **info.environment()}
        try:
            process = await trio.lowlevel.open_process(
                list(self.command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                pass_fds=(theirs.fileno(),),
                # Signals from a terminal reach the parent only; it forwards SIGTERM.
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.processes[index] = process
        self.workers._pids[index - 1] = process.pid
        last_words: list[str] = []
        listened = False
        try:
            async with trio.open_nursery() as nursery:
                assert process.stdout is not None
                assert process.stderr is not None
                prefix = f"worker {index}: ".encode()
                nursery.start_soon(_copy_lines, process.stdout, sys.stdout.buffer, prefix, None)
                nursery.start_soon(
                    _copy_lines, process.stderr, sys.stderr.buffer, prefix, last_words
                )
                with trio.move_on_after(self.start_timeout) as starting:
                    listened = await _wait_listening(trio.socket.from_stdlib_socket(ours))
                if listened:
                    self._listening(index)
                elif starting.cancelled_caught:
                    last_words.append(f"no report within {self.start_timeout:g}s")
                    process.kill()
                await process.wait()
                # The output of an exited worker arrives soon; a descendant that kept the
                # pipes open does not hold the parent up for long.
                nursery.cancel_scope.deadline = trio.current_time() + _OUTPUT_GRACE
        finally:
            ours.close()
            self.workers._listening.discard(index)
            self.workers._pids[index - 1] = 0
            del self.processes[index]
        status = process.returncode
        assert status is not None  # waited for
        return status, listened, last_words[-1] if last_words else ""

    def _listening(self, index: int) -> None:
        self.workers._listening.add(index)
        if len(self.workers._listening) == self.workers.count:
            self.settled.set()

    async def drain(self) -> None:
        """SIGTERM to every worker, wait for them up to the shutdown timeout, then SIGKILL."""
        self.stop.set()
        running = list(self.processes.items())
        for _, process in running:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        with trio.move_on_after(self.shutdown_timeout):
            async with trio.open_nursery() as nursery:
                for _, process in running:
                    nursery.start_soon(process.wait)
        for index, process in running:
            if process.returncode not in (0, None):
                logger.warning(
                    "worker %d %s while draining", index, _describe_exit(process.returncode)
                )
            elif process.returncode is None:
                logger.warning(
                    "worker %d did not stop within %gs of SIGTERM: killing it",
                    index,
                    self.shutdown_timeout,
                )
                process.kill()


def _describe_exit(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


async def _wait_listening(sock: trio.socket.SocketType) -> bool:
    """Read the worker's report; False if it closed its end (it exited) without one."""
    received = b""
    while True:
        chunk = await sock.recv(64)
        if not chunk:
            return False
        received += chunk
        if READY in received:
            return True


async def _copy_lines(
    source: trio.abc.ReceiveStream, sink: BinaryIO, prefix: bytes, last: list[str] | None
) -> None:
    """Copy ``source`` to ``sink`` line by line, each line after ``prefix``."""
    pending = b""
    while True:
        chunk = await source.receive_some(_LINE_LIMIT)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if len(pending) >= _LINE_LIMIT:
            lines.append(pending)
            pending = b""
        _write_lines(lines, sink, prefix, last)
    if pending:
        _write_lines([pending], sink, prefix, last)


def _write_lines(lines: list[bytes], sink: BinaryIO, prefix: bytes, last: list[str] | None) -> None:
    if not lines:
        return
    sink.write(b"".join(prefix + line + b"\n" for line in lines))
    sink.flush()
    if last is not None:
        words = [line.decode(errors="replace").strip() for line in lines]
        last[:] = [word for word in words if word][-1:] or last


async def serve_workers(
    command: Sequence[str],
    count: int,
    host: str | None,
    port: int,
    *,
    restarts: WorkerRestarts = WorkerRestarts(),
    env: Mapping[str, str] | None = None,
    start_timeout: float = 30.0,
    shutdown_timeout: float = 10.0,
    task_status: trio.TaskStatus[Workers] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``count`` worker processes sharing ``host``:``port`` until cancelled; use with
    ``nursery.start``, which returns once every worker reports listening.

    Each worker runs ``command`` (with ``env`` added to this process's environment) and
    finds itself with :func:`current_worker`: it listens on its host and port with
    ``serve_websocket(..., reuse_port=True)`` and calls
    :meth:`WorkerInfo.report_listening`. The parent binds the port first, so port 0
    works (:attr:`Workers.port` is the one chosen) and a port another program holds
    fails here with ``OSError`` (``EADDRINUSE``) before any worker starts.

    Every line a worker writes on stdout or stderr is written on this process's, after
    ``worker N:``. A worker that exits is started again (see :class:`WorkerRestarts`);
    past the restart intensity, or when a worker cannot start (it exits, or does not
    report within ``start_timeout``) often enough, the others are stopped and
    :class:`WorkersFailedError` is raised; so it is at once, without restarts, when
    ``command`` cannot be run at all (no such program, not executable). On cancellation every worker gets SIGTERM
    (it should stop accepting and close its connections with 1001) and up to
    ``shutdown_timeout`` seconds to exit, after which it is killed.
    """
    if count < 1:
        raise ValueError(f"serve_workers needs at least 1 worker, not {count!r}")
    reserved = await bind_reuse_port(host, port)
    try:
        workers = Workers(host, reserved[0].getsockname()[1], count)
        supervisor = _Supervisor(
            command, workers, restarts, env or {}, start_timeout, shutdown_timeout
        )
        async with trio.open_nursery() as nursery:
            for index in range(1, count + 1):
                nursery.start_soon(supervisor.supervise, index)
            try:
                await supervisor.settled.wait()
                if supervisor.failure is None:
                    task_status.started(workers)
                    await supervisor.gave_up.wait()
            finally:
                with trio.CancelScope(shield=True):
                    await supervisor.drain()
        if supervisor.failure is not None:
            raise supervisor.failure
    finally:
        for sock in reserved:
            sock.close()
