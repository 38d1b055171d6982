"""The mailbox: an ordinary lane, a control lane, and the runtime's notices, drained in that reverse order.

Modelled on trio's memory channels (``trio/_channel.py``): ``send`` is a
checkpoint, a sender blocked on a full lane is parked in FIFO order and handed
a slot by the receiver, and cancellation never loses an item that was taken.
There is exactly one receiver: the actor's own loop, which takes items with
:meth:`Mailbox.poll` and, when there are none, sets ``receive_task`` and
waits with :meth:`Mailbox.abort_wait` as the abort function (inlined in the
loop: a coroutine frame here would stay alive for as long as the actor idles).

Three lanes, received in this order:

- **Notices**: the runtime's own (stop requests, terminated notices, task
  failures). No bound of its own: only the runtime writes to it and each
  writer is bounded (one stop request, one notice per watch). Never dropped.
- **Control**: user messages that are instances of
  :class:`~actors.ControlMessage`. Bounded by the mailbox's capacity (a count,
  not weighed); its waiting senders are served in arrival order.
- **Ordinary**: everything else. Bounded by the capacity and, if the actor was
  spawned with ``max_bytes``, by the weighed bytes queued: a message is
  admitted when it fits under ``max_bytes``, or when the lane is empty (so a
  single message larger than the bound still gets through, alone). Waiting
  senders are served strictly in arrival order: a small message never
  overtakes a large one that waits for room.

An item is handed straight to the receiver when it is parked (every lane is
empty then), so it never counts against a bound.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import outcome
import trio

from ._control import Deliver, Envelope
from ._messages import ControlMessage, MailboxOverflow, MailboxStatistics

if TYPE_CHECKING:
    from ._control import Control

#: What the user lanes hold: an envelope, or a runtime-made delivery (a timer tick).
Item = Envelope | Deliver
#: What a task waiting in :meth:`Mailbox.wait_for_room` holds in the senders' queue.
_ROOM: Item = ((), None, None)
#: The weigher of a byte-bounded mailbox: a message's size in bytes.
Weigher = Callable[[Any], int]


class MailboxOwner(Protocol):
    """What a mailbox asks of the actor it belongs to (its errors, and what to do with a drop).

    One reference to the owner rather than a bound method per callback: every
    spawn makes a mailbox, and each bound method is one more object to allocate
    and for the garbage collector to walk while the actor lives.
    """

    def stopped_error(self) -> BaseException:
        """The error a sender gets once the mailbox refuses messages."""
        ...

    def full_error(self) -> BaseException:
        """The error a sender gets from a full mailbox whose overflow policy is ``FAIL``."""
        ...

    def dropped(self, item: Item) -> None:
        """The overflow policy dropped ``item`` (already counted)."""
        ...


def _message_of(item: Item) -> object:
    return item[0] if type(item) is tuple else item.message  # type: ignore[union-attr]


class Mailbox:
    """A bounded single-receiver queue with a control lane and a notice lane."""

    __slots__ = (
        "_bytes",
        "_capacity",
        "_closed",
        "_control",
        "_control_senders",
        "_data",
        "_max_bytes",
        "_notices",
        "_overflow",
        "_owner",
        "_senders",
        "_weigher",
        "_weights",
        "bytes_high_water",
        "dead_lettered",
        "dropped",
        "held",
        "high_water",
        "processed",
        "receive_task",
    )

    def __init__(
        self,
        capacity: int,
        owner: MailboxOwner,
        *,
        max_bytes: int | None = None,
        weigher: Weigher | None = None,
        overflow: MailboxOverflow = MailboxOverflow.BLOCK,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, not {capacity!r}")
        if max_bytes is not None:
            if max_bytes < 1:
                raise ValueError(f"max_bytes must be at least 1, not {max_bytes!r}")
            if weigher is None:
                raise ValueError(
                    "a mailbox with max_bytes needs a weigher: pass weigher=, a function "
                    "returning a message's size in bytes"
                )
        elif weigher is not None:
            raise ValueError("weigher= only applies with max_bytes=; pass both or neither")
        self._capacity = capacity
        self._closed = False
        self._owner = owner
        self._max_bytes = max_bytes
        self._weigher = weigher
        self._overflow = MailboxOverflow(overflow)
        # Lanes are made on first use: a message handed straight to a waiting
        # receiver never touches them, so idle actors don't pay for empty deques.
        self._data: deque[Item] | None = None
        self._weights: deque[int] | None = None
        self._control: deque[Item] | None = None
        self._notices: list[Control | Deliver] | None = None
        self.receive_task: trio.lowlevel.Task | None = None
        # Insertion-ordered, so the longest-waiting sender gets the next free slot.
        self._senders: dict[trio.lowlevel.Task, tuple[Item, int]] = {}
        self._control_senders: dict[trio.lowlevel.Task, Item] | None = None
        self._bytes = 0
        self.bytes_high_water = 0
        self.high_water = 0
        self.processed = 0
        self.dead_lettered = 0
        self.dropped = 0
        #: While true the receiver takes notices and control messages only: ordinary
        #: messages wait in their lane (see :meth:`hold` and :meth:`release`).
        self.held = False

    @property
    def closed(self) -> bool:
        """True once the mailbox refuses new messages."""
        return self._closed

    @property
    def waiting(self) -> bool:
        """True while the receiver is parked waiting for an item."""
        return self.receive_task is not None

    @property
    def depth(self) -> int:
        """Queued user messages, both lanes."""
        return (0 if self._data is None else len(self._data)) + (
            0 if self._control is None else len(self._control)
        )

    # -- sending ------------------------------------------------------------------------

    def send_nowait(self, item: Item) -> None:
        """Queue ``item`` in its lane, or raise :exc:`trio.WouldBlock` if it has no room."""
        if self._closed:
            raise self._owner.stopped_error()
        task = self.receive_task
        if task is not None and not self.held:
            self.receive_task = None
            if self.high_water == 0:
                self.high_water = 1
            trio.lowlevel.reschedule(task, outcome.Value(item))
            return
        message = item[0] if type(item) is tuple else item.message  # type: ignore[union-attr]
        if isinstance(message, ControlMessage):
            if task is not None:  # held: a control message still goes straight in
                self.receive_task = None
                trio.lowlevel.reschedule(task, outcome.Value(item))
                return
            if not self._control_admits():
                raise trio.WouldBlock
            self._push_control(item)
            return
        if self._max_bytes is None:
            data = self._data
            if data is None:
                data = self._data = deque()
            if self._senders or len(data) >= self._capacity:
                self._overflowed(item, 0)
                return
            data.append(item)
            if len(data) > self.high_water:
                self.high_water = len(data)
            return
        weight = self._weigh(message)
        if self._senders or not self._admits(weight):
            self._overflowed(item, weight)
            return
        self._push(item, weight)

    def _overflowed(self, item: Item, weight: int) -> None:
        """The ordinary lane has no room for ``item``: apply the overflow policy."""
        policy = self._overflow
        if policy is MailboxOverflow.BLOCK:
            raise trio.WouldBlock
        if policy is MailboxOverflow.FAIL:
            raise self._owner.full_error()
        if policy is MailboxOverflow.DROP_NEWEST:
            self._drop(item)
            return
        data = self._data
        assert data is not None
        while not self._admits(weight):
            self._drop(data.popleft())
            if self._weights is not None:
                self._bytes -= self._weights.popleft()
        self._push(item, weight)

    def _drop(self, item: Item) -> None:
        self.dropped += 1
        self._owner.dropped(item)

    async def send(self, item: Item) -> None:
        """Queue ``item``, waiting in arrival order while its lane has no room."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self.send_nowait(item)
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        task = trio.lowlevel.current_task()
        message = _message_of(item)
        if isinstance(message, ControlMessage):
            if self._control_senders is None:
                self._control_senders = {}
            control_senders = self._control_senders
            control_senders[task] = item

            def abort_control(_: object) -> trio.lowlevel.Abort:
                del control_senders[task]
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort_control)
            return
        self._senders[task] = (item, 0 if self._max_bytes is None else self._weigh(message))

        def abort(_: object) -> trio.lowlevel.Abort:
            del self._senders[task]
            # A large message that gave up may have held back smaller ones that fit.
            self._admit_senders()
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def wait_for_room(self) -> None:
        """Wait, in line with the waiting senders, until the ordinary lane is at most half full.

        For a task that then moves many messages in with :meth:`send_nowait`
        (the thread inbox): one wake-up per half a mailbox rather than one per
        message. Raises the closed error once the mailbox refuses senders.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise self._owner.stopped_error()
        if not self._senders and self._half_empty():
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        task = trio.lowlevel.current_task()
        self._senders[task] = (_ROOM, 0)

        def abort(_: object) -> trio.lowlevel.Abort:
            del self._senders[task]
            self._admit_senders()
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _half_empty(self) -> bool:
        data = self._data
        if data and len(data) > self._capacity // 2:
            return False
        return self._max_bytes is None or self._bytes <= self._max_bytes // 2

    def send_notice(self, item: Control | Deliver) -> None:
        """Queue a runtime notice; it is received before any user message."""
        if self.receive_task is not None:
            task, self.receive_task = self.receive_task, None
            trio.lowlevel.reschedule(task, outcome.Value(item))
        elif self._notices is None:
            self._notices = [item]
        else:
            self._notices.append(item)

    def put_back(self, items: list[Envelope], *, front: bool = True) -> None:
        """Put ``items`` in the ordinary lane, in order, at its head or (``front=False``) its tail.

        For the runtime only: unstashing and restarts put stashed messages
        back at the head; a draining stop appends what OS threads had handed
        over. No bound applies: the items were admitted once, and the stash or
        thread inbox that held them is bounded.
        """
        if not items:
            return
        if self._data is None:
            self._data = deque()
        if front:
            self._data.extendleft(reversed(items))
        else:
            self._data.extend(items)
        if self._max_bytes is not None:
            weights = [self._weigh(item[0]) for item in items]
            if self._weights is None:
                self._weights = deque()
            if front:
                self._weights.extendleft(reversed(weights))
            else:
                self._weights.extend(weights)
            self._bytes += sum(weights)
            self.bytes_high_water = max(self.bytes_high_water, self._bytes)
        self.high_water = max(self.high_water, len(self._data))

    def _weigh(self, message: object) -> int:
        assert self._weigher is not None
        weight = self._weigher(message)
        if weight < 0:
            raise ValueError(
                f"the mailbox weigher returned {weight!r} for {type(message).__qualname__}; "
                "a weight is a size in bytes, zero or more"
            )
        return weight

    def _admits(self, weight: int) -> bool:
        data = self._data
        if not data:
            return True
        if len(data) >= self._capacity:
            return False
        return self._max_bytes is None or self._bytes + weight <= self._max_bytes

    def _push(self, item: Item, weight: int) -> None:
        data = self._data
        if data is None:
            data = self._data = deque()
        data.append(item)
        if len(data) > self.high_water:
            self.high_water = len(data)
        if self._max_bytes is not None:
            if self._weights is None:
                self._weights = deque()
            self._weights.append(weight)
            self._bytes += weight
            if self._bytes > self.bytes_high_water:
                self.bytes_high_water = self._bytes

    def _control_admits(self) -> bool:
        return not self._control_senders and (
            self._control is None or len(self._control) < self._capacity
        )

    def _push_control(self, item: Item) -> None:
        if self._control is None:
            self._control = deque()
        self._control.append(item)

    def _admit_senders(self) -> None:
        """Move waiting senders into the ordinary lane, oldest first, while they fit."""
        senders = self._senders
        while senders:
            task = next(iter(senders))
            item, weight = senders[task]
            if item is _ROOM:
                # A bulk sender's turn: wake it once there is room for a batch.
                if self._half_empty():
                    del senders[task]
                    trio.lowlevel.reschedule(task)
                return
            if not self._admits(weight):
                return
            del senders[task]
            self._push(item, weight)
            trio.lowlevel.reschedule(task)

    # -- receiving ----------------------------------------------------------------------

    def poll(self) -> Item | Control | None:
        """The next item, or ``None`` if there is none (items are never ``None``).

        The actor's loop uses this rather than a ``receive``
        that raises :exc:`trio.WouldBlock`: it then waits outside any
        ``except`` clause, where a caught exception (with its traceback and
        frames) would stay alive while the actor idles.
        """
        if self._notices:
            return self._notices.pop(0)
        control = self._control
        if control:
            item = control.popleft()
            senders = self._control_senders
            if senders:
                task = next(iter(senders))
                control.append(senders.pop(task))
                trio.lowlevel.reschedule(task)
            return item
        data = self._data
        if data and not self.held:
            item = data.popleft()
            if self._weights is not None:
                self._bytes -= self._weights.popleft()
            if self._senders:
                self._admit_senders()
            return item
        return None

    def hold(self) -> None:
        """Let the receiver take notices and control messages only, until :meth:`release`.

        Ordinary messages stay in their lane, in order; their senders wait at its
        bound as usual.
        """
        self.held = True

    def release(self) -> None:
        """Undo :meth:`hold`; a parked receiver gets the oldest waiting ordinary message."""
        self.held = False
        task = self.receive_task
        if task is not None and self._data:
            item = self.poll()
            self.receive_task = None
            trio.lowlevel.reschedule(task, outcome.Value(item))

    def abort_wait(self, _: object) -> trio.lowlevel.Abort:
        """The abort function of the receiver's wait (see the actor's loop)."""
        self.receive_task = None
        return trio.lowlevel.Abort.SUCCEEDED

    # -- closing ------------------------------------------------------------------------

    def refuse_senders(self) -> None:
        """Refuse new messages but keep the queued ones for the receiver."""
        self._closed = True
        waiting = list(self._senders)
        if self._control_senders:
            waiting.extend(self._control_senders)
            self._control_senders.clear()
        self._senders.clear()
        for task in waiting:
            trio.lowlevel.reschedule(task, outcome.Error(self._owner.stopped_error()))

    def close(self) -> list[Item]:
        """Refuse further sends; wake blocked senders with the closed error.

        Returns the user messages still queued (control lane first), for the
        caller to dead-letter. Notices still queued are discarded: the actor
        is no longer there to act on them.
        """
        self.refuse_senders()
        left = [*(self._control or ()), *(self._data or ())]
        self._control = self._data = self._weights = None
        self._bytes = 0
        self._notices = None
        return left

    def statistics(self) -> MailboxStatistics:
        """A snapshot of the counters."""
        return MailboxStatistics(
            capacity=self._capacity,
            depth=0 if self._data is None else len(self._data),
            high_water=self.high_water,
            processed=self.processed,
            dead_lettered=self.dead_lettered,
            senders_waiting=len(self._senders) + len(self._control_senders or ()),
            overflow=self._overflow,
            dropped=self.dropped,
            control_depth=0 if self._control is None else len(self._control),
            max_bytes=self._max_bytes,
            queued_bytes=self._bytes,
            bytes_high_water=self.bytes_high_water,
        )
