"""The Prometheus metrics of a system, read from its snapshot, dead letters and tally.

:func:`metrics_text` builds the whole exposition in one synchronous call on the
system's trio thread: nothing is read from another thread, and a scrape sees one
consistent instant. ``prometheus-client`` (the ``metrics`` extra) formats it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import TypeVar

import actors

from .._backplane._interface import BackplaneState, BackplaneStatistics
from .._census import SourceKind
from .._connection._messages import ConnectionStatistics
from .._reconnect._policy import ClientState
from .._reconnect._types import ReconnectStatistics
from .._server._host import ServerStatistics
from ._tally import Tally, connection_side

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
except ImportError:  # pragma: no cover - checked by require_prometheus
    HAVE_PROMETHEUS = False
else:
    HAVE_PROMETHEUS = True

PREFIX = "trio_actors_"
E = TypeVar("E", bound=enum.Enum)
_CONNECTIONS = (SourceKind.CLIENT_CONNECTION, SourceKind.SERVER_CONNECTION)


def require_prometheus() -> None:
    """Raise a clear error if ``prometheus-client`` is not installed."""
    if not HAVE_PROMETHEUS:
        raise ModuleNotFoundError(
            "transport.observe serves Prometheus metrics with prometheus-client, which is not "
            "installed; install the metrics extra: pip install 'trio-actors[metrics]'"
        )


def metrics_text(tally: Tally) -> tuple[bytes, str]:
    """The exposition text of every metric now, and its content type."""
    require_prometheus()
    return generate_latest(_Collector(tally)), CONTENT_TYPE_LATEST


class _Collector:
    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def collect(self) -> Iterator[Metric]:
        yield from _actor_metrics(self.tally)
        yield from _connection_metrics(self.tally)
        yield from _server_metrics(self.tally)
        yield from _reconnect_metrics(self.tally)
        yield from _backplane_metrics(self.tally)


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=labels)


def _counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, labels=labels)


def _states(name: str, label: str, rows: list[tuple[str, E]], states: type[E]) -> GaugeMetricFamily:
    """A state set: for each row, 1 for its current state and 0 for the others."""
    family = _gauge(name, f"1 for the {label}'s current state, 0 for the others.", (label, "state"))
    for key, current in rows:
        for state in states:
            family.add_metric([key, str(state.value)], state is current)
    return family


def _total(name: str, doc: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, value=value)


def _actor_metrics(tally: Tally) -> Iterator[Metric]:
    system = tally.system
    snapshot = system.snapshot()
    connections = {source.name for source in tally.sources(*_CONNECTIONS)}
    by_state: dict[str, int] = {}
    depth = _gauge("mailbox_depth", "User messages queued in the actor's mailbox.", ("path",))
    high = _gauge("mailbox_high_water", "Largest mailbox depth seen.", ("path",))
    capacity = _gauge("mailbox_capacity", "The bound of the actor's mailbox.", ("path",))
    processed = _counter("actor_messages_processed", "Messages whose handler returned.", ("path",))
    restarts = _gauge(
        "actor_restarts", "Times the actor was restarted by its supervisor.", ("path",)
    )
    for actor in snapshot.walk():
        by_state[actor.state] = by_state.get(actor.state, 0) + 1
        if actor.path in connections:
            continue  # one series per connection would not scale: see the connection metrics
        labels = [actor.path]
        depth.add_metric(labels, actor.mailbox_depth)
        high.add_metric(labels, actor.mailbox_high_water)
        capacity.add_metric(labels, actor.mailbox_capacity)
        processed.add_metric(labels, actor.processed)
        restarts.add_metric(labels, actor.restarts)
    alive = _gauge("actors", "Actors alive, by lifecycle state.", ("state",))
    for state, count in sorted(by_state.items()):
        alive.add_metric([state], count)
    yield alive
    yield from (depth, high, capacity, processed, restarts)
    letters = _counter("dead_letters", "Messages recorded as dead letters, by reason.", ("reason",))
    by_reason = system.dead_letters.statistics().by_reason
    for reason in actors.DeadLetterReason:
        letters.add_metric([reason.value], by_reason.get(reason, 0))
    yield letters
    yield _total(
        "restarts",
        "Actor restarts seen on the event stream since the observer started.",
        tally.restarts,
    )
    yield _total(
        "failures",
        "Actors stopped for good by a failure since the observer started.",
        tally.failures,
    )
    yield _total(
        "escalations", "Supervisors that gave up (restart intensity exceeded).", tally.escalations
    )
    yield _total(
        "events_lost",
        "System events the observer missed because it fell behind.",
        tally.events_lost,
    )


def _connection_metrics(tally: Tally) -> Iterator[Metric]:
    side = ("side",)
    open_now = _gauge("connections_open", "WebSocket connections open.", side)
    inbound = _gauge("inbound_queue_depth", "Messages waiting for the application.", side)
    outbound = _gauge("outbound_queue_depth", "Frames waiting for the writer.", side)
    depths: dict[str, list[int]] = {"client": [0, 0, 0], "server": [0, 0, 0]}
    for source, statistics in tally.live(ConnectionStatistics, *_CONNECTIONS):
        row = depths[connection_side(source.kind)]
        row[0] += 1
        row[1] += statistics.inbound_depth
        row[2] += statistics.outbound_depth
    for name, (count, inbound_depth, outbound_depth) in depths.items():
        open_now.add_metric([name], count)
        inbound.add_metric([name], inbound_depth)
        outbound.add_metric([name], outbound_depth)
    yield from (open_now, inbound, outbound)
    closed = _counter(
        "connections_closed", "WebSocket connections ended, by close code.", ("side", "code")
    )
    for (name, code), count in sorted(tally.closed.items()):
        closed.add_metric([name, str(code)], count)
    yield closed
    totals: dict[str, dict[str, int]] = {"client": {}, "server": {}}
    for kind in _CONNECTIONS:
        for key, counters in tally.totals(kind).items():
            totals[key] = dict(counters)
    for field, doc in (
        ("messages_received", "WebSocket messages received."),
        ("messages_sent", "WebSocket messages sent."),
        ("bytes_received", "Payload bytes received (text as UTF-8)."),
        ("bytes_sent", "Payload bytes sent (text as UTF-8)."),
        ("inbound_dropped", "Inbound messages the overflow policy dropped."),
        ("inbound_pauses", "Times the reader paused reading the peer for room."),
        ("undecodable", "Inbound messages the codec refused."),
    ):
        family = _counter(f"websocket_{field}", doc, side)
        for name, sums in totals.items():
            family.add_metric([name], sums.get(field, 0))
        yield family


def _server_metrics(tally: Tally) -> Iterator[Metric]:
    server = ("server",)
    families = {
        "accepted": _counter(
            "server_connections_accepted", "Connections whose handshake succeeded.", server
        ),
        "refused": _counter(
            "server_connections_refused", "Clients refused at max_connections (503).", server
        ),
        "handshake_failures": _counter(
            "server_handshake_failures", "Handshakes rejected or failed.", server
        ),
    }
    for name, counters in sorted(tally.totals(SourceKind.SERVER).items()):
        for field, family in families.items():
            family.add_metric([name], counters[field])
    yield from families.values()
    handshaking = _gauge(
        "server_handshakes_in_progress", "Handshakes (and plain HTTP requests) in progress.", server
    )
    for source, statistics in tally.live(ServerStatistics, SourceKind.SERVER):
        handshaking.add_metric([source.name], statistics.handshaking)
    yield handshaking


def _reconnect_metrics(tally: Tally) -> Iterator[Metric]:
    client = ("client",)
    attempts = _counter("reconnect_attempts", "Connection attempts.", client)
    reconnects = _counter("reconnects", "Connections made after the first.", client)
    dropped = _counter(
        "reconnect_dropped", "Messages the buffer policy dropped or refused.", client
    )
    for name, counters in sorted(tally.totals(SourceKind.RECONNECTING_CLIENT).items()):
        attempts.add_metric([name], counters["attempts"])
        reconnects.add_metric([name], max(counters["connects"] - 1, 0))
        dropped.add_metric([name], counters["dropped"])
    yield from (attempts, reconnects, dropped)
    buffered = _gauge("reconnect_buffered", "Messages waiting for a connection.", client)
    clients = list(tally.live(ReconnectStatistics, SourceKind.RECONNECTING_CLIENT))
    for source, statistics in clients:
        buffered.add_metric([source.name], statistics.buffered)
    yield buffered
    yield _states(
        "reconnect_state",
        "client",
        [(source.name, statistics.state) for source, statistics in clients],
        ClientState,
    )


def _backplane_metrics(tally: Tally) -> Iterator[Metric]:
    node = ("node",)
    yield _states(
        "backplane_state",
        "node",
        [
            (source.name, statistics.state)
            for source, statistics in tally.live(BackplaneStatistics, SourceKind.BACKPLANE)
        ],
        BackplaneState,
    )
    gaps = _counter("backplane_gaps", "Gap notices sent after a lost connection.", node)
    disconnects = _counter("backplane_disconnects", "Connections to the server lost.", node)
    for name, counters in sorted(tally.totals(SourceKind.BACKPLANE).items()):
        gaps.add_metric([name], counters["gaps"])
        disconnects.add_metric([name], counters["disconnects"])
    yield from (gaps, disconnects)
