"""The name registry and process groups: uniqueness, waiting, automatic removal, feeds."""

from __future__ import annotations

from typing import Never

import attrs
import pytest
import trio
import trio.testing

import actors
from actors._watch import stop_hook_count, watch
from tests.messages import Add, Counter, Record, Recorder, Total


@attrs.define(eq=False)
class SlowToStop(actors.Actor[Add]):
    """Takes two (virtual) seconds in on_stop, so a test can look at it while it stops."""

    @actors.handler
    def add(self, message: Add) -> None:
        pass

    async def on_stop(self, reason: actors.StopReason) -> None:
        await trio.sleep(2)


@attrs.frozen
class WatchNamed(actors.Request[None]):
    name: str


@attrs.define(eq=False)
class NameChecker(actors.Actor[WatchNamed | actors.Terminated]):
    """Watches a named actor and records what the name resolves to when the notice arrives."""

    seen: list[actors.ActorRef[Never] | None]
    name: str = ""

    @actors.handler
    def watch_named(self, message: WatchNamed) -> None:
        self.name = message.name
        ref = self.ctx.system.lookup(message.name)
        assert ref is not None
        watch(self.ctx, ref)

    @actors.handler
    def terminated(self, message: actors.Terminated) -> None:
        self.seen.append(self.ctx.system.lookup(self.name))


# -- the registry -----------------------------------------------------------------------------


