"""Topics and the system event stream: per-subscriber bounds, overflow policies, lifetimes."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

import actors
from actors._events import publish_event
from tests.messages import Boom, Counter, Record, Recorder

NON_BLOCKING = [
    actors.OverflowPolicy.DROP_OLDEST,
    actors.OverflowPolicy.DROP_NEWEST,
    actors.OverflowPolicy.DISCONNECT,
]


@attrs.define(eq=False)
class Listener(actors.Actor[Record | actors.Lagged]):
    """Records values and Lagged notices; with ``release`` set, waits on it in every handler."""

    seen: list[object] = attrs.field(factory=list)
    release: trio.Event | None = None

    @actors.handler
    async def record(self, message: Record) -> None:
        if self.release is not None:
            await self.release.wait()
        self.seen.append(message.value)

    @actors.handler
    def lagged(self, message: actors.Lagged) -> None:
        self.seen.append(message)


@attrs.define(eq=False)
class EventListener(actors.Actor[actors.SystemEvent]):
    seen: list[actors.SystemEvent] = attrs.field(factory=list)

    @actors.handler
    def event(self, message: actors.SystemEvent) -> None:
        self.seen.append(message)


def drained(channel: actors.TopicReceiveChannel[int]) -> list[int]:
    values = []
    while True:
        try:
            values.append(channel.receive_nowait())
        except trio.WouldBlock:
            return values


def dropped_letters(system: actors.ActorSystem) -> list[actors.DeadLetter]:
    return [
        letter
        for letter in system.dead_letters.recent()
        if letter.reason is actors.DeadLetterReason.DROPPED
    ]


# -- lookup and plain delivery ----------------------------------------------------------------


async def test_topics_are_found_by_name_and_keep_their_settings(
    system: actors.ActorSystem,
) -> None:
    prices: actors.Topic[int] = system.topic(
        "prices", policy=actors.OverflowPolicy.DROP_OLDEST, buffer=8
    )
    again: actors.Topic[int] = system.topic("prices")
    assert again is prices
    assert (prices.name, prices.policy, prices.buffer) == (
        "prices",
        actors.OverflowPolicy.DROP_OLDEST,
        8,
    )
    with pytest.raises(ValueError, match="already exists with policy DROP_OLDEST"):
        system.topic("prices", policy=actors.OverflowPolicy.BLOCK)
    default: actors.Topic[int] = system.topic("other")
    assert default.policy is actors.OverflowPolicy.BLOCK
    assert default.buffer == actors.DEFAULT_TOPIC_BUFFER
    with pytest.raises(ValueError, match="at least 1"):
        system.topic("bad", buffer=0)


async def test_channel_subscribers_each_get_every_message_in_order(
    system: actors.ActorSystem,
) -> None:
    numbers: actors.Topic[int] = system.topic("numbers")
    numbers.publish_nowait(-1)  # nobody listens yet: not kept for later subscribers
    with numbers.subscribe() as first, numbers.subscribe(buffer=5) as second:
        for value in range(5):
            await numbers.publish(value)
        assert drained(first) == drained(second) == [0, 1, 2, 3, 4]
        assert second.statistics().buffer == 5
        assert numbers.statistics().subscribers == 2
    assert numbers.statistics().subscribers == 0
    assert numbers.statistics().published == 6


async def test_channel_receive_waits_and_async_iteration_ends_with_the_topic(
    system: actors.ActorSystem,
) -> None:
    numbers: actors.Topic[int] = system.topic("numbers")
    seen: list[int] = []
    with numbers.subscribe() as channel:

        async def read() -> None:
            async for value in channel:
                seen.append(value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            numbers.publish_nowait(1)
            numbers.publish_nowait(2)
            numbers.close()
    assert seen == [1, 2]
    with pytest.raises(actors.TopicClosedError, match="'numbers' is closed"):
        numbers.publish_nowait(3)
    assert system.topic("numbers") is not numbers  # the name is free again


async def test_a_second_concurrent_reader_is_refused(system: actors.ActorSystem) -> None:
    numbers: actors.Topic[int] = system.topic("numbers")
    with numbers.subscribe() as channel:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(channel.receive)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError, match="already receiving"):
                await channel.receive()
            numbers.publish_nowait(1)


async def test_a_closed_channel_is_unsubscribed(system: actors.ActorSystem) -> None:
    numbers: actors.Topic[int] = system.topic("numbers")
    with numbers.subscribe() as channel:
        numbers.publish_nowait(1)
        await channel.aclose()
        assert not channel.statistics().active
        assert numbers.statistics().subscribers == 0
        with pytest.raises(trio.ClosedResourceError):
            channel.receive_nowait()


# -- BLOCK -------------------------------------------------------------------------------------


async def test_block_waits_for_the_slowest_subscriber(system: actors.ActorSystem) -> None:
    numbers: actors.Topic[int] = system.topic("numbers", buffer=2)
    with numbers.subscribe() as slow, numbers.subscribe(buffer=10) as fast:
        numbers.publish_nowait(1)
        numbers.publish_nowait(2)
        with pytest.raises(trio.WouldBlock):
            numbers.publish_nowait(3)
        assert drained(fast) == [1, 2]  # the refused message went to nobody
        published = trio.Event()

        async def publish_three() -> None:
            await numbers.publish(3)
            published.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish_three)
            await trio.testing.wait_all_tasks_blocked()
            assert not published.is_set()
            assert numbers.statistics().publishers_waiting == 1
            assert drained(fast) == []
            with pytest.raises(trio.WouldBlock):  # no overtaking a waiting publisher
                numbers.publish_nowait(4)
            assert await slow.receive() == 1
        assert published.is_set()
        assert drained(fast) == [3]
        assert drained(slow) == [2, 3]
    assert numbers.statistics().dropped == 0
    assert dropped_letters(system) == []


async def test_block_publish_cancelled_while_waiting_delivers_to_nobody(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    numbers: actors.Topic[int] = system.topic("numbers", buffer=1)
    with numbers.subscribe() as slow, numbers.subscribe(buffer=10) as fast:
        await numbers.publish(1)
        with trio.move_on_after(5) as scope:
            await numbers.publish(2)
        assert scope.cancelled_caught
        assert drained(slow) == drained(fast) == [1] == [fast.statistics().accepted]
        await numbers.publish(3)  # room again
        assert drained(slow) == [3]


async def test_closing_a_topic_wakes_a_blocked_publisher(system: actors.ActorSystem) -> None:
    numbers: actors.Topic[int] = system.topic("numbers", buffer=1)
    with numbers.subscribe():
        numbers.publish_nowait(1)
        async with trio.open_nursery() as nursery:

            async def publish_two() -> None:
                with pytest.raises(actors.TopicClosedError):
                    await numbers.publish(2)

            nursery.start_soon(publish_two)
            await trio.testing.wait_all_tasks_blocked()
            numbers.close()


# -- the non-blocking policies -----------------------------------------------------------------


async def test_drop_oldest_keeps_the_newest_and_dead_letters_the_rest(
    system: actors.ActorSystem,
) -> None:
    numbers: actors.Topic[int] = system.topic(
        "numbers", policy=actors.OverflowPolicy.DROP_OLDEST, buffer=3
    )
    with numbers.subscribe() as channel:
        for value in range(5):
            numbers.publish_nowait(value)
        assert drained(channel) == [2, 3, 4]
        stats = channel.statistics()
        assert (stats.accepted, stats.dropped, stats.active) == (5, 2, True)
    assert numbers.statistics().dropped == 2
    letters = dropped_letters(system)
    assert [letter.message for letter in letters] == [0, 1]
    assert {letter.recipient for letter in letters} == {stats.subscriber}
    assert stats.subscriber.startswith("topic:numbers/channel-")


async def test_drop_newest_keeps_the_oldest_and_dead_letters_the_rest(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    numbers: actors.Topic[int] = system.topic(
        "numbers", policy=actors.OverflowPolicy.DROP_NEWEST, buffer=3
    )
    with numbers.subscribe() as channel:
        with trio.fail_after(1):  # never waits for the full subscriber
            for value in range(5):
                await numbers.publish(value)
        assert drained(channel) == [0, 1, 2]
        assert (channel.statistics().accepted, channel.statistics().dropped) == (3, 2)
    assert numbers.statistics().dropped == 2
    assert [letter.message for letter in dropped_letters(system)] == [3, 4]


# -- a policy per subscription -------------------------------------------------------------------


async def test_a_subscriber_may_drop_on_a_blocking_topic_without_slowing_it(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    numbers: actors.Topic[int] = system.topic("numbers", buffer=10)
    with (
        numbers.subscribe() as careful,
        numbers.subscribe(policy=actors.OverflowPolicy.DROP_OLDEST, buffer=2) as hasty,
    ):
        with trio.fail_after(1):  # the dropping subscriber never makes the publisher wait
            for value in range(10):
                await numbers.publish(value)
        assert drained(hasty) == [8, 9]
        assert drained(careful) == list(range(10))
        assert hasty.statistics().policy is actors.OverflowPolicy.DROP_OLDEST
        assert careful.statistics().policy is actors.OverflowPolicy.BLOCK
        assert (hasty.statistics().dropped, careful.statistics().dropped) == (8, 0)
    assert numbers.statistics().policy is actors.OverflowPolicy.BLOCK  # the default is unchanged
    assert [letter.message for letter in dropped_letters(system)] == list(range(8))


async def test_a_blocking_subscriber_on_a_dropping_topic_makes_publishers_wait(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    numbers: actors.Topic[int] = system.topic(
        "numbers", policy=actors.OverflowPolicy.DROP_NEWEST, buffer=1
    )
    with (
        numbers.subscribe() as dropping,
        numbers.subscribe(policy=actors.OverflowPolicy.BLOCK, buffer=2) as careful,
    ):
        numbers.publish_nowait(1)
        numbers.publish_nowait(2)
        with pytest.raises(trio.WouldBlock):
            numbers.publish_nowait(3)
        with trio.move_on_after(5) as waited:
            await numbers.publish(3)
        assert waited.cancelled_caught
        assert drained(careful) == [1, 2]
        await numbers.publish(3)
        assert drained(careful) == [3]
        assert drained(dropping) == [1]  # never read: 2 and 3 found it full
        assert dropping.statistics().dropped == 2


async def test_an_actor_subscription_may_choose_its_policy(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    numbers: actors.Topic[Record] = system.topic("numbers", buffer=10)
    release = trio.Event()
    slow = Listener(release=release)
    ref = await system.spawn(slow, mailbox_size=1)
    subscription = numbers.subscribe_actor(ref, buffer=1, policy=actors.OverflowPolicy.DROP_NEWEST)
    assert subscription.statistics().policy is actors.OverflowPolicy.DROP_NEWEST
    with trio.fail_after(1):
        for value in range(6):
            await numbers.publish(Record(value))
            await trio.testing.wait_all_tasks_blocked()
    release.set()
    await ref.stop(drain=True)
    # 0 in the handler, 1 in the mailbox, 2 held by the forwarder waiting for room, 3 in
    # the topic's queue of one: 4 and 5 were dropped. The draining stop refuses 2 and 3.
    assert slow.seen == [0, 1]
    assert subscription.statistics().dropped == 2
    assert [letter.message for letter in dropped_letters(system)] == [Record(4), Record(5)]
    with pytest.raises(actors.UnhandledMessageError, match="subscribe with another policy"):
        numbers.subscribe_actor(
            await system.spawn(Recorder([])), policy=actors.OverflowPolicy.DISCONNECT
        )


async def test_disconnect_lets_a_channel_read_its_queue_then_says_it_lagged(
    system: actors.ActorSystem,
) -> None:
    numbers: actors.Topic[int] = system.topic(
        "numbers", policy=actors.OverflowPolicy.DISCONNECT, buffer=2
    )
    with numbers.subscribe() as slow, numbers.subscribe(buffer=10) as fast:
        for value in range(4):
            numbers.publish_nowait(value)
        assert not slow.statistics().active
        assert await slow.receive() == 0
        assert await slow.receive() == 1
        with pytest.raises(actors.SubscriberLaggedError, match="fell more than 2 messages") as info:
            await slow.receive()
        assert (info.value.topic, info.value.dropped) == ("numbers", 1)
        assert isinstance(info.value, trio.BrokenResourceError)
        assert drained(fast) == [0, 1, 2, 3]
    stats = numbers.statistics()
    assert (stats.dropped, stats.disconnected, stats.subscribers) == (1, 1, 0)
    (letter,) = dropped_letters(system)
    assert letter.message == 2
    assert isinstance(letter.error, actors.SubscriberLaggedError)


async def test_disconnect_tells_an_actor_lagged_after_its_queue(
    system: actors.ActorSystem,
) -> None:
    numbers: actors.Topic[Record] = system.topic(
        "numbers", policy=actors.OverflowPolicy.DISCONNECT, buffer=2
    )
    release = trio.Event()
    listener = Listener(release=release)
    ref = await system.spawn(listener, mailbox_size=1)
    subscription = numbers.subscribe_actor(ref)
    for value in range(10):
        await numbers.publish(Record(value))
        await trio.testing.wait_all_tasks_blocked()
    assert not subscription.is_active
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    # Handler busy with 0, mailbox holds 1, forwarder holds 2, queue holds 3 and 4; 5 overflows.
    assert listener.seen == [0, 1, 2, 3, 4, actors.Lagged("numbers", 1)]
    assert subscription.statistics().dropped == 1
    assert [letter.message for letter in dropped_letters(system)] == [Record(5)]


async def test_disconnect_needs_a_lagged_handler(system: actors.ActorSystem) -> None:
    numbers: actors.Topic[Record] = system.topic("numbers", policy=actors.OverflowPolicy.DISCONNECT)
    recorder = await system.spawn(Recorder([]))
    with pytest.raises(actors.UnhandledMessageError, match=r"no handler for actors\.Lagged"):
        numbers.subscribe_actor(recorder)


@pytest.mark.parametrize("policy", NON_BLOCKING, ids=lambda policy: policy.name)
async def test_a_stuck_subscriber_does_not_delay_the_others(
    system: actors.ActorSystem,
    autojump_clock: trio.testing.MockClock,
    policy: actors.OverflowPolicy,
) -> None:
    numbers: actors.Topic[Record] = system.topic("numbers", policy=policy, buffer=3)
    release = trio.Event()
    stuck_actor = Listener(release=release)
    fast_actor = Listener()
    stuck_ref = await system.spawn(stuck_actor, mailbox_size=2)
    fast_ref = await system.spawn(fast_actor, mailbox_size=2)
    numbers.subscribe_actor(stuck_ref)
    numbers.subscribe_actor(fast_ref, buffer=50)
    with numbers.subscribe() as stuck_channel, numbers.subscribe(buffer=50) as fast_channel:
        with trio.fail_after(1):  # virtual time: any wait for the stuck ones would time out
            for value in range(30):
                await numbers.publish(Record(value))
        await trio.testing.wait_all_tasks_blocked()
        expected = [Record(value) for value in range(30)]
        assert fast_actor.seen == list(range(30))
        assert [fast_channel.receive_nowait() for _ in range(30)] == expected
        assert stuck_actor.seen == []
        assert len(drained_records(stuck_channel)) == 3
    # The stuck actor holds 1 in its handler, 2 in its mailbox, 1 in its forwarder, 3 queued.
    stats = numbers.statistics()
    if policy is actors.OverflowPolicy.DISCONNECT:
        assert (stats.dropped, stats.disconnected) == (2, 2)
    else:
        assert (stats.dropped, stats.disconnected) == ((30 - 7) + (30 - 3), 0)
    assert len(dropped_letters(system)) == stats.dropped
    release.set()


def drained_records(channel: actors.TopicReceiveChannel[Record]) -> list[Record]:
    values = []
    while True:
        try:
            values.append(channel.receive_nowait())
        except (trio.WouldBlock, actors.SubscriberLaggedError):
            return values


# -- actor subscribers ------------------------------------------------------------------------


async def test_actor_subscribers_get_messages_in_order_from_no_sender(
    system: actors.ActorSystem,
) -> None:
    numbers: actors.Topic[Record] = system.topic("numbers")
    seen: list[object] = []
    ref = await system.spawn(Recorder(seen))
    subscription = numbers.subscribe_actor(ref)
    assert (subscription.topic, subscription.subscriber) == ("numbers", ref.path)
    with pytest.raises(ValueError, match="already subscribed"):
        numbers.subscribe_actor(ref)
    for value in range(5):
        await numbers.publish(Record(value))
    await trio.testing.wait_all_tasks_blocked()
    assert seen == [0, 1, 2, 3, 4]
    subscription.unsubscribe()
    subscription.unsubscribe()
    await numbers.publish(Record(5))
    await trio.testing.wait_all_tasks_blocked()
    assert seen == [0, 1, 2, 3, 4]
    assert numbers.statistics().subscribers == 0
    numbers.subscribe_actor(ref)  # may subscribe again
    await numbers.publish(Record(6))
    await trio.testing.wait_all_tasks_blocked()
    assert seen == [0, 1, 2, 3, 4, 6]


async def test_unsubscribing_still_delivers_what_was_queued(system: actors.ActorSystem) -> None:
    numbers: actors.Topic[Record] = system.topic("numbers")
    seen: list[object] = []
    ref = await system.spawn(Recorder(seen))
    subscription = numbers.subscribe_actor(ref)
    numbers.publish_nowait(Record(1))
    numbers.publish_nowait(Record(2))
    subscription.unsubscribe()
    await trio.testing.wait_all_tasks_blocked()
    assert seen == [1, 2]


async def test_a_subscription_ends_when_the_actor_stops(system: actors.ActorSystem) -> None:
    numbers: actors.Topic[Record] = system.topic("numbers", buffer=10)
    release = trio.Event()
    ref = await system.spawn(Listener(release=release), mailbox_size=1)
    subscription = numbers.subscribe_actor(ref)
    for value in range(6):
        await numbers.publish(Record(value))
    await trio.testing.wait_all_tasks_blocked()
    assert subscription.statistics().depth == 3  # 0 handled, 1 queued, 2 in tell, 3-5 here
    await ref.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert not subscription.is_active
    assert numbers.statistics().subscribers == 0
    stopped = [
        letter.message
        for letter in system.dead_letters.recent()
        if letter.reason is actors.DeadLetterReason.STOPPED
    ]
    assert len(stopped) == 6
    assert set(stopped) == {Record(value) for value in range(6)}
    await numbers.publish(Record(6))  # nobody left: no drop, no dead letter
    assert numbers.statistics().dropped == 0
    with pytest.raises(actors.ActorStoppedError, match="cannot subscribe"):
        numbers.subscribe_actor(ref)


async def test_an_actor_that_cannot_handle_a_message_gets_an_undeliverable_letter(
    system: actors.ActorSystem,
) -> None:
    mixed: actors.Topic[object] = system.topic("mixed")
    seen: list[object] = []
    ref = await system.spawn(Recorder(seen))
    mixed.subscribe_actor(ref)  # type: ignore[arg-type]  # the point of this test
    mixed.publish_nowait("not a Record")
    mixed.publish_nowait(Record(1))
    await trio.testing.wait_all_tasks_blocked()
    assert seen == [1]
    (letter,) = [
        letter
        for letter in system.dead_letters.recent()
        if letter.reason is actors.DeadLetterReason.UNDELIVERABLE
    ]
    assert letter.message == "not a Record"
    assert isinstance(letter.error, actors.UnhandledMessageError)


# -- lifetime -----------------------------------------------------------------------------------


async def test_topics_die_with_their_system() -> None:
    seen: list[int] = []
    async with trio.open_nursery() as nursery:
        async with actors.open_system("short") as system:
            numbers: actors.Topic[int] = system.topic("numbers")

            async def read(task_status: trio.TaskStatus[None]) -> None:
                with numbers.subscribe() as channel:
                    task_status.started()
                    async for value in channel:  # ends when the system closes the topic
                        seen.append(value)

            await nursery.start(read)
            numbers.publish_nowait(1)
    assert seen == [1]
    assert numbers.is_closed
    with pytest.raises(actors.TopicClosedError, match="its actor system has shut down"):
        numbers.publish_nowait(2)
    with pytest.raises(actors.SystemClosedError):
        system.topic("numbers")


async def test_a_topic_refuses_other_threads(system: actors.ActorSystem) -> None:
    numbers: actors.Topic[int] = system.topic("numbers")
    with pytest.raises(actors.WrongThreadError, match="trio thread"):
        await trio.to_thread.run_sync(numbers.publish_nowait, 1)


# -- the system event stream ------------------------------------------------------------------


async def test_the_event_stream_drops_the_oldest_and_never_blocks(
    system: actors.ActorSystem,
) -> None:
    stream = system.events
    assert stream is system.events
    assert stream.policy is actors.OverflowPolicy.DROP_OLDEST
    assert stream.buffer == actors.EVENT_STREAM_BUFFER
    publish_event(system, actors.ActorFailed("/nobody-listens", ValueError()))
    with stream.subscribe(buffer=2) as events:
        for n in range(5):
            publish_event(system, actors.ActorRestarted("/a", ValueError(n), n))
        kept = drained_events(events)
        assert [e.restarts for e in kept if isinstance(e, actors.ActorRestarted)] == [3, 4]
    assert stream.statistics().dropped == 3
    assert system.dead_letters.count == 0  # event drops are counted, not dead-lettered


async def test_the_event_stream_reaches_actor_subscribers(system: actors.ActorSystem) -> None:
    listener = EventListener()
    ref = await system.spawn(listener)
    system.events.subscribe_actor(ref)
    error = ValueError("boom")
    publish_event(system, actors.ActorFailed("/somewhere", error))
    await trio.testing.wait_all_tasks_blocked()
    assert listener.seen == [actors.ActorFailed("/somewhere", error)]


def drained_events(
    channel: actors.TopicReceiveChannel[actors.SystemEvent],
) -> list[actors.SystemEvent]:
    events = []
    while True:
        try:
            events.append(channel.receive_nowait())
        except trio.WouldBlock:
            return events


# These two need the runtime to call publish_event (see actors/_events.py).


async def test_the_event_stream_reports_actor_failures(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    error = KeyError("lost")
    with system.events.subscribe() as events:
        with pytest.raises(KeyError):
            await counter.ask(Boom(error))
        await counter.wait_stopped()
        failures = [e for e in drained_events(events) if isinstance(e, actors.ActorFailed)]
    assert failures == [actors.ActorFailed(counter.path, error)]


async def test_the_event_stream_reports_dead_letters(system: actors.ActorSystem) -> None:
    letter = actors.DeadLetter(
        message="lost", recipient="/x", sender=None, reason=actors.DeadLetterReason.DROPPED
    )
    with system.events.subscribe() as events:
        system.dead_letters.publish(letter)
        assert drained_events(events) == [actors.DeadLetterPublished(letter)]
