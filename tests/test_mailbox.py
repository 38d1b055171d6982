"""The mailbox's lanes and bounds: control messages overtake data; a byte bound with FIFO senders."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

import actors


@attrs.frozen
class Work:
    n: int
    size: int = 1


@attrs.frozen
class Stats(actors.ControlMessage, actors.Request[list[int]]):
    """A control ask: the ordinary messages handled so far."""


@attrs.frozen
class Mark(actors.ControlMessage):
    n: int


@attrs.define(eq=False)
class Worker(actors.Actor[Work | Stats | Mark]):
    """Each ordinary message takes a second (virtual); control messages are instant."""

    handled: list[int] = attrs.Factory(list)
    order: list[str] = attrs.Factory(list)

    @actors.handler
    async def work(self, message: Work) -> None:
        await trio.sleep(1)
        self.handled.append(message.n)
        self.order.append(f"work {message.n}")

    @actors.handler
    def stats(self, message: Stats) -> list[int]:
        self.order.append("stats")
        return list(self.handled)

    @actors.handler
    def mark(self, message: Mark) -> None:
        self.order.append(f"mark {message.n}")


def weigh(message: Work | Stats | Mark) -> int:
    return message.size if isinstance(message, Work) else 0


async def busy_worker(
    system: actors.ActorSystem,
    mailbox_size: int = 100,
    max_bytes: int | None = None,
) -> tuple[Worker, actors.ActorRef[Work | Stats | Mark]]:
    """A worker busy with ``Work(0)`` (handed to it, so not queued), its lanes empty."""
    worker = Worker()
    weigher = None if max_bytes is None else weigh
    ref = await system.spawn(
        worker, mailbox_size=mailbox_size, max_bytes=max_bytes, weigher=weigher
    )
    ref.tell_nowait(Work(0))
    await trio.testing.wait_all_tasks_blocked()
    return worker, ref


async def test_a_control_ask_overtakes_a_full_mailbox_and_its_waiting_senders(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    worker = Worker()
    ref = await system.spawn(worker, mailbox_size=10)
    async with trio.open_nursery() as nursery:
        for n in range(11):  # one being handled, ten queued
            ref.tell_nowait(Work(n))
        for n in range(11, 61):  # fifty senders waiting for room
            nursery.start_soon(ref.tell, Work(n))
        await trio.testing.wait_all_tasks_blocked()
        stats = ref.statistics()
        assert (stats.depth, stats.senders_waiting) == (10, 50)
        asked_at = trio.current_time()
        seen = await ref.ask(Stats(), timeout=30)
        # At most the message that was being handled when the ask arrived.
        assert seen == [0]
        assert trio.current_time() - asked_at <= 1
        nursery.cancel_scope.cancel()
    assert worker.order[:2] == ["work 0", "stats"]


async def test_control_messages_keep_their_order_and_follow_runtime_notices(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    worker = Worker()
    ref = await system.spawn(worker, mailbox_size=4)
    ref.tell_nowait(Work(0))
    await trio.testing.wait_all_tasks_blocked()  # work 0 is being handled
    ref.tell_nowait(Work(1))
    ref.tell_nowait(Mark(1))
    ref.tell_nowait(Work(2))
    ref.tell_nowait(Mark(2))
    assert ref.statistics().control_depth == 2
    assert ref.statistics().depth == 2
    await ref.stop(drain=True)
    assert worker.order == ["work 0", "mark 1", "mark 2", "work 1", "work 2"]


async def test_a_stop_notice_overtakes_queued_control_messages(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    worker, ref = await busy_worker(system, mailbox_size=4)
    ref.tell_nowait(Mark(1))
    with system.dead_letters.subscribe() as letters:
        ref.request_stop()
        assert await ref.wait_stopped() == actors.Normal()
        dropped = [letters.receive_nowait().message for _ in range(2)]
    assert worker.order == []  # work 0 was interrupted; the mark never ran
    assert dropped == [Work(0), Mark(1)]


async def test_the_control_lane_is_bounded_and_serves_its_senders_in_order(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    worker, ref = await busy_worker(system, mailbox_size=2)
    ref.tell_nowait(Mark(1))
    ref.tell_nowait(Mark(2))
    with pytest.raises(trio.WouldBlock):
        ref.tell_nowait(Mark(3))
    # The ordinary lane has room of its own: a full control lane does not block it.
    ref.tell_nowait(Work(1))
    async with trio.open_nursery() as nursery:
        for n in (3, 4, 5):
            nursery.start_soon(ref.tell, Mark(n))
            await trio.testing.wait_all_tasks_blocked()
        assert ref.statistics().senders_waiting == 3
        assert ref.statistics().control_depth == 2
        # A newcomer does not overtake the waiting senders.
        with pytest.raises(trio.WouldBlock):
            ref.tell_nowait(Mark(6))
    await ref.stop(drain=True)
    assert worker.order == [
        "work 0",
        "mark 1",
        "mark 2",
        "mark 3",
        "mark 4",
        "mark 5",
        "work 1",
    ]


async def test_a_control_message_sent_while_the_actor_stops_is_refused(
    system: actors.ActorSystem,
) -> None:
    ref = await system.spawn(Worker())
    await ref.stop()
    with pytest.raises(actors.ActorStoppedError, match="has stopped"):
        await ref.tell(Mark(1))
    with pytest.raises(actors.ActorStoppedError):
        await ref.ask(Stats())


async def test_the_byte_bound_admits_while_under_and_reports_bytes(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    worker, ref = await busy_worker(system, mailbox_size=100, max_bytes=10)
    ref.tell_nowait(Work(1, size=4))
    ref.tell_nowait(Work(2, size=6))  # exactly at the bound
    with pytest.raises(trio.WouldBlock):
        ref.tell_nowait(Work(3, size=1))
    # Control messages are not weighed.
    ref.tell_nowait(Mark(1))
    stats = ref.statistics()
    assert (stats.max_bytes, stats.queued_bytes, stats.bytes_high_water) == (10, 10, 10)
    assert stats.depth == 2
    await ref.stop(drain=True)
    assert worker.handled == [0, 1, 2]
    stats = ref.statistics()
    assert (stats.queued_bytes, stats.bytes_high_water) == (0, 10)


async def test_a_message_larger_than_the_byte_bound_is_admitted_alone(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    worker, ref = await busy_worker(system, max_bytes=10)
    ref.tell_nowait(Work(1, size=25))  # the lane is empty: admitted, over the bound
    assert ref.statistics().queued_bytes == 25
    with pytest.raises(trio.WouldBlock):
        ref.tell_nowait(Work(2, size=1))
    with trio.fail_after(10):
        await ref.tell(Work(3, size=30))  # waits until the big one is taken, then alone
    assert ref.statistics().queued_bytes == 30
    await ref.stop(drain=True)
    assert worker.handled == [0, 1, 3]


async def test_byte_bound_senders_are_served_in_arrival_order(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    worker, ref = await busy_worker(system, mailbox_size=100, max_bytes=10)
    ref.tell_nowait(Work(1, size=8))
    async with trio.open_nursery() as nursery:
        # A large message waits; small ones that would fit behind it must not overtake it.
        for n, size in ((2, 9), (3, 1), (4, 1), (5, 7)):
            nursery.start_soon(ref.tell, Work(n, size=size))
            await trio.testing.wait_all_tasks_blocked()
        assert ref.statistics().senders_waiting == 4
        with pytest.raises(trio.WouldBlock):
            ref.tell_nowait(Work(6, size=1))  # nor does a newcomer
        assert ref.statistics().queued_bytes == 8
    await ref.stop(drain=True)
    assert worker.handled == [0, 1, 2, 3, 4, 5]
    assert ref.statistics().bytes_high_water <= 10


async def test_a_cancelled_large_sender_lets_the_smaller_ones_behind_it_in(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    worker, ref = await busy_worker(system, mailbox_size=100, max_bytes=10)
    ref.tell_nowait(Work(1, size=6))
    admitted = trio.Event()
    async with trio.open_nursery() as nursery:
        large = trio.CancelScope()

        async def tell_large() -> None:
            with large:
                await ref.tell(Work(2, size=9))

        async def tell_small() -> None:
            await ref.tell(Work(3, size=2))
            admitted.set()

        nursery.start_soon(tell_large)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(tell_small)
        await trio.testing.wait_all_tasks_blocked()
        assert not admitted.is_set()
        large.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert admitted.is_set()
        assert trio.current_time() < 1  # admitted at once, not when the actor took a message
    await ref.stop(drain=True)
    assert worker.handled == [0, 1, 3]


async def test_byte_bound_arguments_are_checked(system: actors.ActorSystem) -> None:
    with pytest.raises(ValueError, match="needs a weigher"):
        await system.spawn(Worker(), max_bytes=10)
    with pytest.raises(ValueError, match="only applies with max_bytes"):
        await system.spawn(Worker(), weigher=weigh)
    with pytest.raises(ValueError, match="at least 1"):
        await system.spawn(Worker(), max_bytes=0, weigher=weigh)


async def test_a_negative_weight_is_refused_in_the_senders_frame(
    system: actors.ActorSystem,
) -> None:
    ref = await system.spawn(Worker(), max_bytes=10, weigher=lambda message: -1)
    ref.tell_nowait(Work(0))  # handed to the idle actor, never weighed
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(ValueError, match="zero or more"):
        ref.tell_nowait(Work(1))


async def test_a_supervised_child_spec_carries_the_byte_bound(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    supervisor = await system.spawn(
        actors.Supervisor([actors.ChildSpec("worker", Worker, max_bytes=5, weigher=weigh)])
    )
    children = await supervisor.ask(actors.WhichChildren())
    assert children["worker"].statistics().max_bytes == 5


# -- overflow policy per actor ------------------------------------------------------------------


def dropped_letters(system: actors.ActorSystem) -> list[object]:
    return [
        letter.message
        for letter in system.dead_letters.recent()
        if letter.reason is actors.DeadLetterReason.DROPPED
    ]


async def overflowing_worker(
    system: actors.ActorSystem, overflow: actors.MailboxOverflow, **bounds: int
) -> tuple[Worker, actors.ActorRef[Work | Stats | Mark]]:
    """A busy worker whose ordinary lane (capacity 2 unless given) is full: Work 1 and 2."""
    worker = Worker()
    ref = await system.spawn(
        worker,
        mailbox_size=bounds.get("mailbox_size", 2),
        overflow=overflow,
        max_bytes=bounds.get("max_bytes"),
        weigher=weigh if "max_bytes" in bounds else None,
    )
    for n in range(3):
        ref.tell_nowait(Work(n))
        await trio.testing.wait_all_tasks_blocked()
    return worker, ref


async def test_drop_newest_drops_the_new_message_and_reports_it(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    worker, ref = await overflowing_worker(system, actors.MailboxOverflow.DROP_NEWEST)
    with trio.fail_after(0.5):  # never waits
        await ref.tell(Work(3))
        ref.tell_nowait(Work(4))
    stats = ref.statistics()
    assert (stats.overflow, stats.dropped, stats.depth) == (
        actors.MailboxOverflow.DROP_NEWEST,
        2,
        2,
    )
    await ref.stop(drain=True)
    assert worker.handled == [0, 1, 2]
    assert dropped_letters(system) == [Work(3), Work(4)]


async def test_drop_oldest_keeps_the_newest_and_reports_the_rest(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    worker, ref = await overflowing_worker(system, actors.MailboxOverflow.DROP_OLDEST)
    for n in (3, 4, 5):
        await ref.tell(Work(n))
    ref.tell_nowait(Mark(1))  # the control lane is not subject to the policy
    assert ref.statistics().dropped == 3
    await ref.stop(drain=True)
    assert worker.order == ["work 0", "mark 1", "work 4", "work 5"]
    assert dropped_letters(system) == [Work(1), Work(2), Work(3)]


async def test_drop_oldest_under_a_byte_bound_drops_until_the_new_one_fits(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    worker, ref = await overflowing_worker(
        system, actors.MailboxOverflow.DROP_OLDEST, mailbox_size=100, max_bytes=3
    )
    ref.tell_nowait(Work(3))  # 1 + 1 + 1 bytes: at the bound
    ref.tell_nowait(Work(4, size=2))  # drops Work 1 and Work 2
    assert ref.statistics().queued_bytes == 3
    await ref.stop(drain=True)
    assert worker.handled == [0, 3, 4]
    assert dropped_letters(system) == [Work(1), Work(2)]


async def test_fail_raises_in_the_sender_at_once(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    worker, ref = await overflowing_worker(system, actors.MailboxOverflow.FAIL)
    with trio.fail_after(0.5):
        with pytest.raises(actors.MailboxFullError, match="overflow policy FAIL"):
            await ref.tell(Work(3))
        with pytest.raises(actors.MailboxFullError):
            ref.tell_nowait(Work(4))
    assert ref.statistics().dropped == 0  # refused, not dropped: the sender knows
    await ref.stop(drain=True)
    assert worker.handled == [0, 1, 2]
    assert dropped_letters(system) == []


@attrs.frozen
class Double(actors.Request[int]):
    n: int


@attrs.define(eq=False)
class Doubler(actors.Actor[Double]):
    @actors.handler
    async def double(self, message: Double) -> int:
        await trio.sleep(1)
        return 2 * message.n


@pytest.mark.parametrize(
    "overflow",
    [
        actors.MailboxOverflow.DROP_NEWEST,
        actors.MailboxOverflow.DROP_OLDEST,
        actors.MailboxOverflow.FAIL,
    ],
)
async def test_an_ask_whose_message_is_dropped_fails_at_once(
    system: actors.ActorSystem,
    autojump_clock: trio.testing.MockClock,
    overflow: actors.MailboxOverflow,
) -> None:
    ref = await system.spawn(Doubler(), mailbox_size=1, overflow=overflow)
    answers: list[int | str] = []

    async def ask(n: int) -> None:
        try:
            answers.append(await ref.ask(Double(n), timeout=60))
        except actors.MailboxFullError:
            answers.append(f"full {n}")

    async with trio.open_nursery() as nursery:
        for n in range(3):  # one handled, one queued, one over the bound
            nursery.start_soon(ask, n)
            await trio.testing.wait_all_tasks_blocked()
    assert trio.current_time() < 3  # nobody waited for a deadline
    if overflow is actors.MailboxOverflow.DROP_OLDEST:
        assert answers == ["full 1", 0, 4]
    else:
        assert answers == ["full 2", 0, 2]


async def test_a_supervised_child_spec_carries_the_overflow_policy(
    system: actors.ActorSystem,
) -> None:
    supervisor = await system.spawn(
        actors.Supervisor(
            [actors.ChildSpec("worker", Worker, overflow=actors.MailboxOverflow.DROP_OLDEST)]
        )
    )
    children = await supervisor.ask(actors.WhichChildren())
    assert children["worker"].statistics().overflow is actors.MailboxOverflow.DROP_OLDEST


# -- holding the ordinary lane ------------------------------------------------------------------


async def test_a_held_mailbox_takes_control_messages_only_until_released(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    worker = Worker()
    ref = await system.spawn(worker, mailbox_size=2)
    worker.ctx.hold_messages()
    await ref.tell(Work(1))
    await ref.tell(Work(2))
    with pytest.raises(trio.WouldBlock):
        ref.tell_nowait(Work(3))  # the bound holds while held
    assert await ref.ask(Stats()) == []  # answered at once: control goes on
    await ref.tell(Mark(1))
    await trio.sleep(5)
    assert worker.handled == []
    assert ref.statistics().depth == 2
    worker.ctx.release_messages()
    await trio.sleep(3)
    assert worker.handled == [1, 2]
    assert worker.order == ["stats", "mark 1", "work 1", "work 2"]


async def test_a_stop_while_held_dead_letters_the_held_messages(
    system: actors.ActorSystem,
) -> None:
    worker = Worker()
    ref = await system.spawn(worker)
    worker.ctx.hold_messages()
    await ref.tell(Work(1))
    assert await ref.stop() == actors.Normal()
    (letter,) = system.dead_letters.recent()
    assert (letter.message, letter.reason) == (Work(1), actors.DeadLetterReason.STOPPED)
