"""A chat room and a few bots, all actors in one process, talking through refs (no network).

::

    python -m examples.local_chat               # runs until Ctrl-C
    python -m examples.local_chat --seconds 3   # a bounded run
    python -m examples.local_chat --seed 7      # the same dice rolls and readings every time

The runtime on its own: the WebSocket version, with a server, a web page and bots that
connect as clients, is ``python -m examples.demo``.

Who is who:

- ``room`` owns the transcript and the member list. Everyone talks to the room; the room
  tells every member what was said. It never waits on a member (``tell_nowait``), so a
  member may wait on the room without two full mailboxes ever waiting on each other.
- ``greeter`` welcomes whoever joins.
- ``dice`` answers ``Roll`` asks. The room asks it when someone says ``/roll``, through
  ``pipe_to_self``, so the room keeps handling messages while the answer is on its way.
- ``parrot`` repeats what alice says and chokes on the word "cracker": it crashes once,
  on purpose, to show a stop reason and a dead letter.
- ``alice`` is a scripted user: a helper task started with ``ctx.start_soon`` types for her.
- ``sensor`` is not an actor but a plain OS thread, as a device SDK would run it. It reports
  to the room with ``tell_from_thread``; it never touches the room's state or stdout itself.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Sequence
from typing import Never

import attrs
import trio

import actors

MAILBOX_SIZE = 16
ROOM = "room"


class Transcript:
    """Prints timestamped lines. Only the room prints chat lines; notes come from the runtime."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def line(self, author: str, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.2f}s] {author}: {text}", flush=True)

    def note(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.2f}s] -- {text}", flush=True)


# -- messages ---------------------------------------------------------------------------------


@attrs.frozen
class Heard:
    """What the room tells its members: one line of the conversation."""

    author: str
    text: str


@attrs.frozen
class Join:
    name: str
    member: actors.ActorRef[Heard]


@attrs.frozen
class Say:
    author: str
    text: str


@attrs.frozen
class Roll(actors.Request[int]):
    sides: int


@attrs.frozen
class Rolled:
    """The room's own note to itself: the dice answered."""

    author: str
    sides: int
    value: int


@attrs.frozen
class RollFailed:
    author: str
    error: Exception


# -- actors -----------------------------------------------------------------------------------


@attrs.define(eq=False)
class Room(actors.Actor[Join | Say | Rolled | RollFailed]):
    dice: actors.ActorRef[Roll]
    transcript: Transcript
    members: dict[str, actors.ActorRef[Heard]] = attrs.Factory(dict)

    @actors.handler
    def join(self, message: Join) -> None:
        self._post(ROOM, f"{message.name} joined")
        self.members[message.name] = message.member

    @actors.handler
    def say(self, message: Say) -> None:
        self._post(message.author, message.text)
        command, _, argument = message.text.partition(" ")
        if command == "/roll":
            sides = int(argument) if argument.isdigit() and int(argument) > 1 else 6
            author = message.author
            self.ctx.pipe_to_self(
                self.dice.ask,
                Roll(sides),
                on_result=lambda value: Rolled(author, sides, value),
                on_error=lambda error: RollFailed(author, error),
            )

    @actors.handler
    def rolled(self, message: Rolled) -> None:
        self._post("dice", f"{message.author} rolled {message.value} on a d{message.sides}")

    @actors.handler
    def roll_failed(self, message: RollFailed) -> None:
        self._post(ROOM, f"the dice did not answer {message.author}: {message.error}")

    def _post(self, author: str, text: str) -> None:
        self.transcript.line(author, text)
        line = Heard(author, text)
        gone = []
        for name, member in self.members.items():
            if name == author:
                continue
            try:
                member.tell_nowait(line)
            except trio.WouldBlock:
                # Drop-newest for a member that cannot keep up; the drop is reported.
                self.ctx.system.dead_letters.publish(
                    actors.DeadLetter(
                        message=line,
                        recipient=member.path,
                        sender=None,
                        reason=actors.DeadLetterReason.DROPPED,
                    )
                )
            except actors.ActorStoppedError:
                gone.append(name)
        for name in gone:
            member = self.members.pop(name)
            self._post(ROOM, f"{name} left ({describe(member.stop_reason)})")


@attrs.define(eq=False)
class Greeter(actors.Actor[Heard]):
    room: actors.ActorRef[Say]

    @actors.handler
    async def heard(self, message: Heard) -> None:
        if message.author == ROOM and message.text.endswith(" joined"):
            name = message.text.removesuffix(" joined")
            await self.room.tell(Say("greeter", f"welcome, {name}!"))


@attrs.define(eq=False)
class Dice(actors.Actor[Roll]):
    rng: random.Random

    @actors.handler
    def roll(self, message: Roll) -> int:
        return self.rng.randint(1, message.sides)


@attrs.define(eq=False)
class Parrot(actors.Actor[Heard]):
    room: actors.ActorRef[Say]
    repeats: str = "alice"

    @actors.handler
    async def heard(self, message: Heard) -> None:
        if message.author != self.repeats or message.text.startswith("/"):
            return
        if "cracker" in message.text:
            raise RuntimeError("the parrot choked on a cracker")
        await self.room.tell(Say("parrot", f"{message.text}!"))


OPENING = ["hi everyone", "/roll", "polly want a cracker?"]
CHATTER = ["/roll 20", "is anyone else here?", "/roll", "warm in here today"]


@attrs.define(eq=False)
class User(actors.Actor[Heard]):
    name: str
    room: actors.ActorRef[Say]
    pause: float = 0.3
    lines_heard: int = 0

    async def on_start(self) -> None:
        self.ctx.start_soon(self._type)

    @actors.handler
    def heard(self, message: Heard) -> None:
        self.lines_heard += 1  # alice reads along

    async def _type(self) -> None:
        for text in itertools.chain(OPENING, itertools.cycle(CHATTER)):
            await trio.sleep(self.pause)
            await self.room.tell(Say(self.name, text))


