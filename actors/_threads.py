"""The way in from plain OS threads: a bounded, thread-safe queue per actor, drained in batches.

``ref.tell_from_thread(message)`` does not make a round trip to the trio
thread per message. It appends the message to the actor's :class:`ThreadInbox`
(a deque behind a ``threading.Lock``, bounded by the actor's mailbox
capacity) and returns; only the put that finds the inbox idle wakes trio,
with one ``TrioToken.run_sync_soon``. On the trio thread a drain task takes
everything queued at once and moves it into the mailbox, in order, waiting
for room there like any ``tell`` (so backpressure reaches the threads: while
the inbox is full a blocking put waits, a non-blocking one raises
:exc:`trio.WouldBlock`). A thread's messages keep their order, since one
deque feeds one mailbox.

At most the inbox's capacity waits in it, plus one batch being moved into the
mailbox. A message that is accepted and then finds the actor stopped goes to
dead letters (reason ``STOPPED``); a put to an actor that has already stopped
raises :exc:`ActorStoppedError` in the thread.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

import trio

from ._exceptions import ActorStoppedError, MailboxFullError, SystemClosedError
from ._messages import DeadLetterReason

if TYPE_CHECKING:
    from ._cell import Cell

_creating = threading.Lock()


class ThreadInbox:
    """One actor's queue for messages from OS threads (see the module docstring)."""

    __slots__ = (
        "_accepted",
        "_cell",
        "_closed",
        "_delivered",
        "_items",
        "_lock",
        "_pending",
        "_progress",
        "_room",
        "_scheduled",
        "capacity",
    )

    def __init__(self, cell: Cell) -> None:
        self._cell = cell
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._items: deque[object] = deque()
        # Taken from _items by the drain task, not yet in the mailbox (oldest first).
        self._pending: deque[object] = deque()
        self._scheduled = False  # a drain is scheduled or running
        self._closed = False
        self._accepted = 0
        self._delivered = 0
        self._progress = trio.lowlevel.ParkingLot()
        self.capacity = cell.mailbox.statistics().capacity

    @staticmethod
    def of(cell: Cell) -> ThreadInbox:
        """The inbox of ``cell``, made on first use (from any thread)."""
        inbox = cell.thread_inbox
        if inbox is None:
            with _creating:
                inbox = cell.thread_inbox
                if inbox is None:
                    inbox = cell.thread_inbox = ThreadInbox(cell)
        return inbox

    @property
    def accepted(self) -> int:
        """How many messages the inbox has accepted so far."""
        with self._lock:
            return self._accepted

    def put(self, message: object, *, block: bool) -> None:
        """Queue ``message`` for the actor (called from an OS thread)."""
        cell = self._cell
        with self._lock:
            while True:
                if self._closed or cell.mailbox.closed:
                    raise cell.stopped_error()
                if len(self._items) < self.capacity:
                    break
                if not block:
                    raise trio.WouldBlock
                self._room.wait()
            self._items.append(message)
            self._accepted += 1
            if self._scheduled:
                return
            self._scheduled = True
        try:
            cell.system.token.run_sync_soon(self._start_drain)
        except trio.RunFinishedError as exc:
            self._close()
            raise ActorStoppedError(
                f"actor {cell.path} is gone: its actor system has finished"
            ) from exc

    async def wait_delivered(self, count: int) -> None:
        """Wait (on the trio thread) until the first ``count`` accepted messages are in the mailbox.

        Returns early if the inbox closes: what it held then went to the
        mailbox (a draining stop) or to dead letters.
        """
        while self._delivered < count and not self._closed:
            await self._progress.park()
        await trio.lowlevel.checkpoint()

    def _start_drain(self) -> None:
        cell = self._cell
        try:
            nursery = cell.system._open_nursery("deliver messages from threads")
        except SystemClosedError:
            self._dead_letter(self._close())
            return
        nursery.start_soon(self._drain, name=f"actors:from-threads>{cell.path}")

    async def _drain(self) -> None:  # noqa: ASYNC910 - a task body, not an API
        """Move batches into the mailbox until the inbox is empty (a task on the trio thread).

        Messages go in with ``send_nowait`` while there is room; when the
        mailbox is full the task waits in line with the other senders until
        it is half empty, so trio wakes it once per half a mailbox, not once
        per message.
        """
        mailbox = self._cell.mailbox
        pending = self._pending
        try:
            while True:
                with self._lock:
                    if not self._items:
                        self._scheduled = False
                        return  # noqa: ASYNC910 - a task body; the loop checkpoints per batch
                    pending.extend(self._items)
                    self._items.clear()
                    self._room.notify_all()
                while pending:
                    try:
                        mailbox.send_nowait((pending[0], None, None))
                    except trio.WouldBlock:
                        await mailbox.wait_for_room()
                        continue
                    except MailboxFullError as exc:  # the actor's overflow policy is FAIL
                        self._cell.dead_letter(pending[0], None, DeadLetterReason.DROPPED, exc)
                    pending.popleft()
                    self._delivered += 1
                if self._progress:
                    self._progress.unpark_all()
                await trio.lowlevel.checkpoint()
        except ActorStoppedError:
            pass
        finally:
            if pending or self._scheduled:  # stopped, cancelled with the system, or an error
                left = list(pending)
                pending.clear()
                self._dead_letter(left + self._close())

    def absorb(self) -> None:
        """A draining stop begins: move everything accepted into the mailbox, then refuse.

        Called on the trio thread before the mailbox refuses senders, so a
        draining stop handles what threads had already handed over (in order,
        after what was queued in the mailbox; no bound applies: at most the
        inbox's capacity and one batch).
        """
        left = list(self._pending)
        self._pending.clear()
        left += self._close()
        self._delivered += len(left)
        self._cell.mailbox.put_back([(message, None, None) for message in left], front=False)

    def _close(self) -> list[object]:
        """Refuse further puts, wake waiting threads; returns what was still queued."""
        with self._lock:
            self._closed = True
            self._scheduled = False
            left = list(self._items)
            self._items.clear()
            self._room.notify_all()
        if self._progress:
            self._progress.unpark_all()
        return left

    def _dead_letter(self, messages: list[object]) -> None:
        for message in messages:
            self._cell.dead_letter(message, None, DeadLetterReason.STOPPED)
