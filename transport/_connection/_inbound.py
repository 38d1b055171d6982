"""The connection's inbound queue: bounded, between the network reader and the application.

The queue is bounded in messages and in bytes, per connection and (through a
shared :class:`ByteBudget`) per server. Putting never waits. Under
:attr:`Overflow.PAUSE` the reader waits (:meth:`InboundQueue.wait_room`) while the
queue is full, before it puts the message it holds, which stops reading the peer:
TCP backpressure; a message put then always gets in. Under the other policies a message that does not fit meets
the policy; the caller (the connection actor) counts and dead-letters whatever was
dropped and closes the connection when the policy says so. :func:`forward` drains
the queue into a subscriber actor.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar, final

import outcome
import trio

import actors

from .._overflow import Overflow

T = TypeVar("T")

#: The most items the consumer takes in a row, without waiting, before it lets other
#: tasks run (like an actor's busy spell). Every take checks for cancellation; a yield
#: per item would cost a pass of the scheduler per message.
TAKE_SPELL_LIMIT = 64


@final
class ByteBudget:
    """A budget of inbound bytes shared by the connections of one server.

    Each connection's inbound queue charges the bytes it holds here and gives
    them back as the application takes them; a message that would take
    ``used`` past ``limit`` meets the connection's overflow policy, like one
    past the connection's own bound. Under :attr:`Overflow.PAUSE` the readers
    that wait for the budget are woken one at a time, in the order they began
    to wait, as it frees up. Only trio's thread touches it.
    """

    __slots__ = ("limit", "used", "waiting")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a byte budget must be at least 1 byte, not {limit!r}")
        self.limit = limit
        self.used = 0
        #: The queues whose reader waits for room in this budget, oldest first.
        self.waiting: collections.deque[InboundQueue[Any]] = collections.deque()

    def release(self, size: int) -> None:
        """Give back ``size`` bytes; wake the longest-waiting reader if there is room now."""
        self.used -= size
        waiting = self.waiting
        if waiting and self.used < self.limit:
            waiting.popleft()._wake_room()


@final
class InboundQueue(Generic[T]):
    """A bounded FIFO whose producer never waits to put, and whose single consumer
    waits to take.

    Bounded in messages (``capacity``) and in bytes (``max_bytes``, and the
    shared ``budget`` if any). Under the drop and close policies, one message
    larger than ``max_bytes`` is still taken when the queue is empty (a message
    within the size limit always gets through, alone); the shared budget has no
    such exception. Under :attr:`Overflow.PAUSE` the producer waits in
    :meth:`wait_room` while the queue is :attr:`full` before each put, and every
    message put gets in, so the queue holds at most ``capacity`` messages, its
    bytes pass ``max_bytes`` by less than one message, and the budget's bytes
    pass its limit by less than one message over all its queues.
    """

    __slots__ = (
        "_bytes",
        "_closed",
        "_ended",
        "_items",
        "_receiving",
        "_room_waiter",
        "_sizes",
        "_taken",
        "_waiter",
        "budget",
        "bytes_high_water",
        "capacity",
        "dropped",
        "max_bytes",
        "on_end",
        "pauses",
        "policy",
        "read",
    )

    def __init__(
        self,
        capacity: int,
        policy: Overflow,
        max_bytes: int | None = None,
        budget: ByteBudget | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"inbound_queue_size must be at least 1, not {capacity!r}")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.budget = budget
        self.policy = policy
        self.dropped = 0
        #: How many times the producer waited for room (Overflow.PAUSE).
        self.pauses = 0
        self.bytes_high_water = 0
        #: Called once, when the consumer has taken everything of a closed queue.
        self.on_end: Callable[[], None] | None = None
        # Made on first use, like the actors' mailboxes: an idle connection holds no
        # (pre-allocated) deque.
        self._items: collections.deque[T] | None = None
        self._sizes: collections.deque[int] | None = None
        self._bytes = 0
        # The one consumer, while it waits for an item (cheaper than a ParkingLot).
        self._waiter: trio.lowlevel.Task | None = None
        # The one producer, while it waits for room (Overflow.PAUSE).
        self._room_waiter: trio.lowlevel.Task | None = None
        self._closed = False
        self._ended = False
        self._receiving = False
        # Items taken in a row without waiting or yielding (see TAKE_SPELL_LIMIT).
        self._taken = 0
        #: True once a consumer has asked for an item.
        self.read = False

    def __len__(self) -> int:
        return 0 if self._items is None else len(self._items)

    @property
    def queued_bytes(self) -> int:
        """The bytes of the messages waiting for the consumer."""
        return self._bytes

    @property
    def closed(self) -> bool:
        """True once no more items will be put."""
        return self._closed

    @property
    def waiting(self) -> bool:
        """True while the consumer waits for an item."""
        return self._waiter is not None

    @property
    def full(self) -> bool:
        """True while the producer of a :attr:`Overflow.PAUSE` queue must wait for room:
        the queue holds ``capacity`` messages or ``max_bytes``, or the shared budget is
        spent. Always false under the other policies and once closed."""
        if self.policy is not Overflow.PAUSE or self._closed:
            return False
        items = self._items
        if items and (
            len(items) >= self.capacity
            or (self.max_bytes is not None and self._bytes >= self.max_bytes)
        ):
            return True
        budget = self.budget
        return budget is not None and budget.used >= budget.limit

    @property
    def paused(self) -> bool:
        """True while the producer waits for room."""
        return self._room_waiter is not None

    def _fits(self, size: int) -> bool:
        items = self._items
        if items:
            if len(items) >= self.capacity:
                return False
            if self.max_bytes is not None and self._bytes + size > self.max_bytes:
                return False
        budget = self.budget
        return budget is None or budget.used + size <= budget.limit

    def put(self, item: T, size: int = 0) -> list[T]:
        """Queue ``item`` (``size`` bytes) without waiting; return what the policy dropped.

        A consumer waiting for an item (the queue is then empty) is handed it at once,
        if the shared budget has room for it: it never sits in the queue.
        """
        if self._closed:
            self.dropped += 1
            return [item]
        waiter = self._waiter
        if waiter is not None:
            budget = self.budget
            if budget is None or budget.used + size <= budget.limit:
                self._waiter = None
                if size > self.bytes_high_water:
                    self.bytes_high_water = size
                trio.lowlevel.reschedule(waiter, outcome.Value(item))
                return []
        items = self._items
        if items is None:
            items = self._items = collections.deque()
            self._sizes = collections.deque()
        sizes = self._sizes
        assert sizes is not None
        dropped: list[T] = []
        count = len(items)
        budget = self.budget
        max_bytes = self.max_bytes
        if (  # not self._fits(size), inlined: this runs for every inbound message
            (
                count
                and (
                    count >= self.capacity
                    or (max_bytes is not None and self._bytes + size > max_bytes)
                )
            )
            or (budget is not None and budget.used + size > budget.limit)
        ) and self.policy is not Overflow.PAUSE:
            if self.policy is not Overflow.DROP_OLDEST:
                self.dropped += 1
                return [item]
            while items and not self._fits(size):
                self.dropped += 1
                dropped.append(items.popleft())
                self._release(sizes.popleft())
            if not self._fits(size):  # the shared budget is spent by other connections
                self.dropped += 1
                dropped.append(item)
                return dropped
        items.append(item)
        sizes.append(size)
        self._bytes += size
        if self._bytes > self.bytes_high_water:
            self.bytes_high_water = self._bytes
        if budget is not None:
            budget.used += size
        if self._waiter is not None:
            self._wake()
        return dropped

    def _release(self, size: int) -> None:
        self._bytes -= size
        if self.budget is not None:
            self.budget.release(size)
        if self._room_waiter is not None and not self.full:
            self._wake_room()

    def _take(self) -> T:
        items = self._items
        sizes = self._sizes
        assert items is not None
        assert sizes is not None
        item = items.popleft()
        self._release(sizes.popleft())
        return item

    def close(self) -> None:
        """No more items: the consumer gets what is queued, then :exc:`trio.EndOfChannel`;
        a producer waiting for room goes on (what it puts from now on is dropped)."""
        self._closed = True
        if self._waiter is not None:
            self._wake()
        if self._room_waiter is not None:
            self._wake_room()

    def stop_pausing(self) -> None:
        """From now on drop the newest message that does not fit instead of waiting for
        room (a closing connection must read the peer's Close); wakes a waiting producer."""
        if self.policy is Overflow.PAUSE:
            self.policy = Overflow.DROP_NEWEST
            if self._room_waiter is not None:
                self._wake_room()

    async def wait_room(self) -> None:  # noqa: ASYNC910 - at once when there is room: no checkpoint
        """Wait (the producer) while the queue is :attr:`full`.

        Returns at once when it is not; a wait ends when the consumer has taken
        enough, the budget has room again, or the queue closes or stops pausing.
        """
        while self.full:
            self.pauses += 1
            budget = self.budget
            if budget is not None and budget.used >= budget.limit:
                budget.waiting.append(self)
            self._room_waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort_room)

    def _wake_room(self) -> None:
        task, self._room_waiter = self._room_waiter, None
        if task is None:
            return  # woken already (by its own queue and by the budget)
        self._leave_budget_queue()
        trio.lowlevel.reschedule(task)

    def _abort_room(self, _: object) -> trio.lowlevel.Abort:
        self._room_waiter = None
        self._leave_budget_queue()
        return trio.lowlevel.Abort.SUCCEEDED

    def _leave_budget_queue(self) -> None:
        budget = self.budget
        if budget is not None and budget.waiting:
            with contextlib.suppress(ValueError):
                budget.waiting.remove(self)

    def drain(self) -> list[T]:
        """Take every queued item at once (used to dead-letter what nobody will read)."""
        if self._items is None:
            return []
        items = list(self._items)
        self._items.clear()
        assert self._sizes is not None
        self._release(sum(self._sizes))
        self._sizes.clear()
        return items

    def _end(self) -> trio.EndOfChannel:
        if not self._ended:
            self._ended = True
            if self.on_end is not None:
                self.on_end()
        return trio.EndOfChannel()

    def get_nowait(self) -> T:
        """The oldest item; :exc:`trio.WouldBlock` if there is none yet,
        :exc:`trio.EndOfChannel` once closed and empty."""
        if self._receiving:
            raise _busy()
        self.read = True
        if self._items:
            return self._take()
        if self._closed:
            raise self._end()
        raise trio.WouldBlock

    async def get(self) -> T:
        """The oldest item, waiting for one; :exc:`trio.EndOfChannel` once closed and empty.

        Always a cancellation point. When an item is there already it lets other tasks
        run only once per :data:`TAKE_SPELL_LIMIT` items taken in a row.
        """
        if self._receiving:
            raise _busy()
        self._receiving = True
        self.read = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            waited = False
            while not self._items:
                if self._closed:
                    raise self._end()
                # put hands an item over (it is never queued); close wakes with _WOKEN.
                self._taken = 0
                self._waiter = trio.lowlevel.current_task()
                handed = await trio.lowlevel.wait_task_rescheduled(self._abort_wait)
                if handed is not _WOKEN:
                    return handed  # type: ignore[no-any-return]
                waited = True
            item = self._take()
        finally:
            self._receiving = False
        if not waited:  # waiting was the checkpoint
            self._taken += 1
            if self._taken >= TAKE_SPELL_LIMIT:
                self._taken = 0
                await trio.lowlevel.cancel_shielded_checkpoint()
        return item

    def _wake(self) -> None:
        task, self._waiter = self._waiter, None
        assert task is not None
        trio.lowlevel.reschedule(task, outcome.Value(_WOKEN))

    def _abort_wait(self, _: object) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED


