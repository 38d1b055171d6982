"""The connection's outbound queue: frames waiting for the one writer.

Bounded (a sender waits for room: backpressure), FIFO, and with exactly one
consumer, the connection's writer. Senders are the connection actor (for
messages told to its ref) and the connection's handle (``WebSocketConnection.send``
puts frames here directly, saving the hop through the actor's mailbox). Neither
touches the stream: only the writer does. Closing is ordered after data: the
writer first takes every frame queued before :meth:`Outbox.close`, then ends.
"""

from __future__ import annotations

import collections
from typing import Generic, TypeVar, final

import trio

T = TypeVar("T")


@final
class Outbox(Generic[T]):
    """A bounded FIFO of frames with many waiting senders and one waiting consumer."""

    __slots__ = ("_closed", "_items", "_room", "_writer", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"outbound_queue_size must be at least 1, not {capacity!r}")
        self.capacity = capacity
        # Both made on first use: an idle connection holds neither a (pre-allocated)
        # deque nor a parking lot for senders waiting for room.
        self._items: collections.deque[T] | None = None
        self._room: trio.lowlevel.ParkingLot | None = None
        # The writer, while it waits for a frame.
        self._writer: trio.lowlevel.Task | None = None
        self._closed = False

    def __len__(self) -> int:
        return 0 if self._items is None else len(self._items)

    @property
    def closed(self) -> bool:
        """True once no more frames are accepted."""
        return self._closed

    def put_nowait(self, item: T) -> None:
        """Queue ``item``; :exc:`trio.WouldBlock` if full, :exc:`trio.ClosedResourceError` if closed."""
        if self._closed:
            raise trio.ClosedResourceError("the connection is closing")
        items = self._items
        if items is None:
            items = self._items = collections.deque()
        elif len(items) >= self.capacity:
            raise trio.WouldBlock
        items.append(item)
        if self._writer is not None:
            self._wake_writer()

    async def put(self, item: T) -> None:
        """Queue ``item``, waiting while the queue is full."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                self.put_nowait(item)
            except trio.WouldBlock:
                if self._room is None:
                    self._room = trio.lowlevel.ParkingLot()
                await self._room.park()
            else:
                break
        await trio.lowlevel.cancel_shielded_checkpoint()

    def take(self) -> T | None:
        """The oldest frame (the writer's call), or ``None`` if there is none.

        Not an exception: the writer then waits, and a wait inside an ``except``
        clause would keep the exception (and the frames it names) alive meanwhile.
        """
        if not self._items:
            return None
        item = self._items.popleft()
        if self._room:
            self._room.unpark()
        return item

    async def wait(self) -> None:
        """Wait until a frame is queued or the queue is closed (the writer's call)."""
        if self._items or self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._writer = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort_wait)

    def close(self) -> None:
        """Accept no more frames; the writer still gets the queued ones, waiting senders fail."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._wake_writer()
        if self._room is not None:
            self._room.unpark_all()

    def drain(self) -> list[T]:
        """Take every queued frame at once (to dead-letter what will never be written)."""
        if self._items is None:
            return []
        items = list(self._items)
        self._items.clear()
        return items

    def _wake_writer(self) -> None:
        task, self._writer = self._writer, None
        assert task is not None
        trio.lowlevel.reschedule(task)

    def _abort_wait(self, _: object) -> trio.lowlevel.Abort:
        self._writer = None
        return trio.lowlevel.Abort.SUCCEEDED
