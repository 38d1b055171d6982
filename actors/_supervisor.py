"""Supervisors: OTP restart strategies, restart types, intensity, backoff, escalation.

A supervisor is an actor whose children are started from :class:`ChildSpec`
data. When a child stops, its own task asks the supervisor's policy (a plain
synchronous call, see ``_ChildPolicy.decide``) whether to restart; a restart
happens in the same cell, so the child keeps its ref, its name and its queued
messages, and senders keep working meanwhile. Restarts are counted per
supervisor; past ``max_restarts`` within ``within`` seconds the supervisor
fails, which stops its children youngest first and escalates to its own
parent: a supervising parent handles it like any child failure, a plain actor
parent fails with it, and at the top the error leaves ``open_system``.
"""

from __future__ import annotations

import collections
import enum
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Generic, TypeVar, cast, final

import attrs
import trio

from ._actor import Actor, handler
from ._backoff import Backoff
from ._cell import Cell, State, Supervision, TaskFailed
from ._exceptions import ActorError, ErrorReply
from ._messages import Cancelled, Failed, MailboxOverflow, Request, StopReason
from ._system import DEFAULT_STOP_TIMEOUT

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Never

    from ._ref import ActorRef

M = TypeVar("M")
M_contra = TypeVar("M_contra", contravariant=True)


class RestartType(enum.Enum):
    """When a supervisor restarts a child (OTP's restart types)."""

    #: Always restarted, unless stopped from outside (by a ref or by its supervisor).
    PERMANENT = "permanent"
    #: Restarted only when it fails.
    TRANSIENT = "transient"
    #: Never restarted.
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    """Which children restart when one fails (OTP's strategies)."""

    #: Only the failed child.
    ONE_FOR_ONE = "one_for_one"
    #: Every child.
    ONE_FOR_ALL = "one_for_all"
    #: The failed child and those started after it.
    REST_FOR_ONE = "rest_for_one"


@final
@attrs.frozen
class ChildSpec(Generic[M_contra]):
    """How a supervisor starts and restarts one child.

    ``factory`` makes a fresh actor for every (re)start. ``shutdown`` bounds
    the child's stop (its ``stop_timeout``). ``backoff`` spaces out restarts
    (without it, restarts are immediate). ``mailbox_size``, ``max_bytes``,
    ``weigher`` and ``overflow`` shape the mailbox as in :meth:`ActorSystem.spawn`.
    """

    name: str
    factory: Callable[[], Actor[M_contra]]
    restart: RestartType = RestartType.PERMANENT
    shutdown: float = DEFAULT_STOP_TIMEOUT
    mailbox_size: int | None = None
    backoff: Backoff | None = None
    max_bytes: int | None = None
    weigher: Callable[[M_contra], int] | None = None
    overflow: MailboxOverflow = MailboxOverflow.BLOCK


@final
@attrs.frozen
class SiblingRestart(StopReason):
    """The child was restarted because ``failed`` (a sibling's path) failed."""

    failed: str


class RestartIntensityError(ActorError):
    """A supervisor exceeded its restart intensity and gave up (``__cause__``: the last failure)."""


class TooManyChildrenError(ActorError):
    """A supervisor refused a new child: it already has ``max_children``."""


@final
@attrs.frozen
class StartChild(Request["ActorRef[Never]"]):
    """Ask a supervisor to start a child; prefer :func:`start_child`, which is typed."""

    spec: ChildSpec[Never]


@final
@attrs.frozen
class StopChild(Request[bool]):
    """Stop the named child for good (it is not restarted); replies whether it existed."""

    name: str


@final
@attrs.frozen
class WhichChildren(Request["dict[str, ActorRef[Never]]"]):
    """Ask a supervisor for its live children, by name, in start order."""


SupervisorMessage = StartChild | StopChild | WhichChildren


