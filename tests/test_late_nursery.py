"""An actor without a start hook opens its nursery only when it first needs one.

Its children and tasks must live exactly as those of an actor with a nursery
of its own: inside the actor's lifetime, children stopped youngest first
before its stop hook, tasks cancelled and ended before it, failures failing
it, a restart starting afresh.
"""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

import actors
from tests.messages import Add, Counter, Total
from tests.test_faults import task_count


@attrs.frozen
class SpawnChild(actors.Request[actors.ActorRef["ChildMessage"]]):
    label: str
    with_grandchild: bool = False


@attrs.frozen
class StartTask:
    """Start a task that waits for ever, logs when it ends, or raises after ``fail_after``."""

    fail_after: float | None = None


@attrs.frozen
class Crash:
    pass


ChildMessage = Add | SpawnChild | StartTask | Crash


@attrs.define(eq=False)
class Lazy(actors.Actor[ChildMessage]):
    """No start hook: its nursery opens when a handler first spawns or starts a task."""

    log: list[str]
    label: str = "parent"

    async def on_stop(self, reason: actors.StopReason) -> None:
        await trio.lowlevel.checkpoint()
        self.log.append(f"{self.label} stop {type(reason).__name__}")

    @actors.handler
    def add(self, message: Add) -> None:
        self.log.append(f"{self.label} add")

    @actors.handler
    async def spawn_child(self, message: SpawnChild) -> actors.ActorRef[ChildMessage]:
        child = await self.ctx.spawn(Lazy(self.log, message.label), name=message.label)
        if message.with_grandchild:
            await child.ask(SpawnChild(f"{message.label}.1"))
        return child

    @actors.handler
    def start_task(self, message: StartTask) -> None:
        self.ctx.start_soon(self._task, message.fail_after)

    @actors.handler
    def crash(self, message: Crash) -> None:
        raise RuntimeError("crash on purpose")

    async def _task(self, fail_after: float | None) -> None:
        try:
            if fail_after is not None:
                await trio.sleep(fail_after)
                raise OSError("task blew up")
            await trio.sleep_forever()
        finally:
            self.log.append(f"{self.label} task ended")


@attrs.define(eq=False)
class Started(actors.Actor[Add]):
    """A child with a start hook, to show its spawn still waits for it."""

    log: list[str]

    async def on_start(self) -> None:
        await trio.sleep(1)
        self.log.append("child started")

    @actors.handler
    def add(self, message: Add) -> None:
        self.log.append("child add")


@attrs.frozen
class SpawnStarted(actors.Request[actors.ActorRef[Add]]):
    pass


@attrs.define(eq=False)
class LazySpawner(actors.Actor[SpawnStarted]):
    log: list[str]

    @actors.handler
    async def spawn_started(self, message: SpawnStarted) -> actors.ActorRef[Add]:
        ref = await self.ctx.spawn(Started(self.log))
        self.log.append("spawn returned")
        return ref


async def test_an_idle_actor_without_a_start_hook_is_one_task(
    system: actors.ActorSystem,
) -> None:
    before = task_count()
    refs = [await system.spawn(Counter()) for _ in range(3)]
    assert task_count() == before + 3
    for ref in refs:
        await ref.tell(Add(1))
        assert await ref.ask(Total()) == 1
    assert task_count() == before + 3


