"""Watching: Terminated notices for live and stopped actors, unwatch, cleanup, the scoped form."""

from __future__ import annotations

from typing import Never

import attrs
import pytest
import trio
import trio.testing

import actors
from actors._watch import stop_hook_count, unwatch, watch
from tests.messages import Add, Boom, Counter, Record, Total


@attrs.frozen
class Watch(actors.Request[None]):
    ref: actors.ActorRef[Never]


@attrs.frozen
class Unwatch(actors.Request[None]):
    ref: actors.ActorRef[Never]


@attrs.frozen
class StopThenUnwatch(actors.Request[None]):
    """Stop the target, wait until it has stopped (its notice is queued), then unwatch it."""

    ref: actors.ActorRef[Never]


@attrs.frozen
class Hold:
    """Keep the handler busy until the event is set."""

    release: trio.Event


@attrs.frozen
class SpawnWatchedChild(actors.Request[None]):
    pass


WatcherMessage = Watch | Unwatch | StopThenUnwatch | Hold | Record | SpawnWatchedChild


@attrs.define(eq=False)
class Watcher(actors.Actor[WatcherMessage | actors.Terminated]):
    """Logs the Terminated notices (and Record values) it handles, in order."""

    log: list[object]

    @actors.handler
    def watch(self, message: Watch) -> None:
        watch(self.ctx, message.ref)

    @actors.handler
    def unwatch(self, message: Unwatch) -> None:
        unwatch(self.ctx, message.ref)

    @actors.handler
    async def stop_then_unwatch(self, message: StopThenUnwatch) -> None:
        await message.ref.stop()
        unwatch(self.ctx, message.ref)

    @actors.handler
    async def hold(self, message: Hold) -> None:
        await message.release.wait()

    @actors.handler
    def record(self, message: Record) -> None:
        self.log.append(message.value)

    @actors.handler
    async def spawn_watched_child(self, message: SpawnWatchedChild) -> None:
        child = await self.ctx.spawn(Counter(), name="child")
        watch(self.ctx, child)

    @actors.handler
    def terminated(self, message: actors.Terminated) -> None:
        self.log.append(message)


@attrs.define(eq=False)
class Blind(actors.Actor[Watch]):
    """Tries to watch without a handler for Terminated."""

    @actors.handler
    def watch(self, message: Watch) -> None:
        watch(self.ctx, message.ref)  # type: ignore[arg-type]  # the static check, too


@attrs.define(eq=False)
class Narcissus(actors.Actor[actors.Terminated | Watch]):
    @actors.handler
    def watch_self(self, message: Watch) -> None:
        watch(self.ctx, self.ctx.ref)

    @actors.handler
    def terminated(self, message: actors.Terminated) -> None:
        pass


async def test_terminated_reaches_the_watcher_with_normal_reason(
    system: actors.ActorSystem,
) -> None:
    log: list[object] = []
    watcher = await system.spawn(Watcher(log))
    target = await system.spawn(Counter())
    await watcher.ask(Watch(target))
    await target.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert log == [actors.Terminated(target, actors.Normal())]
    notice = log[0]
    assert isinstance(notice, actors.Terminated)
    assert notice.ref is target


async def test_terminated_carries_the_failure(system: actors.ActorSystem) -> None:
    log: list[object] = []
    watcher = await system.spawn(Watcher(log))
    target = await system.spawn(Counter())
    await watcher.ask(Watch(target))
    error = ValueError("broken")
    with pytest.raises(ValueError, match="broken"):
        await target.ask(Boom(error))
    await target.wait_stopped()
    await trio.testing.wait_all_tasks_blocked()
    (notice,) = log
    assert isinstance(notice, actors.Terminated)
    assert isinstance(notice.reason, actors.Failed)
    assert notice.reason.error is error


