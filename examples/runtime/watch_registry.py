"""A worker pool found by name and by group, and a monitor that watches its members.

Run it from the repository root: ``python -m examples.runtime.watch_registry``.

Each worker registers a name and joins the group ``"workers"`` when it starts. Both belong to
the supervised actor, not to one incarnation: a restart keeps them, stopping for good removes
them. The monitor watches every member and hears of final stops only, never of restarts.
Time is virtual (``MockClock``): the program finishes at once.
"""

from __future__ import annotations

import itertools
from typing import Never

import attrs
import trio
import trio.testing

import actors

from .transcript import log_runtime_to_stdout

GROUP = "workers"


@attrs.frozen
class Square(actors.Request[int]):
    number: int


@attrs.frozen
class Crash:
    pass


@attrs.define(eq=False)
class Worker(actors.Actor[Square | Crash]):
    async def on_start(self) -> None:
        system, me = self.ctx.system, self.ctx.ref
        system.register(self.ctx.name, me)  # again after a restart: no-op
        system.join_group(GROUP, me)  # likewise: one membership

    @actors.handler
    def square(self, message: Square) -> int:
        return message.number**2

    @actors.handler
    def crash(self, message: Crash) -> None:
        raise RuntimeError(f"{self.ctx.name} crashed on purpose")


@attrs.frozen
class WatchGroup:
    group: str


@attrs.frozen
class Watch:
    ref: actors.ActorRef[Never]


@attrs.frozen
class Watched(actors.Request[list[str]]):
    pass


@attrs.define(eq=False)
class Monitor(actors.Actor[WatchGroup | Watch | Watched | actors.Terminated]):
    watched: dict[str, actors.ActorRef[Never]] = attrs.Factory(dict)

    @actors.handler
    def watch_group(self, message: WatchGroup) -> None:
        for ref in self.ctx.system.group_members(message.group):
            self.watch(Watch(ref))  # watching a ref twice is one watch

    @actors.handler
    def watch(self, message: Watch) -> None:
        self.ctx.watch(message.ref)
        self.watched[message.ref.path] = message.ref

    @actors.handler
    def watched_paths(self, message: Watched) -> list[str]:
        return sorted(self.watched)

    @actors.handler
    def terminated(self, message: actors.Terminated) -> None:
        self.watched.pop(message.ref.path, None)
        print(f"   monitor: Terminated({message.ref.path}, {message.reason!r})")


def spec(name: str) -> actors.ChildSpec[Square | Crash]:
    return actors.ChildSpec(name, Worker, restart=actors.RestartType.TRANSIENT)


def show_changes(feed: actors.GroupFeed) -> None:
    """Print the membership changes the feed has buffered (without waiting for more)."""
    while True:
        try:
            change = feed.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return
        if isinstance(change, actors.GroupJoined):
            print(f"   feed: {change.ref.path} joined {change.group!r}")
        else:
            print(f"   feed: {change.ref.path} left {change.group!r} ({change.reason!r})")


def paths(refs: list[actors.ActorRef[Never]]) -> list[str]:
    return [ref.path for ref in refs]


async def main() -> None:
    log_runtime_to_stdout(stamped=False)
    async with actors.open_system("registry") as system:
        with system.group_changes(GROUP) as feed:
            print("1. start a pool of three workers; each registers its name and joins the group")
            pool = await system.spawn(
                actors.Supervisor([spec("worker-1"), spec("worker-2"), spec("worker-3")]),
                name="pool",
            )
            show_changes(feed)
            monitor = await system.spawn(Monitor(), name="monitor")
            await monitor.tell(WatchGroup(GROUP))
            print(f"   monitor watches {await monitor.ask(Watched())}")

            print("2. requests round-robin over the group, typed by handles=")
            members = system.group_members(GROUP, handles=Square)
            for number, worker in zip(range(1, 7), itertools.cycle(members)):
                print(f"   {worker.path}: {number}² = {await worker.ask(Square(number))}")

            print("3. worker-2 crashes and is restarted: same ref, same name, same group")
            before = system.lookup("worker-2")
            crashing = system.lookup("worker-2", handles=Crash)
            assert crashing is not None
            await crashing.tell(Crash())
            worker_2 = system.lookup("worker-2", handles=Square)
            assert worker_2 is not None
            print(f"   the new incarnation answers: 7² = {await worker_2.ask(Square(7))}")
            print(f"   lookup('worker-2') is the same ref: {system.lookup('worker-2') is before}")
            print(f"   group: {paths(system.group_members(GROUP))}")
            show_changes(feed)
            print(f"   monitor watches {await monitor.ask(Watched())} (no Terminated)")

            print("4. worker-3 is stopped for good: its name and membership go")
            worker_3 = system.lookup("worker-3")
            assert worker_3 is not None
            await pool.ask(actors.StopChild("worker-3"))
            print(f"   monitor watches {await monitor.ask(Watched())}")
            print(f"   lookup('worker-3') -> {system.lookup('worker-3')}")
            show_changes(feed)

            print("5. watching an actor that has already stopped: the notice comes at once")
            await monitor.tell(Watch(worker_3))
            print(f"   monitor watches {await monitor.ask(Watched())}")

            print("6. a late worker: wait_registered() returns when the name appears")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(actors.start_child, pool, spec("worker-4"))
                with trio.fail_after(5):
                    late = await system.wait_registered("worker-4", handles=Square)
                print(f"   found {late.path}: 8² = {await late.ask(Square(8))}")
            show_changes(feed)

            print("7. from outside any actor, actors.watching() gives a channel of notices")
            await monitor.stop()
            with actors.watching(*system.group_members(GROUP)) as terminated:
                await pool.stop()
                async for notice in terminated:
                    print(f"   Terminated({notice.ref.path}, {notice.reason!r})")
            show_changes(feed)
            print(f"   group {GROUP!r}: {paths(system.group_members(GROUP))}")


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
