"""The cell: the runtime side of one actor (mailbox, task, children, lifecycle).

A cell is created by ``spawn`` and runs in one trio task inside its parent's
nursery. The task opens the actor's own nursery (children and helper tasks
live there), runs ``on_start``, hands out the ref, then loops over the
mailbox until a stop request, a failure or cancellation. On the way out it
closes the mailbox (queued messages to dead letters, waiting asks failed at
once), stops its children (youngest first, each within its stop timeout),
cancels its remaining tasks, runs ``on_stop`` shielded and bounded, and
finally records the stop reason for whoever waits on it.
"""

from __future__ import annotations

import contextvars
import enum
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
import outcome
import trio

from ._actor import Actor, HandlerTable, handler_table, resolve_handler
from ._exceptions import (
    ActorStoppedError,
    NameTakenError,
    SystemClosedError,
    UnhandledMessageError,
    WrongThreadError,
)
from ._mailbox import Mailbox
from ._messages import Cancelled, DeadLetter, DeadLetterReason, Failed, Normal, StopReason
from ._reply import ReplySlot

if TYPE_CHECKING:
    from ._context import ActorContext
    from ._ref import ActorRef
    from ._system import ActorSystem

logger = logging.getLogger("actors")

#: The cell whose task is running (``None`` outside actors); gives tells their sender.
current_cell: contextvars.ContextVar[Cell | None] = contextvars.ContextVar(
    "actors_current_cell", default=None
)

# A queued user message: (message, sending cell or None, reply slot or None).
Envelope = tuple[object, "Cell | None", "ReplySlot[Any] | None"]


class State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Control:
    """A runtime notice on the control lane; ``apply`` runs in the actor's task.

    Returning a stop reason stops the actor.
    """

    __slots__ = ()

    def apply(self, cell: Cell) -> StopReason | None:
        raise NotImplementedError


@attrs.frozen
class StopRequest(Control):
    reason: StopReason
    drain: bool

    def apply(self, cell: Cell) -> StopReason | None:
        if not self.drain:
            return self.reason
        cell._draining = True
        cell.mailbox.refuse_senders()
        return None


@attrs.frozen
class TaskFailed(Control):
    error: Exception

    def apply(self, cell: Cell) -> StopReason | None:
        return Failed(self.error)


@attrs.frozen
class Deliver:
    """A runtime-made message for the actor's own handlers (a Terminated notice, a timer tick).

    It travels on the control lane, so it is never dropped and overtakes user
    messages; ``still_wanted`` (if given) is checked just before dispatch, so a
    notice that became stale while queued (a cancelled timer) is skipped.
    """

    message: object
    still_wanted: Callable[[], bool] | None = None


#: Called once when a cell has stopped for good: (cell, reason).
TerminationCallback = Callable[["Cell", StopReason], None]


class Parent:
    """What cells and the system share as parents: a nursery and named children."""

    __slots__ = ()

    system: ActorSystem
    path: str
    children: dict[str, Cell]
    _nursery: trio.Nursery | None

    def _open_nursery(self, what: str) -> trio.Nursery:
        raise NotImplementedError

    async def stop_children(self) -> None:
        """Stop the children youngest first, each within its own stop timeout."""
        await trio.lowlevel.checkpoint()
        for child in reversed(list(self.children.values())):
            child.request_stop(Normal(), interrupt=True)
            with trio.move_on_after(child.stop_timeout):
                await child.wait_stopped()

    async def spawn_child(
        self,
        actor: Actor[Any] | Callable[[], Actor[Any]],
        name: str | None,
        mailbox_size: int | None,
        stop_timeout: float | None,
    ) -> ActorRef[Any]:
        system = self.system
        system._check_thread("spawn")
        nursery = self._open_nursery("spawn")
        instance = actor() if not isinstance(actor, Actor) else actor
        if not isinstance(instance, Actor):
            raise TypeError(
                f"spawn() takes an Actor instance or a factory returning one, not {instance!r}"
            )
        if name is None:
            system.names_given += 1
            name = f"{type(instance).__name__.lower()}-{system.names_given}"
        elif not name or "/" in name:
            raise ValueError(f"actor names are non-empty strings without '/', not {name!r}")
        if name in self.children:
            raise NameTakenError(
                f"{self.path} already has a child named {name!r}; pick another name "
                "or leave name=None for a generated one"
            )
        cell = Cell(
            system=system,
            parent=self,
            actor=instance,
            name=name,
            mailbox_size=system.mailbox_size if mailbox_size is None else mailbox_size,
            stop_timeout=system.stop_timeout if stop_timeout is None else stop_timeout,
        )
        self.children[name] = cell
        try:
            ref: ActorRef[Any] = await nursery.start(cell.run)
        except BaseException:
            self.children.pop(name, None)
            raise
        return ref