async def test_register_and_lookup(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    assert system.lookup("counter") is None
    system.register("counter", counter)
    assert system.lookup("counter") is counter
    system.register("counter", counter)  # the same ref again: nothing changes
    system.register("tally", counter)  # a second name for the same actor
    assert system.lookup("tally") is counter


async def test_lookup_with_handles_gives_a_typed_ref_or_a_clear_error(
    system: actors.ActorSystem,
) -> None:
    system.register("counter", await system.spawn(Counter()))
    counter = system.lookup("counter", handles=Total)
    assert counter is not None
    assert await counter.ask(Total()) == 0
    with pytest.raises(actors.UnhandledMessageError, match=r"registered as 'counter'.*no handler"):
        system.lookup("counter", handles=Record)
    assert system.lookup("nobody", handles=Total) is None


async def test_a_taken_name_is_refused(system: actors.ActorSystem) -> None:
    first = await system.spawn(Counter(), name="first")
    second = await system.spawn(Counter(), name="second")
    system.register("main", first)
    with pytest.raises(actors.NameTakenError, match="'main' is already registered to actor /first"):
        system.register("main", second)
    assert system.lookup("main") is first


async def test_names_disappear_when_the_actor_stops(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    system.register("counter", counter)
    system.register("tally", counter)
    await counter.stop()
    assert system.lookup("counter") is None
    assert system.lookup("tally") is None
    replacement = await system.spawn(Counter())
    system.register("counter", replacement)  # the name is free again
    assert system.lookup("counter") is replacement


async def test_lookup_while_stopping_returns_the_ref_until_stopped(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    slow = await system.spawn(SlowToStop())
    system.register("slow", slow)
    slow.request_stop()
    await trio.sleep(1)  # on_stop is running
    assert not slow.is_alive
    assert system.lookup("slow") is slow
    await slow.wait_stopped()
    assert system.lookup("slow") is None


async def test_the_name_is_gone_before_watchers_hear_of_the_stop(
    system: actors.ActorSystem,
) -> None:
    seen: list[actors.ActorRef[Never] | None] = []
    counter = await system.spawn(Counter())
    system.register("counter", counter)
    checker = await system.spawn(NameChecker(seen))
    await checker.ask(WatchNamed("counter"))
    await counter.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert seen == [None]


async def test_unregister_frees_the_name_and_leaves_no_hook(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    callbacks_before = list(counter._cell.on_terminated)
    system.register("counter", counter)
    system.unregister("counter")
    assert system.lookup("counter") is None
    assert stop_hook_count(counter._cell) == 0
    assert counter._cell.on_terminated == callbacks_before
    system.unregister("counter")  # a free name: nothing happens
    await counter.tell(Add())  # the actor keeps running
    assert await counter.ask(Total()) == 1


async def test_stopped_actors_and_foreign_refs_cannot_be_registered(
    system: actors.ActorSystem,
) -> None:
    counter = await system.spawn(Counter(), name="gone")
    await counter.stop()
    with pytest.raises(actors.ActorStoppedError, match="actor /gone has stopped"):
        system.register("gone", counter)
    async with actors.open_system("other") as other:
        stranger = await other.spawn(Counter())
        with pytest.raises(ValueError, match="belongs to actor system 'other'"):
            system.register("stranger", stranger)
    with pytest.raises(ValueError, match="non-empty string"):
        system.register("", await system.spawn(Counter()))


async def test_wait_registered_waits_for_the_name(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    found: list[actors.ActorRef[Total]] = []

    async def waiter() -> None:
        found.append(await system.wait_registered("late", handles=Total))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        nursery.start_soon(waiter)
        await trio.sleep(3)
        assert found == []
        counter = await system.spawn(Counter())
        system.register("late", counter)
    assert found == [counter, counter]
    assert trio.current_time() == pytest.approx(3)
    assert await system.wait_registered("late") is counter  # at once when taken
    assert system._registry.waiting == {}


async def test_wait_registered_is_bounded_by_the_caller(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(trio.TooSlowError):
        with trio.fail_after(5):
            await system.wait_registered("never")
    assert system._registry.waiting == {}  # the cancelled waiter left nothing


# -- process groups ---------------------------------------------------------------------------


async def test_join_members_and_leave(system: actors.ActorSystem) -> None:
    first = await system.spawn(Counter())
    second = await system.spawn(Counter())
    assert system.group_members("workers") == []
    system.join_group("workers", first)
    system.join_group("workers", second)
    system.join_group("workers", first)  # one membership
    system.join_group("auditors", second)
    assert system.group_members("workers") == [first, second]
    assert system.group_names() == ["workers", "auditors"]
    system.leave_group("workers", first)
    system.leave_group("workers", first)  # not a member any more: nothing happens
    assert system.group_members("workers") == [second]
    system.leave_group("auditors", second)
    assert system.group_names() == ["workers"]


async def test_group_members_with_handles(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter(), name="counter")
    system.join_group("adders", counter)
    for member in system.group_members("adders", handles=Add):
        await member.tell(Add(5))
    assert await counter.ask(Total()) == 5
    system.join_group("adders", await system.spawn(Recorder([]), name="recorder"))
    with pytest.raises(actors.UnhandledMessageError, match=r"/recorder .*group 'adders'"):
        system.group_members("adders", handles=Add)


async def test_members_leave_every_group_when_they_stop(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    stays = await system.spawn(Counter())
    callbacks_before = list(counter._cell.on_terminated)
    system.join_group("a", counter)
    system.join_group("b", counter)
    system.join_group("a", stays)
    system.register("counter", counter)
    assert len(counter._cell.on_terminated) == len(callbacks_before) + 1  # one callback for all
    await counter.stop()
    assert system.group_members("a") == [stays]
    assert system.group_members("b") == []
    assert counter._cell.on_terminated == []
    with pytest.raises(actors.ActorStoppedError, match="cannot be added to a group"):
        system.join_group("a", counter)


async def test_group_feed_reports_joins_and_leaves_in_order(system: actors.ActorSystem) -> None:
    first = await system.spawn(Counter())
    system.join_group("workers", first)
    changes: list[actors.GroupChange] = []
    with system.group_changes("workers") as feed:
        assert feed.members == (first,)
        second = await system.spawn(Counter())
        system.join_group("workers", second)
        system.join_group("others", second)  # another group: not in this feed
        system.leave_group("workers", first)
        await second.stop()
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                async for change in feed:
                    changes.append(change)

            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert changes == [
        actors.GroupJoined("workers", second),
        actors.GroupLeft("workers", first),
        actors.GroupLeft("workers", second, actors.Normal()),
    ]
    assert feed.dropped == 0
    with pytest.raises(trio.EndOfChannel):
        await feed.receive()  # the block is left: the feed has ended


async def test_a_slow_feed_drops_and_counts_but_never_blocks(
    system: actors.ActorSystem,
) -> None:
    with system.group_changes("crowd", buffer=2) as feed:
        refs = [await system.spawn(Counter()) for _ in range(4)]
        for ref in refs:
            system.join_group("crowd", ref)  # synchronous: it cannot wait for the reader
        assert system.group_members("crowd") == refs
        assert feed.dropped == 2
        assert [feed.receive_nowait(), feed.receive_nowait()] == [
            actors.GroupJoined("crowd", refs[0]),
            actors.GroupJoined("crowd", refs[1]),
        ]
    letters = system.dead_letters.recent()
    assert [letter.message for letter in letters] == [
        actors.GroupJoined("crowd", refs[2]),
        actors.GroupJoined("crowd", refs[3]),
    ]
    assert all(letter.reason is actors.DeadLetterReason.DROPPED for letter in letters)
    with pytest.raises(ValueError, match="buffer of at least 1"):
        with system.group_changes("crowd", buffer=0):
            pass


async def test_names_and_groups_survive_a_supervised_restart(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    from tests.test_supervisor import Crash, Generation, Journal, spec

    journal = Journal()
    backoff = actors.Backoff(minimum=5, maximum=5, jitter=0)
    supervisor = await system.spawn(actors.Supervisor([spec(journal, "w", backoff=backoff)]))
    worker = (await supervisor.ask(actors.WhichChildren()))["w"]
    system.register("worker", worker)
    system.join_group("workers", worker)
    with actors.watching(worker) as terminated:
        await worker.tell(Crash())  # type: ignore[arg-type]
        await trio.sleep(1)  # in the middle of the restart backoff
        assert system.lookup("worker") is worker
        assert system.group_members("workers") == [worker]
        assert await worker.ask(Generation(), timeout=10) == 2
        assert system.lookup("worker") is worker
        assert system.group_members("workers") == [worker]
        with pytest.raises(trio.WouldBlock):
            terminated.receive_nowait()  # a restart is not a stop
        await worker.stop()
        assert (await terminated.receive()).ref is worker
    assert system.lookup("worker") is None
