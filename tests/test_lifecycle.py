"""Lifecycle: start and stop hooks, stop reasons, children, system shutdown."""

from __future__ import annotations

import gc
import weakref

import attrs
import pytest
import trio
import trio.testing

import actors
from tests.messages import Add, Boom, Counter, Sleep, Total, keep_busy
from tests.test_faults import task_count


@attrs.frozen
class Spawn(actors.Request[actors.ActorRef[Add | Total]]):
    name: str


@attrs.define(eq=False)
class Hooked(actors.Actor[Add | Total | Spawn]):
    """Logs its hooks into a list the test owns."""

    log: list[str]
    label: str = "hooked"
    fail_start: bool = False
    hang_in_stop: bool = False

    async def on_start(self) -> None:
        self.log.append(f"{self.label} start")
        if self.fail_start:
            raise RuntimeError("cannot start")

    async def on_stop(self, reason: actors.StopReason) -> None:
        self.log.append(f"{self.label} stop {type(reason).__name__}")
        if self.hang_in_stop:
            await trio.sleep_forever()

    @actors.handler
    def add(self, message: Add) -> None:
        self.log.append(f"{self.label} add")

    @actors.handler
    async def total(self, message: Total) -> int:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    @actors.handler
    async def spawn(self, message: Spawn) -> actors.ActorRef[Add | Total]:
        child = Hooked(self.log, label=message.name)
        return await self.ctx.spawn(child, name=message.name)


async def test_ref_is_handed_out_only_after_on_start(system: actors.ActorSystem) -> None:
    log: list[str] = []
    ref = await system.spawn(Hooked(log))
    assert log == ["hooked start"]
    assert ref.is_alive


async def test_failing_on_start_makes_spawn_raise(system: actors.ActorSystem) -> None:
    log: list[str] = []
    with pytest.raises(RuntimeError, match="cannot start"):
        await system.spawn(Hooked(log, fail_start=True), name="broken")
    assert log == ["hooked start"]  # on_stop is not called for an actor that never started
    assert system.statistics().actors == 0
    await system.spawn(Counter(), name="broken")  # the name is free again


@attrs.define(eq=False)
class SlowStart(actors.Actor[Add]):
    """Its start hook takes ``seconds`` (virtual) and logs whether it finished."""

    log: list[str]
    seconds: float

    async def on_start(self) -> None:
        try:
            await trio.sleep(self.seconds)
        except trio.Cancelled:
            self.log.append("start cut")
            raise
        self.log.append("started")

    async def on_stop(self, reason: actors.StopReason) -> None:
        self.log.append("stop")

    @actors.handler
    def add(self, message: Add) -> None:
        self.log.append("add")


