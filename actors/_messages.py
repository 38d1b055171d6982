"""Values the runtime hands out: requests, stop reasons, dead letters, statistics."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Generic, TypeVar, final

import attrs

if TYPE_CHECKING:
    from typing import Never

    from ._ref import ActorRef

R_co = TypeVar("R_co", covariant=True)


class Request(Generic[R_co]):
    """Base class of messages that can be asked, ``R_co`` being the reply type.

    Subclass it in a frozen attrs class; the handler's return value is the reply::

        @attrs.frozen
        class GetCount(actors.Request[int]):
            pass


        count: int = await counter.ask(GetCount())
    """

    __slots__ = ()


class ControlMessage:
    """Base class of messages that overtake ordinary ones (Akka's ``ControlMessage``).

    A message that is an instance of it, told or asked, travels the mailbox's
    control lane and is handled before every queued ordinary message (after
    the message being handled now). Use it for what must not wait behind
    data: close, statistics, reconfiguration. Combine it with
    :class:`Request` to ask::

        @attrs.frozen
        class GetStats(actors.ControlMessage, actors.Request[Stats]):
            pass

    The control lane has its own bound, the mailbox's capacity (a count: control
    messages are not weighed against ``max_bytes``); when it is full a ``tell``
    or ``ask`` waits, senders served in arrival order, and ``tell_nowait``
    raises :exc:`trio.WouldBlock`. The runtime's own notices (stop requests,
    :class:`Terminated`) still come first.
    """

    __slots__ = ()


@attrs.frozen
class StopReason:
    """Why an actor stopped. Compare with ``isinstance`` against the subclasses."""

    @property
    def is_failure(self) -> bool:
        """True when the actor stopped because something went wrong."""
        return False


@final
@attrs.frozen
class Normal(StopReason):
    """The actor was asked to stop (or stopped itself) and finished cleanly."""


@final
@attrs.frozen
class Failed(StopReason):
    """The actor stopped because a handler, hook or task raised ``error``."""

    error: BaseException

    @property
    def is_failure(self) -> bool:
        """Always true."""
        return True


@final
@attrs.frozen
class Cancelled(StopReason):
    """The actor was cancelled from outside (its parent scope or the system was cancelled)."""


class DeadLetterReason(enum.Enum):
    """Why a message ended up in dead letters."""

    #: The actor stopped while the message was still queued in its mailbox.
    STOPPED = "stopped"
    #: The handler raised while processing the message.
    FAILED = "failed"
    #: A reply arrived after the asker had given up.
    LATE_REPLY = "late reply"
    #: A bounded queue with a drop policy overflowed.
    DROPPED = "dropped"
    #: The recipient could not be reached (for example a name nobody holds).
    UNDELIVERABLE = "undeliverable"
    #: A told message whose handler raised :exc:`ErrorReply` (nobody was asking).
    REJECTED = "rejected"


@final
@attrs.frozen
class DeadLetter:
    """A message that was not delivered, with who sent it, to whom and why."""

    message: object
    recipient: str
    sender: ActorRef[Never] | None
    reason: DeadLetterReason
    error: BaseException | None = None


class MailboxOverflow(enum.Enum):
    """What an actor's mailbox does with an ordinary message when it is full.

    Set per actor at spawn (``spawn(actor, overflow=...)``); the control lane
    always waits for room. Every drop is counted in
    :attr:`MailboxStatistics.dropped` and goes to dead letters with reason
    ``DROPPED``; an ask whose message is dropped fails at once with
    :exc:`MailboxFullError`.
    """

    #: The sender waits for room (``tell_nowait`` raises :exc:`trio.WouldBlock`). The default.
    BLOCK = "block"
    #: The new message is dropped; the sender carries on.
    DROP_NEWEST = "drop newest"
    #: The oldest queued messages are dropped to make room for the new one.
    DROP_OLDEST = "drop oldest"
    #: The sender gets :exc:`MailboxFullError` at once (``tell``, ``tell_nowait`` and ``ask``).
    FAIL = "fail"


@final
@attrs.frozen
class MailboxStatistics:
    """A snapshot of one actor's mailbox.

    ``depth`` counts queued ordinary messages; ``high_water`` is the largest
    depth seen; ``processed`` counts messages whose handler returned;
    ``dead_lettered`` counts messages of this actor that went to dead letters;
    ``senders_waiting`` counts tasks blocked in ``tell`` or ``ask`` because
    their lane is full; ``control_depth`` counts queued
    :class:`ControlMessage` messages. For a mailbox spawned with ``max_bytes``
    (``None`` otherwise), ``queued_bytes`` is the weight of the queued ordinary
    messages and ``bytes_high_water`` the largest it has been.
    """

    capacity: int
    depth: int
    high_water: int
    processed: int
    dead_lettered: int
    senders_waiting: int
    control_depth: int = 0
    max_bytes: int | None = None
    queued_bytes: int = 0
    bytes_high_water: int = 0
    overflow: MailboxOverflow = MailboxOverflow.BLOCK
    dropped: int = 0
