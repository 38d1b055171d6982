"""Introspection: a frozen snapshot of a live actor tree, a printable tree, a log filter.

:meth:`ActorSystem.snapshot` copies what the runtime knows about every actor at one
instant (on the trio clock) into frozen values that are safe to keep, compare,
print (:func:`format_tree`) or serialise (:meth:`SystemSnapshot.as_dict`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, final

import attrs
import trio

from ._messages import Failed
from ._timers import active_timer_keys

if TYPE_CHECKING:
    from ._cell import Cell
    from ._system import ActorSystem


@final
@attrs.frozen
class ActorSnapshot:
    """One actor at the moment of a :meth:`ActorSystem.snapshot`, with its children.

    ``state`` is the lifecycle state (``"starting"``, ``"running"``,
    ``"restarting"``, ``"stopping"``, ``"stopped"``). Mailbox figures are those
    of :class:`~actors.MailboxStatistics`. ``restarts`` counts supervisor
    restarts; ``last_failure`` is the ``repr`` of the last exception the actor
    failed with (``None`` if it never failed); ``age`` is seconds on the trio
    clock since the actor was spawned; ``timers`` holds the ``repr`` of the
    keys of its active timers; ``names`` are the names it is registered under
    and ``groups`` the process groups it belongs to (in the order taken).
    """

    path: str
    name: str
    actor_class: str
    state: str
    mailbox_capacity: int
    mailbox_depth: int
    mailbox_high_water: int
    processed: int
    dead_lettered: int
    senders_waiting: int
    restarts: int
    last_failure: str | None
    age: float
    timers: tuple[str, ...]
    names: tuple[str, ...]
    groups: tuple[str, ...]
    children: tuple[ActorSnapshot, ...]

    def walk(self) -> Iterator[ActorSnapshot]:
        """This actor and all its descendants, depth first, oldest child first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready data (children nested under ``"children"``)."""
        data: dict[str, object] = {
            field.name: getattr(self, field.name) for field in attrs.fields(ActorSnapshot)
        }
        data["timers"] = list(self.timers)
        data["names"] = list(self.names)
        data["groups"] = list(self.groups)
        data["children"] = [child.as_dict() for child in self.children]
        return data


@final
@attrs.frozen
class SystemSnapshot:
    """A whole actor system at one instant: returned by :meth:`ActorSystem.snapshot`.

    ``actors`` are the top-level actors (each with its subtree); ``taken_at``
    is the trio clock reading when the snapshot was taken.
    """

    system: str
    taken_at: float
    dead_letters: int
    late_replies: int
    actors: tuple[ActorSnapshot, ...]

    def walk(self) -> Iterator[ActorSnapshot]:
        """Every actor in the tree, depth first."""
        for actor in self.actors:
            yield from actor.walk()

    def find(self, path: str) -> ActorSnapshot:
        """The actor at ``path``; raises :exc:`KeyError` naming the known paths if absent."""
        for actor in self.walk():
            if actor.path == path:
                return actor
        known = ", ".join(actor.path for actor in self.walk()) or "none"
        raise KeyError(f"no actor at {path!r} in this snapshot; actors: {known}")

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready data: ``json.dumps(snapshot.as_dict())`` works."""
        return {
            "system": self.system,
            "taken_at": self.taken_at,
            "dead_letters": self.dead_letters,
            "late_replies": self.late_replies,
            "actors": [actor.as_dict() for actor in self.actors],
        }


def snapshot(system: ActorSystem) -> SystemSnapshot:
    """The implementation of the :meth:`ActorSystem.snapshot` method."""
    now = trio.current_time()
    statistics = system.statistics()
    return SystemSnapshot(
        system=system.name,
        taken_at=now,
        dead_letters=statistics.dead_letters,
        late_replies=statistics.late_replies,
        actors=_snapshots(system.children.values(), now),
    )


def _snapshots(cells: Iterable[Cell], now: float) -> tuple[ActorSnapshot, ...]:
    return tuple(_snapshot_of(cell, now) for cell in list(cells))


def _snapshot_of(cell: Cell, now: float) -> ActorSnapshot:
    mailbox = cell.mailbox.statistics()
    actor_type = type(cell.actor)
    return ActorSnapshot(
        path=cell.path,
        name=cell.name,
        actor_class=f"{actor_type.__module__}.{actor_type.__qualname__}",
        state=cell.state.value,
        mailbox_capacity=mailbox.capacity,
        mailbox_depth=mailbox.depth,
        mailbox_high_water=mailbox.high_water,
        processed=mailbox.processed,
        dead_lettered=mailbox.dead_lettered,
        senders_waiting=mailbox.senders_waiting,
        restarts=int(getattr(cell, "restarts", 0)),
        last_failure=_last_failure(cell),
        age=now - cell.started_at,
        timers=tuple(repr(key) for key in active_timer_keys(cell)),
        names=tuple(cell.system._registry.names.get(cell, ())),
        groups=tuple(cell.system._groups.groups_of.get(cell, ())),
        children=_snapshots(cell.children.values(), now),
    )


