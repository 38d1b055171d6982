"""The census: connections, servers, reconnecting clients and backplanes report to an observer.

Each of them counts what it does in its own statistics object. An observer of a
system (``transport.observe``) wants all of them without being told about each
one: so each *source* reports itself here when it starts, with a function that
reads its statistics, and reports its final statistics when it ends. The
observer reads the live ones when it is asked (always on the system's trio
thread: the reports and the reads are plain synchronous calls made there).

This module is a leaf (it imports nothing from the transport), so the connection
core can call it without import cycles. Until an observer attaches to a system,
a report costs one dictionary lookup and keeps nothing.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import actors


class SourceKind(enum.Enum):
    """What reports to the census."""

    CLIENT_CONNECTION = "client connection"
    SERVER_CONNECTION = "server connection"
    SERVER = "server"
    RECONNECTING_CLIENT = "reconnecting client"
    BACKPLANE = "backplane"


class CensusObserver(Protocol):
    """What an observer attached to a system receives (see ``transport.observe``)."""

    def started(
        self, source: object, kind: SourceKind, name: str, read: Callable[[], object]
    ) -> None:
        """``source`` started; ``read()`` returns its statistics while it lives."""

    def ended(self, source: object, final: object) -> None:
        """``source`` ended with ``final`` statistics (ignored if it never started here)."""


# One observer per system at most, removed when it detaches.
observers: weakref.WeakKeyDictionary[actors.ActorSystem, CensusObserver] = (
    weakref.WeakKeyDictionary()
)


def report_started(
    system: actors.ActorSystem,
    source: object,
    kind: SourceKind,
    name: str,
    read: Callable[[], object],
) -> None:
    """Tell the observer of ``system`` (if any) that ``source`` started."""
    observer = observers.get(system)
    if observer is not None:
        observer.started(source, kind, name, read)


def report_ended(system: actors.ActorSystem, source: object, final: object) -> None:
    """Tell the observer of ``system`` (if any) that ``source`` ended with ``final``."""
    observer = observers.get(system)
    if observer is not None:
        observer.ended(source, final)