class Cell(Parent):
    """Runtime state of one actor. Internal: users see ``ActorRef`` and ``ActorContext``."""

    __slots__ = (
        "_closed_out",
        "_context",
        "_draining",
        "_interrupt",
        "_loop_scope",
        "_nursery",
        "_stopped_event",
        "actor",
        "attachments",
        "children",
        "handlers",
        "incarnation",
        "mailbox",
        "name",
        "on_terminated",
        "parent",
        "path",
        "reason",
        "ref",
        "sender",
        "started_at",
        "state",
        "stop_timeout",
        "system",
    )

    def __init__(
        self,
        *,
        system: ActorSystem,
        parent: Parent,
        actor: Actor[Any],
        name: str,
        mailbox_size: int,
        stop_timeout: float,
    ) -> None:
        from ._ref import ActorRef

        if stop_timeout <= 0:
            raise ValueError(f"stop_timeout must be positive, not {stop_timeout!r}")
        self.system = system
        self.parent = parent
        self.actor = actor
        self.name = name
        self.path = f"{parent.path.rstrip('/')}/{name}"
        self.mailbox: Mailbox[Envelope] = Mailbox(mailbox_size, self._stopped_error)
        self.handlers: HandlerTable = handler_table(type(actor))
        self.stop_timeout = stop_timeout
        self.children = {}
        self.on_terminated: list[TerminationCallback] = []
        #: Bumped on every restart; runtime notices carry it to detect staleness.
        self.incarnation = 0
        #: Per-actor state of runtime extensions (timers, watches), keyed by extension name.
        self.attachments: dict[str, object] = {}
        self.state = State.STARTING
        self.reason: StopReason | None = None
        self.sender: Cell | None = None
        self.ref: ActorRef[Any] = ActorRef(self)
        self._context: ActorContext[Any] | None = None
        self._nursery = None
        self._draining = False
        self._interrupt: StopReason | None = None
        self._loop_scope: trio.CancelScope | None = None
        self._closed_out = False
        self._stopped_event: trio.Event | None = None
        self.started_at = 0.0

    def __repr__(self) -> str:
        return f"<cell {self.path} {self.state.value}>"

    @property
    def context(self) -> ActorContext[Any]:
        if self._context is None:
            from ._context import ActorContext

            self._context = ActorContext(self)
        return self._context

    # -- used by refs -------------------------------------------------------------

    def check_message(self, message: object) -> None:
        if not resolve_handler(self.handlers, type(message)):
            accepted = ", ".join(sorted(t.__qualname__ for t in self.handlers))
            raise UnhandledMessageError(
                f"actor {self.path} ({type(self.actor).__qualname__}) has no handler for "
                f"{type(message).__qualname__}; it handles: {accepted}"
            )

    def _stopped_error(self) -> ActorStoppedError:
        return ActorStoppedError(
            f"actor {self.path} has stopped ({self.describe_reason()}); "
            "messages can no longer be sent to it"
        )

    def _interrupted_error(self) -> ActorStoppedError:
        return ActorStoppedError(
            f"actor {self.path} was stopped or cancelled while handling this message"
        )

    def describe_reason(self) -> str:
        reason = self.reason
        if reason is None:
            return "starting"
        if isinstance(reason, Failed):
            return f"failed with {reason.error!r}"
        return type(reason).__name__.lower()

    def request_stop(
        self, reason: StopReason, *, drain: bool = False, interrupt: bool = False
    ) -> None:
        """Queue a stop on the control lane.

        With ``interrupt`` (stops from outside the actor, unless draining),
        a handler that is waiting is cancelled at its next checkpoint rather
        than awaited to the end.
        """
        if self.state is State.STOPPED:
            return
        self.mailbox.send_control(StopRequest(reason, drain))
        if interrupt and not drain and self._loop_scope is not None:
            self._interrupt = reason
            self._loop_scope.cancel()

    async def wait_stopped(self) -> StopReason:
        if self.state is not State.STOPPED:
            if self._stopped_event is None:
                self._stopped_event = trio.Event()
            await self._stopped_event.wait()
        else:
            await trio.lowlevel.checkpoint()
        assert self.reason is not None
        return self.reason

    # -- used by the context ----------------------------------------------------------

    def _open_nursery(self, what: str) -> trio.Nursery:
        if self._nursery is None or self.state in (State.STOPPING, State.STOPPED):
            raise ActorStoppedError(
                f"actor {self.path} is {self.state.value}; it cannot {what} any more"
            )
        return self._nursery

    def start_task(self, function: Callable[[], Awaitable[object]], name: str) -> None:
        nursery = self._open_nursery("start tasks")

        async def guarded() -> None:  # noqa: ASYNC910 - a task body, not an API
            try:
                await function()
            except Exception as exc:
                if self.mailbox.closed:
                    logger.error(
                        "task %s of %s failed while the actor was stopping",
                        name,
                        self.path,
                        exc_info=exc,
                        extra={"actor_path": self.path},
                    )
                else:
                    self.mailbox.send_control(TaskFailed(exc))

        nursery.start_soon(guarded, name=f"{self.path}:{name}")

    def dead_letter(
        self,
        message: object,
        sender: Cell | None,
        reason: DeadLetterReason,
        error: BaseException | None = None,
    ) -> None:
        self.mailbox.dead_lettered += 1
        self.system.dead_letters.publish(
            DeadLetter(
                message=message,
                recipient=self.path,
                sender=None if sender is None else sender.ref,
                reason=reason,
                error=error,
            )
        )

    # -- the actor's task ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[ActorRef[Any]]) -> None:
        current_cell.set(self)
        self.started_at = trio.current_time()
        start_error: Exception | None = None
        reason: StopReason = Normal()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.actor._bind_cell(self)
                try:
                    await self.actor.on_start()
                except Exception as exc:  # noqa: BLE001 - re-raised from spawn, below
                    start_error = exc
                    reason = Failed(exc)
                else:
                    self.state = State.RUNNING
                    task_status.started(self.ref)
                    reason = await self._loop()
                self._close(reason)
                await self.stop_children()
                nursery.cancel_scope.cancel()
        except BaseException as exc:
            reason = Cancelled() if _only_cancelled(exc) else Failed(exc)
            raise
        finally:
            self._close(reason)
            if start_error is None:
                await self._run_stop_hook(reason)  # noqa: ASYNC102 - shielded and bounded inside
            self._finish(reason)
        if start_error is not None:
            raise start_error

    async def _loop(self) -> StopReason:  # noqa: ASYNC910 - _process checkpoints
        with trio.CancelScope() as self._loop_scope:
            return await self._process()
        self._loop_scope = None
        assert self._interrupt is not None
        return self._interrupt

    async def _process(self) -> StopReason:
        mailbox = self.mailbox
        receive = mailbox.receive
        handlers = self.handlers
        actor = self.actor
        while True:
            if self._draining and not mailbox.depth:
                return Normal()  # noqa: ASYNC910 - a receive ran before draining began
            item = await receive()
            if type(item) is not tuple:
                if type(item) is Deliver:
                    if item.still_wanted is not None and not item.still_wanted():
                        continue
                    item = (item.message, None, None)
                else:
                    assert isinstance(item, Control)
                    reason = item.apply(self)
                    if reason is not None:
                        return reason
                    continue
            message, sender, slot = item
            function, is_async = handlers[type(message)]
            self.sender = sender
            try:
                result = (await function(actor, message)) if is_async else function(actor, message)
            except Exception as exc:  # noqa: BLE001 - a failure is a value: the stop reason
                self.dead_letter(message, sender, DeadLetterReason.FAILED, exc)
                if slot is not None:
                    slot.settle(outcome.Error(exc))
                return Failed(exc)
            except BaseException:
                # Interrupted by a stop or cancelled from outside.
                self.dead_letter(message, sender, DeadLetterReason.STOPPED)
                if slot is not None:
                    slot.settle(outcome.Error(self._interrupted_error()))
                raise
            mailbox.processed += 1
            if slot is not None and not slot.settle(outcome.Value(result)):
                self.system.late_replies += 1
                self.dead_letter(result, self, DeadLetterReason.LATE_REPLY)

    def _close(self, reason: StopReason) -> None:
        if self._closed_out:
            return
        self._closed_out = True
        self.reason = reason
        self.state = State.STOPPING
        for message, sender, slot in self.mailbox.close():
            if slot is not None:
                slot.settle(outcome.Error(self._stopped_error()))
            self.dead_letter(message, sender, DeadLetterReason.STOPPED)

    async def _run_stop_hook(self, reason: StopReason) -> None:  # noqa: ASYNC910
        # The hook is user code: it may or may not checkpoint.
        with trio.move_on_after(self.stop_timeout, shield=True) as scope:  # noqa: ASYNC912
            try:
                await self.actor.on_stop(reason)
            except Exception as exc:
                logger.error(
                    "on_stop of %s raised",
                    self.path,
                    exc_info=exc,
                    extra={"actor_path": self.path},
                )
        if scope.cancelled_caught:
            logger.warning(
                "on_stop of %s did not finish within %ss and was cancelled",
                self.path,
                self.stop_timeout,
                extra={"actor_path": self.path},
            )

    def _finish(self, reason: StopReason) -> None:
        self.reason = reason
        self.state = State.STOPPED
        self.actor._bind_cell(None)
        self._nursery = None
        if self.parent.children.get(self.name) is self:
            del self.parent.children[self.name]
        if isinstance(reason, Failed):
            logger.error(
                "actor %s failed",
                self.path,
                exc_info=reason.error,
                extra={"actor_path": self.path},
            )
        if self._stopped_event is not None:
            self._stopped_event.set()
        callbacks, self.on_terminated = self.on_terminated, []
        for callback in callbacks:
            try:
                callback(self, reason)
            except Exception:
                logger.exception(
                    "a termination callback of %s raised",
                    self.path,
                    extra={"actor_path": self.path},
                )

    def add_termination_callback(self, callback: TerminationCallback) -> None:
        """Run ``callback(cell, reason)`` once the actor has stopped (at once if it has)."""
        if self.state is State.STOPPED:
            assert self.reason is not None
            callback(self, self.reason)
        else:
            self.on_terminated.append(callback)


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)


def check_thread(system_thread: int, what: str) -> None:
    if threading.get_ident() != system_thread:
        raise WrongThreadError(
            f"{what} must be called from the actor system's trio thread; from another "
            "thread use ref.tell_from_thread() / ref.ask_from_thread()"
        )


def closed_system_error(name: str, what: str) -> SystemClosedError:
    return SystemClosedError(
        f"actor system {name!r} is closed; cannot {what}. Open one with "
        "`async with actors.open_system() as system:` and spawn inside the block"
    )