async def test_a_spawner_cancelled_while_the_actor_starts_cancels_the_start(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    # As with nursery.start: the spawner's deadline applies to the start hook, the
    # cancellation is raised once the start has ended, and no actor is left behind.
    log: list[str] = []
    with pytest.raises(trio.TooSlowError):
        with trio.fail_after(1):
            await system.spawn(SlowStart(log, 10), name="slow")
    assert log == ["start cut"]  # never started: no stop hook either
    assert system.statistics().actors == 0
    assert system.lookup("slow") is None
    ref = await system.spawn(SlowStart(log, 0.5), name="slow")  # the name is free again
    assert log == ["start cut", "started"]
    await ref.tell(Add(1))
    await ref.stop()
    assert log == ["start cut", "started", "add", "stop"]


async def test_a_spawner_cancelled_before_the_actor_ran_cuts_the_start_at_once(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[str] = []
    began = trio.current_time()
    with trio.CancelScope() as scope:
        scope.cancel()
        await system.spawn(SlowStart(log, 10), name="slow")
    assert scope.cancelled_caught
    assert log == ["start cut"]
    assert trio.current_time() == began  # the start hook did not run its ten seconds
    assert system.statistics().actors == 0


async def test_a_spawn_returns_only_after_the_start_hook_even_when_it_waits(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[str] = []
    began = trio.current_time()
    ref = await system.spawn(SlowStart(log, 3))
    assert log == ["started"]
    assert trio.current_time() - began == pytest.approx(3)
    assert ref.is_alive


async def test_stop_hook_runs_on_normal_stop_with_reason(system: actors.ActorSystem) -> None:
    log: list[str] = []
    ref = await system.spawn(Hooked(log))
    reason = await ref.stop()
    assert reason == actors.Normal()
    assert log == ["hooked start", "hooked stop Normal"]
    assert ref.stop_reason == actors.Normal()
    assert not ref.is_alive
    assert await ref.stop() == actors.Normal()  # stopping twice is harmless


async def test_stop_hook_runs_on_failure_with_the_exception(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    error = ValueError("bad")
    with pytest.raises(ValueError, match="bad"):
        await counter.ask(Boom(error))
    reason = await counter.wait_stopped()
    assert isinstance(reason, actors.Failed)
    assert reason.error is error
    assert reason.is_failure


async def test_stop_hook_runs_on_cancellation(autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []
    with trio.move_on_after(10):
        async with actors.open_system() as system:
            ref = await system.spawn(Hooked(log))
            await system.spawn(Hooked(log, label="second"))
            await ref.tell(Total())  # parks the first actor's handler forever
            await trio.sleep_forever()
    assert sorted(log) == [
        "hooked start",
        "hooked stop Cancelled",
        "second start",
        "second stop Cancelled",
    ]
    assert ref.stop_reason == actors.Cancelled()


async def test_stop_hook_is_bounded_by_stop_timeout(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[str] = []
    ref = await system.spawn(Hooked(log, hang_in_stop=True), stop_timeout=2)
    start = trio.current_time()
    await ref.stop()
    assert trio.current_time() - start == pytest.approx(2)
    assert log[-1] == "hooked stop Normal"


async def test_stop_interrupts_a_waiting_handler(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[str] = []
    ref = await system.spawn(Hooked(log))
    await ref.tell(Total())
    await trio.testing.wait_all_tasks_blocked()
    start = trio.current_time()
    assert await ref.stop() == actors.Normal()
    assert trio.current_time() == start
    (letter,) = system.dead_letters.recent()
    assert letter.message == Total()
    assert letter.reason is actors.DeadLetterReason.STOPPED


async def test_queued_messages_go_to_dead_letters_on_stop(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await system.spawn(Counter())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_busy, counter, 1)
        await trio.testing.wait_all_tasks_blocked()
        for amount in range(3):
            counter.tell_nowait(Add(amount))
        with system.dead_letters.subscribe() as letters:
            counter.request_stop()
            await counter.wait_stopped()
            nursery.cancel_scope.cancel()
            received = [letters.receive_nowait() for _ in range(4)]
    assert [letter.message for letter in received] == [Sleep(1), Add(0), Add(1), Add(2)]
    assert all(letter.reason is actors.DeadLetterReason.STOPPED for letter in received)
    assert counter.statistics().dead_lettered == 4


async def test_drain_processes_queued_messages_before_stopping(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter_actor = Counter()
    counter = await system.spawn(counter_actor)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_busy, counter, 1)
        await trio.testing.wait_all_tasks_blocked()
        for amount in (1, 2, 3):
            counter.tell_nowait(Add(amount))
        assert await counter.stop(drain=True) == actors.Normal()
    assert counter_actor.total == 6
    assert system.dead_letters.count == 0
    with pytest.raises(actors.ActorStoppedError):
        await counter.tell(Add())


async def test_children_stop_before_their_parent(system: actors.ActorSystem) -> None:
    log: list[str] = []
    parent_actor = Hooked(log, label="parent")
    parent = await system.spawn(parent_actor, name="parent")
    first = await parent.ask(Spawn("first"))
    second = await parent.ask(Spawn("second"))
    assert first.path == "/parent/first"
    assert second.path == "/parent/second"
    ctx = parent_actor.ctx
    assert ctx.children == [first, second]
    assert ctx.child_count == 2
    await parent.stop()
    assert (ctx.children, ctx.child_count) == ([], 0)
    assert log[-3:] == ["second stop Normal", "first stop Normal", "parent stop Normal"]
    assert not first.is_alive
    assert not second.is_alive


async def test_system_exit_stops_every_actor_youngest_first() -> None:
    log: list[str] = []
    async with actors.open_system() as system:
        await system.spawn(Hooked(log, label="a"))
        await system.spawn(Hooked(log, label="b"))
    assert log == ["a start", "b start", "b stop Normal", "a stop Normal"]


async def test_no_task_outlives_the_system() -> None:
    before = task_count()
    log: list[str] = []
    async with actors.open_system() as system:
        parent = await system.spawn(Hooked(log, label="parent"))
        await parent.ask(Spawn("child"))
        await parent.tell(Total())
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == before
    assert system.statistics().actors == 0


async def test_body_exception_propagates_unwrapped_and_actors_stop() -> None:
    log: list[str] = []

    async def body() -> None:
        async with actors.open_system() as system:
            await system.spawn(Hooked(log))
            raise KeyError("body")

    with pytest.raises(KeyError, match="body"):
        await body()
    assert log == ["hooked start", "hooked stop Normal"]


async def test_spawning_outside_a_system_is_a_clear_error() -> None:
    async with actors.open_system("closing") as system:
        pass
    with pytest.raises(actors.SystemClosedError, match="actor system 'closing' is closed"):
        await system.spawn(Counter())


async def test_duplicate_sibling_names_are_refused(system: actors.ActorSystem) -> None:
    await system.spawn(Counter(), name="twin")
    with pytest.raises(actors.NameTakenError, match="already has a child named 'twin'"):
        await system.spawn(Counter(), name="twin")


async def test_spawn_accepts_a_factory(system: actors.ActorSystem) -> None:
    ref = await system.spawn(lambda: Counter(total=7), name="made")
    assert await ref.ask(Total()) == 7


async def test_ctx_outside_a_running_actor_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="has no context yet"):
        _ = Counter().ctx


@attrs.frozen
class Closed(actors.StopReason):
    code: int


@attrs.define(eq=False)
class Reporter(actors.Actor[Add]):
    """Reports a reason of its own when stopped from outside."""

    @actors.handler
    def add(self, message: Add) -> None:
        pass

    async def on_stop(self, reason: actors.StopReason) -> None:
        self.ctx.stop(Closed(1001))


async def test_a_stopping_actor_can_state_its_own_stop_reason(
    system: actors.ActorSystem,
) -> None:
    reporter = await system.spawn(Reporter())
    assert await reporter.stop() == Closed(1001)
    assert reporter.stop_reason == Closed(1001)


async def test_a_start_failure_is_reported_once_by_spawn_not_logged(
    system: actors.ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(RuntimeError, match="cannot start"):
        await system.spawn(Hooked([], fail_start=True))
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


async def test_a_running_actor_does_not_keep_its_spawning_task_alive(
    system: actors.ActorSystem,
) -> None:
    # Each open server connection is spawned by a short-lived task of its host: keeping
    # that task (and the temporary nursery of nursery.start) alive cost every actor ~2 kB.
    spawners: list[weakref.ref[trio.lowlevel.Task]] = []

    async def spawn_one() -> None:
        spawners.append(weakref.ref(trio.lowlevel.current_task()))
        await system.spawn(Counter())

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(spawn_one)
    gc.collect()
    assert len(spawners) == 3
    assert [spawner() for spawner in spawners] == [None] * 3


def _live_would_blocks() -> int:
    gc.collect()
    return sum(isinstance(obj, trio.WouldBlock) for obj in gc.get_objects())


async def test_an_idle_actor_holds_no_caught_exception(system: actors.ActorSystem) -> None:
    # An await inside an ``except`` clause keeps the exception, its traceback and the
    # frames it names alive for as long as the wait lasts: for an idle actor, for ever.
    await system.spawn(Counter())
    await trio.testing.wait_all_tasks_blocked()
    before = _live_would_blocks()
    idle = [await system.spawn(Counter()) for _ in range(10)]
    await trio.testing.wait_all_tasks_blocked()
    assert _live_would_blocks() == before
    assert all(ref.is_alive for ref in idle)


@attrs.define(eq=False)
class SlowToStop(actors.Actor[Add]):
    """A stop hook that awaits before it records: only a shielded hook gets to record."""

    log: list[str]

    async def on_stop(self, reason: actors.StopReason) -> None:
        await trio.sleep(1)
        self.log.append(f"stopped after a second: {type(reason).__name__}")

    @actors.handler
    def add(self, message: Add) -> None:
        pass


async def test_a_stop_hook_that_awaits_still_finishes_when_the_system_is_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    with trio.move_on_after(10) as scope:
        async with actors.open_system() as system:
            await system.spawn(SlowToStop(log))
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert log == ["stopped after a second: Cancelled"]