#: What a woken consumer receives when no item was handed to it (see ``InboundQueue.get``).
_WOKEN: Final = object()


def _busy() -> trio.BusyResourceError:
    return trio.BusyResourceError(
        "another task is already receiving from this connection; only one "
        "task may receive (give the others the messages through a channel)"
    )


async def forward(  # noqa: ASYNC910 - a task body
    queue: InboundQueue[T],
    subscriber: actors.ActorRef[T],
    undelivered: Callable[[T, BaseException | None], None],
    done: trio.Event,
) -> None:
    """Tell each item of ``queue`` to ``subscriber`` until the queue ends.

    The network reader never waits on the subscriber: the queue sits between them.
    Items the subscriber can no longer take go to ``undelivered``.
    """
    try:
        while True:
            try:
                item = await queue.get()
            except trio.EndOfChannel:
                break
            try:
                await subscriber.tell(item)
            except actors.ActorStoppedError as exc:
                undelivered(item, exc)
    finally:
        for item in queue.drain():
            undelivered(item, None)
        done.set()


async def deliver_last(  # noqa: ASYNC910 - a task body
    subscriber: actors.ActorRef[T],
    last: T,
    within: float,
    undelivered: Callable[[T, BaseException | None], None],
) -> None:
    """Tell ``subscriber`` the ``last`` message, or give it to ``undelivered`` if the
    subscriber has stopped or does not take it ``within`` seconds."""
    error: BaseException | None = None
    with trio.move_on_after(within):  # noqa: ASYNC912 - tell checkpoints unless it fails at once
        try:
            await subscriber.tell(last)
        except actors.ActorStoppedError as exc:
            error = exc
        else:
            return
    undelivered(last, error)