async def test_terminated_for_a_cancelled_actor(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[object] = []
    watcher = await system.spawn(Watcher(log))
    with trio.move_on_after(1):
        async with actors.open_system("doomed") as doomed:
            target = await doomed.spawn(Counter())
            await watcher.ask(Watch(target))
            await trio.sleep_forever()
    await trio.testing.wait_all_tasks_blocked()
    assert log == [actors.Terminated(target, actors.Cancelled())]


async def test_watching_a_stopped_actor_delivers_at_once(system: actors.ActorSystem) -> None:
    log: list[object] = []
    watcher = await system.spawn(Watcher(log))
    target = await system.spawn(Counter())
    await target.stop()
    await watcher.ask(Watch(target))
    await trio.testing.wait_all_tasks_blocked()
    assert log == [actors.Terminated(target, actors.Normal())]


async def test_watching_twice_is_one_watch(system: actors.ActorSystem) -> None:
    log: list[object] = []
    watcher = await system.spawn(Watcher(log))
    target = await system.spawn(Counter())
    await watcher.ask(Watch(target))
    await watcher.ask(Watch(target))
    assert stop_hook_count(target._cell) == 1
    await target.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert log == [actors.Terminated(target, actors.Normal())]


async def test_terminated_overtakes_queued_messages(system: actors.ActorSystem) -> None:
    log: list[object] = []
    watcher = await system.spawn(Watcher(log))
    target = await system.spawn(Counter())
    await watcher.ask(Watch(target))
    release = trio.Event()
    await watcher.tell(Hold(release))
    await watcher.tell(Record(1))
    await watcher.tell(Record(2))
    await target.stop()
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert log == [actors.Terminated(target, actors.Normal()), 1, 2]


async def test_unwatch_prevents_delivery(system: actors.ActorSystem) -> None:
    log: list[object] = []
    watcher = await system.spawn(Watcher(log))
    target = await system.spawn(Counter())
    await watcher.ask(Watch(target))
    await watcher.ask(Unwatch(target))
    assert stop_hook_count(target._cell) == 0
    await target.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert log == []
    await watcher.ask(Unwatch(target))  # unwatching again is harmless


async def test_unwatch_discards_a_terminated_already_queued(system: actors.ActorSystem) -> None:
    log: list[object] = []
    watcher = await system.spawn(Watcher(log))
    target = await system.spawn(Counter())
    await watcher.ask(Watch(target))
    # The handler waits for the target to stop, so the notice is queued behind it, then unwatches.
    await watcher.ask(StopThenUnwatch(target))
    await watcher.tell(Record("after"))
    await trio.testing.wait_all_tasks_blocked()
    assert log == ["after"]
    assert watcher._cell.watcher is None


async def test_a_watcher_without_a_terminated_handler_is_refused(
    system: actors.ActorSystem,
) -> None:
    target = await system.spawn(Counter())
    blind = await system.spawn(Blind())
    with pytest.raises(actors.UnhandledMessageError, match=r"no handler for Terminated"):
        await blind.ask(Watch(target))
    assert stop_hook_count(target._cell) == 0


async def test_an_actor_cannot_watch_itself(system: actors.ActorSystem) -> None:
    narcissus = await system.spawn(Narcissus())
    with pytest.raises(ValueError, match="tried to watch itself"):
        await narcissus.ask(Watch(narcissus))


async def test_a_watcher_that_stops_first_leaves_no_hooks(system: actors.ActorSystem) -> None:
    target = await system.spawn(Counter())
    callbacks_before = list(target._cell.on_terminated)
    watchers = [await system.spawn(Watcher([])) for _ in range(3)]
    for watcher in watchers:
        await watcher.ask(Watch(target))
    assert stop_hook_count(target._cell) == 3
    assert len(target._cell.on_terminated) == len(callbacks_before) + 1  # one callback for all
    for watcher in watchers:
        await watcher.stop()
    assert stop_hook_count(target._cell) == 0
    assert target._cell.on_terminated == callbacks_before
    assert all(watcher._cell.watcher is None for watcher in watchers)
    assert await target.ask(Total()) == 0  # the target is unaffected


async def test_delivered_watches_leave_nothing_behind(system: actors.ActorSystem) -> None:
    log: list[object] = []
    watcher = await system.spawn(Watcher(log))
    targets = [await system.spawn(Counter()) for _ in range(3)]
    for target in targets:
        await watcher.ask(Watch(target))
    for target in targets:
        await target.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert [notice.ref for notice in log if isinstance(notice, actors.Terminated)] == targets
    assert watcher._cell.watcher is None
    assert stop_hook_count(watcher._cell) == 0


async def test_a_parent_watching_its_child_stops_cleanly(system: actors.ActorSystem) -> None:
    log: list[object] = []
    parent = await system.spawn(Watcher(log))
    await parent.ask(SpawnWatchedChild())
    (child,) = parent._cell.children.values()
    await parent.stop()  # stops the child while the parent is stopping: no notice, no leak
    assert log == []
    assert stop_hook_count(child) == 0
    assert parent._cell.watcher is None


async def test_watching_from_outside_actors(system: actors.ActorSystem) -> None:
    first = await system.spawn(Counter())
    second = await system.spawn(Counter())
    with actors.watching(first, second, first) as terminated:
        await first.stop()
        assert await terminated.receive() == actors.Terminated(first, actors.Normal())
        error = KeyError("lost")
        with pytest.raises(KeyError):
            await second.ask(Boom(error))
        notice = await terminated.receive()
        assert notice.ref is second
        assert notice.reason == actors.Failed(error)
        with pytest.raises(trio.EndOfChannel):
            await terminated.receive()  # every watched actor has stopped


async def test_watching_a_stopped_actor_from_outside(system: actors.ActorSystem) -> None:
    target = await system.spawn(Counter())
    await target.stop()
    with actors.watching(target) as terminated:
        assert terminated.receive_nowait() == actors.Terminated(target, actors.Normal())


async def test_leaving_the_watching_block_removes_the_watch(system: actors.ActorSystem) -> None:
    target = await system.spawn(Counter())
    callbacks_before = list(target._cell.on_terminated)
    with actors.watching(target) as terminated:
        assert stop_hook_count(target._cell) == 1
        await target.tell(Add())
        with pytest.raises(trio.WouldBlock):
            terminated.receive_nowait()
    assert stop_hook_count(target._cell) == 0
    assert target._cell.on_terminated == callbacks_before
    with actors.watching() as nothing:
        with pytest.raises(trio.EndOfChannel):
            await nothing.receive()
