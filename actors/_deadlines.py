"""Ask deadlines without a cancel scope per ask.

Entering and leaving a cancel scope with a deadline costs several
microseconds, more than the rest of an ask together. Instead, each pending
ask is registered here, and one watcher task per system expires the overdue
ones. Pending asks are kept in one insertion-ordered dict per timeout value,
so each dict is also ordered by deadline: the watcher only ever looks at the
head of each dict, and a finished ask is removed in O(1).
"""

from __future__ import annotations

import math
from typing import Any

import trio

from ._reply import ReplySlot


class AskDeadlines:
    """Registry of pending asks and the watcher task that expires them."""

    __slots__ = ("_next", "_pending", "_scope")

    def __init__(self) -> None:
        self._pending: dict[float, dict[ReplySlot[Any], float]] = {}
        self._next = math.inf
        self._scope: trio.CancelScope | None = None

    def add(self, slot: ReplySlot[Any], timeout: float) -> None:
        deadline = trio.current_time() + timeout
        pending = self._pending.get(timeout)
        if pending is None:
            pending = self._pending[timeout] = {}
        pending[slot] = deadline
        if deadline < self._next:
            self._next = deadline
            if self._scope is not None:
                self._scope.deadline = deadline

    def remove(self, slot: ReplySlot[Any], timeout: float) -> None:
        self._pending[timeout].pop(slot, None)

    async def watch(self) -> None:
        """Run forever (in the system's nursery), expiring overdue asks."""
        while True:
            now = trio.current_time()
            upcoming = math.inf
            for pending in self._pending.values():
                while pending:
                    slot, deadline = next(iter(pending.items()))
                    if deadline > now:
                        upcoming = min(upcoming, deadline)
                        break
                    del pending[slot]
                    slot.expire()
            self._next = upcoming
            with trio.CancelScope(deadline=upcoming) as self._scope:
                await trio.sleep_forever()
            self._scope = None
