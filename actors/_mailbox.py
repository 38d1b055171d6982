"""The mailbox: a bounded user lane plus a small control lane that is drained first.

Modelled on trio's memory channels (``trio/_channel.py``): ``send`` and
``receive`` are checkpoints, a sender blocked on a full mailbox is parked in
FIFO order and handed a slot by the receiver, and cancellation never loses an
item that was taken. There is exactly one receiver: the actor's own loop.

The control lane carries runtime notices (stop requests, terminated notices,
task failures). It has no bound of its own because only the runtime writes to
it and each writer is bounded (one stop request, one notice per watch); it is
never dropped and always drained before user messages.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import outcome
import trio

from ._messages import MailboxStatistics

T = TypeVar("T")


class Mailbox(Generic[T]):
    """A bounded single-receiver queue with a priority control lane."""

    __slots__ = (
        "_capacity",
        "_closed",
        "_closed_error",
        "_control",
        "_data",
        "_send_tasks",
        "dead_lettered",
        "high_water",
        "processed",
        "receive_task",
    )

    def __init__(self, capacity: int, closed_error: Callable[[], BaseException]) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, not {capacity!r}")
        self._capacity = capacity
        self._closed = False
        self._closed_error = closed_error
        # Made on first use: a message handed straight to a waiting receiver
        # never touches it, so idle actors don't pay for an empty deque.
        self._data: deque[T] | None = None
        self._control: list[object] = []
        self.receive_task: trio.lowlevel.Task | None = None
        # Insertion-ordered, so the longest-waiting sender gets the next free slot.
        self._send_tasks: dict[trio.lowlevel.Task, T] = {}
        self.high_water = 0
        self.processed = 0
        self.dead_lettered = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> bool:
        """True while the receiver is parked waiting for an item."""
        return self.receive_task is not None

    @property
    def depth(self) -> int:
        return 0 if self._data is None else len(self._data)

    def refuse_senders(self) -> None:
        """Refuse new messages but keep the queued ones for the receiver."""
        self._closed = True
        for task in self._send_tasks:
            trio.lowlevel.reschedule(task, outcome.Error(self._closed_error()))
        self._send_tasks.clear()

    def send_nowait(self, item: T) -> None:
        if self._closed:
            raise self._closed_error()
        if self.receive_task is not None:
            task, self.receive_task = self.receive_task, None
            if self.high_water == 0:
                self.high_water = 1
            trio.lowlevel.reschedule(task, outcome.Value(item))
        else:
            data = self._data
            if data is None:
                data = self._data = deque()
            if len(data) >= self._capacity:
                raise trio.WouldBlock
            data.append(item)
            if len(data) > self.high_water:
                self.high_water = len(data)

    async def send(self, item: T) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self.send_nowait(item)
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        task = trio.lowlevel.current_task()
        self._send_tasks[task] = item

        def abort_fn(_: object) -> trio.lowlevel.Abort:
            del self._send_tasks[task]
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort_fn)

    def send_control(self, item: object) -> None:
        """Queue a runtime notice; it is received before any user message."""
        if self.receive_task is not None:
            task, self.receive_task = self.receive_task, None
            trio.lowlevel.reschedule(task, outcome.Value(item))
        else:
            self._control.append(item)

    def poll(self) -> T | object | None:
        """The next item, or ``None`` if there is none (items are never ``None``).

        The actor's loop uses this rather than :meth:`receive_nowait`: it then
        waits outside any ``except`` clause, where a caught :exc:`trio.WouldBlock`
        (with its traceback and frames) would stay alive while the actor idles.
        """
        if self._control:
            return self._control.pop(0)
        data = self._data
        if data:
            item = data.popleft()
            if self._send_tasks:
                task = next(iter(self._send_tasks))
                data.append(self._send_tasks.pop(task))
                trio.lowlevel.reschedule(task)
            return item
        return None

    def receive_nowait(self) -> T | object:
        item = self.poll()
        if item is None:
            raise trio.WouldBlock
        return item

    async def receive(self) -> T | object:
        await trio.lowlevel.checkpoint_if_cancelled()
        item = self.poll()
        if item is None:
            return await self.wait_for_item()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return item

    async def wait_for_item(self) -> T | object:
        """Park the receiver until an item is handed to it (the mailbox is empty)."""
        self.receive_task = trio.lowlevel.current_task()
        return await trio.lowlevel.wait_task_rescheduled(self.abort_receive)  # type: ignore[no-any-return]

    def abort_receive(self, _: object) -> trio.lowlevel.Abort:
        self.receive_task = None
        return trio.lowlevel.Abort.SUCCEEDED

    def close(self) -> list[T]:
        """Refuse further sends; wake blocked senders with the closed error.

        Returns the user messages still queued, for the caller to dead-letter.
        Control notices still queued are discarded: the actor is no longer
        there to act on them.
        """
        self.refuse_senders()
        left = list(self._data or ())
        self._data = None
        self._control.clear()
        return left

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            capacity=self._capacity,
            depth=self.depth,
            high_water=self.high_water,
            processed=self.processed,
            dead_lettered=self.dead_lettered,
            senders_waiting=len(self._send_tasks),
        )
