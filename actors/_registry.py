"""The name registry: unique names for actors, one registry per actor system.

A name is bound to the actor's cell, not to one incarnation of it, so it
stays valid while a supervisor restarts the actor; it disappears only when
the actor stops for good (or is unregistered). While the actor is stopping
the name still answers with its ref (sends then fail with
:exc:`ActorStoppedError`, as for any ref of a stopping actor).

Absence is always ``None``, never an exception: :func:`lookup` returns
``None`` for a free name and :func:`unregister` of a free name does nothing
(it may race with the automatic removal of a stopped actor's names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ._actor import resolve_handler
from ._cell import Cell, check_thread
from ._exceptions import ActorStoppedError, NameTakenError, UnhandledMessageError
from ._watch import add_stop_hook, remove_stop_hook

if TYPE_CHECKING:
    from typing import Never

    from ._messages import StopReason
    from ._ref import ActorRef
    from ._system import ActorSystem

M = TypeVar("M")


class Registry:
    """The names of one system: name -> cell, cell -> its names, and who waits for a name."""

    __slots__ = ("cells", "names", "waiting")

    def __init__(self) -> None:
        self.cells: dict[str, Cell] = {}
        self.names: dict[Cell, list[str]] = {}
        self.waiting: dict[str, trio.lowlevel.ParkingLot] = {}

    def bind(self, name: str, cell: Cell) -> None:
        self.cells[name] = cell
        names = self.names.get(cell)
        if names is None:
            names = self.names[cell] = []

            def forget(_reason: StopReason) -> None:
                self.forget_cell(cell)

            add_stop_hook(cell, self, forget)
        names.append(name)
        lot = self.waiting.pop(name, None)
        if lot is not None:
            lot.unpark_all()

    def unbind(self, name: str) -> Cell | None:
        cell = self.cells.pop(name, None)
        if cell is None:
            return None
        names = self.names[cell]
        names.remove(name)
        if not names:
            del self.names[cell]
            remove_stop_hook(cell, self)
        return cell

    def forget_cell(self, cell: Cell) -> None:
        for name in self.names.pop(cell, ()):
            if self.cells.get(name) is cell:
                del self.cells[name]


def check_name(name: str, what: str) -> None:
    """Refuse names that are not non-empty strings."""
    value: object = name
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, not {name!r}")


def member_cell(system: ActorSystem, ref: ActorRef[Never], what: str) -> Cell:
    """The live cell behind ``ref``, checked to belong to ``system``."""
    cell = ref._cell
    if cell.system is not system:
        raise ValueError(
            f"actor {cell.path} belongs to actor system {cell.system.name!r}, not "
            f"{system.name!r}; {what} it in its own system"
        )
    if not ref.is_alive:
        raise ActorStoppedError(
            f"actor {cell.path} has stopped ({cell.describe_reason()}); it cannot be {what}"
        )
    return cell


def check_handles(cell: Cell, message_type: type, where: str) -> None:
    """Raise :exc:`UnhandledMessageError` unless ``cell``'s actor handles ``message_type``."""
    if not isinstance(message_type, type):
        raise TypeError(f"handles= takes one message class, not {message_type!r}")
    if message_type in cell.handlers or resolve_handler(cell.handlers, message_type):
        return
    accepted = ", ".join(sorted(t.__qualname__ for t in cell.handlers))
    raise UnhandledMessageError(
        f"actor {cell.path} ({where}) has no handler for {message_type.__qualname__}; "
        f"it handles: {accepted}"
    )


def register(system: ActorSystem, name: str, ref: ActorRef[Never]) -> None:
    """The implementation of the :meth:`ActorSystem.register` method."""
    check_thread(system.thread_id, "ActorSystem.register()")
    check_name(name, "a registered name")
    cell = member_cell(system, ref, "registered")
    registry = system._registry
    holder = registry.cells.get(name)
    if holder is cell:
        return
    if holder is not None:
        raise NameTakenError(
            f"the name {name!r} is already registered to actor {holder.path} in actor "
            f"system {system.name!r}; unregister it first or pick another name"
        )
    registry.bind(name, cell)


def unregister(system: ActorSystem, name: str) -> None:
    """The implementation of the :meth:`ActorSystem.unregister` method."""
    check_thread(system.thread_id, "ActorSystem.unregister()")
    system._registry.unbind(name)


def lookup(
    system: ActorSystem, name: str, *, handles: type[M] | None = None
) -> ActorRef[Any] | None:
    """The implementation of the :meth:`ActorSystem.lookup` method."""
    check_thread(system.thread_id, "ActorSystem.lookup()")
    cell = system._registry.cells.get(name)
    if cell is None:
        return None
    if handles is not None:
        check_handles(cell, handles, f"registered as {name!r}")
    return cell.ref


async def wait_registered(
    system: ActorSystem, name: str, *, handles: type[M] | None = None
) -> ActorRef[Any]:
    """The implementation of the :meth:`ActorSystem.wait_registered` method."""
    check_thread(system.thread_id, "ActorSystem.wait_registered()")
    check_name(name, "a registered name")
    registry = system._registry
    await trio.lowlevel.checkpoint()
    while (cell := registry.cells.get(name)) is None:
        lot = registry.waiting.get(name)
        if lot is None:
            lot = registry.waiting[name] = trio.lowlevel.ParkingLot()
        try:
            await lot.park()
        finally:
            if not lot and registry.waiting.get(name) is lot:
                del registry.waiting[name]
    if handles is not None:
        check_handles(cell, handles, f"registered as {name!r}")
    return cell.ref
