"""A one-shot reply slot for ``ask``: cheaper than opening a channel per call."""

from __future__ import annotations

from typing import Generic, TypeVar

import outcome
import trio

R = TypeVar("R")


class Expired(Exception):
    """Raised by :meth:`ReplySlot.wait` when the ask's deadline passed first."""


class ReplySlot(Generic[R]):
    """Holds the outcome of one ask; the asking task parks on it.

    ``settle`` is called exactly once by the runtime (reply, handler error, or
    the target stopping). If the asker already gave up, ``settle`` returns
    False and the caller dead-letters the late reply.
    """

    __slots__ = ("_outcome", "_task", "abandoned", "stashed")

    def __init__(self) -> None:
        self._outcome: outcome.Outcome[R] | None = None
        self._task: trio.lowlevel.Task | None = None
        self.abandoned = False
        #: Set while the ask is in its target's stash: the handler that stashed
        #: it does not answer it (see ``_stash.py``).
        self.stashed = False

    @property
    def settled(self) -> bool:
        return self._outcome is not None

    def settle(self, result: outcome.Outcome[R]) -> bool:
        if self.abandoned:
            return False
        if self.stashed:
            return True
        if self._outcome is not None:
            return True
        self._outcome = result
        if self._task is not None:
            task, self._task = self._task, None
            trio.lowlevel.reschedule(task)
        return True

    def expire(self) -> None:
        """The deadline passed: wake the asker with :exc:`Expired`; later replies are late."""
        if self._outcome is None and not self.abandoned:
            self.abandoned = True
            self._outcome = outcome.Error(Expired())
            if self._task is not None:
                task, self._task = self._task, None
                trio.lowlevel.reschedule(task)

    def result(self) -> R:
        """The settled outcome's value, or raise its error (it may be read again)."""
        settled = self._outcome
        assert settled is not None
        if isinstance(settled, outcome.Error):
            raise settled.error
        assert isinstance(settled, outcome.Value)
        value: R = settled.value
        return value

    async def wait(self) -> R:
        """Wait for the outcome and return its value (raising the handler's exception)."""
        if self._outcome is None:
            self._task = trio.lowlevel.current_task()

            def abort_fn(_: object) -> trio.lowlevel.Abort:
                self._task = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort_fn)
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return self.result()
