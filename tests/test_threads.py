"""The thread entry point: plain OS threads reach actors only through the trio token."""

from __future__ import annotations

import threading

import pytest
import trio

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