def _last_failure(cell: Cell) -> str | None:
    error = getattr(cell, "last_failure", None)
    if isinstance(error, BaseException):
        return repr(error)
    if isinstance(cell.reason, Failed):
        return repr(cell.reason.error)
    return None


def format_tree(snapshot: SystemSnapshot) -> str:
    """Render a snapshot as an indented tree, one actor per line::

        system 'chat' at t=12.0: 3 actors, 1 dead letter
        └── lobby  Room  running  mailbox 0/256 (high 4)  processed 10  age 12.0s
            ├── alice  Session  running  mailbox 0/64 (high 1)  processed 3  age 9.5s
            └── bob  Session  restarting  ...  restarts 1  last failure ValueError('x')

    Dead-lettered counts, restarts, waiting senders, timers, registered names,
    groups and the last failure are shown only when there is something to show.
    """
    count = sum(1 for _ in snapshot.walk())
    letters = "dead letter" if snapshot.dead_letters == 1 else "dead letters"
    lines = [
        f"system {snapshot.system!r} at t={snapshot.taken_at:.1f}: "
        f"{count} {'actor' if count == 1 else 'actors'}, {snapshot.dead_letters} {letters}"
    ]
    _format_level(snapshot.actors, "", lines)
    return "\n".join(lines)


def _format_level(actors: tuple[ActorSnapshot, ...], indent: str, lines: list[str]) -> None:
    for index, actor in enumerate(actors):
        last = index == len(actors) - 1
        lines.append(f"{indent}{'└── ' if last else '├── '}{_describe(actor)}")
        _format_level(actor.children, indent + ("    " if last else "│   "), lines)


def _describe(actor: ActorSnapshot) -> str:
    parts = [
        actor.name,
        actor.actor_class.rsplit(".", 1)[-1],
        actor.state,
        f"mailbox {actor.mailbox_depth}/{actor.mailbox_capacity} (high {actor.mailbox_high_water})",
        f"processed {actor.processed}",
    ]
    if actor.dead_lettered:
        parts.append(f"dead-lettered {actor.dead_lettered}")
    if actor.senders_waiting:
        parts.append(f"senders waiting {actor.senders_waiting}")
    if actor.restarts:
        parts.append(f"restarts {actor.restarts}")
    if actor.timers:
        parts.append(f"timers {', '.join(actor.timers)}")
    if actor.names:
        parts.append(f"names {', '.join(actor.names)}")
    if actor.groups:
        parts.append(f"groups {', '.join(actor.groups)}")
    parts.append(f"age {actor.age:.1f}s")
    if actor.last_failure is not None:
        parts.append(f"last failure {actor.last_failure}")
    return "  ".join(parts)


@final
class ActorPathFilter(logging.Filter):
    """A logging filter for the runtime's records, keyed by actor path.

    The runtime logs on the ``"actors"`` loggers with ``extra={"actor_path":
    ...}``. Attached to a handler, this filter does two things:

    * it gives every record an ``actor_path`` attribute (``"-"`` when the
      record has none), so a format string may always use
      ``%(actor_path)s``, even for records from other libraries;
    * with ``prefix``, it keeps only records of that actor and its
      descendants (``prefix="/chat"`` keeps ``/chat`` and ``/chat/lobby``,
      not ``/chatter``).

    ::

        handler = logging.StreamHandler()
        handler.addFilter(actors.ActorPathFilter("/chat"))
        handler.setFormatter(logging.Formatter("%(actor_path)s %(levelname)s %(message)s"))
        logging.getLogger("actors").addHandler(handler)
    """

    def __init__(self, prefix: str | None = None) -> None:
        super().__init__()
        if prefix is not None and not prefix.startswith("/"):
            raise ValueError(f"an actor path prefix starts with '/', not {prefix!r}")
        self.prefix = None if prefix is None else prefix.rstrip("/") or "/"

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``actor_path`` if missing; keep the record if it is under ``prefix``."""
        path = getattr(record, "actor_path", None)
        if not isinstance(path, str):
            record.actor_path = "-"
            return self.prefix is None
        prefix = self.prefix
        if prefix is None or prefix == "/":
            return True
        return path == prefix or path.startswith(prefix + "/")
