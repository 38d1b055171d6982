"""Routers: one handle that spreads messages over many actors (Akka's routers, OTP's pools).

A :class:`Router` routes in the sender's own task: it asks its routing logic
(``_routing.py``) for a routee and tells or asks that routee directly, so a
routed message costs about one direct ``tell`` (no router mailbox, no extra
hop). Its routees come from one of two sources, read live:

- a **pool** (:meth:`ActorSystem.spawn_pool`): a supervisor that starts
  ``size`` routees from a factory and restarts a routee that crashes (its ref,
  and therefore the router's view, stays the same; messages queued for it are
  kept), resizable at run time;
- a **group** (:meth:`ActorSystem.group_router`): the members of a process
  group, as they join and leave.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import trio

from ._exceptions import ActorError
from ._groups import group_members
from ._routing import Broadcast, RoundRobin, Routing
from ._supervisor import ChildSpec, StopChild, Supervisor, start_child

if TYPE_CHECKING:
    from typing import Never

    from ._actor import Actor
    from ._cell import Cell, Parent
    from ._messages import Request, StopReason
    from ._ref import ActorRef
    from ._system import ActorSystem

M = TypeVar("M")
M_contra = TypeVar("M_contra", contravariant=True)
R = TypeVar("R")


class NoRouteesError(ActorError):
    """A router had no routee to send to (an empty group, a pool resized to zero)."""


class _Source:
    """Where a router's routees come from: ``routees()`` and a change counter."""

    __slots__ = ()

    def changes(self) -> int:
        raise NotImplementedError

    def routees(self) -> tuple[ActorRef[Any], ...]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class _PoolSource(_Source):
    __slots__ = ("cell",)

    def __init__(self, cell: Cell) -> None:
        self.cell = cell

    def changes(self) -> int:
        return self.cell.children_changes

    def routees(self) -> tuple[ActorRef[Any], ...]:
        return tuple(child.ref for child in self.cell.children.values())

    def describe(self) -> str:
        return f"pool {self.cell.path}"


class _GroupSource(_Source):
    __slots__ = ("group", "handles", "system")

    def __init__(self, system: ActorSystem, group: str, handles: type) -> None:
        self.system = system
        self.group = group
        self.handles = handles

    def changes(self) -> int:
        return self.system._groups.changes

    def routees(self) -> tuple[ActorRef[Any], ...]:
        return tuple(group_members(self.system, self.group, handles=self.handles))

    def describe(self) -> str:
        return f"group {self.group!r}"


