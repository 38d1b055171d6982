"""The cell: the runtime side of one actor (mailbox, task, children, lifecycle).

A cell is created by ``spawn`` and runs in one trio task inside its parent's
nursery. The task opens the actor's own nursery (children and helper tasks
live there), runs ``on_start``, hands out the ref, then loops over the
mailbox until a stop request, a failure or cancellation. An actor without a
start hook opens its nursery only when it first spawns a child or starts a
task (:class:`LateNursery`): most never do, and a nursery is most of the
cost of a spawn. On the way out it
closes the mailbox (queued messages to dead letters, waiting asks failed at
once), stops its children (youngest first, each within its stop timeout),
cancels its remaining tasks, runs ``on_stop`` shielded and bounded, and
finally records the stop reason for whoever waits on it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Never

import outcome
import trio

from ._actor import Actor, HandlerTable, handler_table, resolve_handler
from ._control import (
    Control as Control,
    Deliver as Deliver,
    Envelope as Envelope,
    State as State,
    StopRequest as StopRequest,
    Supervision as Supervision,
    TaskFailed as TaskFailed,
    TerminationCallback as TerminationCallback,
    current_cell as current_cell,
)
from ._events import ActorFailed, ActorRestarted, publish_event
from ._exceptions import (
    ActorDefinitionError,
    ActorStoppedError,
    ErrorReply,
    MailboxFullError,
    NameTakenError,
    UnhandledMessageError,
    WrongThreadError,
)
from ._mailbox import Mailbox, Weigher
from ._messages import (
    Cancelled,
    DeadLetter,
    DeadLetterReason,
    Failed,
    MailboxOverflow,
    Normal,
    StopReason,
)

if TYPE_CHECKING:
    from ._context import ActorContext
    from ._ref import ActorRef
    from ._stash import Stash
    from ._system import ActorSystem
    from ._threads import ThreadInbox
    from ._watch import StopHooks, Watcher

logger = logging.getLogger("actors")

#: The most messages an actor's loop takes in a row without letting other tasks run:
#: one *busy spell* (see ``Cell._loop``). Between two messages of a spell the
#: loop still checks for cancellation, and control messages still come first.
BUSY_SPELL_LIMIT = 64

# The reason of a clean stop, shared: ``Normal`` is frozen and has no fields, and
# one per actor task would be two more objects for every spawn to allocate.
_NORMAL = Normal()


class LateNursery:
    """The nursery of an actor without a start hook, opened when it first needs one.

    Most actors never spawn a child or start a task, and a nursery per actor
    is most of the cost of a spawn. An actor without ``on_start`` therefore
    runs without one until it first spawns or starts a task (from a handler
    or a spell hook, in its own task): then a task started next to the
    actor's, in the nursery the actor itself lives in, opens the nursery and
    keeps it open. Tasks started before it is open wait in ``pending`` and
    are started, in order, as soon as it opens. The actor closes it at the end
    of the incarnation, after stopping its children, and waits until every
    task in it has ended before its stop hook runs: the same order as a
    nursery of its own.
    """

    __slots__ = ("closing", "done", "failure", "nursery", "pending")

    def __init__(self) -> None:
        self.nursery: trio.Nursery | None = None
        #: What the nursery raised (other than its cancellation): the actor fails with it.
        self.failure: BaseException | None = None
        self.pending: list[tuple[Callable[..., Awaitable[object]], tuple[object, ...], str]] = []
        self.closing = trio.Event()
        self.done = trio.Event()

    def start_soon(
        self, async_fn: Callable[..., Awaitable[object]], *args: object, name: str
    ) -> None:
        """Start ``async_fn(*args)`` in the nursery, or once it has opened."""
        if self.nursery is not None:
            self.nursery.start_soon(async_fn, *args, name=name)
        else:
            self.pending.append((async_fn, args, name))

    async def keep_open(self, owner: Cell) -> None:  # noqa: ASYNC910 - a task body
        """The task body that holds the nursery open until ``closing`` is set."""
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                if owner._late is self:
                    owner._nursery = nursery
                pending, self.pending = self.pending, []
                for async_fn, args, name in pending:
                    nursery.start_soon(async_fn, *args, name=name)
                await self.closing.wait()
                nursery.cancel_scope.cancel()
        except BaseException as exc:  # noqa: ASYNC103 - the actor's task raises it instead
            if _only_cancelled(exc):
                raise
            # As from a nursery of its own: the failure (a BaseException that is not an
            # Exception: tasks and children report those as values) cuts the actor
            # short, and its task raises it.
            self.failure = exc
            owner._cut_short()
        finally:
            self.done.set()


#: Where a parent starts the tasks of its children: a nursery, or a late one.
Host = trio.Nursery | LateNursery


class _NoScope:
    """Stands for the cancel scope of an actor's loop until the loop needs one."""

    __slots__ = ()

    def __enter__(self) -> None:
        """Nothing to enter."""

    # Static, as _NoNursery.__aexit__: no bound method kept while the actor idles.
    @staticmethod
    def __exit__(*exc_info: object) -> None:
        """Nothing to leave: exceptions propagate."""


