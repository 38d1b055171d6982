"""Keyed timers: a heartbeat at a fixed rate or with a fixed delay, and a debounce.

Run it from the repository root: ``python -m examples.runtime.timers``.

A fixed-rate timer keeps a grid; a fixed-delay timer rests after each handled tick; a slow
actor gets one late tick, never a burst. Re-arming a single-shot timer under the same key
replaces it, which is all a debounce needs; a cancelled tick is never handled.
Time is virtual (``MockClock``): the program finishes at once.
"""

from __future__ import annotations

from typing import Literal

import attrs
import trio
import trio.testing

import actors

from .transcript import stamp


@attrs.frozen
class Beat:
    pass


@attrs.define(eq=False)
class Heartbeat(actors.Actor[Beat]):
    """Beats every second; each beat takes ``work`` seconds to handle."""

    mode: Literal["fixed rate", "fixed delay"]
    work: float
    handled_at: list[float]  # the caller's list: readable while the actor is busy

    async def on_start(self) -> None:
        if self.mode == "fixed rate":
            self.ctx.timers.start_fixed_rate("heartbeat", Beat(), interval=1.0)
        else:
            self.ctx.timers.start_fixed_delay("heartbeat", Beat(), interval=1.0)

    @actors.handler
    async def beat(self, message: Beat) -> None:
        self.handled_at.append(trio.current_time())
        await trio.sleep(self.work)


@attrs.frozen
class Typed:
    text: str


@attrs.frozen
class Escape:
    pass


@attrs.frozen
class Search:
    text: str


@attrs.define(eq=False)
class SearchBox(actors.Actor[Typed | Escape | Search]):
    """Searches once the user has stopped typing for ``quiet`` seconds."""

    quiet: float = 0.3

    @actors.handler
    def typed(self, message: Typed) -> None:
        # Same key: the pending search (if any) is replaced, never delivered.
        self.ctx.timers.start_single("search", Search(message.text), self.quiet)

    @actors.handler
    def escape(self, message: Escape) -> None:
        self.ctx.timers.cancel("search")
        print(f"{stamp()} search box: escape, pending search cancelled")

    @actors.handler
    def search(self, message: Search) -> None:
        print(f"{stamp()} search box: searching for {message.text!r}")


async def heartbeats(system: actors.ActorSystem) -> None:
    runs: list[tuple[Literal["fixed rate", "fixed delay"], float]] = [
        ("fixed rate", 0.3),
        ("fixed delay", 0.3),
        ("fixed rate", 2.5),
    ]
    for mode, work in runs:
        start = trio.current_time()
        handled_at: list[float] = []
        heart = await system.spawn(Heartbeat(mode, work, handled_at))
        await trio.sleep(7.5)
        await heart.stop()
        shown = ", ".join(f"{t - start:.1f}" for t in handled_at)
        print(f"{mode:>11}, 1s interval, {work}s handler: beats handled at {shown}")


async def typing(system: actors.ActorSystem) -> None:
    box = await system.spawn(SearchBox(), name="search-box")
    script: list[tuple[float, Typed | Escape]] = [
        (0.1, Typed("t")),
        (0.1, Typed("tr")),
        (0.1, Typed("tri")),
        (0.1, Typed("trio")),
        (1.0, Typed("trio a")),
        (0.2, Typed("trio ac")),
        (0.1, Escape()),
        (1.0, Typed("trio actors")),
    ]
    for pause, keystroke in script:
        await trio.sleep(pause)
        print(f"{stamp()} user: {keystroke}")
        await box.tell(keystroke)
    await trio.sleep(1)


async def main() -> None:
    async with actors.open_system("timers") as system:
        await typing(system)
        print()
        await heartbeats(system)


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