async def test_a_child_spawned_by_a_handler_is_ready_when_the_spawn_returns(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[str] = []
    spawner = await system.spawn(LazySpawner(log))
    child = await spawner.ask(SpawnStarted())
    assert log == ["child started", "spawn returned"]
    await child.tell(Add(1))
    await trio.testing.wait_all_tasks_blocked()
    assert log[-1] == "child add"
    await spawner.stop()
    assert not child.is_alive


async def test_children_spawned_by_handlers_stop_youngest_first_before_their_parent(
    system: actors.ActorSystem,
) -> None:
    log: list[str] = []
    parent = await system.spawn(Lazy(log))
    first = await parent.ask(SpawnChild("first"))
    second = await parent.ask(SpawnChild("second", with_grandchild=True))
    assert await parent.stop() == actors.Normal()
    assert log == [
        "second.1 stop Normal",
        "second stop Normal",
        "first stop Normal",
        "parent stop Normal",
    ]
    assert not first.is_alive
    assert not second.is_alive


async def test_children_of_a_cancelled_actor_stop_before_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    with trio.move_on_after(10):
        async with actors.open_system() as system:
            parent = await system.spawn(Lazy(log))
            await parent.ask(SpawnChild("child", with_grandchild=True))
            await parent.tell(StartTask())
            await trio.sleep_forever()
    assert log[-1] == "parent stop Cancelled"
    assert log.index("child.1 stop Cancelled") < log.index("child stop Cancelled")
    assert set(log) == {
        "child.1 stop Cancelled",
        "child stop Cancelled",
        "parent task ended",
        "parent stop Cancelled",
    }


async def test_tasks_started_by_handlers_end_before_the_stop_hook(
    system: actors.ActorSystem,
) -> None:
    log: list[str] = []
    actor = await system.spawn(Lazy(log))
    await actor.tell(StartTask())
    await actor.tell(StartTask())
    await trio.testing.wait_all_tasks_blocked()
    before = task_count()
    assert await actor.stop() == actors.Normal()
    assert log == ["parent task ended", "parent task ended", "parent stop Normal"]
    # The actor, its two tasks and the task that held their nursery open are gone.
    assert task_count() == before - 4


async def test_a_task_started_by_a_handler_fails_its_actor(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[str] = []
    actor = await system.spawn(Lazy(log))
    sibling = await system.spawn(Counter())
    await actor.ask(SpawnChild("child"))
    await actor.tell(StartTask(fail_after=1))
    reason = await actor.wait_stopped()
    assert isinstance(reason, actors.Failed)
    assert isinstance(reason.error, OSError)
    assert log == ["parent task ended", "child stop Normal", "parent stop Failed"]
    assert sibling.is_alive


async def test_a_restarted_actor_opens_a_fresh_nursery(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[str] = []
    supervisor = await system.spawn(
        actors.Supervisor([actors.ChildSpec("lazy", lambda: Lazy(log, "lazy"))])
    )
    lazy: actors.ActorRef[ChildMessage] = (await supervisor.ask(actors.WhichChildren()))["lazy"]  # type: ignore[assignment]
    await lazy.ask(SpawnChild("child"))
    await lazy.tell(StartTask())
    await lazy.tell(Crash())
    await trio.testing.wait_all_tasks_blocked()
    assert log == ["child stop Normal", "lazy task ended", "lazy stop Failed"]
    # The new incarnation spawns and starts tasks again, in a nursery of its own.
    await lazy.ask(SpawnChild("child"))
    await lazy.tell(StartTask())
    await trio.testing.wait_all_tasks_blocked()
    await supervisor.stop()
    assert log[3:] == ["child stop Normal", "lazy task ended", "lazy stop Normal"]


class Fatal(BaseException):
    """Not an Exception: children and tasks do not report it as a value, it propagates."""


@attrs.frozen
class SpawnFatal(actors.Request[actors.ActorRef[Add]]):
    pass


@attrs.define(eq=False)
class Fatalist(actors.Actor[Add]):
    @actors.handler
    def add(self, message: Add) -> None:
        raise Fatal("fatal on purpose")


@attrs.define(eq=False)
class FatalSpawner(actors.Actor[SpawnFatal]):
    reasons: list[actors.StopReason]

    async def on_stop(self, reason: actors.StopReason) -> None:
        self.reasons.append(reason)

    @actors.handler
    async def spawn_fatal(self, message: SpawnFatal) -> actors.ActorRef[Add]:
        return await self.ctx.spawn(Fatalist())


async def test_a_base_exception_of_a_child_fails_its_parent_and_reaches_the_system(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reasons: list[actors.StopReason] = []
    # The deadline turns a loop that nothing wakes into a failure, not a hang.
    with pytest.RaisesGroup(Fatal, flatten_subgroups=True), trio.fail_after(10):
        async with actors.open_system() as system:
            parent = await system.spawn(FatalSpawner(reasons))
            child = await parent.ask(SpawnFatal())
            await child.tell(Add(1))
            await trio.sleep_forever()
    (reason,) = reasons
    assert isinstance(reason, actors.Failed)
    assert isinstance(reason.error, BaseExceptionGroup)
    assert reason.error.subgroup(Fatal) is not None
