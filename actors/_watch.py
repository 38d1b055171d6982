"""Watching: a :class:`Terminated` notice when a watched actor stops for good.

An actor watches another with ``self.ctx.watch(ref)``; when the watched actor
stops for good (restarts by a supervisor do not count) the watcher receives
``Terminated(ref, reason)`` on its control lane, handled by an ordinary
``@handler``. Code outside actors uses the scoped form :func:`watching`.

Every runtime extension that must react to an actor stopping (watches, the
name registry, process groups) hangs its hook on the watched cell through
:func:`add_stop_hook`: one termination callback per cell gathers them all, so
removing a hook is O(1) and a cell that stops holds no stale callbacks.

A watch lives as long as the incarnation of the watcher that made it: it ends
when the watcher stops (its hooks on the watched cells are removed then), and
a restarted watcher starts with no watches (its new ``on_start`` watches
again), like a new Erlang process after a restart.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, final

import attrs
import trio

from ._actor import resolve_handler
from ._cell import Cell, Deliver, State
from ._exceptions import ActorStoppedError, UnhandledMessageError
from ._messages import StopReason

if TYPE_CHECKING:
    from typing import Never

    from ._context import ActorContext
    from ._ref import ActorRef

logger = logging.getLogger("actors")


@final
@attrs.frozen
class Terminated:
    """Sent to each watcher of an actor once that actor has stopped for good.

    ``ref`` is the watched actor's ref (compare it with ``is`` or ``==`` to the
    ref you watched) and ``reason`` its stop reason: :class:`Normal`,
    :class:`Failed` (with the exception) or :class:`Cancelled`. A watching
    actor must accept it: add ``Terminated`` to its ``Actor[...]`` union and
    give it a ``@handler``::

        @attrs.define(eq=False)
        class Guard(actors.Actor[Start | actors.Terminated]):
            @actors.handler
            def on_terminated(self, message: actors.Terminated) -> None:
                log.warning("%s stopped: %r", message.ref.path, message.reason)

    It travels on the control lane: never dropped, ahead of queued messages.
    A supervisor restarting the watched actor does not send it.
    """

    ref: ActorRef[Never]
    reason: StopReason


# -- stop hooks: one termination callback per cell ------------------------------------------

#: A hook called with the stop reason once its cell has stopped for good.
StopHook = Callable[[StopReason], None]


class StopHooks:
    """The stop hooks of one cell, behind the single termination callback it registers."""

    __slots__ = ("hooks",)

    def __init__(self) -> None:
        self.hooks: dict[object, StopHook] = {}

    def __call__(self, cell: Cell, reason: StopReason) -> None:
        if cell.stop_hooks is self:
            cell.stop_hooks = None
        hooks, self.hooks = self.hooks, {}
        for hook in hooks.values():
            try:
                hook(reason)
            except Exception:
                logger.exception(
                    "a stop hook of %s raised", cell.path, extra={"actor_path": cell.path}
                )


def add_stop_hook(cell: Cell, key: object, hook: StopHook) -> None:
    """Call ``hook(reason)`` once ``cell`` has stopped for good; at once if it has.

    ``key`` identifies the hook for :func:`remove_stop_hook`; adding a second
    hook under the same key replaces the first.
    """
    if cell.state is State.STOPPED:
        assert cell.reason is not None
        hook(cell.reason)
        return
    hooks = cell.stop_hooks
    if hooks is None:
        hooks = cell.stop_hooks = StopHooks()
        cell.add_termination_callback(hooks)
    hooks.hooks[key] = hook


def remove_stop_hook(cell: Cell, key: object) -> None:
    """Remove the hook added under ``key`` (nothing happens if there is none)."""
    hooks = cell.stop_hooks
    if hooks is None or hooks.hooks.pop(key, None) is None or hooks.hooks:
        return
    cell.stop_hooks = None
    cell.remove_termination_callback(hooks)


def stop_hook_count(cell: Cell) -> int:
    """How many stop hooks ``cell`` carries (for tests and statistics)."""
    hooks = cell.stop_hooks
    return 0 if hooks is None else len(hooks.hooks)


# -- watches made by actors -------------------------------------------------------------------

_LIVE = (State.STARTING, State.RUNNING)


class Watcher:
    """The watches one incarnation of an actor has made, by watched cell."""

    __slots__ = ("cell", "incarnation", "watches")

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.incarnation = cell.incarnation
        self.watches: dict[Cell, _Watch] = {}

    def end(self, _reason: StopReason | None = None) -> None:
        """Drop every watch (the watcher stopped, or restarted as a new incarnation)."""
        if self.cell.watcher is self:
            self.cell.watcher = None
            remove_stop_hook(self.cell, Watcher)
        for watch in self.watches.values():
            watch.wanted = False
            remove_stop_hook(watch.target, watch)
        self.watches.clear()

    def forget(self, watch: _Watch) -> None:
        if self.watches.get(watch.target) is watch:
            del self.watches[watch.target]
            if not self.watches:
                self.end()


@attrs.define(eq=False)
class _Watch:
    watcher: Watcher
    target: Cell
    wanted: bool = True

    def fire(self, reason: StopReason) -> None:
        """The target stopped: queue the notice, unless the watch has lapsed."""
        cell = self.watcher.cell
        if self.wanted and cell.state in _LIVE and cell.incarnation == self.watcher.incarnation:
            notice = Terminated(self.target.ref, reason)
            cell.mailbox.send_notice(Deliver(notice, still_wanted=self.take))
        else:
            self.wanted = False
            self.watcher.forget(self)

    def take(self) -> bool:
        """Called just before the notice is handled: deliver it only if still wanted."""
        wanted = self.wanted and self.watcher.cell.incarnation == self.watcher.incarnation
        self.wanted = False
        self.watcher.forget(self)
        return wanted


def _current_watcher(cell: Cell) -> Watcher:
    watcher = cell.watcher
    if watcher is not None and watcher.incarnation != cell.incarnation:
        watcher.end()  # left over from before a restart
        watcher = None
    if watcher is None:
        watcher = cell.watcher = Watcher(cell)
        add_stop_hook(cell, Watcher, watcher.end)
    return watcher


def watch_cell(cell: Cell, target: Cell) -> None:
    """Make ``cell`` receive ``Terminated`` when ``target`` stops (see :func:`watch`)."""
    if not (Terminated in cell.handlers or resolve_handler(cell.handlers, Terminated)):
        raise UnhandledMessageError(
            f"actor {cell.path} ({type(cell.actor).__qualname__}) cannot watch {target.path}: "
            "it has no handler for Terminated. Add actors.Terminated to its Actor[...] "
            "union and give it an @actors.handler"
        )
    if target is cell:
        raise ValueError(
            f"actor {cell.path} tried to watch itself; it would never see the notice. "
            "Its own on_stop hook runs when it stops"
        )
    if cell.state not in _LIVE:
        raise ActorStoppedError(
            f"actor {cell.path} is {cell.state.value}; it cannot watch any more"
        )
    watcher = _current_watcher(cell)
    if target in watcher.watches:
        return
    watch = watcher.watches[target] = _Watch(watcher, target)
    add_stop_hook(target, watch, watch.fire)


def unwatch_cell(cell: Cell, target: Cell) -> None:
    """Stop ``cell`` watching ``target`` (see :func:`unwatch`)."""
    watcher = cell.watcher
    if watcher is None or watcher.incarnation != cell.incarnation:
        return
    watch = watcher.watches.get(target)
    if watch is None:
        return
    watch.wanted = False
    remove_stop_hook(target, watch)
    watcher.forget(watch)


def watch(ctx: ActorContext[Terminated], ref: ActorRef[Never]) -> None:
    """Have the actor of ``ctx`` receive ``Terminated(ref, reason)`` once ``ref`` stops for good.

    If the actor behind ``ref`` has already stopped, the notice is queued at
    once. Watching the same ref twice is one watch (one notice). Raises
    :exc:`UnhandledMessageError` if the watching actor has no handler for
    :class:`Terminated`, and :exc:`ActorStoppedError` if it is stopping.
    This is ``ActorContext.watch``.
    """
    watch_cell(ctx._cell, ref._cell)


def unwatch(ctx: ActorContext[Never], ref: ActorRef[Never]) -> None:
    """Stop watching ``ref``; a :class:`Terminated` already queued for it is discarded.

    Unwatching a ref that is not watched does nothing. This is
    ``ActorContext.unwatch``.
    """
    unwatch_cell(ctx._cell, ref._cell)


# -- the scoped form for code outside actors ---------------------------------------------------


@contextlib.contextmanager
def watching(*refs: ActorRef[Never]) -> Iterator[trio.MemoryReceiveChannel[Terminated]]:
    """Watch ``refs`` for the duration of the ``with`` block, from any task.

    Yields a receive channel that gets one :class:`Terminated` per distinct
    actor as it stops for good (at once for one that has already stopped);
    once every watched actor has stopped, the channel ends
    (:exc:`trio.EndOfChannel`), so ``async for`` loops end too. Its buffer
    holds one notice per actor, so the runtime never waits on the reader and
    nothing is dropped. Leaving the block removes the watches::

        with actors.watching(worker) as terminated:
            await worker.tell(Job())
            reason = (await terminated.receive()).reason

    Must be called from the actor system's trio thread.
    """
    cells = list(dict.fromkeys(ref._cell for ref in refs))
    for cell in cells:
        cell.system._check_thread("actors.watching()")
    send, receive = trio.open_memory_channel[Terminated](len(cells))
    pending = set(cells)
    key = object()

    def hook_for(cell: Cell) -> StopHook:
        def hook(reason: StopReason) -> None:
            pending.discard(cell)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                send.send_nowait(Terminated(cell.ref, reason))
            if not pending:
                send.close()

        return hook

    try:
        if not cells:
            send.close()
        for cell in cells:
            add_stop_hook(cell, key, hook_for(cell))
        yield receive
    finally:
        for cell in pending:
            remove_stop_hook(cell, key)
        send.close()
