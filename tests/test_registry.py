"""The name registry and process groups: uniqueness, waiting, automatic removal, feeds."""

from __future__ import annotations

from typing import Never

import attrs
import pytest
import trio
import trio.testing

import actors
from actors import _registry
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
        ref = actors.lookup(self.ctx.system, message.name)
        assert ref is not None
        watch(self.ctx, ref)

    @actors.handler
    def terminated(self, message: actors.Terminated) -> None:
        self.seen.append(actors.lookup(self.ctx.system, self.name))


# -- the registry -----------------------------------------------------------------------------


async def test_register_and_lookup(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    assert actors.lookup(system, "counter") is None
    actors.register(system, "counter", counter)
    assert actors.lookup(system, "counter") is counter
    actors.register(system, "counter", counter)  # the same ref again: nothing changes
    actors.register(system, "tally", counter)  # a second name for the same actor
    assert actors.lookup(system, "tally") is counter


async def test_lookup_with_handles_gives_a_typed_ref_or_a_clear_error(
    system: actors.ActorSystem,
) -> None:
    actors.register(system, "counter", await system.spawn(Counter()))
    counter = actors.lookup(system, "counter", handles=Total)
    assert counter is not None
    assert await counter.ask(Total()) == 0
    with pytest.raises(actors.UnhandledMessageError, match=r"registered as 'counter'.*no handler"):
        actors.lookup(system, "counter", handles=Record)
    assert actors.lookup(system, "nobody", handles=Total) is None


async def test_a_taken_name_is_refused(system: actors.ActorSystem) -> None:
    first = await system.spawn(Counter(), name="first")
    second = await system.spawn(Counter(), name="second")
    actors.register(system, "main", first)
    with pytest.raises(actors.NameTakenError, match="'main' is already registered to actor /first"):
        actors.register(system, "main", second)
    assert actors.lookup(system, "main") is first


async def test_names_disappear_when_the_actor_stops(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    actors.register(system, "counter", counter)
    actors.register(system, "tally", counter)
    await counter.stop()
    assert actors.lookup(system, "counter") is None
    assert actors.lookup(system, "tally") is None
    replacement = await system.spawn(Counter())
    actors.register(system, "counter", replacement)  # the name is free again
    assert actors.lookup(system, "counter") is replacement


async def test_lookup_while_stopping_returns_the_ref_until_stopped(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    slow = await system.spawn(SlowToStop())
    actors.register(system, "slow", slow)
    slow.request_stop()
    await trio.sleep(1)  # on_stop is running
    assert not slow.is_alive
    assert actors.lookup(system, "slow") is slow
    await slow.wait_stopped()
    assert actors.lookup(system, "slow") is None


async def test_the_name_is_gone_before_watchers_hear_of_the_stop(
    system: actors.ActorSystem,
) -> None:
    seen: list[actors.ActorRef[Never] | None] = []
    counter = await system.spawn(Counter())
    actors.register(system, "counter", counter)
    checker = await system.spawn(NameChecker(seen))
    await checker.ask(WatchNamed("counter"))
    await counter.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert seen == [None]


async def test_unregister_frees_the_name_and_leaves_no_hook(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    callbacks_before = list(counter._cell.on_terminated)
    actors.register(system, "counter", counter)
    actors.unregister(system, "counter")
    assert actors.lookup(system, "counter") is None
    assert stop_hook_count(counter._cell) == 0
    assert counter._cell.on_terminated == callbacks_before
    actors.unregister(system, "counter")  # a free name: nothing happens
    await counter.tell(Add())  # the actor keeps running
    assert await counter.ask(Total()) == 1


async def test_stopped_actors_and_foreign_refs_cannot_be_registered(
    system: actors.ActorSystem,
) -> None:
    counter = await system.spawn(Counter(), name="gone")
    await counter.stop()
    with pytest.raises(actors.ActorStoppedError, match="actor /gone has stopped"):
        actors.register(system, "gone", counter)
    async with actors.open_system("other") as other:
        stranger = await other.spawn(Counter())
        with pytest.raises(ValueError, match="belongs to actor system 'other'"):
            actors.register(system, "stranger", stranger)
    with pytest.raises(ValueError, match="non-empty string"):
        actors.register(system, "", await system.spawn(Counter()))


async def test_wait_registered_waits_for_the_name(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    found: list[actors.ActorRef[Total]] = []

    async def waiter() -> None:
        found.append(await actors.wait_registered(system, "late", handles=Total))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        nursery.start_soon(waiter)
        await trio.sleep(3)
        assert found == []
        counter = await system.spawn(Counter())
        actors.register(system, "late", counter)
    assert found == [counter, counter]
    assert trio.current_time() == pytest.approx(3)
    assert await actors.wait_registered(system, "late") is counter  # at once when taken
    assert _registry._registries[system].waiting == {}


async def test_wait_registered_is_bounded_by_the_caller(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(trio.TooSlowError):
        with trio.fail_after(5):
            await actors.wait_registered(system, "never")
    assert _registry._registries[system].waiting == {}  # the cancelled waiter left nothing


# -- process groups ---------------------------------------------------------------------------


async def test_join_members_and_leave(system: actors.ActorSystem) -> None:
    first = await system.spawn(Counter())
    second = await system.spawn(Counter())
    assert actors.group_members(system, "workers") == []
    actors.join_group(system, "workers", first)
    actors.join_group(system, "workers", second)
    actors.join_group(system, "workers", first)  # one membership
    actors.join_group(system, "auditors", second)
    assert actors.group_members(system, "workers") == [first, second]
    assert actors.group_names(system) == ["workers", "auditors"]
    actors.leave_group(system, "workers", first)
    actors.leave_group(system, "workers", first)  # not a member any more: nothing happens
    assert actors.group_members(system, "workers") == [second]
    actors.leave_group(system, "auditors", second)
    assert actors.group_names(system) == ["workers"]


async def test_group_members_with_handles(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter(), name="counter")
    actors.join_group(system, "adders", counter)
    for member in actors.group_members(system, "adders", handles=Add):
        await member.tell(Add(5))
    assert await counter.ask(Total()) == 5
    actors.join_group(system, "adders", await system.spawn(Recorder([]), name="recorder"))
    with pytest.raises(actors.UnhandledMessageError, match=r"/recorder .*group 'adders'"):
        actors.group_members(system, "adders", handles=Add)


async def test_members_leave_every_group_when_they_stop(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    stays = await system.spawn(Counter())
    callbacks_before = list(counter._cell.on_terminated)
    actors.join_group(system, "a", counter)
    actors.join_group(system, "b", counter)
    actors.join_group(system, "a", stays)
    actors.register(system, "counter", counter)
    assert len(counter._cell.on_terminated) == len(callbacks_before) + 1  # one callback for all
    await counter.stop()
    assert actors.group_members(system, "a") == [stays]
    assert actors.group_members(system, "b") == []
    assert counter._cell.on_terminated == []
    with pytest.raises(actors.ActorStoppedError, match="cannot be added to a group"):
        actors.join_group(system, "a", counter)


async def test_group_feed_reports_joins_and_leaves_in_order(system: actors.ActorSystem) -> None:
    first = await system.spawn(Counter())
    actors.join_group(system, "workers", first)
    changes: list[actors.GroupChange] = []
    with actors.group_changes(system, "workers") as feed:
        assert feed.members == (first,)
        second = await system.spawn(Counter())
        actors.join_group(system, "workers", second)
        actors.join_group(system, "others", second)  # another group: not in this feed
        actors.leave_group(system, "workers", first)
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
    with actors.group_changes(system, "crowd", buffer=2) as feed:
        refs = [await system.spawn(Counter()) for _ in range(4)]
        for ref in refs:
            actors.join_group(system, "crowd", ref)  # synchronous: it cannot wait for the reader
        assert actors.group_members(system, "crowd") == refs
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
        with actors.group_changes(system, "crowd", buffer=0):
            pass


async def test_names_and_groups_survive_a_supervised_restart(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    from tests.test_supervisor import Crash, Generation, Journal, spec

    journal = Journal()
    backoff = actors.Backoff(minimum=5, maximum=5, jitter=0)
    supervisor = await system.spawn(actors.Supervisor([spec(journal, "w", backoff=backoff)]))
    worker = (await supervisor.ask(actors.WhichChildren()))["w"]
    actors.register(system, "worker", worker)
    actors.join_group(system, "workers", worker)
    with actors.watching(worker) as terminated:
        await worker.tell(Crash())  # type: ignore[arg-type]
        await trio.sleep(1)  # in the middle of the restart backoff
        assert actors.lookup(system, "worker") is worker
        assert actors.group_members(system, "workers") == [worker]
        assert await worker.ask(Generation(), timeout=10) == 2
        assert actors.lookup(system, "worker") is worker
        assert actors.group_members(system, "workers") == [worker]
        with pytest.raises(trio.WouldBlock):
            terminated.receive_nowait()  # a restart is not a stop
        await worker.stop()
        assert (await terminated.receive()).ref is worker
    assert actors.lookup(system, "worker") is None
