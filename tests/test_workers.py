"""Workers on one port: ``serve_websocket(reuse_port=True)`` and ``transport.workers``.

The workers are real processes (``tests/workers_support.py``): an echo server that greets
each client with its worker's number and pid. Every wait on them is bounded by
``trio.fail_after``; nothing is timed.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import os
import pathlib
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable

import pytest
import trio
import trustme

import actors
import transport
import transport.workers
from tests.workers_support import (
    FAILURE,
    NO_KEEPALIVE,
    greeted_client,
    worker_command,
    worker_env,
    workers_reached,
)

TIMEOUT = 30  # generous: each wait takes far less; the bound turns a hang into a failure
#: Connections opened to see the kernel spread them over two listeners (all of them on
#: one by chance: once in 2**19 runs).
SPREAD = 20
FAST_RESTARTS = transport.workers.WorkerRestarts(
    max_restarts=2, within=60, backoff=actors.Backoff(minimum=0.05, maximum=0.2)
)
REFERENCE = pathlib.Path(transport.__file__).parent.parent / "docs" / "reference.rst"


def says(name: str) -> Callable[[transport.WebSocketConnection], Awaitable[None]]:
    async def handler(connection: transport.WebSocketConnection) -> None:
        await connection.send(name)

    return handler


def stranger_on(port: int) -> socket.socket:
    """An ordinary listening socket (``SO_REUSEADDR``, no ``SO_REUSEPORT``) on ``port``."""
    stranger = socket.socket()
    stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    stranger.bind(("127.0.0.1", port))
    stranger.listen()
    return stranger


# -- serve_websocket(reuse_port=True) ----------------------------------------------------------


async def test_two_servers_share_a_port_with_reuse_port(
    system: actors.ActorSystem, nursery: trio.Nursery
) -> None:
    serve = functools.partial(transport.serve_websocket, system, host="127.0.0.1")
    one = await nursery.start(functools.partial(serve, says("one"), port=0, reuse_port=True))
    two = await nursery.start(functools.partial(serve, says("two"), port=one.port, reuse_port=True))
    assert one.port == two.port
    heard = set()
    with trio.fail_after(TIMEOUT):
        for _ in range(SPREAD):
            url = f"ws://127.0.0.1:{one.port}/"
            async with transport.open_websocket_client(system, url, options=NO_KEEPALIVE) as ws:
                heard.add(await ws.receive())
    # The kernel spread the connections over both listening sockets.
    assert heard == {"one", "two"}


async def test_without_reuse_port_the_second_server_is_refused(
    system: actors.ActorSystem, nursery: trio.Nursery
) -> None:
    serve = functools.partial(transport.serve_websocket, system, says("one"), "127.0.0.1")
    one = await nursery.start(functools.partial(serve, 0, reuse_port=True))
    with pytest.raises(OSError, match="already in use") as refused:
        await nursery.start(serve, one.port)
    assert refused.value.errno == errno.EADDRINUSE


async def test_a_strangers_listener_on_the_port_is_refused_not_shared(
    system: actors.ActorSystem,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with stranger_on(port):
        async with trio.open_nursery() as nursery:
            with pytest.raises(OSError, match="already in use") as refused:
                await nursery.start(
                    functools.partial(
                        transport.serve_websocket,
                        system,
                        says("mine"),
                        "127.0.0.1",
                        port,
                        reuse_port=True,
                    )
                )
    assert refused.value.errno == errno.EADDRINUSE


async def test_reuse_port_serves_tls_too(
    system: actors.ActorSystem,
    nursery: trio.Nursery,
    ca: trustme.CA,
    client_ssl: ssl.SSLContext,
) -> None:
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
    server = await nursery.start(
        functools.partial(
            transport.serve_websocket,
            system,
            says("secret"),
            "127.0.0.1",
            0,
            ssl_context=server_ssl,
            reuse_port=True,
        )
    )
    url = f"wss://127.0.0.1:{server.port}/"
    with trio.fail_after(TIMEOUT):
        async with transport.open_websocket_client(
            system, url, ssl_context=client_ssl, options=NO_KEEPALIVE
        ) as ws:
            assert await ws.receive() == "secret"


# -- the parent of the workers --------------------------------------------------------------


async def start_workers(
    nursery: trio.Nursery, mode: str, count: int = 2, port: int = 0
) -> transport.workers.Workers:
    with trio.fail_after(TIMEOUT):
        workers: transport.workers.Workers = await nursery.start(
            functools.partial(
                transport.workers.serve_workers,
                worker_command(mode),
                count,
                "127.0.0.1",
                port,
                env=worker_env(),
                restarts=FAST_RESTARTS,
                shutdown_timeout=10,
            )
        )
    return workers


async def test_connections_land_on_every_worker(
    system: actors.ActorSystem, nursery: trio.Nursery
) -> None:
    workers = await start_workers(nursery, "serve")
    assert workers.port != 0
    stats = workers.statistics()
    assert stats.listening == 2
    assert stats.restarts == 0
    assert len(set(stats.pids)) == 2
    assert 0 not in stats.pids
    with trio.fail_after(TIMEOUT):
        assert await workers_reached(system, workers.port, SPREAD) == {1, 2}


async def test_a_killed_worker_is_restarted_and_the_others_keep_serving(
    system: actors.ActorSystem, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    workers = await start_workers(nursery, "serve")
    with trio.fail_after(TIMEOUT):
        async with greeted_client(system, workers.port) as (survivor, index, _):
            doomed = 3 - index
            doomed_pid = workers.statistics().pids[doomed - 1]
            os.kill(doomed_pid, signal.SIGKILL)
            # The client of the other worker goes on as if nothing happened...
            await survivor.send("still here")
            assert await survivor.receive() == "still here"
            # ...and a new process takes the killed worker's number and the port again.
            # (A connection the kernel had queued for the killed worker is reset: retry.)
            while True:
                with contextlib.suppress(transport.HandshakeError):
                    async with greeted_client(system, workers.port) as (_, reached, pid):
                        if reached == doomed:
                            assert pid != doomed_pid
                            break
            await survivor.send("and now")
            assert await survivor.receive() == "and now"
    stats = workers.statistics()
    assert stats.restarts == 1
    assert doomed_pid not in stats.pids
    assert f"worker {doomed} was killed by SIGKILL; restarting it in" in caplog.text


async def test_cancelling_drains_every_worker_with_1001(
    system: actors.ActorSystem,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clients: dict[int, transport.WebSocketConnection] = {}
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as nursery:
                workers = await start_workers(nursery, "serve")

                async def hold(task_status: trio.TaskStatus[None]) -> None:
                    async with greeted_client(system, workers.port) as (ws, index, _):
                        if index in clients:
                            task_status.started()
                            return
                        clients[index] = ws
                        task_status.started()
                        # Stays open until the server closes it.
                        with pytest.raises(trio.EndOfChannel):
                            await ws.receive()

                while len(clients) < 2:
                    await outer.start(hold)
                nursery.cancel_scope.cancel()
    # Each worker got SIGTERM, closed its connections with 1001 (going away) and exited 0.
    for ws in clients.values():
        assert ws.closed is not None
        assert ws.closed.code == transport.CloseCode.GOING_AWAY
    output = capfd.readouterr()
    for index in (1, 2):
        assert f"worker {index}: serving on port {workers.port}" in output.out
        assert f"worker {index}: draining" in output.out
    assert output.err == ""
    assert caplog.records == []  # no worker exited badly, none had to be killed


async def test_a_worker_that_cannot_start_is_reported_and_not_restarted_forever(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            with pytest.raises(transport.workers.WorkersFailedError) as failed:
                await start_workers(nursery, "fail")
    message = str(failed.value)
    assert message.startswith("worker ")
    assert (
        f"could not start: it exited with status 3 before it reported listening "
        f"(last words: {FAILURE!r}); 3 exits within 60s exceed the restart intensity of 2: "
        "giving up, fix the worker and start again"
    ) in message
    # Each failure was reported, with the worker's own words after its label.
    assert caplog.text.count("could not start") == 2
    err = capfd.readouterr().err
    assert f"worker 1: {FAILURE}" in err
    assert f"worker 2: {FAILURE}" in err


async def test_a_command_that_cannot_be_run_fails_at_once_with_workers_failed(
    tmp_path: pathlib.Path,
) -> None:
    missing = str(tmp_path / "no-such-program")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            with pytest.raises(transport.workers.WorkersFailedError) as failed:
                await nursery.start(
                    functools.partial(
                        transport.workers.serve_workers,
                        [missing, "--serve"],
                        2,
                        "127.0.0.1",
                        0,
                        restarts=FAST_RESTARTS,
                    )
                )
    # One error, not a group of the same error from each worker; it names the command
    # and the reason, and keeps the OS error as its cause. Nothing was retried.
    message = str(failed.value)
    assert message.startswith("worker ")
    assert f"could not be run: {missing!r}" in message
    assert "No such file or directory" in message
    assert isinstance(failed.value.__cause__, FileNotFoundError)


async def test_a_port_held_by_a_stranger_fails_before_any_worker_starts(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with stranger_on(port), trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            with pytest.raises(OSError, match="already in use") as refused:
                await start_workers(nursery, "serve", port=port)
    assert refused.value.errno == errno.EADDRINUSE
    assert capfd.readouterr().out == ""  # no worker ever ran


# -- the worker's side and the namespace ------------------------------------------------------


def test_a_process_knows_whether_it_is_a_worker() -> None:
    assert transport.workers.current_worker({}) is None
    env = {
        "TRIO_ACTORS_WORKER": "2/4",
        "TRIO_ACTORS_WORKER_HOST": "",
        "TRIO_ACTORS_WORKER_PORT": "8765",
        "TRIO_ACTORS_WORKER_FD": "7",
    }
    worker = transport.workers.current_worker(env)
    assert worker is not None
    assert (worker.index, worker.count, worker.host, worker.port) == (2, 4, None, 8765)
    assert worker.environment() == env
    with pytest.raises(RuntimeError, match="the worker environment is incomplete"):
        transport.workers.current_worker({"TRIO_ACTORS_WORKER": "2/4"})


def test_bad_restart_intensity_and_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="max_restarts >= 0 within > 0 seconds"):
        transport.workers.WorkerRestarts(max_restarts=-1)
    with pytest.raises(ValueError, match="at least 1 worker"):
        trio.run(transport.workers.serve_workers, ["true"], 0, "127.0.0.1", 0)


WORKERS_SURFACE = {
    "WorkerInfo",
    "WorkerRestarts",
    "Workers",
    "WorkersFailedError",
    "WorkersStatistics",
    "current_worker",
    "serve_workers",
}


def test_the_workers_namespace_is_exactly_its_surface_and_documented() -> None:
    assert set(transport.workers.__all__) == WORKERS_SURFACE
    public = {name for name in dir(transport.workers) if not name.startswith("_")}
    assert public - {"annotations"} == WORKERS_SURFACE
    assert not WORKERS_SURFACE & set(transport.__all__)
    reference = REFERENCE.read_text()
    for name in WORKERS_SURFACE:
        obj = getattr(transport.workers, name)
        assert inspect.getdoc(obj), f"transport.workers.{name} has no docstring"
        assert f":: {name}\n" in reference, f"transport.workers.{name} is missing from reference"
