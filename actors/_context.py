"""``ActorContext``: what an actor can do from inside (``self.ctx``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, TypeVarTuple, final

from . import _watch
from ._actor import Actor
from ._messages import MailboxOverflow, Normal, StopReason

if TYPE_CHECKING:
    from typing import Never

    from ._cell import Cell
    from ._ref import ActorRef
    from ._router import Router
    from ._routing import Routing
    from ._stash import Stash
    from ._system import ActorSystem
    from ._timers import Timers
    from ._watch import Terminated

M = TypeVar("M")
M_contra = TypeVar("M_contra", contravariant=True)
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


@final
class ActorContext(Generic[M_contra]):
    """The running actor's view of itself: ``self.ctx`` inside an :class:`Actor`."""

    __slots__ = ("_cell",)

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    @property
    def ref(self) -> ActorRef[M_contra]:
        """This actor's own ref (give it to others so they can reply by ``tell``)."""
        return self._cell.ref

    @property
    def name(self) -> str:
        """The actor's name, unique among its siblings."""
        return self._cell.name

    @property
    def path(self) -> str:
        """The actor's path from the system root, e.g. ``/chat/room-lobby``."""
        return self._cell.path

    @property
    def system(self) -> ActorSystem:
        """The system this actor runs in."""
        return self._cell.system

    @property
    def parent(self) -> ActorRef[Never] | None:
        """The parent actor's ref, or ``None`` for an actor spawned by the system."""
        from ._cell import Cell

        parent = self._cell.parent
        return parent.ref if isinstance(parent, Cell) else None

    @property
    def sender(self) -> ActorRef[Never] | None:
        """The actor that sent the message being handled (``None`` if sent from outside actors)."""
        sender = self._cell.sender
        return None if sender is None else sender.ref

    @property
    def children(self) -> list[ActorRef[Never]]:
        """Refs of the live children, oldest first (a new list: O(children))."""
        return [child.ref for child in self._cell.children.values()]

    @property
    def child_count(self) -> int:
        """How many children are alive, without making the list of :attr:`children`."""
        return len(self._cell.children)

    async def spawn(
        self,
        actor: Actor[M] | Callable[[], Actor[M]],
        *,
        name: str | None = None,
        mailbox_size: int | None = None,
        stop_timeout: float | None = None,
        max_bytes: int | None = None,
        weigher: Callable[[M], int] | None = None,
        overflow: MailboxOverflow = MailboxOverflow.BLOCK,
    ) -> ActorRef[M]:
        """Start a child actor in this actor's nursery; returns once the child is ready.

        The child stops before its parent does. Arguments as in
        :meth:`ActorSystem.spawn`.
        """
        return await self._cell.spawn_child(
            actor,
            name,
            mailbox_size,
            stop_timeout,
            max_bytes=max_bytes,
            weigher=weigher,
            overflow=overflow,
        )

    async def spawn_pool(
        self,
        factory: Callable[[], Actor[M]],
        *,
        size: int,
        routing: Routing | None = None,
        name: str | None = None,
        mailbox_size: int | None = None,
        max_restarts: int = 3,
        within: float = 5.0,
    ) -> Router[M]:
        """Start a pool of routees as a child of this actor; see :meth:`ActorSystem.spawn_pool`."""
        from ._router import spawn_pool

        return await spawn_pool(
            self._cell,
            factory,
            size=size,
            routing=routing,
            name=name,
            mailbox_size=mailbox_size,
            max_restarts=max_restarts,
            within=within,
        )

    def start_soon(
        self,
        function: Callable[[*Ts], Awaitable[object]],
        *args: *Ts,
        name: str | None = None,
    ) -> None:
        """Run a helper task in this actor's nursery.

        The task is cancelled when the actor stops. If it raises, the actor
        fails with that exception, exactly as if a handler had raised.
        """
        self._cell.start_task(function, args, name or _name_of(function))

    def pipe_to_self(
        self,
        function: Callable[[*Ts], Awaitable[T]],
        *args: *Ts,
        on_result: Callable[[T], M_contra],
        on_error: Callable[[Exception], M_contra],
    ) -> None:
        """Run ``function(*args)`` in a task and send its outcome back as a message.

        Use it instead of awaiting something slow inside a handler: the
        mailbox keeps flowing, and the result arrives as
        ``on_result(value)`` or ``on_error(exception)``, handled like any
        other message. The task is cancelled if the actor stops first.
        """
        cell = self._cell

        async def run() -> None:
            try:
                value = await function(*args)
            except Exception as exc:  # noqa: BLE001 - the failure is delivered as a message
                message = on_error(exc)
            else:
                message = on_result(value)
            await cell.ref._tell_or_dead_letter(message)

        cell.start_task(run, (), f"pipe_to_self:{_name_of(function)}")

    @property
    def timers(self) -> Timers[M_contra]:
        """This actor's keyed timers: messages it sends itself later (see :class:`Timers`)."""
        from ._timers import Timers

        return Timers(self._cell)

    def watch(self: ActorContext[Terminated], ref: ActorRef[Never]) -> None:
        """Receive ``Terminated(ref, reason)`` once ``ref``'s actor stops for good.

        Delivered on the control lane (ahead of queued messages), at once if the
        actor has already stopped; a supervisor's restart of it is not a stop.
        The watching actor must handle :class:`Terminated`.
        """
        _watch.watch(self, ref)

    def unwatch(self, ref: ActorRef[Never]) -> None:
        """Stop watching ``ref``; a ``Terminated`` for it not yet handled is discarded."""
        _watch.unwatch(self, ref)

    @property
    def stash(self) -> Stash:
        """This actor's stash (see :class:`Stash`), made on first use.

        It holds up to the mailbox's capacity; it survives supervised
        restarts (its messages go back to the mailbox, in order) and is
        dead-lettered when the actor stops for good.
        """
        cell = self._cell
        if cell.stash is None:
            from ._stash import Stash

            cell.stash = Stash(cell, cell.mailbox.statistics().capacity)
        return cell.stash

    def hold_messages(self) -> None:
        """Take only control messages (and runtime notices) until :meth:`release_messages`.

        Ordinary messages stay queued in the mailbox, in order, and their senders
        wait at its bound as usual; stop requests, watches and every
        `ControlMessage` are still handled. For an actor that must finish
        something before its next ordinary message (a write that waits for
        room, a connection being made) but should keep answering control
        messages meanwhile; unlike the stash, nothing leaves the mailbox, so
        its bounds keep holding. A supervised restart releases the hold.
        May be called from any task of the actor.
        """
        self._cell.mailbox.hold()

    def release_messages(self) -> None:
        """Take ordinary messages again, oldest first (see :meth:`hold_messages`)."""
        self._cell.mailbox.release()

    def stop(self, reason: StopReason | None = None) -> None:
        """Stop this actor after the current message (queued messages go to dead letters).

        Called while the actor is already stopping (from ``on_stop``, or from a
        task winding down after a stop from outside), it only replaces the stop
        reason that ``wait_stopped`` and watchers will see: a connection actor
        stopped from outside reports the close code it sent, for example.
        """
        from ._control import State

        cell = self._cell
        if cell.state is State.STOPPING and reason is not None:
            cell.reason_override = reason
            return
        cell.request_stop(Normal() if reason is None else reason, requested=False)


def _name_of(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", None) or repr(function)