# -- the thread -------------------------------------------------------------------------------


class Sensor:
    """A plain OS thread reporting a temperature to the room every ``interval`` seconds."""

    def __init__(self, room: actors.ActorRef[Say], rng: random.Random, interval: float) -> None:
        self._room = room
        self._rng = rng
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sensor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop and wait for it (call it in a worker thread)."""
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        celsius = 21.0
        while not self._stopping.wait(self._interval):
            celsius += self._rng.uniform(-0.3, 0.3)
            try:
                self._room.tell_from_thread(Say("sensor", f"{celsius:.1f} C"))
            except actors.ActorStoppedError:
                return


# -- watching ---------------------------------------------------------------------------------


def describe(reason: actors.StopReason | None) -> str:
    if isinstance(reason, actors.Failed):
        return f"failed: {reason.error!r}"
    return "running" if reason is None else type(reason).__name__.lower()


async def report_stop(ref: actors.ActorRef[Never], transcript: Transcript) -> None:
    reason = await ref.wait_stopped()
    transcript.note(f"{ref.path} stopped ({describe(reason)})")


def report_dead_letter(letter: actors.DeadLetter, transcript: Transcript) -> None:
    transcript.note(
        f"dead letter to {letter.recipient} ({letter.reason.value}): {letter.message!r}"
    )


async def report_dead_letters(
    letters: trio.MemoryReceiveChannel[actors.DeadLetter], transcript: Transcript
) -> None:
    async for letter in letters:
        report_dead_letter(letter, transcript)


def drain(letters: trio.MemoryReceiveChannel[actors.DeadLetter]) -> list[actors.DeadLetter]:
    """The letters still buffered in a subscription, without waiting."""
    left = []
    while True:
        try:
            left.append(letters.receive_nowait())
        except trio.WouldBlock:
            return left


class TranscriptLogHandler(logging.Handler):
    """Shows the runtime's own log records (the ``actors`` logger) in the transcript."""

    def __init__(self, transcript: Transcript) -> None:
        super().__init__()
        self.transcript = transcript

    def emit(self, record: logging.LogRecord) -> None:
        path = getattr(record, "actor_path", "-")
        self.transcript.note(
            f"log {record.levelname} {record.name} [{path}]: {record.getMessage()}"
        )


async def wait_for_the_end(seconds: float | None) -> None:
    """Return after ``seconds``, or at Ctrl-C or SIGTERM."""
    with trio.move_on_after(math.inf if seconds is None else seconds):
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                return


def print_statistics(refs: Sequence[actors.ActorRef[Never]], system: actors.ActorSystem) -> None:
    print()
    print("actor     processed  high water  capacity  dead letters  stop reason")
    for ref in refs:
        stats = ref.statistics()
        print(
            f"{ref.path:<9} {stats.processed:>9} {stats.high_water:>11} {stats.capacity:>9} "
            f"{stats.dead_lettered:>13}  {describe(ref.stop_reason)}"
        )
    letters = system.dead_letters.statistics()
    reasons = ", ".join(f"{reason.value}: {n}" for reason, n in letters.by_reason.items())
    print(f"dead letters: {letters.total} ({reasons or 'none'})")


# -- main -------------------------------------------------------------------------------------


async def main(seconds: float | None = None, seed: int | None = None) -> None:
    transcript = Transcript()
    rng = random.Random(seed)
    log = logging.getLogger("actors")
    log.addHandler(TranscriptLogHandler(transcript))
    log.propagate = False
    running = "until Ctrl-C" if seconds is None else f"for {seconds:g}s (Ctrl-C ends it sooner)"
    print(f"a chat room, four actors in it and a sensor thread; running {running}")

    async with actors.open_system("demo", mailbox_size=MAILBOX_SIZE) as system:
        with system.dead_letters.subscribe() as letters:
            async with trio.open_nursery() as background:
                background.start_soon(report_dead_letters, letters, transcript)
                async with trio.open_nursery() as watchers:
                    dice = await system.spawn(Dice(random.Random(rng.random())), name="dice")
                    room = await system.spawn(Room(dice, transcript), name="room")
                    greeter = await system.spawn(Greeter(room), name="greeter")
                    parrot = await system.spawn(Parrot(room), name="parrot")
                    alice = await system.spawn(User("alice", room), name="alice")
                    everyone: list[actors.ActorRef[Never]] = [dice, room, greeter, parrot, alice]
                    for ref in everyone:
                        watchers.start_soon(report_stop, ref, transcript)
                    for member in (greeter, parrot, alice):
                        await room.tell(Join(member.name, member))
                    sensor = Sensor(room, random.Random(rng.random()), interval=0.4)
                    sensor.start()

                    await wait_for_the_end(seconds)

                    transcript.note("stopping: the sensor thread first, then the actors")
                    await trio.to_thread.run_sync(sensor.stop)
                    for ref in reversed(everyone):
                        await ref.stop()
                background.cancel_scope.cancel()  # every actor has stopped and been reported
            for letter in drain(letters):
                report_dead_letter(letter, transcript)
    print_statistics(everyone, system)


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.local_chat",
        description="A chat room with a few bot actors, a crash and a thread, in one process.",
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (default: at Ctrl-C)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed the dice and the sensor")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show the runtime's DEBUG log too"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_arguments()
    logging.getLogger("actors").setLevel(logging.DEBUG if arguments.verbose else logging.WARNING)
    trio.run(main, arguments.seconds, arguments.seed)
