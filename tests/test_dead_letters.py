"""Dead letters: observable, counted, with reason and sender."""

from __future__ import annotations

import contextlib

import attrs
import pytest
import trio
import trio.testing

import actors
from tests.messages import Add, Boom, Counter, keep_busy


@attrs.frozen
class Forward:
    to: actors.ActorRef[Add]


@attrs.define(eq=False)
class Forwarder(actors.Actor[Forward]):
    @actors.handler
    async def forward(self, message: Forward) -> None:
        await message.to.tell(Add(1))


async def test_failed_message_is_dead_lettered_with_the_exception(
    system: actors.ActorSystem,
) -> None:
    counter = await system.spawn(Counter())
    error = ValueError("nope")
    with system.dead_letters.subscribe() as letters:
        with pytest.raises(ValueError, match="nope"):
            await counter.ask(Boom(error))
        letter = await letters.receive()
    assert letter.reason is actors.DeadLetterReason.FAILED
    assert letter.error is error
    assert letter.message == Boom(error)
    assert letter.recipient == counter.path
    assert letter.sender is None  # sent from outside any actor


async def test_dead_letter_names_the_sending_actor(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await system.spawn(Counter(), mailbox_size=4)
    forwarder = await system.spawn(Forwarder())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_busy, counter, 50)  # the forwarded Add stays queued
        await trio.testing.wait_all_tasks_blocked()
        await forwarder.tell(Forward(counter))
        await trio.testing.wait_all_tasks_blocked()
        counter.request_stop()
    (forwarded,) = [letter for letter in system.dead_letters.recent() if letter.message == Add(1)]
    assert forwarded.sender is forwarder
    assert forwarded.recipient == counter.path
    assert forwarded.reason is actors.DeadLetterReason.STOPPED


async def test_statistics_count_by_reason_and_subscriber_drops(
    system: actors.ActorSystem,
) -> None:
    counter = await system.spawn(Counter())
    with system.dead_letters.subscribe(buffer=1) as letters:
        for _ in range(3):
            system.dead_letters.publish(
                actors.DeadLetter(
                    message=Add(),
                    recipient=counter.path,
                    sender=None,
                    reason=actors.DeadLetterReason.DROPPED,
                )
            )
        assert letters.receive_nowait().reason is actors.DeadLetterReason.DROPPED
    stats = system.dead_letters.statistics()
    assert stats.total == 3
    assert stats.by_reason == {actors.DeadLetterReason.DROPPED: 3}
    assert stats.subscriber_drops == 2
    assert system.statistics().dead_letters == 3


async def test_subscriptions_end_when_the_system_closes() -> None:
    seen: list[actors.DeadLetter] = []
    finished = trio.Event()

    async def reporter(letters: trio.MemoryReceiveChannel[actors.DeadLetter]) -> None:
        async for letter in letters:
            seen.append(letter)
        finished.set()

    async with trio.open_nursery() as nursery:
        with contextlib.ExitStack() as subscriptions:
            async with actors.open_system() as system:
                letters = subscriptions.enter_context(system.dead_letters.subscribe())
                nursery.start_soon(reporter, letters)
                counter = await system.spawn(Counter())
                with pytest.raises(ValueError, match="x"):
                    await counter.ask(Boom(ValueError("x")))
            # The subscription is still open here, but the system has closed it.
            with trio.fail_after(1):
                await finished.wait()
    assert [letter.reason for letter in seen] == [actors.DeadLetterReason.FAILED]
