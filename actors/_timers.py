"""Keyed timers: messages an actor sends itself later, once or periodically.

Each timer is a task in the actor's own nursery that sleeps on the trio clock
(so tests run them in virtual time with ``autojump_clock``) and delivers its
message as a :class:`~actors._cell.Deliver` notice in the user lane, in order
with the other messages (so a slow tick handler never starves the actor's
mail; on a full mailbox the timer waits for room like any sender). Three rules
make them safe to use from handlers:

* **One timer per key.** Starting a key that is active replaces the old timer.
* **No stale ticks.** Every timer is a fresh record; a tick checks, right
  before dispatch, that its record is still the one registered under its key
  and that the actor is still in the incarnation that started it. A tick of a
  cancelled or replaced timer that was already queued is skipped, never
  delivered.
* **No pile-up.** A timer never has more than one tick waiting in the mailbox:
  it sends the next tick only once the previous one was taken for handling.

Timers die with the actor and are reset when a supervisor restarts it: their
tasks live in the incarnation's nursery, and the incarnation check covers
ticks already queued.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import trio

from ._cell import Control, Deliver
from ._exceptions import ActorStoppedError

if TYPE_CHECKING:
    from ._actor import Actor
    from ._cell import Cell
    from ._messages import StopReason

M = TypeVar("M")
M_contra = TypeVar("M_contra", contravariant=True)

_ATTACHMENT = "timers"


class _Timer:
    """One started timer; its identity is its generation."""

    __slots__ = ("generation", "key", "kind", "scope")

    def __init__(self, key: Hashable, kind: str, generation: int) -> None:
        self.key = key
        self.kind = kind
        self.generation = generation
        self.scope = trio.CancelScope()


class _Table:
    """The timers of one incarnation of one actor (``cell.attachments["timers"]``)."""

    __slots__ = ("generations", "incarnation", "timers")

    def __init__(self, incarnation: int) -> None:
        self.incarnation = incarnation
        self.timers: dict[Hashable, _Timer] = {}
        self.generations = 0


class _Handled(Control):
    """Queued when a tick is dispatched; applied once its handler has returned."""

    __slots__ = ("event",)

    def __init__(self, event: trio.Event) -> None:
        self.event = event

    def apply(self, cell: Cell) -> StopReason | None:
        self.event.set()
        return None


@final
class Timers(Generic[M_contra]):
    """The keyed timers of one actor: ``self.ctx.timers`` inside an :class:`~actors.Actor`.

    A timer sends the actor one of its own messages later, once
    (:meth:`start_single`) or periodically (:meth:`start_fixed_delay`,
    :meth:`start_fixed_rate`). Every timer has a key of your choosing::

        self.ctx.timers.start_fixed_delay("heartbeat", Ping(), 15)
        self.ctx.timers.start_single("idle", IdleTimeout(), 60)  # re-arming: same key

    Guarantees:

    * Starting a key that is already active replaces that timer.
    * After :meth:`cancel` (or a replacement) returns, the old timer's message
      is never handled, even if its tick was already queued.
    * A timer never has more than one tick waiting in the mailbox; a slow
      actor gets fewer ticks, never a backlog.
    * Timers stop with the actor and are all gone after a supervisor restart.
    * Time is the trio clock, so ``autojump_clock`` runs them in virtual time.

    Ticks travel in the user lane, in order with the actor's other messages.
    The methods are synchronous and must be called from the actor's own
    handlers, hooks or tasks.
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    def __repr__(self) -> str:
        return f"<Timers of {self._cell.path}: {len(self._table().timers)} active>"

    def start_single(self, key: Hashable, message: M_contra, delay: float) -> None:
        """Send ``message`` to this actor once, ``delay`` seconds from now.

        The timer stays active (see :meth:`is_active`) until its message is
        handed to the handler. Replaces any timer with the same ``key``.
        """
        _check_delay("delay", delay, allow_zero=True)
        self._start(key, message, "single", delay, 0.0)

    def start_fixed_delay(
        self,
        key: Hashable,
        message: M_contra,
        interval: float,
        initial_delay: float | None = None,
    ) -> None:
        """Send ``message`` repeatedly, with ``interval`` seconds of rest between ticks.

        The first tick comes after ``initial_delay`` (default: ``interval``).
        Each following tick is sent ``interval`` seconds after the handler of
        the previous one has returned (measured when the actor turns back to
        its mailbox). A slow handler therefore stretches the period: with a
        0.5 s handler and a 1 s interval, ticks are handled every 1.5 s.
        Use it for work that must not overlap with itself (heartbeats, polls).
        Replaces any timer with the same ``key``.
        """
        _check_delay("interval", interval, allow_zero=False)
        first = interval if initial_delay is None else initial_delay
        _check_delay("initial_delay", first, allow_zero=True)
        self._start(key, message, "fixed delay", first, interval)

    def start_fixed_rate(
        self,
        key: Hashable,
        message: M_contra,
        interval: float,
        initial_delay: float | None = None,
    ) -> None:
        """Send ``message`` on a fixed grid: at ``start + initial_delay + k * interval``.

        The first tick comes after ``initial_delay`` (default: ``interval``).
        The grid does not drift with handler time: with a 0.5 s handler and a
        1 s interval, ticks are handled every 1 s. When the actor is slower
        than the rate, ticks do not pile up: a grid instant that comes while
        the previous tick is still waiting in the mailbox is skipped, and the
        next tick is sent at the first grid instant after the waiting one was
        taken. So at most one tick per key is ever pending, and after a long
        handler the actor gets one late tick, never a burst of missed ones.
        Replaces any timer with the same ``key``.
        """
        _check_delay("interval", interval, allow_zero=False)
        first = interval if initial_delay is None else initial_delay
        _check_delay("initial_delay", first, allow_zero=True)
        self._start(key, message, "fixed rate", first, interval)

    def cancel(self, key: Hashable) -> None:
        """Cancel the timer with this ``key``, if any; a tick already queued is never handled."""
        timer = self._table().timers.pop(key, None)
        if timer is not None:
            timer.scope.cancel()

    def cancel_all(self) -> None:
        """Cancel every timer of this actor."""
        table = self._table()
        timers, table.timers = table.timers, {}
        for timer in timers.values():
            timer.scope.cancel()

    def is_active(self, key: Hashable) -> bool:
        """True while a timer with this ``key`` is running (a single timer: until handled)."""
        return key in self._table().timers

    @property
    def active_keys(self) -> list[Hashable]:
        """The keys of the running timers, oldest first."""
        return list(self._table().timers)

    # -- internals ----------------------------------------------------------------------

    def _table(self) -> _Table:
        cell = self._cell
        table = cell.attachments.get(_ATTACHMENT)
        if not isinstance(table, _Table) or table.incarnation != cell.incarnation:
            # First use, or a restart: the old incarnation's timer tasks died with it.
            table = _Table(cell.incarnation)
            cell.attachments[_ATTACHMENT] = table
        return table

    def _start(
        self, key: Hashable, message: object, kind: str, first: float, interval: float
    ) -> None:
        cell = self._cell
        if type(message) not in cell.handlers:
            cell.check_message(message)
        hash(key)  # an unhashable key fails here, in the caller's frame
        table = self._table()
        table.generations += 1
        timer = _Timer(key, kind, table.generations)
        incarnation = cell.incarnation
        mailbox = cell.mailbox
        start = trio.current_time()  # delays count from this call, not from the task's start

        def current() -> bool:
            return cell.incarnation == incarnation and table.timers.get(key) is timer

        async def tick(handled: trio.Event | None = None) -> trio.Event:
            """Queue one tick; return an event set when it is taken for handling.

            Ticks travel in the user lane like any message (waiting for room when
            the mailbox is full), so a timer never starves the actor's mail.
            """
            taken = trio.Event()

            def still_wanted() -> bool:
                taken.set()
                if not current():
                    return False
                if kind == "single":
                    del table.timers[key]
                elif handled is not None:
                    mailbox.send_notice(_Handled(handled))
                return True

            await mailbox.send(Deliver(message, still_wanted))
            return taken

        async def run() -> None:  # noqa: ASYNC910 - a task body; ActorStoppedError ends it
            with timer.scope, contextlib.suppress(ActorStoppedError):
                await trio.sleep_until(start + first)
                if kind == "single":
                    await tick()
                elif kind == "fixed delay":
                    while True:
                        handled = trio.Event()
                        await (await tick(handled)).wait()
                        await handled.wait()
                        await trio.sleep(interval)
                else:
                    due = start + first
                    while True:
                        await (await tick()).wait()
                        due += interval
                        now = trio.current_time()
                        if due <= now:
                            # Instants that came while the tick waited are skipped.
                            due += (math.floor((now - due) / interval) + 1) * interval
                        await trio.sleep_until(due)

        old = table.timers.pop(key, None)
        if old is not None:
            old.scope.cancel()
        cell.start_task(run, (), f"timer {key!r}")
        table.timers[key] = timer


def timers_of(actor: Actor[M]) -> Timers[M]:
    """The timers of a running actor (what ``actor.ctx.timers`` returns)."""
    return cell_timers(actor.ctx._cell)


def cell_timers(cell: Cell) -> Timers[Any]:
    """The timers of the actor running in ``cell``."""
    return Timers(cell)


def active_timer_keys(cell: Cell) -> list[Hashable]:
    """Keys of the timers running in ``cell`` (for introspection); never creates state."""
    table = cell.attachments.get(_ATTACHMENT)
    if not isinstance(table, _Table) or table.incarnation != cell.incarnation:
        return []
    return list(table.timers)


def _check_delay(what: str, value: float, *, allow_zero: bool) -> None:
    if not (value > 0 or (allow_zero and value == 0)) or math.isinf(value):
        bound = "zero or more" if allow_zero else "more than zero"
        raise ValueError(f"timer {what} must be a finite number of seconds, {bound}, not {value!r}")
