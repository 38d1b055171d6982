"""Tutorial step 3: talking to actors from plain OS threads, and calling blocking code.

Run it from the repository root: ``python -m examples.tutorial.step3_threads``.
"""

from __future__ import annotations

import threading
import time

import attrs
import trio

import actors
from examples.tutorial.step2_first_ask import Add, Counter, GetTotal


def meter(counter: actors.ActorRef[Add | GetTotal]) -> None:
    """The body of a plain OS thread, like the callback thread of a blocking device SDK."""
    for reading in range(1, 11):
        counter.tell_from_thread(Add(reading))  # blocks this thread while the mailbox is full
    total = counter.ask_from_thread(GetTotal())  # blocks this thread until the reply
    print(f"meter thread: sent 10 readings; the counter says {total}")
    try:
        counter.tell_nowait(Add(1000))  # a trio-only method, called from the wrong thread
    except actors.WrongThreadError as exc:
        print(f"meter thread: refused: {exc}")


@attrs.frozen
class Checksum(actors.Request[int]):
    text: str


def slow_checksum(text: str) -> int:
    """Blocking code (a C library, a file system call) that must not run on the trio thread."""
    time.sleep(0.05)
    return sum(text.encode()) % 65521


@attrs.define(eq=False)
class Checksummer(actors.Actor[Checksum]):
    @actors.handler
    async def checksum(self, message: Checksum) -> int:
        # The blocking call runs in a worker thread; the actor's state stays on the trio thread.
        return await trio.to_thread.run_sync(slow_checksum, message.text)


async def main() -> None:
    async with actors.open_system() as system:
        counter = await system.spawn(Counter(), name="counter", mailbox_size=4)
        thread = threading.Thread(target=meter, args=(counter,), name="meter")
        thread.start()
        await trio.to_thread.run_sync(thread.join)  # wait without blocking the trio thread
        print(f"trio thread: total = {await counter.ask(GetTotal())}")
        try:
            counter.tell_from_thread(Add(1))  # the thread bridge, called from the trio thread
        except actors.WrongThreadError as exc:
            print(f"trio thread: refused: {exc}")

        checksummer = await system.spawn(Checksummer(), name="checksummer")
        print(f"checksum of 'actors' = {await checksummer.ask(Checksum('actors'))}")


if __name__ == "__main__":
    trio.run(main)
