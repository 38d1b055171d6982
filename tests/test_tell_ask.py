"""tell / tell_nowait / ask: backpressure, replies, deadlines, errors."""

from __future__ import annotations

import math
import traceback

import attrs
import pytest
import trio
import trio.testing

import actors
from actors.testing import wait_idle
from tests.messages import Add, Boom, Counter, Record, Recorder, Sleep, Total, keep_busy


async def test_tell_then_ask_sees_messages_in_order(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    for _ in range(10):
        await counter.tell(Add(2))
    assert await counter.ask(Total()) == 20
    assert counter.statistics().processed == 11


async def test_tell_blocks_at_the_bound_and_nowait_raises(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await system.spawn(Counter(), mailbox_size=2)
    # Keep the actor busy so nothing is consumed while we fill the mailbox.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_busy, counter, 10)
        await trio.testing.wait_all_tasks_blocked()
        counter.tell_nowait(Add())
        counter.tell_nowait(Add())
        with pytest.raises(trio.WouldBlock):
            counter.tell_nowait(Add())
        blocked_done = trio.Event()

        async def blocked_tell() -> None:
            await counter.tell(Add(100))
            blocked_done.set()

        nursery.start_soon(blocked_tell)
        await trio.testing.wait_all_tasks_blocked()
        assert not blocked_done.is_set()
        stats = counter.statistics()
        assert (stats.depth, stats.capacity, stats.senders_waiting) == (2, 2, 1)
        assert stats.high_water == 2
    assert blocked_done.is_set()
    assert await counter.ask(Total()) == 102


async def test_ask_returns_the_handler_value_typed(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter(total=41))
    await counter.tell(Add())
    total: int = await counter.ask(Total())
    assert total == 42


async def test_ask_raises_the_handlers_own_exception(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    error = KeyError("missing")
    with pytest.raises(KeyError) as info:
        await counter.ask(Boom(error))
    assert info.value is error


async def test_ask_deadline_with_virtual_time(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await system.spawn(Counter())
    start = trio.current_time()
    with pytest.raises(actors.AskTimeoutError, match=r"did not answer Sleep within 1\.5s"):
        await counter.ask(Sleep(60), timeout=1.5)
    assert trio.current_time() - start == pytest.approx(1.5)
    # AskTimeoutError is a trio.TooSlowError, so trio-style code catches it too.
    assert issubclass(actors.AskTimeoutError, trio.TooSlowError)


async def test_ask_default_deadline_applies(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system(ask_timeout=3) as system:
        counter = await system.spawn(Counter())
        start = trio.current_time()
        with pytest.raises(actors.AskTimeoutError):
            await counter.ask(Sleep(3600))
        assert trio.current_time() - start == pytest.approx(3)


async def test_late_reply_is_discarded_counted_and_dead_lettered(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await system.spawn(Counter())
    with pytest.raises(actors.AskTimeoutError):
        await counter.ask(Sleep(10), timeout=1)
    await trio.sleep(20)  # the handler finishes and replies late
    assert system.statistics().late_replies == 1
    (letter,) = system.dead_letters.recent()
    assert letter.reason is actors.DeadLetterReason.LATE_REPLY
    assert letter.message == "slept"
    assert letter.recipient == counter.path


async def test_ask_with_a_full_mailbox_still_has_a_deadline(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await system.spawn(Counter(), mailbox_size=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_busy, counter, 100)
        await trio.testing.wait_all_tasks_blocked()
        counter.tell_nowait(Add())
        start = trio.current_time()
        with pytest.raises(actors.AskTimeoutError):
            await counter.ask(Total(), timeout=2)
        assert trio.current_time() - start == pytest.approx(2)


async def test_ask_without_deadline_when_asked_explicitly(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await system.spawn(Counter())
    assert await counter.ask(Sleep(3600), timeout=math.inf) == "slept"


async def test_ask_to_a_dying_actor_fails_at_once(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await system.spawn(Counter())
    outcomes: list[BaseException] = []

    async def ask_and_record(message: Total | Sleep) -> None:
        try:
            await counter.ask(message, timeout=1000)
        except actors.ActorStoppedError as exc:
            outcomes.append(exc)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask_and_record, Sleep(500))  # in the handler when stopped
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(ask_and_record, Total())  # queued when stopped
        await trio.testing.wait_all_tasks_blocked()
        await counter.stop()
    assert len(outcomes) == 2
    assert trio.current_time() - start < 1
    messages = sorted(str(exc) for exc in outcomes)
    assert "has stopped (normal)" in messages[0]  # the queued ask
    assert "was stopped or cancelled while handling" in messages[1]  # the one in the handler


async def test_ask_an_already_stopped_actor_fails_at_once(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    await counter.stop()
    with pytest.raises(actors.ActorStoppedError, match=r"actor /counter-\d+ has stopped"):
        await counter.ask(Total())
    with pytest.raises(actors.ActorStoppedError):
        await counter.tell(Add())
    with pytest.raises(actors.ActorStoppedError):
        counter.tell_nowait(Add())


async def test_blocked_sender_gets_an_error_when_the_actor_stops(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await system.spawn(Counter(), mailbox_size=1)
    errors: list[BaseException] = []

    async def blocked_tell() -> None:
        try:
            await counter.tell(Add())
        except actors.ActorStoppedError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_busy, counter, 10)
        await trio.testing.wait_all_tasks_blocked()
        counter.tell_nowait(Add())
        nursery.start_soon(blocked_tell)
        await trio.testing.wait_all_tasks_blocked()
        counter.request_stop()
    assert isinstance(await counter.wait_stopped(), actors.Normal)
    assert len(errors) == 1


class Asker(actors.Actor[Total]):
    @actors.handler
    async def total(self, message: Total) -> int:
        return await self.ctx.ref.ask(Total())


async def test_asking_yourself_is_an_immediate_error(system: actors.ActorSystem) -> None:
    asker = await system.spawn(Asker())
    with pytest.raises(actors.SelfAskError, match="asked itself"):
        await asker.ask(Total())


async def test_tell_preserves_per_sender_order_under_concurrency(
    system: actors.ActorSystem,
) -> None:
    seen: list[object] = []
    recorder = await system.spawn(Recorder(seen), mailbox_size=4)

    async def sender(index: int) -> None:
        for n in range(200):
            await recorder.tell(Record((index, n)))

    async with trio.open_nursery() as nursery:
        for index in range(5):
            nursery.start_soon(sender, index)
    await recorder.stop(drain=True)
    assert len(seen) == 1000
    pairs = [value for value in seen if isinstance(value, tuple)]
    for index in range(5):
        assert [n for (i, n) in pairs if i == index] == list(range(200))


@attrs.frozen
class Lookup(actors.Request[int]):
    key: str


@attrs.define(eq=False)
class Directory(actors.Actor[Lookup]):
    entries: dict[str, int] = attrs.Factory(lambda: {"a": 1})

    @actors.handler
    def lookup(self, message: Lookup) -> int:
        if message.key not in self.entries:
            raise actors.ErrorReply(KeyError(message.key))
        return self.entries[message.key]


async def test_error_reply_fails_the_ask_but_not_the_actor(system: actors.ActorSystem) -> None:
    directory = await system.spawn(Directory())
    with pytest.raises(KeyError, match="nope"):
        await directory.ask(Lookup("nope"))
    assert await directory.ask(Lookup("a")) == 1
    await directory.tell(Lookup("told"))  # nobody asks: the error becomes a dead letter
    assert await directory.ask(Lookup("a")) == 1
    (letter,) = system.dead_letters.recent()
    assert letter.reason is actors.DeadLetterReason.REJECTED
    assert isinstance(letter.error, KeyError)
    assert directory.is_alive
    assert directory.statistics().processed == 4


async def test_failure_log_shows_the_handlers_traceback_not_the_askers(
    system: actors.ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    counter = await system.spawn(Counter())
    with pytest.raises(ValueError, match="bad"):
        await counter.ask(Boom(ValueError("bad")))
    await counter.wait_stopped()
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.exc_info is not None
    frames = traceback.extract_tb(record.exc_info[2])
    assert frames[-1].name == "boom"
    assert "test_failure_log_shows" not in {frame.name for frame in frames}


# -- send_request: an ask whose reply is collected later --------------------------------------


async def test_send_request_returns_at_once_and_the_reply_comes_later(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await system.spawn(Counter())
    await counter.tell(Add(2))
    busy = await counter.send_request(Sleep(10))
    pending = [await counter.send_request(Total()) for _ in range(3)]
    assert not busy.done
    assert not pending[0].done
    with pytest.raises(trio.WouldBlock):
        pending[0].result()
    assert await pending[2].wait() == 2  # handled in order: the others are done too
    assert [reply.done for reply in pending] == [True, True, True]
    assert [reply.result() for reply in pending] == [2, 2, 2]
    assert pending[0].result() == 2  # read again


async def test_send_request_reply_carries_the_handlers_error_and_the_stop(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    directory = await system.spawn(Directory())
    rejected = await directory.send_request(Lookup("nope"))
    found = await directory.send_request(Lookup("a"))
    with pytest.raises(KeyError, match="nope"):
        await rejected.wait()
    with pytest.raises(KeyError, match="nope"):
        rejected.result()  # and again
    assert await found.wait() == 1
    counter = await system.spawn(Counter())
    busy = await counter.send_request(Sleep(10))
    failing = await counter.send_request(Boom(ValueError("bad")))
    never = await counter.send_request(Total())
    with pytest.raises(ValueError, match="bad"):
        await failing.wait()
    assert busy.result() == "slept"
    with pytest.raises(actors.ActorStoppedError):
        await never.wait()  # the actor failed before it: refused, not left hanging
    assert system.late_replies == 0


async def test_a_stashed_request_is_answered_when_it_is_finally_handled(
    system: actors.ActorSystem,
) -> None:
    client = await system.spawn(StashingClient())
    early = await client.send_request(Lookup("a"))
    await wait_idle(system)
    assert not early.done  # stashed: not answered by the handler that stashed it
    await client.tell(Connect())
    assert await early.wait() == 1


async def test_one_task_at_a_time_waits_for_a_reply(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    pending = await counter.send_request(Sleep(0.1))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pending.wait)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await pending.wait()
    assert pending.result() == "slept"


@attrs.frozen
class Connect:
    pass


@attrs.define(eq=False)
class StashingClient(actors.Actor[Lookup | Connect]):
    connected: bool = False

    @actors.handler
    def lookup(self, message: Lookup) -> int:
        if not self.connected:
            self.ctx.stash.stash()
            return -1
        return ord(message.key) - ord("a") + 1

    @actors.handler
    def connect(self, message: Connect) -> None:
        self.connected = True
        self.ctx.stash.unstash_all()


async def test_send_request_nowait_refuses_when_the_mailbox_is_full(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await system.spawn(Counter(), mailbox_size=1)
    busy = counter.send_request_nowait(Sleep(1))
    await trio.testing.wait_all_tasks_blocked()  # the actor is in its handler
    queued = counter.send_request_nowait(Total())
    with pytest.raises(trio.WouldBlock):
        counter.send_request_nowait(Total())
    assert (await busy.wait(), await queued.wait()) == ("slept", 0)
