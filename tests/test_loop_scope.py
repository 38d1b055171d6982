"""An actor's loop opens its cancel scope only when it first awaits something of the actor's.

Until its first async handler (or from the start, with spell hooks), the loop
only ever waits on its mailbox, where a stop request wakes it. The message
that first needs the scope is handled inside it, in its place in the order.
"""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

import actors
from tests.messages import Add, Counter, Sleep, Total
from tests.test_late_nursery import Fatal


@attrs.define(eq=False)
class Mixed(actors.Actor[Add | Sleep | Total]):
    """Sync handlers and one async one; logs the order it handles them in."""

    log: list[str]

    @actors.handler
    def add(self, message: Add) -> None:
        self.log.append(f"add {message.amount}")

    @actors.handler
    async def sleep(self, message: Sleep) -> str:
        self.log.append("sleep")
        await trio.sleep(message.seconds)
        self.log.append("slept")
        return "done"

    @actors.handler
    def total(self, message: Total) -> int:
        return len(self.log)


async def test_the_first_async_message_keeps_its_place_in_the_order(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[str] = []
    ref = await system.spawn(Mixed(log))
    ref.tell_nowait(Add(1))
    ref.tell_nowait(Sleep(1))
    ref.tell_nowait(Add(2))
    assert await ref.ask(Total()) == 4
    assert log == ["add 1", "sleep", "slept", "add 2"]


async def test_a_stop_interrupts_the_first_async_handler_at_once(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[str] = []
    ref = await system.spawn(Mixed(log))
    await ref.tell(Add(1))
    await ref.tell(Sleep(100))
    await trio.testing.wait_all_tasks_blocked()
    start = trio.current_time()
    assert await ref.stop() == actors.Normal()
    assert trio.current_time() == start
    assert log == ["add 1", "sleep"]
    (letter,) = system.dead_letters.recent()
    assert letter.message == Sleep(100)
    assert letter.reason is actors.DeadLetterReason.STOPPED


async def test_an_actor_that_never_awaited_stops_at_once(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await system.spawn(Counter())
    await counter.tell(Add(2))
    start = trio.current_time()
    assert await counter.stop() == actors.Normal()
    assert trio.current_time() == start


@attrs.frozen
class StartFatalTask:
    pass


@attrs.define(eq=False)
class SyncStarter(actors.Actor[StartFatalTask]):
    """Only sync handlers: its loop never needed a cancel scope when its task fails."""

    reasons: list[actors.StopReason]
    stopped_at: list[float] = attrs.Factory(list)

    async def on_stop(self, reason: actors.StopReason) -> None:
        self.reasons.append(reason)
        self.stopped_at.append(trio.current_time())

    @actors.handler
    def start_fatal(self, message: StartFatalTask) -> None:
        self.ctx.start_soon(self._fatal)

    async def _fatal(self) -> None:
        await trio.sleep(1)
        raise Fatal("fatal on purpose")


async def test_a_base_exception_of_a_task_ends_an_idle_loop_without_a_scope(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reasons: list[actors.StopReason] = []
    actor = SyncStarter(reasons)
    began = trio.current_time()
    # The deadline turns a loop that nothing wakes into a failure, not a hang.
    with pytest.RaisesGroup(Fatal, flatten_subgroups=True), trio.fail_after(10):
        async with actors.open_system() as system:
            starter = await system.spawn(actor)
            await starter.tell(StartFatalTask())
            await trio.sleep_forever()
    (reason,) = reasons
    assert actor.stopped_at == [began + 1]  # when its task failed, not at the deadline
    assert isinstance(reason, actors.Failed)
    assert isinstance(reason.error, BaseExceptionGroup)
    assert reason.error.subgroup(Fatal) is not None
