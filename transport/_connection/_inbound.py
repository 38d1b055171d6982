"""The connection's inbound queue: bounded, never blocks the network reader.

When the queue is full the :class:`Overflow` decides what gives way; the
caller (the connection actor) counts and dead-letters whatever was dropped and
closes the connection when the policy says so. :func:`forward` drains the queue
into a subscriber actor.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Generic, TypeVar, final

import trio

import actors

from .._overflow import Overflow

T = TypeVar("T")


@final
class InboundQueue(Generic[T]):
    """A bounded FIFO whose producer never waits, and whose single consumer does."""

    __slots__ = ("_closed", "_items", "_receiving", "_waiter", "capacity", "dropped", "policy")

    def __init__(self, capacity: int, policy: Overflow) -> None:
        if capacity < 1:
            raise ValueError(f"inbound_queue_size must be at least 1, not {capacity!r}")
        self.capacity = capacity
        self.policy = policy
        self.dropped = 0
        # Made on first use, like the actors' mailboxes: an idle connection holds no
        # (pre-allocated) deque.
        self._items: collections.deque[T] | None = None
        # The one consumer, while it waits for an item (cheaper than a ParkingLot).
        self._waiter: trio.lowlevel.Task | None = None
        self._closed = False
        self._receiving = False

    def __len__(self) -> int:
        return 0 if self._items is None else len(self._items)

    @property
    def closed(self) -> bool:
        """True once no more items will be put."""
        return self._closed

    def put(self, item: T) -> T | None:
        """Queue ``item`` without waiting; return the item the policy dropped, if any."""
        if self._closed:
            self.dropped += 1
            return item
        items = self._items
        if items is None:
            items = self._items = collections.deque()
        dropped: T | None = None
        if len(items) >= self.capacity:
            self.dropped += 1
            if self.policy is Overflow.DROP_OLDEST:
                dropped = items.popleft()
            else:
                return item
        items.append(item)
        if self._waiter is not None:
            self._wake()
        return dropped

    def close(self) -> None:
        """No more items: the consumer gets what is queued, then :exc:`trio.EndOfChannel`."""
        self._closed = True
        if self._waiter is not None:
            self._wake()

    def drain(self) -> list[T]:
        """Take every queued item at once (used to dead-letter what nobody will read)."""
        if self._items is None:
            return []
        items = list(self._items)
        self._items.clear()
        return items

    def get_nowait(self) -> T:
        """The oldest item; :exc:`trio.WouldBlock` if there is none yet,
        :exc:`trio.EndOfChannel` once closed and empty."""
        if self._receiving:
            raise _busy()
        if self._items:
            return self._items.popleft()
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def get(self) -> T:
        """The oldest item, waiting for one; :exc:`trio.EndOfChannel` once closed and empty."""
        if self._receiving:
            raise _busy()
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            items = self._items
            if items:
                item = items.popleft()
            else:
                while not self._items:
                    if self._closed:
                        raise trio.EndOfChannel
                    self._waiter = trio.lowlevel.current_task()
                    await trio.lowlevel.wait_task_rescheduled(self._abort_wait)
                # Waiting was the checkpoint.
                assert self._items is not None
                return self._items.popleft()
        finally:
            self._receiving = False
        await trio.lowlevel.cancel_shielded_checkpoint()
        return item

    def _wake(self) -> None:
        task, self._waiter = self._waiter, None
        assert task is not None
        trio.lowlevel.reschedule(task)

    def _abort_wait(self, _: object) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED


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
