"""The control lane's vocabulary: runtime notices, and what a cell exposes to supervisors."""

from __future__ import annotations

import contextvars
import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from ._messages import Failed, StopReason

if TYPE_CHECKING:
    from ._cell import Cell
    from ._reply import ReplySlot

#: The cell whose task is running (``None`` outside actors); gives tells their sender.
current_cell: contextvars.ContextVar[Cell | None] = contextvars.ContextVar(
    "actors_current_cell", default=None
)

# A queued user message: (message, sending cell or None, reply slot or None).
Envelope = tuple[object, "Cell | None", "ReplySlot[Any] | None"]


class State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
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
    #: From outside the actor (a ref, the parent): a supervisor does not restart it then.
    requested: bool = True

    def apply(self, cell: Cell) -> StopReason | None:
        cell._stop_requested = self.requested
        if not self.drain:
            return self.reason
        cell._draining = True
        if cell.thread_inbox is not None:
            cell.thread_inbox.absorb()  # what threads handed over is drained too
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

    A Terminated notice travels on the control lane (never dropped, overtakes
    user messages); a timer tick travels in the user lane, in order with the
    rest. ``still_wanted`` (if given) is checked just before dispatch, so a
    notice that became stale while queued (a cancelled timer) is skipped.
    """

    message: object
    still_wanted: Callable[[], bool] | None = None


#: Called once when a cell has stopped for good: (cell, reason).
TerminationCallback = Callable[["Cell", StopReason], None]


class Supervision:
    """A supervisor's policy for one child cell (see ``_supervisor.py``)."""

    __slots__ = ()

    def decide(self, cell: Cell, reason: StopReason, requested: bool) -> float | None:
        """Seconds to wait before restarting ``cell``, or ``None`` to let it stop for good.

        ``requested`` is true when the stop was asked for from outside the actor.
        """
        raise NotImplementedError