@attrs.define(eq=False)
class Supervisor(Actor[SupervisorMessage]):
    """An actor that starts, watches over and restarts children.

    ``children`` are started in order by ``on_start`` (if one fails to start,
    the supervisor fails to start). More can be started at run time with
    :func:`start_child` — a supervisor with no initial children and a
    ``max_children`` cap is OTP's dynamic supervisor, e.g. one child per
    connection. ``max_restarts`` within ``within`` seconds is the restart
    intensity, counted for the whole supervisor.
    """

    children: Sequence[ChildSpec[Never]] = ()
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    within: float = 5.0
    max_children: int | None = None
    _restart_times: collections.deque[float] = attrs.field(init=False, factory=collections.deque)
    _random: random.Random = attrs.field(init=False, factory=random.Random)

    # Hooks and handlers run inside the actor loop, whose receive is the checkpoint.
    async def on_start(self) -> None:  # noqa: ASYNC910
        if self.max_restarts < 0 or self.within <= 0:
            raise ValueError(
                f"supervisor restart intensity must be max_restarts >= 0 within > 0 seconds, "
                f"not {self.max_restarts} within {self.within}"
            )
        for spec in self.children:
            await self._start(spec)

    async def on_stop(self, reason: StopReason) -> None:  # noqa: ASYNC910
        cell = self._actor_cell
        if isinstance(reason, Failed) and cell.supervision is None:
            _escalate(cell, reason.error)

    @handler
    async def start(self, message: StartChild) -> ActorRef[Never]:
        # A child that cannot start is the caller's problem, not the supervisor's:
        # the error goes back to the asker (OTP's {error, Reason}) and we go on.
        cell = self._actor_cell
        if self.max_children is not None and len(cell.children) >= self.max_children:
            raise ErrorReply(
                TooManyChildrenError(
                    f"supervisor {cell.path} already has {self.max_children} children "
                    f"(max_children); {message.spec.name!r} was not started"
                )
            )
        try:
            return await self._start(message.spec)
        except Exception as exc:  # noqa: BLE001 - handed to the asker, see above
            raise ErrorReply(exc) from None

    @handler
    async def stop_child(self, message: StopChild) -> bool:
        child = self._actor_cell.children.get(message.name)
        if child is None:
            return False  # noqa: ASYNC910 - a handler
        await child.ref.stop()
        return True

    @handler
    def which(self, message: WhichChildren) -> dict[str, ActorRef[Never]]:
        return {name: child.ref for name, child in self._actor_cell.children.items()}

    async def _start(self, spec: ChildSpec[Never]) -> ActorRef[Never]:
        return await self._actor_cell.spawn_child(
            spec.factory,
            spec.name,
            spec.mailbox_size,
            spec.shutdown,
            supervision=_ChildPolicy(self, spec),
            max_bytes=spec.max_bytes,
            weigher=spec.weigher,
            overflow=spec.overflow,
        )

    def _record_restart(self, failed: Cell, reason: StopReason) -> bool:
        """Count one restart; past the intensity, fail the supervisor and return False."""
        now = trio.current_time()
        times = self._restart_times
        while times and times[0] <= now - self.within:
            times.popleft()
        if len(times) >= self.max_restarts:
            cell = self._actor_cell
            error = RestartIntensityError(
                f"supervisor {cell.path} gave up: more than {self.max_restarts} restarts "
                f"within {self.within}s (last: {failed.path} stopped with {reason!r})"
            )
            if isinstance(reason, Failed):
                error.__cause__ = reason.error
            cell.mailbox.send_notice(TaskFailed(error))
            return False
        times.append(now)
        return True

    def _restart_siblings(self, failed: Cell) -> None:
        if self.strategy is Strategy.ONE_FOR_ONE:
            return
        siblings = list(self._actor_cell.children.values())
        if self.strategy is Strategy.REST_FOR_ONE:
            siblings = siblings[siblings.index(failed) + 1 :]
        for sibling in siblings:
            if sibling is not failed:
                sibling.request_stop(SiblingRestart(failed.path), interrupt=True, requested=False)


@attrs.define(eq=False)
class _ChildPolicy(Supervision):
    supervisor: Supervisor
    spec: ChildSpec[Never]
    consecutive: int = 0
    last_restart: float = -1e18

    def decide(self, cell: Cell, reason: StopReason, requested: bool) -> float | None:
        supervisor = self.supervisor
        try:
            supervisor_cell = supervisor._actor_cell
        except AttributeError:
            return None  # the supervisor itself is going away
        if supervisor_cell.state is not State.RUNNING:
            return None
        restart = self.spec.restart
        if isinstance(reason, SiblingRestart):
            return None if restart is RestartType.TEMPORARY else 0.0
        if requested or isinstance(reason, Cancelled):
            return None
        failed = isinstance(reason, Failed)
        if not (restart is RestartType.PERMANENT or (restart is RestartType.TRANSIENT and failed)):
            return None
        if not supervisor._record_restart(cell, reason):
            return None
        supervisor._restart_siblings(cell)
        now = trio.current_time()
        backoff = self.spec.backoff
        if backoff is None:
            return 0.0
        if now - self.last_restart >= backoff.reset_after:
            self.consecutive = 0
        delay = backoff.delay(self.consecutive, supervisor._random.random())
        self.consecutive += 1
        self.last_restart = now + delay
        return delay


def _escalate(cell: Cell, error: BaseException) -> None:
    parent = cell.parent
    if isinstance(parent, Cell):
        if parent.state is State.RUNNING and isinstance(error, Exception):
            parent.mailbox.send_notice(TaskFailed(error))
    else:
        parent.system._escalate(error)


async def start_child(supervisor: ActorRef[StartChild], spec: ChildSpec[M]) -> ActorRef[M]:
    """Start a child under a running supervisor and return its ref.

    Raises :exc:`TooManyChildrenError` when the supervisor is at its
    ``max_children`` cap (nothing is started), and whatever the child's
    ``on_start`` raised if it failed to start (:exc:`NameTakenError` for a
    name in use); the supervisor itself carries on either way.
    """
    ref = await supervisor.ask(StartChild(spec))
    # The supervisor spawned spec.factory(), an Actor[M]: its ref accepts M.
    return cast("ActorRef[M]", ref)
