"""The thread entry point: plain OS threads reach actors only through the trio token."""

from __future__ import annotations

import threading
from collections.abc import Callable

import attrs
import pytest
import trio
import trio.testing

import actors
from tests.messages import Add, Counter, Record, Recorder, Total

THREADS = 8
PER_THREAD = 300


async def test_many_threads_deliver_everything_in_per_thread_order(
    system: actors.ActorSystem,
) -> None:
    seen: list[object] = []
    # A small mailbox so the threads really do block on backpressure.
    recorder = await system.spawn(Recorder(seen), mailbox_size=8)

    def produce(index: int) -> None:
        for n in range(PER_THREAD):
            recorder.tell_from_thread(Record((index, n)))

    async with trio.open_nursery() as nursery:
        for index in range(THREADS):
            nursery.start_soon(trio.to_thread.run_sync, produce, index)
    await recorder.stop(drain=True)
    assert len(seen) == THREADS * PER_THREAD
    pairs = [value for value in seen if isinstance(value, tuple)]
    for index in range(THREADS):
        assert [n for (i, n) in pairs if i == index] == list(range(PER_THREAD))


async def test_ask_from_thread_returns_the_reply(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter(total=5))

    def work() -> int:
        counter.tell_from_thread(Add(3))
        return counter.ask_from_thread(Total())

    assert await trio.to_thread.run_sync(work) == 8


async def test_trio_only_methods_refuse_foreign_threads(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    errors: list[BaseException] = []

    def misuse() -> None:
        def tell_nowait() -> None:
            counter.tell_nowait(Add())

        for call in (tell_nowait, counter.request_stop):
            try:
                call()
            except actors.WrongThreadError as exc:
                errors.append(exc)

    await trio.to_thread.run_sync(misuse)
    assert len(errors) == 2
    assert "tell_from_thread" in str(errors[0])
    assert counter.is_alive


async def test_from_thread_methods_refuse_the_trio_thread(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    with pytest.raises(actors.WrongThreadError, match="would deadlock"):
        counter.tell_from_thread(Add())


async def test_thread_sending_to_a_stopped_actor_gets_an_error(
    system: actors.ActorSystem,
) -> None:
    counter = await system.spawn(Counter())
    await counter.stop()
    with pytest.raises(actors.ActorStoppedError):
        await trio.to_thread.run_sync(counter.tell_from_thread, Add())


def test_thread_sending_after_the_system_finished_gets_an_error() -> None:
    refs: list[actors.ActorRef[Add]] = []

    async def main() -> None:
        async with actors.open_system() as system:
            refs.append(await system.spawn(Counter()))

    trio.run(main)
    result: list[BaseException] = []

    def late() -> None:
        try:
            refs[0].tell_from_thread(Add())
        except actors.ActorStoppedError as exc:
            result.append(exc)

    thread = threading.Thread(target=late)
    thread.start()
    thread.join()
    assert len(result) == 1


@attrs.frozen
class Hold:
    """Keeps the gate's handler busy until the test releases it."""


@attrs.define(eq=False)
class Gate(actors.Actor[Hold | Record]):
    release: trio.Event
    seen: list[object] = attrs.Factory(list)

    @actors.handler
    async def hold(self, message: Hold) -> None:
        await self.release.wait()

    @actors.handler
    def record(self, message: Record) -> None:
        self.seen.append(message.value)


async def blocked_gate(
    system: actors.ActorSystem,
) -> tuple[Gate, actors.ActorRef[Hold | Record]]:
    """A gate busy with Hold, its mailbox (one slot) full, its thread inbox (one slot) empty."""
    gate = Gate(trio.Event())
    ref = await system.spawn(gate, mailbox_size=1)
    await ref.tell(Hold())
    await ref.tell(Record("in the mailbox"))
    await trio.testing.wait_all_tasks_blocked()
    return gate, ref


async def test_the_thread_inbox_is_bounded_with_a_nowait_variant(
    system: actors.ActorSystem,
) -> None:
    gate, ref = await blocked_gate(system)
    # One message is taken by the trio side and waits for mailbox room; one fills the inbox.
    await trio.to_thread.run_sync(ref.tell_from_thread_nowait, Record("taken"))
    await trio.testing.wait_all_tasks_blocked()
    await trio.to_thread.run_sync(ref.tell_from_thread_nowait, Record("queued"))
    with pytest.raises(trio.WouldBlock):
        await trio.to_thread.run_sync(ref.tell_from_thread_nowait, Record("refused"))
    blocked = trio.Event()

    def tell_blocking() -> None:
        ref.tell_from_thread(Record("waited"))
        trio.from_thread.run_sync(blocked.set)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, tell_blocking)
        await trio.testing.wait_all_tasks_blocked()
        assert not blocked.is_set()  # backpressure: the thread waits for room
        gate.release.set()
    await ref.stop(drain=True)
    assert gate.seen == ["in the mailbox", "taken", "queued", "waited"]


async def test_messages_from_threads_left_when_the_actor_stops_are_dead_letters(
    system: actors.ActorSystem,
) -> None:
    _, ref = await blocked_gate(system)
    for text in ("taken", "queued"):
        await trio.to_thread.run_sync(ref.tell_from_thread, Record(text))
        await trio.testing.wait_all_tasks_blocked()
    with system.dead_letters.subscribe() as letters:
        await ref.stop()
        await trio.testing.wait_all_tasks_blocked()
        lost = {letters.receive_nowait().message for _ in range(4)}
    assert lost == {Hold(), Record("in the mailbox"), Record("taken"), Record("queued")}
    with pytest.raises(actors.ActorStoppedError):
        await trio.to_thread.run_sync(ref.tell_from_thread_nowait, Record("late"))


async def test_an_unhandled_message_is_refused_in_the_thread(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    with pytest.raises(actors.UnhandledMessageError):
        await trio.to_thread.run_sync(counter.tell_from_thread, Record(1))  # type: ignore[arg-type]


class CountingToken:
    """Stands in for the system's trio token and counts how often threads wake trio."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self.token = token
        self.wakeups = 0

    def run_sync_soon(self, function: Callable[[], object]) -> None:
        self.wakeups += 1
        self.token.run_sync_soon(function)


async def test_a_burst_from_a_thread_wakes_trio_once(
    system: actors.ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(trio.Event())
    ref = await system.spawn(gate, mailbox_size=8)
    await ref.tell(Hold())
    for n in range(8):
        await ref.tell(Record(f"queued {n}"))
    counting = CountingToken(system.token)
    monkeypatch.setattr(system, "token", counting)

    def burst() -> None:
        for n in range(8):
            ref.tell_from_thread(Record(n))

    await trio.to_thread.run_sync(burst)
    # The first put woke trio; its drain waits for mailbox room, so the rest only queue.
    assert counting.wakeups == 1
    gate.release.set()
    await ref.stop(drain=True)
    assert gate.seen == [f"queued {n}" for n in range(8)] + list(range(8))


async def test_awaited_tell_and_ask_refuse_a_foreign_thread(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    refused: list[str] = []

    async def misuse_from_another_trio_run() -> None:
        for call in (counter.tell(Add()), counter.ask(Total())):
            try:
                await call
            except actors.WrongThreadError as exc:
                refused.append(str(exc))

    await trio.to_thread.run_sync(trio.run, misuse_from_another_trio_run)
    assert [message.split("(")[0] for message in refused] == ["ActorRef.tell", "ActorRef.ask"]
    assert await counter.ask(Total()) == 0  # nothing got in