_NO_SCOPE = _NoScope()


class _NoNursery:
    """Stands for the nursery of an actor that opens one only when it needs it."""

    __slots__ = ()

    async def __aenter__(self) -> None:  # noqa: ASYNC910 - no checkpoint, as trio.open_nursery
        """Nothing to open."""

    # A static method: ``async with`` keeps the exit method it looked up for as long
    # as the block runs, and a bound one would be one more object per idle actor.
    @staticmethod
    async def __aexit__(*exc_info: object) -> None:
        """A schedule point that cannot be cancelled, as a nursery's exit; exceptions propagate.

        An actor's stop takes as many passes of the scheduler with a late
        nursery as with its own, so that what other tasks see in between
        does not depend on whether the actor ever opened one.
        """
        await trio.lowlevel.cancel_shielded_checkpoint()


_NO_NURSERY = _NoNursery()


class Parent:
    """What cells and the system share as parents: a nursery and named children."""

    __slots__ = ()

    system: ActorSystem
    path: str
    children: dict[str, Cell]
    #: Bumped whenever ``children`` changes (routers cache their routees by it).
    children_changes: int
    _nursery: trio.Nursery | None

    def _open_nursery(self, what: str) -> Host:
        raise NotImplementedError

    def children_changed(self) -> None:
        """Count one change of ``children`` (the slot lives in each subclass)."""
        setattr(self, "children_changes", self.children_changes + 1)  # noqa: B010

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
        supervision: Supervision | None = None,
        *,
        max_bytes: int | None = None,
        weigher: Weigher | None = None,
        overflow: MailboxOverflow = MailboxOverflow.BLOCK,
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
            max_bytes=max_bytes,
            weigher=weigher,
            overflow=overflow,
        )
        if supervision is not None:
            if isinstance(actor, Actor):
                raise TypeError(
                    f"a supervised actor ({cell.path}) needs a factory, not an instance, "
                    "so that it can be restarted with fresh state"
                )
            cell.factory = actor
            cell.supervision = supervision
        self.children[name] = cell
        self.children_changed()
        # The actor's task starts in the nursery it lives in, and hands its ref (or its
        # start failure) straight to this task: what nursery.start promises, without
        # the temporary nursery (see Cell.wait_ready).
        cell._host = nursery
        nursery.start_soon(cell.run, name=cell.path)
        try:
            ref: ActorRef[Any] = await cell.wait_ready()
        except BaseException:
            if self.children.pop(name, None) is not None:
                self.children_changed()
            raise
        return ref


