"""transport.observe: Prometheus metrics over real HTTP after real traffic, the dashboard's feed."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import attrs
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

import actors
import transport
import transport.observe
from tests.http_support import http_request
from transport.observe import _metrics

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = transport.ConnectionOptions(ping_interval=None)


@attrs.frozen
class Work:
    pass


@attrs.frozen
class Fail:
    pass


@attrs.define(eq=False)
class Worker(actors.Actor[Work | Fail]):
    @actors.handler
    def work(self, message: Work) -> None:
        pass

    @actors.handler
    def fail(self, message: Fail) -> None:
        raise RuntimeError("failed on purpose")


async def echo(connection: transport.WebSocketConnection) -> None:
    ECHOED.append(connection.ref)
    async for message in connection:
        await connection.send(message)


# The server side of each echo connection, to wait for its end.
ECHOED: list[actors.ActorRef[transport.ConnectionMessage]] = []


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(observer: transport.observe.Observer) -> Samples:
    """GET /metrics over a real TCP connection and parse the Prometheus text format."""
    reply = await http_request(observer.port, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[f"trio_actors_{name}", frozenset(labels.items())]


@pytest.fixture
async def system() -> AsyncIterator[actors.ActorSystem]:
    async with actors.open_system("shop") as system:
        yield system


async def start_echo(
    nursery: trio.Nursery, system: actors.ActorSystem
) -> transport.WebSocketServer:
    server: transport.WebSocketServer = await nursery.start(
        functools.partial(
            transport.serve_websocket, system, echo, "127.0.0.1", 0, options=OPTIONS, name="echo"
        )
    )
    return server


async def restart(worker: actors.ActorRef[Fail], system: actors.ActorSystem) -> None:
    """Make the worker fail, and wait until its supervisor restarted it and all have settled."""
    with system.events.subscribe() as events:
        await worker.tell(Fail())
        while not isinstance(await events.receive(), actors.ActorRestarted):
            pass
    await trio.testing.wait_all_tasks_blocked()


async def test_metrics_after_real_traffic_a_dead_letter_and_a_restart(
    system: actors.ActorSystem,
) -> None:
    ECHOED.clear()
    async with (
        transport.observe.open_observer(system, "127.0.0.1", 0) as observer,
        trio.open_nursery() as nursery,
        transport.backplane.open_local_backplane(system) as backplane,
    ):
        server = await start_echo(nursery, system)
        supervisor = await system.spawn(actors.Supervisor(max_restarts=5, within=60), name="work")
        worker = await actors.start_child(supervisor, actors.ChildSpec("worker", Worker))
        url = f"ws://127.0.0.1:{server.port}/"
        async with transport.open_websocket_client(system, url, options=OPTIONS) as connection:
            for text in ("one", "two", "héllo"):  # 3 + 3 + 6 bytes in UTF-8
                await connection.send(text)
                assert await connection.receive() == text
            during = await scrape(observer)
        for _ in range(2):
            await worker.tell(Work())
        await restart(worker, system)
        (server_side,) = ECHOED
        with trio.fail_after(10):
            await server_side.wait_stopped()
        after = await scrape(observer)
        nursery.cancel_scope.cancel()

    assert value(during, "connections_open", side="client") == 1
    assert value(during, "connections_open", side="server") == 1
    for side in ("client", "server"):
        assert value(after, "connections_open", side=side) == 0
        assert value(after, "websocket_messages_received_total", side=side) == 3
        assert value(after, "websocket_messages_sent_total", side=side) == 3
        assert value(after, "websocket_bytes_received_total", side=side) == 12
        assert value(after, "websocket_bytes_sent_total", side=side) == 12
        assert value(after, "websocket_inbound_dropped_total", side=side) == 0
        assert value(after, "websocket_inbound_pauses_total", side=side) == 0
        assert value(after, "connections_closed_total", side=side, code="1000") == 1
        assert value(after, "inbound_queue_depth", side=side) == 0
    assert value(after, "server_connections_accepted_total", server="/echo") == 1
    assert value(after, "server_connections_refused_total", server="/echo") == 0
    # The scrape itself is a plain request on the observer's server, not a connection.
    assert value(after, "server_connections_accepted_total", server="/observer") == 0
    assert value(after, "dead_letters_total", reason="failed") == 1
    assert value(after, "dead_letters_total", reason="dropped") == 0
    assert value(after, "restarts_total") == 1
    assert value(after, "failures_total") == 0
    assert value(after, "escalations_total") == 0
    assert value(after, "events_lost_total") == 0
    assert value(after, "actor_restarts", path="/work/worker") == 1
    assert value(after, "actor_messages_processed_total", path="/work/worker") == 2
    assert value(after, "mailbox_depth", path="/work/worker") == 0
    assert value(after, "mailbox_high_water", path="/work/worker") >= 1
    assert value(after, "mailbox_capacity", path="/work/worker") == actors.DEFAULT_MAILBOX_SIZE
    node = backplane.node
    assert value(after, "backplane_state", node=node, state="connected") == 1
    assert value(after, "backplane_state", node=node, state="reconnecting") == 0
    assert value(after, "backplane_gaps_total", node=node) == 0
    # The observer's own actors count too: its event counter and its server's host.
    assert value(after, "actors", state="running") == 5  # and /echo, /work, /work/worker


async def test_a_supervisor_that_gives_up_is_an_escalation(system: actors.ActorSystem) -> None:
    inner = actors.ChildSpec(
        "inner", lambda: actors.Supervisor([actors.ChildSpec("worker", Worker)], max_restarts=0)
    )
    async with transport.observe.open_observer(system, "127.0.0.1", 0) as observer:
        outer = await system.spawn(actors.Supervisor([inner], max_restarts=5, within=60))
        children = await outer.ask(actors.WhichChildren())
        inner_ref = cast("actors.ActorRef[actors.WhichChildren]", children["inner"])
        workers = await inner_ref.ask(actors.WhichChildren())
        worker = cast("actors.ActorRef[Fail]", workers["worker"])
        await restart(worker, system)
        samples = await scrape(observer)
    assert value(samples, "escalations_total") == 1
    assert value(samples, "restarts_total") == 1  # the inner supervisor, by the outer one
    assert value(samples, "dead_letters_total", reason="failed") == 1


async def test_a_reconnecting_client_is_counted(system: actors.ActorSystem) -> None:
    async def close_after_one(connection: transport.WebSocketConnection) -> None:
        async for message in connection:  # ends once the close is done
            await connection.send(message)
            await connection.ref.tell(transport.Close(transport.CloseCode.SERVICE_RESTART))

    backoff = actors.Backoff(minimum=0.01, maximum=0.01, jitter=0)
    connections: list[transport.WebSocketConnection] = []
    reconnected = trio.Event()

    async def on_connected(connection: transport.WebSocketConnection) -> None:
        await trio.lowlevel.checkpoint()
        connections.append(connection)
        if len(connections) == 2:
            reconnected.set()

    async with (
        transport.observe.open_observer(system, "127.0.0.1", 0) as observer,
        trio.open_nursery() as nursery,
    ):
        server: transport.WebSocketServer = await nursery.start(
            functools.partial(
                transport.serve_websocket, system, close_after_one, "127.0.0.1", 0, options=OPTIONS
            )
        )
        url = f"ws://127.0.0.1:{server.port}/"
        async with transport.open_reconnecting_client(
            system,
            transport.ReconnectingClient(
                url=url, options=OPTIONS, backoff=backoff, on_connected=on_connected
            ),
            name="feed",
        ) as client:
            with trio.fail_after(10):
                # The connection echoes one message, then the server closes it with 1012.
                await client.send("first")
                assert await client.receive() == "first"
                await reconnected.wait()
                await client.wait_connected()
            assert client.statistics().connects == 2
            samples = await scrape(observer)
        final = await scrape(observer)
        nursery.cancel_scope.cancel()
    assert value(samples, "reconnects_total", client="/feed") == 1
    assert value(samples, "reconnect_attempts_total", client="/feed") >= 2
    assert value(samples, "reconnect_dropped_total", client="/feed") == 0
    assert value(samples, "connections_closed_total", side="client", code="1012") >= 1
    # Counters survive the client: the totals keep what ended.
    assert value(final, "reconnects_total", client="/feed") >= 1
    assert ("trio_actors_reconnect_buffered", frozenset({("client", "/feed")})) not in final


async def test_the_dashboard_feed_shows_the_tree_and_a_restart_as_it_happens(
    system: actors.ActorSystem,
) -> None:
    async with transport.observe.open_observer(system, "127.0.0.1", 0, interval=30) as observer:
        supervisor = await system.spawn(actors.Supervisor(), name="work")
        worker = await actors.start_child(supervisor, actors.ChildSpec("worker", Worker))
        url = f"ws://127.0.0.1:{observer.port}/live"
        async with transport.open_websocket_client(system, url, options=OPTIONS) as page:
            state = json.loads(await page.receive())
            assert state["type"] == "state"
            assert state["system"] == "shop"
            (work,) = (actor for actor in state["actors"] if actor["path"] == "/work")
            assert [child["name"] for child in work["children"]] == ["worker"]
            assert work["children"][0]["restarts"] == 0
            # The page's connection is listed twice: the observer's end and the test's end.
            assert sorted(c["side"] for c in state["connections"]) == ["client", "server"]
            await worker.tell(Fail())
            # The interval is 30 s: what follows comes from the event, as it happens.
            with trio.fail_after(10):
                messages = [json.loads(await page.receive()) for _ in range(4)]
        kinds = [(m["type"], m.get("kind")) for m in messages]
        assert ("event", "restarted") in kinds
        assert ("event", "dead letter") in kinds
        restarted = next(m for m in messages if m.get("kind") == "restarted")
        assert restarted["path"] == "/work/worker"
        assert "failed on purpose" in restarted["detail"]
        last = messages[-1]
        assert last["type"] == "state"
        (work,) = (actor for actor in last["actors"] if actor["path"] == "/work")
        assert work["children"][0]["restarts"] == 1
        assert last["restarts"] == 1
        assert last["dead_letters"][0]["reason"] == "failed"


async def test_the_page_and_unknown_paths(system: actors.ActorSystem) -> None:
    async with transport.observe.open_observer(system, "127.0.0.1", 0) as observer:
        assert observer.url == f"http://127.0.0.1:{observer.port}/"
        page = await http_request(observer.port, "/")
        assert page.status == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert b"new WebSocket(`${scheme}//${location.host}/live`)" in page.body
        assert (await http_request(observer.port, "/nothing")).status == 404
        with pytest.raises(transport.HandshakeRejected) as rejected:
            await transport.connect_websocket(system, f"ws://127.0.0.1:{observer.port}/other")
        assert rejected.value.status == 404


async def test_a_taken_port_is_a_clear_error(system: actors.ActorSystem) -> None:
    (holder,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = holder.socket.getsockname()[1]
    async with holder:
        with pytest.raises(
            OSError,
            match=rf"^.*the observer cannot listen on 127\.0\.0\.1:{port}: the port is taken",
        ):
            async with transport.observe.open_observer(system, "127.0.0.1", port):
                pass  # pragma: no cover
        # The system has no observer left behind: a second one starts on a free port.
        async with transport.observe.open_observer(system, "127.0.0.1", 0) as observer:
            assert observer.port != port


async def test_one_observer_per_system(system: actors.ActorSystem) -> None:
    async with transport.observe.open_observer(system, "127.0.0.1", 0):
        with pytest.raises(RuntimeError, match="already has an observer"):
            async with transport.observe.open_observer(system, "127.0.0.1", 0):
                pass  # pragma: no cover


async def test_without_prometheus_client_the_error_names_the_extra(
    system: actors.ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_metrics, "HAVE_PROMETHEUS", False)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'trio-actors\[metrics\]'"):
        async with transport.observe.open_observer(system, "127.0.0.1", 0):
            pass  # pragma: no cover


def test_observe_is_its_own_namespace() -> None:
    assert set(transport.observe.__all__).isdisjoint(transport.__all__)
    for name in transport.observe.__all__:
        assert getattr(transport.observe, name).__doc__ or name == "DEFAULT_INTERVAL"


def test_the_example_runs_and_prints_its_own_metrics() -> None:
    arguments = ["--port", "0", "--seconds", "2", "--crash-every", "0.5"]
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "examples.observed_system", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    match = re.search(r"^dashboard: open (http://127\.0\.0\.1:\d+/) in a browser$", out, re.M)
    assert match is not None, out
    assert f"\nmetrics: {match.group(1)}metrics\n" in out
    figures = dict(line.rsplit(" ", 1) for line in out.splitlines()[2:])
    assert float(figures["trio_actors_restarts_total"]) >= 1
    assert float(figures['trio_actors_dead_letters_total{reason="failed"}']) >= 1
    assert float(figures['trio_actors_connections_open{side="client"}']) == 1
    assert float(figures['trio_actors_websocket_messages_received_total{side="server"}']) >= 1


async def test_the_observability_page_lists_every_metric(system: actors.ActorSystem) -> None:
    async with transport.observe.open_observer(system, "127.0.0.1", 0) as observer:
        reply = await http_request(observer.port, "/metrics")
    served = set(re.findall(r"^# TYPE (\S+) ", reply.body.decode(), re.MULTILINE))
    page = (ROOT / "docs" / "observability.rst").read_text()
    documented = set(re.findall(r"^``(trio_actors_\w+)``", page, re.MULTILINE))
    assert len(served) == 34
    assert served == documented
