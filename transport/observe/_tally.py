"""The tally: what an observer keeps of a system between two reads.

It is the census observer of its system (``transport._census``): it holds the
statistics readers of the live connections, servers, reconnecting clients and
backplanes, and adds up the final counters of those that ended, so that every
``*_total`` figure only grows. It also counts the system's events (restarts,
failures, escalations) and keeps the latest ones for the dashboard.

Everything here runs on the system's trio thread: the census reports are made
there, the event task runs there, and the readers are called there.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar, final

import attrs
import trio

import actors

from .._backplane._interface import BackplaneStatistics
from .._census import SourceKind, observers
from .._connection._messages import ConnectionStatistics
from .._reconnect._types import ReconnectStatistics
from .._server._host import ServerStatistics

#: How many recent events the dashboard is sent.
RECENT_EVENTS = 50
#: Events one dashboard may fall behind by; it misses the oldest beyond that.
WATCHER_BUFFER = 64

S = TypeVar("S")

# The monotonic counters of each kind of statistics: summed over the sources that ended
# and those alive, they only grow.
_COUNTERS: dict[type, tuple[str, ...]] = {
    ConnectionStatistics: (
        "messages_received",
        "messages_sent",
        "bytes_received",
        "bytes_sent",
        "inbound_dropped",
        "inbound_pauses",
        "undecodable",
    ),
    ServerStatistics: ("accepted", "refused", "handshake_failures"),
    ReconnectStatistics: ("attempts", "connects", "sent", "received", "dropped", "undelivered"),
    BackplaneStatistics: ("disconnects", "gaps", "published", "received", "undeliverable"),
}


@final
@attrs.frozen
class Source:
    """One live source: what it is, its name (a path, or a backplane's node), its reader."""

    kind: SourceKind
    name: str
    read: Callable[[], object]


@final
@attrs.frozen
class EventRecord:
    """One system event as the dashboard shows it."""

    at: float
    kind: str
    path: str
    detail: str

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready data."""
        return attrs.asdict(self)


@final
class Tally:
    """The census observer of one system, and its event counts."""

    def __init__(self, system: actors.ActorSystem) -> None:
        self.system = system
        self._live: dict[int, tuple[object, Source]] = {}
        # (kind, key) -> counter name -> total of the sources that ended. The key is the
        # side for connections ("client"/"server"), the name for the other kinds.
        self.finished: collections.defaultdict[tuple[SourceKind, str], collections.Counter[str]] = (
            collections.defaultdict(collections.Counter)
        )
        # (side, close code) -> connections that ended with it.
        self.closed: collections.Counter[tuple[str, int]] = collections.Counter()
        self.restarts = 0
        self.failures = 0
        self.escalations = 0
        #: The event counter's subscription to the event stream, once subscribed.
        self.subscription: actors.Subscription | None = None
        self.recent: collections.deque[EventRecord] = collections.deque(maxlen=RECENT_EVENTS)
        # The dashboards' channels: each recorded event is offered to them, after counting.
        self._watchers: set[trio.MemorySendChannel[EventRecord]] = set()

    @property
    def events_lost(self) -> int:
        """Events the counter missed because its mailbox was full (the stream drops oldest)."""
        return 0 if self.subscription is None else self.subscription.statistics().dropped

    # -- the census ---------------------------------------------------------------------

    def attach(self) -> None:
        """Become the census observer of the system; raises if it already has one."""
        if self.system in observers:
            raise RuntimeError(
                f"actor system {self.system.name!r} already has an observer; "
                "serve one observer per system and share its port"
            )
        observers[self.system] = self

    def detach(self) -> None:
        """Stop receiving census reports."""
        if observers.get(self.system) is self:
            del observers[self.system]

    def started(
        self, source: object, kind: SourceKind, name: str, read: Callable[[], object]
    ) -> None:
        """A census report: ``source`` started."""
        self._live[id(source)] = (source, Source(kind, name, read))

    def ended(self, source: object, final: object) -> None:
        """A census report: ``source`` ended; its final counters join the totals."""
        entry = self._live.pop(id(source), None)
        if entry is None:
            return
        kind = entry[1].kind
        key = _key(entry[1])
        for field in _COUNTERS.get(type(final), ()):
            self.finished[kind, key][field] += getattr(final, field)
        if isinstance(final, ConnectionStatistics) and final.closed is not None:
            self.closed[key, int(final.closed.code)] += 1

    def sources(self, *kinds: SourceKind) -> Iterator[Source]:
        """The live sources of these kinds, oldest first."""
        for _, source in list(self._live.values()):
            if source.kind in kinds:
                yield source

    def live(self, statistics_type: type[S], *kinds: SourceKind) -> Iterator[tuple[Source, S]]:
        """The live sources of these kinds with their statistics now."""
        for source in self.sources(*kinds):
            statistics = source.read()
            assert isinstance(statistics, statistics_type)
            yield source, statistics

    def totals(self, kind: SourceKind) -> dict[str, collections.Counter[str]]:
        """Key -> counter -> total over the ended and the live sources of ``kind``."""
        result: dict[str, collections.Counter[str]] = {}
        for (ended_kind, key), counters in self.finished.items():
            if ended_kind is kind:
                result.setdefault(key, collections.Counter()).update(counters)
        for source in self.sources(kind):
            statistics = source.read()
            counters = result.setdefault(_key(source), collections.Counter())
            for field in _COUNTERS[type(statistics)]:
                counters[field] += getattr(statistics, field)
        return result

    # -- events -------------------------------------------------------------------------

    def record(self, event: actors.SystemEvent) -> None:
        """Count one event of the system's event stream and keep it for the dashboard."""
        error = getattr(event, "error", None)
        if isinstance(event, actors.ActorRestarted):
            self.restarts += 1
        elif isinstance(event, actors.ActorFailed):
            self.failures += 1
        if isinstance(error, actors.RestartIntensityError):
            self.escalations += 1
        record = event_record(event)
        if record is not None:
            self.recent.append(record)
            for watcher in self._watchers:
                with contextlib.suppress(trio.WouldBlock):  # its next state catches it up
                    watcher.send_nowait(record)

    @contextlib.contextmanager
    def watch(self) -> Iterator[trio.MemoryReceiveChannel[EventRecord]]:
        """Receive each event recorded while the ``with`` block is open (after it is counted)."""
        send, receive = trio.open_memory_channel[EventRecord](WATCHER_BUFFER)
        self._watchers.add(send)
        try:
            yield receive
        finally:
            self._watchers.discard(send)
            send.close()


def event_record(event: actors.SystemEvent) -> EventRecord | None:
    """The dashboard's line for ``event`` (``None`` for an event it does not know)."""
    now = trio.current_time()
    if isinstance(event, actors.ActorRestarted):
        cause = "" if event.error is None else f" after {event.error!r}"
        return EventRecord(now, "restarted", event.path, f"restart {event.restarts}{cause}")
    if isinstance(event, actors.ActorFailed):
        return EventRecord(now, "failed", event.path, repr(event.error))
    if isinstance(event, actors.DeadLetterPublished):
        letter = event.letter
        return EventRecord(now, "dead letter", letter.recipient, letter.reason.value)
    return None


@final
@attrs.define(eq=False)
class EventCounter(actors.Actor[actors.SystemEvent]):
    """Subscribed to the system's event stream; counts each event in the tally."""

    tally: Tally

    @actors.handler
    def on_event(self, event: actors.SystemEvent) -> None:
        self.tally.record(event)


def connection_side(kind: SourceKind) -> str:
    """``"client"`` or ``"server"``."""
    return "client" if kind is SourceKind.CLIENT_CONNECTION else "server"


def _key(source: Source) -> str:
    if source.kind in (SourceKind.CLIENT_CONNECTION, SourceKind.SERVER_CONNECTION):
        return connection_side(source.kind)
    return source.name