class Cell(Parent):
    """Runtime state of one actor. Internal: users see ``ActorRef`` and ``ActorContext``."""

    __slots__ = (
        "_closed_out",
        "_context",
        "_draining",
        "_failure_traceback",
        "_host",
        "_interrupt",
        "_late",
        "_lazy",
        "_loop_scope",
        "_nursery",
        "_spawner",
        "_spawner_cancel",
        "_spell_open",
        "_started",
        "_stop_requested",
        "_stopped_event",
        "actor",
        "attachments",
        "children",
        "children_changes",
        "current",
        "factory",
        "handlers",
        "incarnation",
        "last_failure",
        "mailbox",
        "name",
        "on_terminated",
        "parent",
        "path",
        "reason",
        "reason_override",
        "ref",
        "restarts",
        "started_at",
        "stash",
        "state",
        "stop_hooks",
        "stop_timeout",
        "supervision",
        "system",
        "thread_inbox",
        "watcher",
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
        max_bytes: int | None = None,
        weigher: Weigher | None = None,
        overflow: MailboxOverflow = MailboxOverflow.BLOCK,
    ) -> None:
        from ._ref import ActorRef

        if stop_timeout <= 0:
            raise ValueError(f"stop_timeout must be positive, not {stop_timeout!r}")
        self.system = system
        self.parent = parent
        self.actor = actor
        self.name = name
        self.path = f"{parent.path.rstrip('/')}/{name}"
        self.mailbox = Mailbox(
            mailbox_size, self, max_bytes=max_bytes, weigher=weigher, overflow=overflow
        )
        self.handlers: HandlerTable = handler_table(type(actor))
        self.stop_timeout = stop_timeout
        self.children = {}
        self.children_changes = 0
        self.on_terminated: list[TerminationCallback] = []
        #: The hooks of watches, names and groups on this cell, and the watches it made
        #: (``_watch.py``); ``None`` while there are none.
        self.stop_hooks: StopHooks | None = None
        self.watcher: Watcher | None = None
        #: Bumped on every restart; runtime notices carry it to detect staleness.
        self.incarnation = 0
        #: Per-actor state of runtime extensions (timers, watches), keyed by extension name.
        self.attachments: dict[str, object] = {}
        self.state = State.STARTING
        self.reason: StopReason | None = None
        #: Set by ``ctx.stop(reason)`` while stopping: the reason watchers will see.
        self.reason_override: StopReason | None = None
        #: The envelope being handled (``None`` between messages).
        self.current: Envelope | None = None
        self.stash: Stash | None = None
        #: The queue of messages from OS threads (``_threads.py``), made on first use.
        self.thread_inbox: ThreadInbox | None = None
        self.ref: ActorRef[Any] = ActorRef(self)
        self._context: ActorContext[Any] | None = None
        self._nursery = None
        #: Where this actor's own task runs (its parent's nursery, or late nursery).
        self._host: Host | None = None
        # Whether this incarnation opens its nursery only when it needs one, and that
        # nursery once it was asked for (see LateNursery).
        self._lazy = False
        self._late: LateNursery | None = None
        self._draining = False
        self._failure_traceback: tuple[BaseException | None, TracebackType | None] = (None, None)
        self._interrupt: StopReason | None = None
        self._loop_scope: trio.CancelScope | None = None
        # Whether the loop has taken a message since it last yielded (a busy spell).
        self._spell_open = False
        self._closed_out = False
        self._stopped_event: trio.Event | None = None
        self.started_at = 0.0
        self.factory: Callable[[], Actor[Any]] | None = None
        self.supervision: Supervision | None = None
        #: How many times a supervisor restarted this actor, and the last failure seen.
        self.restarts = 0
        self.last_failure: BaseException | None = None
        self._started = False
        # Until the first start only: the spawning task, parked in wait_ready, and the
        # outcome of its cancellation once it was cancelled meanwhile.
        self._spawner: trio.lowlevel.Task | None = None
        self._spawner_cancel: outcome.Outcome[Any] | None = None
        self._stop_requested = False

    def __repr__(self) -> str:
        return f"<cell {self.path} {self.state.value}>"

    @property
    def sender(self) -> Cell | None:
        """The sender of the message being handled."""
        current = self.current
        return None if current is None else current[1]

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

    def stopped_error(self) -> ActorStoppedError:
        """The error of a send to this actor once its mailbox refuses messages."""
        return ActorStoppedError(
            f"actor {self.path} has stopped ({self.describe_reason()}); "
            "messages can no longer be sent to it"
        )

    def full_error(self) -> MailboxFullError:
        """The error of a send to this actor's full mailbox under the ``FAIL`` policy."""
        return MailboxFullError(
            f"the mailbox of actor {self.path} is full (capacity "
            f"{self.mailbox.statistics().capacity}, overflow policy FAIL); retry later, "
            "slow down, or spawn it with a larger mailbox_size or another overflow policy"
        )

    def dropped(self, item: Envelope | Deliver) -> None:
        """The overflow policy dropped ``item``: fail its ask, if any, and dead-letter it."""
        if isinstance(item, Deliver):
            self.dead_letter(item.message, None, DeadLetterReason.DROPPED)
            return
        message, sender, slot = item
        if slot is not None:
            slot.settle(
                outcome.Error(
                    MailboxFullError(
                        f"actor {self.path} dropped {type(message).__qualname__} because its "
                        f"mailbox was full (overflow policy {self.mailbox.statistics().overflow.name})"
                        "; retry, or ask an actor whose overflow policy is BLOCK"
                    )
                )
            )
        self.dead_letter(message, sender, DeadLetterReason.DROPPED)

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
        self,
        reason: StopReason,
        *,
        drain: bool = False,
        interrupt: bool = False,
        requested: bool = True,
    ) -> None:
        """Queue a stop on the control lane.

        With ``interrupt`` (stops from outside the actor, unless draining),
        a handler that is waiting is cancelled at its next checkpoint rather
        than awaited to the end.
        """
        if self.state is State.STOPPED:
            return
        self.mailbox.send_notice(StopRequest(reason, drain, requested))
        if interrupt and not drain and self._loop_scope is not None:
            self._interrupt = reason
            self._stop_requested = requested
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

    def _cut_short(self) -> None:
        """End the message loop, if it runs: the late nursery failed."""
        if self._loop_scope is not None:
            self._interrupt = Cancelled()
            self._loop_scope.cancel()
        else:
            # A loop without a cancel scope only ever waits on its mailbox.
            self.mailbox.send_notice(StopRequest(Cancelled(), drain=False, requested=False))

    def _raise_late_failure(self) -> None:
        late = self._late
        if late is not None and late.failure is not None:
            raise late.failure

    def _open_nursery(self, what: str) -> Host:
        if self.state is State.STARTING or self.state is State.RUNNING:
            if self._nursery is not None:
                return self._nursery
            if self._lazy:
                late = self._late
                if late is None:
                    assert self._host is not None
                    late = self._late = LateNursery()
                    self._host.start_soon(late.keep_open, self, name=f"{self.path}:nursery")
                return late
        raise ActorStoppedError(
            f"actor {self.path} is {self.state.value}; it cannot {what} any more"
        )

    def start_task(
        self, function: Callable[..., Awaitable[object]], args: tuple[object, ...], name: str
    ) -> None:
        """Run ``function(*args)`` in the actor's nursery; its failure fails the actor."""
        nursery = self._open_nursery("start tasks")
        # One bound method, no closure per task: an idle connection runs several of these.
        nursery.start_soon(self._run_task, function, args, name, name=f"{self.path}:{name}")

    async def _run_task(  # noqa: ASYNC910 - a task body, not an API
        self, function: Callable[..., Awaitable[object]], args: tuple[object, ...], name: str
    ) -> None:
        try:
            await function(*args)
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
                self.mailbox.send_notice(TaskFailed(exc))

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

    async def wait_ready(self) -> ActorRef[Any]:
        """Wait (the spawning task) until the actor has started; its ref, or its start error.

        What ``nursery.start`` promises: returns once ``on_start`` has finished,
        raises what it raised (or :exc:`ActorStoppedError` if the actor was stopped
        while starting). If the spawning task is cancelled meanwhile, the start is
        cancelled too (``on_start`` is cut at its next checkpoint), and the
        cancellation is raised here once the start has ended, as ``nursery.start``
        does.
        """
        self._spawner = trio.lowlevel.current_task()

        def abort(raise_cancel: Callable[[], Never]) -> trio.lowlevel.Abort:
            self._spawner_cancel = outcome.capture(raise_cancel)
            if self._loop_scope is not None and self.state is State.STARTING:
                self._interrupt = Cancelled()
                self._loop_scope.cancel()
            return trio.lowlevel.Abort.FAILED

        ref: ActorRef[Any] = await trio.lowlevel.wait_task_rescheduled(abort)
        return ref

    def _hand_to_spawner(self, result: outcome.Outcome[Any]) -> None:
        """End the spawner's wait in :meth:`wait_ready` with ``result`` (once)."""
        spawner, self._spawner = self._spawner, None
        if spawner is None:
            return
        cancelled, self._spawner_cancel = self._spawner_cancel, None
        if cancelled is not None and isinstance(result, outcome.Error):
            result = cancelled  # the start ended because its spawner was cancelled
        # A start that finished all the same hands out its ref: the spawner's next
        # checkpoint raises the cancellation (as after nursery.start).
        trio.lowlevel.reschedule(spawner, result)

    def _never_started(self, start_error: Exception | None) -> None:
        """The spawner gets the start hook's error, or hears why the actor never started."""
        self._hand_to_spawner(
            outcome.Error(
                start_error
                or ActorStoppedError(
                    f"actor {self.path} stopped while starting ({self.describe_reason()})"
                )
            )
        )

    async def run(self) -> None:  # noqa: ASYNC910 - the task body; the loop checkpoints
        current_cell.set(self)
        self.started_at = trio.current_time()
        reason: StopReason = _NORMAL
        start_error: Exception | None = None
        try:
            while True:
                reason, start_error, restart_in = await self._incarnation()
                if restart_in is None or not await self._wait_to_restart(restart_in):
                    break
                error = self._reincarnate(reason)
                if error is not None:
                    reason = Failed(error)
                    break
        except BaseException as exc:
            reason = Cancelled() if _only_cancelled(exc) else Failed(exc)
            raise
        finally:
            self._close(reason)
            self._finish(reason)
            if not self._started:
                self._never_started(start_error)

    async def _incarnation(self) -> tuple[StopReason, Exception | None, float | None]:
        """Run one incarnation of the actor: start hook, message loop, stop hook.

        Returns its stop reason, the start hook's error if any, and the
        supervisor's decision (seconds until a restart, or None to stop).
        The mailbox is closed here at once when the actor stops for good, so
        waiting asks fail before children are stopped; on a restart it stays
        open and keeps its messages.
        """
        reason: StopReason = _NORMAL
        start_error: Exception | None = None
        restart_in: float | None = None
        stop_hook_due = False
        interrupted = False
        # An actor without a start hook opens its nursery when it first needs one
        # (LateNursery): most never do.
        self._lazy = type(self.actor).on_start is Actor.on_start
        try:
            async with _NO_NURSERY if self._lazy else trio.open_nursery() as nursery:
                self._nursery = nursery
                self.actor._bind_cell(self)
                # An actor without a start hook has nothing to cut short: no scope,
                # no coroutine (a fifth of the cost of a spawn).
                if type(self.actor).on_start is not Actor.on_start:
                    try:
                        # An interrupting stop also cuts a start hook short (a client
                        # stuck connecting, a restart its supervisor gave up on).
                        with trio.CancelScope() as self._loop_scope:
                            if self._spawner_cancel is not None:
                                # Its spawner was cancelled before this task first ran.
                                self._interrupt = Cancelled()
                                self._loop_scope.cancel()
                            await self.actor.on_start()
                    except Exception as exc:  # noqa: BLE001 - re-raised from spawn, or supervised
                        start_error = exc
                        reason = Failed(exc)
                    else:
                        interrupted = self._loop_scope.cancelled_caught
                    finally:
                        self._loop_scope = None
                if interrupted:
                    assert self._interrupt is not None
                    reason = self._interrupt
                    if not self._started:
                        start_error = ActorStoppedError(
                            f"actor {self.path} was stopped while starting"
                        )
                elif start_error is None:
                    stop_hook_due = True
                    self.state = State.RUNNING
                    if not self._started:
                        self._started = True
                        self._hand_to_spawner(outcome.Value(self.ref))
                    reason = await self._loop()
                    self._raise_late_failure()
                if self._started and self.supervision is not None:
                    restart_in = self.supervision.decide(self, reason, self._stop_requested)
                if restart_in is None:
                    self._close(reason)
                else:
                    self.state = State.RESTARTING
                    logger.warning(
                        "actor %s stopped (%s); restarting in %.3gs",
                        self.path,
                        reason,
                        restart_in,
                        exc_info=self._exc_info(reason),
                        extra={"actor_path": self.path},
                    )
                await self.stop_children()
                self._raise_late_failure()
                if nursery is not None:
                    nursery.cancel_scope.cancel()
        except BaseException as exc:
            reason = Cancelled() if _only_cancelled(exc) else Failed(exc)
            raise
        finally:
            self._nursery = None
            self._lazy = False
            late, self._late = self._late, None
            if late is not None:
                # As a nursery's exit: its tasks are cancelled, and all have ended
                # before the stop hook runs, however long that takes.
                late.closing.set()
                with trio.CancelScope(shield=True):
                    await late.done.wait()  # noqa: ASYNC102 - waits as a nursery's exit does
                if late.failure is not None:
                    reason = Failed(late.failure)
            if stop_hook_due:
                await self._run_stop_hook(reason)  # noqa: ASYNC102 - shielded and bounded inside
            self.actor._bind_cell(None)
            if late is not None and late.failure is not None:
                raise late.failure
        return reason, start_error, restart_in

    async def _wait_to_restart(self, delay: float) -> bool:
        """Sleep out a restart backoff; False if a stop request arrived meanwhile."""
        with trio.CancelScope() as scope:
            self._loop_scope = scope
            await trio.sleep(delay)
        self._loop_scope = None
        # A sibling's restart (requested=False) interrupts the wait but still restarts.
        return not scope.cancelled_caught or not self._stop_requested

    def _reincarnate(self, reason: StopReason) -> Exception | None:
        """Make the next incarnation; returns the error if the factory fails."""
        assert self.factory is not None
        if isinstance(reason, Failed):
            self.last_failure = reason.error
        old = self.actor
        try:
            actor = self.factory()
            if actor is old or not isinstance(actor, Actor):
                raise ActorDefinitionError(
                    f"the factory of {self.path} must return a new Actor for each restart, "
                    f"not {'the same instance' if actor is old else repr(actor)}"
                )
            self.handlers = handler_table(type(actor))
        except Exception as exc:  # noqa: BLE001 - the actor stops with it as its reason
            return exc
        self.actor = actor
        self.restarts += 1
        publish_event(
            self.system,
            ActorRestarted(
                self.path, self.last_failure if isinstance(reason, Failed) else None, self.restarts
            ),
        )
        self.incarnation += 1
        self.mailbox.held = False  # a hold belonged to the old incarnation
        self.current = None
        self.attachments.clear()
        if self.stash is not None:
            # The new incarnation handles what the old one set aside, in order.
            self.mailbox.put_back(self.stash._take_all())
        self._stop_requested = False
        self._interrupt = None
        self.state = State.STARTING
        return None

    async def _loop(self) -> StopReason:  # noqa: ASYNC910 - the receive checkpoints
        """Process messages until a stop; an interrupting stop cancels ``_loop_scope``.

        The loop enters that cancel scope only once it needs it: at the first
        message for an async handler (carried into the scope and handled
        there, in its place), or from the start if the actor has spell
        hooks. Until then it awaits nothing but the mailbox, where a stop
        request wakes it, and an idle actor keeps no scope alive.

        A *busy spell* is the run of messages the loop takes between two of its
        own yields: it yields (and lets every other task run) when the mailbox is
        empty, and after :data:`BUSY_SPELL_LIMIT` messages taken in a row, never
        between them. It still checks for cancellation between any two messages,
        and the mailbox still hands out notices and control messages before
        ordinary ones, so a stop or a control message queued during a spell is
        taken next. The actor's spell hooks, if it has them, run around each
        spell; the end hook also runs when the loop ends with a spell open
        (shielded and bounded by ``stop_timeout`` if the loop is cancelled).
        One function, so that an idle actor keeps one frame here, not two.
        """
        actor = self.actor
        spell_start = (
            None if type(actor).on_spell_start is Actor.on_spell_start else actor.on_spell_start
        )
        spell_end = None if type(actor).on_spell_end is Actor.on_spell_end else actor.on_spell_end
        reason: StopReason
        mailbox = self.mailbox
        abort_wait = mailbox.abort_wait
        checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
        wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
        handlers = self.handlers
        taken = 0  # messages taken since the loop last yielded
        # Until it first awaits something of the actor's (an async handler, a spell
        # hook), the loop waits only on its mailbox, where a stop request wakes it:
        # it needs no cancel scope to be interrupted, and most idle actors never
        # make one. The message that needs one is carried into the scoped loop.
        scoped = spell_start is not None or spell_end is not None
        carried: Envelope | None = None
        for _ in range(2):  # without a cancel scope, then (if carried) with one
            with trio.CancelScope() if scoped else _NO_SCOPE as self._loop_scope:  # noqa: ASYNC912 - the receive checkpoints
                try:
                    while True:
                        if carried is None:
                            if self._draining and not mailbox.depth:
                                reason = Normal()  # noqa: ASYNC910 - a receive ran before draining began
                                break
                            await checkpoint_if_cancelled()
                            item = mailbox.poll() if taken < BUSY_SPELL_LIMIT else None
                            if item is None:
                                # The spell ends: the mailbox is empty, or the spell has its limit.
                                if self._spell_open:
                                    self._spell_open = False
                                    if spell_end is not None:
                                        failure = await self._end_spell(spell_end)
                                        if failure is not None:
                                            reason = failure
                                            break
                                        continue  # messages may have come while it ran
                                if taken >= BUSY_SPELL_LIMIT:
                                    # Let every other task run.
                                    await trio.lowlevel.cancel_shielded_checkpoint()
                                    taken = 0
                                    continue
                                # Parked here, not in a mailbox method: no extra frame while idle.
                                mailbox.receive_task = trio.lowlevel.current_task()
                                item = await wait_task_rescheduled(abort_wait)
                                taken = 0
                            taken += 1
                            if not self._spell_open:
                                self._spell_open = True
                                if spell_start is not None:
                                    try:
                                        spell_start()
                                    except Exception as exc:  # noqa: BLE001 - a failure is a value: the stop reason
                                        self._failure_traceback = (exc, exc.__traceback__)
                                        if type(item) is tuple:
                                            # Not handled: dead-lettered with the rest.
                                            mailbox.put_back([item])
                                        reason = Failed(exc)
                                        break
                            if type(item) is not tuple:
                                if type(item) is Deliver:
                                    if item.still_wanted is not None and not item.still_wanted():
                                        continue
                                    item = (item.message, None, None)
                                else:
                                    assert isinstance(item, Control)
                                    stop = item.apply(self)
                                    if stop is not None:
                                        reason = stop
                                        break
                                    continue
                        else:
                            item, carried = carried, None
                        message, sender, slot = item
                        function, is_async = handlers[type(message)]
                        if is_async and not scoped:
                            scoped = True
                            carried = item
                            break
                        self.current = item
                        try:
                            result = (
                                (await function(actor, message))
                                if is_async
                                else function(actor, message)
                            )
                        except ErrorReply as rejection:
                            mailbox.processed += 1
                            self.current = None
                            if slot is None:
                                self.dead_letter(
                                    message, sender, DeadLetterReason.REJECTED, rejection.error
                                )
                            elif not slot.settle(outcome.Error(rejection.error)):
                                self.system.late_replies += 1
                                self.dead_letter(rejection.error, self, DeadLetterReason.LATE_REPLY)
                            continue
                        except Exception as exc:  # noqa: BLE001 - a failure is a value: the stop reason
                            # The asker re-raises this very exception, which extends its
                            # traceback: keep the handler's own for the logs.
                            self._failure_traceback = (exc, exc.__traceback__)
                            self.dead_letter(message, sender, DeadLetterReason.FAILED, exc)
                            if slot is not None:
                                slot.settle(outcome.Error(exc))
                            reason = Failed(exc)
                            break
                        except BaseException:
                            # Interrupted by a stop or cancelled from outside.
                            self.dead_letter(message, sender, DeadLetterReason.STOPPED)
                            if slot is not None:
                                slot.settle(outcome.Error(self._interrupted_error()))
                            raise
                        mailbox.processed += 1
                        self.current = None
                        if slot is not None and not slot.settle(outcome.Value(result)):
                            self.system.late_replies += 1
                            self.dead_letter(result, self, DeadLetterReason.LATE_REPLY)
                    if carried is not None:
                        continue  # the same message, now inside the cancel scope
                    if self._spell_open and spell_end is not None:
                        self._spell_open = False
                        failure = await self._end_spell(spell_end)
                        if failure is not None and not isinstance(reason, Failed):
                            reason = failure
                    return reason  # noqa: ASYNC910 - the receive checkpoints
                except BaseException:
                    if self._spell_open and spell_end is not None:
                        self._spell_open = False
                        await self._run_bounded(spell_end, "on_spell_end")  # noqa: ASYNC102 - shielded and bounded inside
                    raise
                finally:
                    if carried is None:
                        self._spell_open = False
                    self._loop_scope = None
            # Reached once the cancel scope caught an interrupt (mypy sees the stand-in's
            # exit, which never swallows an exception, and takes this for unreachable).
            assert self._interrupt is not None  # type: ignore[unreachable]
            return self._interrupt  # noqa: ASYNC910 - the receive checkpoints
        raise AssertionError("the loop carries a message into its cancel scope once at most")

    async def _end_spell(  # noqa: ASYNC910 - the hook is user code: it may or may not checkpoint
        self, spell_end: Callable[[], Awaitable[None]]
    ) -> Failed | None:
        """Run the actor's end-of-spell hook; its failure, as a stop reason."""
        try:
            await spell_end()
        except Exception as exc:  # noqa: BLE001 - a failure is a value: the stop reason
            self._failure_traceback = (exc, exc.__traceback__)
            return Failed(exc)  # noqa: ASYNC910 - the hook is user code
        return None

    def _close(self, reason: StopReason) -> None:
        if isinstance(reason, Failed):
            self.last_failure = reason.error
        if self._closed_out:
            return
        self._closed_out = True
        self.reason = reason
        self.state = State.STOPPING
        stashed = [] if self.stash is None else self.stash._take_all()
        for item in [*stashed, *self.mailbox.close()]:
            if isinstance(item, Deliver):
                continue  # a timer tick nobody sent: nothing to report
            message, sender, slot = item
            if slot is not None:
                slot.settle(outcome.Error(self.stopped_error()))
            self.dead_letter(message, sender, DeadLetterReason.STOPPED)

    async def _run_stop_hook(self, reason: StopReason) -> None:
        await self._run_bounded(functools.partial(self.actor.on_stop, reason), "on_stop")

    async def _run_bounded(  # noqa: ASYNC910 - the hook is user code: it may or may not checkpoint
        self, hook: Callable[[], Awaitable[None]], name: str
    ) -> None:
        """Run a hook of the actor shielded and bounded by ``stop_timeout``; log its failure."""
        with trio.move_on_after(self.stop_timeout, shield=True) as scope:  # noqa: ASYNC912
            try:
                await hook()
            except Exception as exc:
                logger.error(
                    "%s of %s raised",
                    name,
                    self.path,
                    exc_info=exc,
                    extra={"actor_path": self.path},
                )
        if scope.cancelled_caught:
            logger.warning(
                "%s of %s did not finish within %ss and was cancelled",
                name,
                self.path,
                self.stop_timeout,
                extra={"actor_path": self.path},
            )

    def _exc_info(
        self, reason: StopReason
    ) -> tuple[type[BaseException], BaseException, TracebackType | None] | None:
        if not isinstance(reason, Failed):
            return None
        error = reason.error
        saved, traceback = self._failure_traceback
        return type(error), error, traceback if saved is error else error.__traceback__

    def _finish(self, reason: StopReason) -> None:
        if self.reason_override is not None:
            reason = self.reason_override
        self.reason = reason
        self.state = State.STOPPED
        if self.parent.children.get(self.name) is self:
            del self.parent.children[self.name]
            self.parent.children_changed()
        # A start failure is raised from spawn(): the caller reports it, not us.
        if isinstance(reason, Failed) and self._started:
            logger.error(
                "actor %s failed",
                self.path,
                exc_info=self._exc_info(reason),
                extra={"actor_path": self.path},
            )
            publish_event(self.system, ActorFailed(self.path, reason.error))
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

    def remove_termination_callback(self, callback: TerminationCallback) -> None:
        """Forget a callback added with :meth:`add_termination_callback` (if still there)."""
        with contextlib.suppress(ValueError):
            self.on_terminated.remove(callback)

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
    """Raise :exc:`WrongThreadError` unless called from the system's trio thread."""
    if threading.get_ident() != system_thread:
        raise WrongThreadError(
            f"{what} must be called from the actor system's trio thread; from another "
            "thread use ref.tell_from_thread() / ref.ask_from_thread()"
        )