@final
class Router(Generic[M_contra]):
    """Sends each message to one routee (or all, for :class:`Broadcast`) chosen by its routing logic.

    Get one from :meth:`ActorSystem.spawn_pool` / :meth:`ActorContext.spawn_pool`
    (a pool of routees the router owns) or :meth:`ActorSystem.group_router`
    (the members of a process group). ``tell``, ``tell_nowait`` and ``ask``
    behave exactly as on the chosen routee's :class:`ActorRef` (backpressure,
    deadlines, errors); with no routee they raise :exc:`NoRouteesError`.
    Call it from the system's trio thread.
    """

    __slots__ = (
        "_broadcasts",
        "_changes",
        "_factory",
        "_mailbox_size",
        "_named",
        "_routees",
        "_routing",
        "_select",
        "_source",
    )

    def __init__(
        self,
        source: _Source,
        routing: Routing,
        factory: Callable[[], Actor[Any]] | None = None,
        mailbox_size: int | None = None,
    ) -> None:
        self._source = source
        self._routing = copy.copy(routing)
        self._select = self._routing.select
        self._broadcasts = type(routing) is Broadcast
        self._factory = factory
        self._mailbox_size = mailbox_size
        #: How many routees this router has named (``routee-1``, ``routee-2``, ...).
        self._named = 0 if factory is None else len(source.routees())
        self._changes = -1
        self._routees: tuple[ActorRef[Any], ...] = ()

    def __repr__(self) -> str:
        return f"<Router {self._source.describe()} {self._routing!r}, {len(self.routees)} routees>"

    @property
    def routees(self) -> list[ActorRef[M_contra]]:
        """The current routees, in order (a new list)."""
        return list(self._current())

    @property
    def routing(self) -> Routing:
        """This router's own routing logic (a copy of the one it was given)."""
        return self._routing

    @property
    def pool(self) -> ActorRef[Never] | None:
        """The ref of the pool's supervisor (watch it, stop it), or ``None`` for a group router."""
        source = self._source
        return source.cell.ref if isinstance(source, _PoolSource) else None

    def _current(self) -> tuple[ActorRef[Any], ...]:
        source = self._source
        if source.changes() != self._changes:
            self._changes = source.changes()
            self._routees = source.routees()
            self._routing.routees_changed(self._routees)
        return self._routees

    def _pick(self, message: object) -> ActorRef[Any]:
        routees = self._routees if self._source.changes() == self._changes else self._current()
        if not routees:
            raise NoRouteesError(
                f"router over {self._source.describe()} has no routees for "
                f"{type(message).__qualname__}; resize the pool or wait for members to join"
            )
        return self._select(message, routees)

    async def tell(self, message: M_contra) -> None:
        """Tell ``message`` to the chosen routee (to each, one after the other, for ``Broadcast``)."""
        routees = self._routees
        if self._source.changes() == self._changes and routees and not self._broadcasts:
            await self._select(message, routees).tell(message)
        elif self._broadcasts:
            await self._broadcast(message)
        else:
            await self._pick(message).tell(message)

    def tell_nowait(self, message: M_contra) -> None:
        """Tell without waiting; :exc:`trio.WouldBlock` if the chosen routee's mailbox is full.

        A ``Broadcast`` router tells every routee that has room and raises
        :exc:`trio.WouldBlock` at the end if any had none.
        """
        if self._broadcasts:
            full = False
            for routee in self._current():
                try:
                    routee.tell_nowait(message)
                except trio.WouldBlock:
                    full = True
            if full:
                raise trio.WouldBlock
            return
        self._pick(message).tell_nowait(message)

    async def ask(self, message: Request[R], *, timeout: float | None = None) -> R:  # noqa: ASYNC109
        """Ask the chosen routee and return its reply (as :meth:`ActorRef.ask`)."""
        if self._broadcasts:
            self._select(message, ())  # raises: a broadcast cannot ask
        return await self._pick(message).ask(message, timeout=timeout)

    async def _broadcast(self, message: object) -> None:  # noqa: ASYNC910 - raises with no routee
        routees = self._current()
        if not routees:
            self._pick(message)  # raises NoRouteesError
        for routee in routees:
            await routee.tell(message)

    async def resize(self, size: int) -> None:
        """Grow or shrink a pool to ``size`` routees (the youngest go first, stopped cleanly).

        Raises :exc:`TypeError` for a group router: a group's size is its members'.
        """
        source = self._source
        if not isinstance(source, _PoolSource) or self._factory is None:
            raise TypeError(
                f"router over {source.describe()} cannot be resized: its routees are the "
                "group's members; join or leave the group instead"
            )
        if size < 0:
            raise ValueError(f"a pool's size is zero or more, not {size!r}")
        cell = source.cell
        pool: ActorRef[Any] = cell.ref
        names = list(cell.children)
        for name in reversed(names[size:]):
            await pool.ask(StopChild(name))
        for _ in range(size - len(names)):
            self._named += 1
            spec = _routee_spec(self._named, self._factory, self._mailbox_size)
            await start_child(pool, spec)
        await trio.lowlevel.checkpoint()

    async def stop(self) -> StopReason:
        """Stop a pool and its routees; returns the pool's stop reason (pools only)."""
        pool = self.pool
        if pool is None:
            raise TypeError(
                f"router over {self._source.describe()} owns no actors; stop the group's "
                "members themselves"
            )
        return await pool.stop()


def _routee_spec(
    number: int, factory: Callable[[], Actor[Any]], mailbox_size: int | None
) -> ChildSpec[Never]:
    return ChildSpec(f"routee-{number}", factory, mailbox_size=mailbox_size)


async def spawn_pool(
    parent: Parent,
    factory: Callable[[], Actor[M]],
    *,
    size: int,
    routing: Routing | None,
    name: str | None,
    mailbox_size: int | None,
    max_restarts: int,
    within: float,
) -> Router[M]:
    """The implementation of :meth:`ActorSystem.spawn_pool` and :meth:`ActorContext.spawn_pool`."""
    if size < 0:
        raise ValueError(f"a pool's size is zero or more, not {size!r}")
    specs: Sequence[ChildSpec[Never]] = [
        _routee_spec(number, factory, mailbox_size) for number in range(1, size + 1)
    ]
    supervisor = Supervisor(children=specs, max_restarts=max_restarts, within=within)
    ref = await parent.spawn_child(supervisor, name, None, None)
    return Router(_PoolSource(ref._cell), routing or RoundRobin(), factory, mailbox_size)


def group_router(
    system: ActorSystem, group: str, handles: type[M], routing: Routing | None
) -> Router[M]:
    """The implementation of :meth:`ActorSystem.group_router`."""
    return Router(_GroupSource(system, group, handles), routing or RoundRobin())
