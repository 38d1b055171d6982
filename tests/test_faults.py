"""Faults injected into a live server: churn, crashing handlers, cancellation, resets.

Leaks are counted directly: trio tasks (walking the task tree from the root) and
file descriptors (``/proc/self/fd``) before and after.
"""

from __future__ import annotations

import os
from typing import cast

import attrs
import trio

import actors
import transport
from tests.hostile import (
    TEXT,
    HostileClient,
    frame,
    request,
    settled,
    start_server,
    still_serves,
)

OPTIONS = transport.ConnectionOptions(ping_interval=None)


def task_count() -> int:
    """Every trio task alive now."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    count, stack = 0, [root]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


class Progress:
    """Round trips of the long-lived clients, and a way to wait for a count of them."""

    def __init__(self) -> None:
        self.rounds = 0
        self._waiting: list[tuple[int, trio.Event]] = []

    def tick(self) -> None:
        self.rounds += 1
        for target, event in self._waiting:
            if self.rounds >= target:
                event.set()

    async def reached(self, target: int) -> None:
        if self.rounds >= target:
            await trio.lowlevel.checkpoint()
            return
        event = trio.Event()
        self._waiting.append((target, event))
        await event.wait()


async def long_lived(
    system: actors.ActorSystem, url: str, rounds: Progress, stop: trio.Event
) -> None:
    """A client that keeps echoing until ``stop``; counts its round trips."""
    async with transport.open_websocket_client(system, url, options=OPTIONS) as ws:
        sent = 0
        while not stop.is_set():
            await ws.send(f"ping {sent}")
            assert await ws.receive() == f"ping {sent}"
            sent += 1
            rounds.tick()


async def short_connection(port: int, kind: int) -> None:
    """One short-lived client: full exchange, bare connect, RST, or a cut handshake."""
    client = await HostileClient.connect(port)
    try:
        if kind == 0:
            assert await client.handshake(request()) == 101
            await client.send(frame(TEXT, b"hi"))
            assert await client.next_message() == b"hi"
        elif kind == 1:
            pass  # connect, then FIN without a word
        elif kind == 2:
            assert await client.handshake(request()) == 101
            await client.send(frame(TEXT, b"x" * 1000)[:500])  # then RST mid-frame
            await client.abort()
            return
        else:
            await client.send(request()[:40])  # half a request, then RST
            await client.abort()
            return
    finally:
        assert isinstance(client.stream, trio.SocketStream)
        if client.stream.socket.fileno() != -1:
            await client.aclose()


async def test_connection_churn_leaves_long_lived_ones_and_no_leaks(
    system: actors.ActorSystem,
) -> None:
    churn, parallel, kept = 2000, 40, 4
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, max_connections=parallel + kept + 10)
        url = f"ws://127.0.0.1:{server.port}/"
        stop = trio.Event()
        counters = [Progress() for _ in range(kept)]
        async with trio.open_nursery() as clients:
            for rounds in counters:
                clients.start_soon(long_lived, system, url, rounds, stop)
            with trio.fail_after(5):
                for progress in counters:
                    await progress.reached(1)
                await settled(server, active=kept)
            tasks_before, fds_before = task_count(), fd_count()
            before = [c.rounds for c in counters]
            limiter = trio.CapacityLimiter(parallel)

            async def one(i: int) -> None:
                async with limiter:
                    await short_connection(server.port, i % 4)

            with trio.fail_after(20):
                async with trio.open_nursery() as churners:
                    for i in range(churn):
                        churners.start_soon(one, i)
                await settled(server, active=kept)
            assert all(c.rounds > b for c, b in zip(counters, before, strict=True))
            assert (task_count(), fd_count()) == (tasks_before, fds_before)
            stop.set()
        stats = await server.statistics()
        assert stats.accepted >= kept + churn // 2
        await still_serves(system, server.port)
        nursery.cancel_scope.cancel()


async def test_crashing_handlers_under_load_leave_the_others_alone(
    system: actors.ActorSystem,
) -> None:
    async def handler(connection: transport.WebSocketConnection) -> None:
        async for message in connection:
            if message == "crash":
                raise RuntimeError("handler bug under load")
            await connection.send(message)

    results: dict[int, object] = {}

    async def client(i: int, url: str) -> None:
        async with transport.open_websocket_client(system, url, options=OPTIONS) as ws:
            for n in range(50):
                message = "crash" if i % 4 == 0 and n == 25 else f"{i}:{n}"
                await ws.send(message)
                if message == "crash":
                    reason = await ws.ref.wait_stopped()
                    assert isinstance(reason, transport.ConnectionClosed)
                    results[i] = reason.code
                    return
                assert await ws.receive() == message
            results[i] = "ok"

    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, handler=handler)
        url = f"ws://127.0.0.1:{server.port}/"
        with trio.fail_after(15):
            async with trio.open_nursery() as clients:
                for i in range(20):
                    clients.start_soon(client, i, url)
        assert results == {i: 1011 if i % 4 == 0 else "ok" for i in range(20)}
        assert server.ref.is_alive
        nursery.cancel_scope.cancel()


@attrs.frozen
class Quote(actors.Request[str]):
    text: str


@attrs.define(eq=False)
class Pricer(actors.Actor[Quote]):
    """The actor every connection asks; it fails on ``crash``."""

    @actors.handler
    def quote(self, message: Quote) -> str:
        if message.text == "crash":
            raise RuntimeError("pricer bug under load")
        return message.text.upper()


async def test_a_crashing_worker_under_load_is_restarted_within_limits_then_escalates(
    system: actors.ActorSystem,
) -> None:
    """20 connections ask one supervised actor. Three crash it: it is restarted each time,
    and the other connections' asks (queued meanwhile: a restart keeps the mailbox) are
    answered. A fourth crash exceeds the intensity: its supervisor gives up and escalates,
    and the connections keep being served (they answer that pricing is unavailable)."""
    limit = 3

    def pricing() -> actors.Supervisor:
        return actors.Supervisor(
            [actors.ChildSpec("pricer", Pricer)], max_restarts=limit, within=60
        )

    # The pricing supervisor escalates into a supervisor that does not restart it.
    top = await system.spawn(
        actors.Supervisor(
            [actors.ChildSpec("pricing", pricing, restart=actors.RestartType.TEMPORARY)]
        ),
        name="top",
    )
    sup = (await top.ask(actors.WhichChildren()))["pricing"]
    pricer = cast("actors.ActorRef[Quote]", (await sup.ask(actors.WhichChildren()))["pricer"])

    async def handler(connection: transport.WebSocketConnection) -> None:
        async for message in connection:
            assert isinstance(message, str)
            try:
                reply = await pricer.ask(Quote(message))
            except RuntimeError:
                reply = "error"
            except actors.ActorStoppedError:
                reply = "unavailable"
            await connection.send(reply)

    replies: dict[int, list[str]] = {}

    async def client(i: int, url: str, crash_at: int | None) -> None:
        got = replies.setdefault(i, [])
        async with transport.open_websocket_client(system, url, options=OPTIONS) as ws:
            for n in range(40):
                await ws.send("crash" if n == crash_at else f"q{i}.{n}")
                got.append(str(await ws.receive()))

    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, handler=handler)
        url = f"ws://127.0.0.1:{server.port}/"
        with trio.fail_after(20):
            async with trio.open_nursery() as clients:
                for i in range(20):
                    clients.start_soon(client, i, url, 20 if i < limit else None)
        # Within the limit: restarted each time, nobody else noticed.
        for i in range(20):
            expected = [f"Q{i}.{n}" for n in range(40)]
            if i < limit:
                expected[20] = "error"
            assert replies[i] == expected
        assert sup.is_alive
        assert pricer._cell.restarts == limit
        # One crash more: the supervisor gives up and escalates; the server carries on.
        with trio.fail_after(20):
            async with trio.open_nursery() as clients:
                clients.start_soon(client, 100, url, 0)
                reason = await sup.wait_stopped()
                for i in range(101, 105):
                    clients.start_soon(client, i, url, None)
        assert isinstance(reason, actors.Failed)
        assert isinstance(reason.error, actors.RestartIntensityError)
        assert replies[100] == ["error"] + ["unavailable"] * 39
        for i in range(101, 105):
            assert replies[i] == ["unavailable"] * 40
        assert server.ref.is_alive
        assert top.is_alive
        nursery.cancel_scope.cancel()


@attrs.define(eq=False)
class StopHook(actors.Actor[transport.Received]):
    """Records that its stop hook ran (and how)."""

    log: list[str]

    async def on_stop(self, reason: actors.StopReason) -> None:
        self.log.append(type(reason).__name__)
        await trio.lowlevel.checkpoint()

    @actors.handler
    def received(self, message: transport.Received) -> None:
        pass


async def test_cancelling_the_whole_system_mid_traffic_stops_everything() -> None:
    tasks_before, fds_before = task_count(), fd_count()
    log: list[str] = []
    rounds = Progress()
    with trio.CancelScope() as everything:
        async with actors.open_system("faults") as system, trio.open_nursery() as nursery:
            await system.spawn(StopHook(log), name="hook")
            server = await start_server(nursery, system)
            url = f"ws://127.0.0.1:{server.port}/"
            for _ in range(8):
                nursery.start_soon(long_lived, system, url, rounds, trio.Event())
            with trio.fail_after(5):
                await rounds.reached(200)
            cancelled_at = trio.current_time()
            everything.cancel()
    stopped_within = trio.current_time() - cancelled_at
    assert everything.cancelled_caught
    assert stopped_within < 5, stopped_within
    assert log == ["Cancelled"]  # the stop hook ran, once, with the cancellation as reason
    assert (task_count(), fd_count()) == (tasks_before, fds_before)


async def test_abrupt_disconnects_during_traffic(system: actors.ActorSystem) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        url = f"ws://127.0.0.1:{server.port}/"
        stop = trio.Event()
        rounds = Progress()
        nursery.start_soon(long_lived, system, url, rounds, stop)
        with trio.fail_after(5):
            await settled(server, active=1)
        tasks_before, fds_before = task_count(), fd_count()
        with trio.fail_after(10):
            for i in range(60):
                client = await HostileClient.open(server.port)
                big = frame(TEXT, b"y" * 200_000)
                await client.send(frame(TEXT, b"a") + big[: 1000 + i * 997])
                if i % 2:
                    await client.abort()  # RST mid-frame
                else:
                    await client.aclose()  # FIN mid-frame
            await settled(server, active=1)
        assert (task_count(), fd_count()) == (tasks_before, fds_before)
        with trio.fail_after(5):  # the long-lived client kept going through all of it
            await rounds.reached(rounds.rounds + 10)
        stop.set()
        nursery.cancel_scope.cancel()
