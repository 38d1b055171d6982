"""One alarm clock per Trio run, for the connections' io tasks (internal).

An io task sleeps between its timers (keepalive, idle timeout, the bound of a strict
close). Sleeping in a cancel scope with a deadline costs a scope and a registration in
Trio's deadline table per wait, and keeps the scope alive in every idle connection's
frame. Instead an io task parks itself and sets an alarm here: one heap of alarms, and
one system task that sleeps until the earliest of them and rings its owner, which
reschedules its own task. The clock's task lives only while some alarm is set, so a run
without connections (or without timers) has none.

An alarm is a list ``[when, serial, owner]``; :func:`cancel_alarm` clears the owner
(the heap drops cancelled alarms lazily, and is rebuilt once most of it is cancelled).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from typing import Any, Protocol

import trio

__all__ = ["Alarm", "Ringer", "cancel_alarm", "set_alarm"]

logger = logging.getLogger(__name__)

#: ``[when, serial, owner]``: ``owner`` is ``None`` once cancelled or rung.
Alarm = list[Any]

# Below this many cancelled alarms the heap is never rebuilt.
_REBUILD_FLOOR = 64


class Ringer(Protocol):
    """What an alarm rings: called in the clock's task, it must not block or raise."""

    def _ring(self, alarm: Alarm) -> None: ...


class _Clock:
    __slots__ = ("_heap", "_live", "_scope", "_serial")

    def __init__(self) -> None:
        self._heap: list[Alarm] = []
        self._live = 0
        self._serial = itertools.count()
        # The scope the clock's task sleeps in: its deadline is the earliest alarm.
        self._scope: trio.CancelScope | None = None

    def set(self, when: float, owner: Ringer) -> Alarm:
        alarm: Alarm = [when, next(self._serial), owner]
        heapq.heappush(self._heap, alarm)
        self._live += 1
        scope = self._scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when
        return alarm

    def cancel(self, alarm: Alarm) -> None:
        if alarm[2] is None:
            return
        alarm[2] = None
        self._live -= 1
        if not self._live and self._scope is not None:
            self._scope.cancel()  # nothing left to wait for: the task goes
        heap = self._heap
        dead = len(heap) - self._live
        if dead > _REBUILD_FLOOR and dead > self._live:
            heap[:] = [a for a in heap if a[2] is not None]
            heapq.heapify(heap)

    async def run(self) -> None:  # noqa: ASYNC910 - a task body: the sleep checkpoints
        heap = self._heap
        try:
            while self._live:
                now = trio.current_time()
                while heap and (heap[0][2] is None or heap[0][0] <= now):
                    alarm = heapq.heappop(heap)
                    owner = alarm[2]
                    if owner is None:
                        continue
                    alarm[2] = None
                    self._live -= 1
                    try:
                        owner._ring(alarm)
                    except Exception:  # a system task's error would end the whole run
                        logger.exception("an alarm's owner failed when rung")
                if not self._live:
                    break
                with trio.CancelScope(deadline=heap[0][0]) as self._scope:
                    await trio.sleep_forever()
                self._scope = None
        finally:
            self._scope = None
            heap.clear()
            if _CLOCK.get(None) is self:
                _CLOCK.set(None)


_CLOCK: trio.lowlevel.RunVar[_Clock | None] = trio.lowlevel.RunVar("transport_alarm_clock")


def set_alarm(when: float, owner: Ringer) -> Alarm:
    """Call ``owner._ring(alarm)`` from the clock's task once ``trio.current_time() >= when``."""
    if when == math.inf:
        raise ValueError("an alarm must be due at a finite time; cancel it instead")
    clock = _CLOCK.get(None)
    if clock is None:
        clock = _Clock()
        _CLOCK.set(clock)
        trio.lowlevel.spawn_system_task(clock.run, name="transport alarm clock")
    return clock.set(when, owner)


def cancel_alarm(alarm: Alarm) -> None:
    """Make sure ``alarm`` does not ring (nothing happens if it rang already)."""
    clock = _CLOCK.get(None)
    if clock is not None:
        clock.cancel(alarm)
    else:
        alarm[2] = None
