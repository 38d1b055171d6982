"""Busy spells: the actor's loop takes ready messages in bounded runs, with hooks around them.

A spell is the run of messages the loop takes between two of its own yields; it holds at
most ``BUSY_SPELL_LIMIT`` messages, control messages still overtake ordinary ones inside
it, a stop still takes effect before the next message, and ``on_spell_start`` /
``on_spell_end`` run around every spell, the end hook also when the loop ends.
"""

from __future__ import annotations

import itertools

import attrs
import pytest
import trio
import trio.testing

import actors
from actors._cell import BUSY_SPELL_LIMIT

MESSAGES = 2 * BUSY_SPELL_LIMIT + 8


@attrs.frozen
class Note:
    n: int


@attrs.frozen
class Urgent(actors.ControlMessage):
    n: int


@attrs.frozen
class Hang:
    pass


@attrs.define(eq=False)
class Recorder(actors.Actor[Note | Urgent | Hang]):
    """Logs its spells and messages; at message ``stop_at`` it stops itself, at
    ``urgent_at`` it tells itself an :class:`Urgent` control message, and at
    ``interrupt_at`` it asks its own ref to stop (as from outside)."""

    log: list[object] = attrs.Factory(list)
    ticks: list[int] = attrs.Factory(list)
    clock: list[int] = attrs.Factory(lambda: [0])
    stop_at: int | None = None
    urgent_at: int | None = None
    interrupt_at: int | None = None
    fail_spell_end: bool = False
    #: Set once this many notes were handled.
    expect: int = -1
    seen_all: trio.Event = attrs.Factory(trio.Event)

    def on_spell_start(self) -> None:
        self.log.append("start")

    async def on_spell_end(self) -> None:
        await trio.lowlevel.checkpoint()
        self.log.append("end")
        if self.fail_spell_end:
            raise RuntimeError("spell end failed")

    async def on_stop(self, reason: actors.StopReason) -> None:
        self.log.append("stop")

    @actors.handler
    def note(self, message: Note) -> None:
        self.log.append(message.n)
        self.ticks.append(self.clock[0])
        if len(self.ticks) == self.expect:
            self.seen_all.set()
        if message.n == self.urgent_at:
            self.ctx.ref.tell_nowait(Urgent(message.n))
        if message.n == self.stop_at:
            self.ctx.stop()
        if message.n == self.interrupt_at:
            self.ctx.ref.request_stop()

    @actors.handler
    def urgent(self, message: Urgent) -> None:
        self.log.append(f"urgent {message.n}")

    @actors.handler
    async def hang(self, message: Hang) -> None:
        self.log.append("hang")
        await trio.sleep_forever()


def spells(log: list[object]) -> list[list[object]]:
    """The log cut into spells: the entries between each "start" and its "end"."""
    result: list[list[object]] = []
    current: list[object] | None = None
    for entry in log:
        if entry == "start":
            assert current is None, f"a spell started inside another: {log}"
            current = []
        elif entry == "end":
            assert current is not None, f"a spell ended that never started: {log}"
            result.append(current)
            current = None
        elif entry != "stop":
            assert current is not None, f"{entry!r} handled outside a spell: {log}"
            current.append(entry)
    assert current is None, f"a spell never ended: {log}"
    return result


async def queue(system: actors.ActorSystem, recorder: Recorder, n: int = MESSAGES) -> None:
    """Spawn ``recorder`` and queue ``n`` notes before its loop runs again."""
    ref = await system.spawn(recorder, mailbox_size=2 * MESSAGES)
    for i in range(n):
        ref.tell_nowait(Note(i))


async def test_a_spell_takes_ready_messages_without_yielding_up_to_its_limit(
    system: actors.ActorSystem,
) -> None:
    recorder = Recorder(expect=MESSAGES)

    async def ticker() -> None:
        # Runs once per scheduling pass: its count changes only when the loop yields.
        while True:
            await trio.lowlevel.checkpoint()
            recorder.clock[0] += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await queue(system, recorder)
        await recorder.seen_all.wait()
        nursery.cancel_scope.cancel()
    runs = [len(list(group)) for _, group in itertools.groupby(recorder.ticks)]
    # Never more than the limit without letting the ticker run, and whole spells
    # when that many messages are ready: one yield per spell, not per message.
    assert max(runs) == BUSY_SPELL_LIMIT
    assert sum(runs) == MESSAGES
    assert len(runs) == -(-MESSAGES // BUSY_SPELL_LIMIT)


async def test_the_hooks_run_around_every_spell_and_before_the_actor_waits(
    system: actors.ActorSystem,
) -> None:
    recorder = Recorder()
    await queue(system, recorder)
    await trio.testing.wait_all_tasks_blocked()
    assert spells(recorder.log) == [
        list(range(BUSY_SPELL_LIMIT)),
        list(range(BUSY_SPELL_LIMIT, 2 * BUSY_SPELL_LIMIT)),
        list(range(2 * BUSY_SPELL_LIMIT, MESSAGES)),
    ]
    # A message to an idle actor is a spell of its own; the end hook ran before it waited.
    recorder.log.clear()
    recorder.ctx.ref.tell_nowait(Note(-1))
    await trio.testing.wait_all_tasks_blocked()
    assert recorder.log == ["start", -1, "end"]


async def test_a_control_message_overtakes_inside_a_spell(system: actors.ActorSystem) -> None:
    recorder = Recorder(urgent_at=3)
    await queue(system, recorder, 10)
    await trio.testing.wait_all_tasks_blocked()
    # One spell; the control message told during message 3 is taken right after it,
    # ahead of the ordinary messages already queued.
    assert spells(recorder.log) == [[0, 1, 2, 3, "urgent 3", 4, 5, 6, 7, 8, 9]]


async def test_a_control_message_queued_before_a_spell_is_taken_first(
    system: actors.ActorSystem,
) -> None:
    recorder = Recorder()
    ref = await system.spawn(recorder, mailbox_size=32)
    ref.tell_nowait(Note(0))  # handed to the parked loop
    for i in range(1, 5):
        ref.tell_nowait(Note(i))
    ref.tell_nowait(Urgent(99))
    await trio.testing.wait_all_tasks_blocked()
    assert spells(recorder.log) == [[0, "urgent 99", 1, 2, 3, 4]]


async def test_a_stop_inside_a_spell_ends_it_before_the_stop_hook(
    system: actors.ActorSystem,
) -> None:
    recorder = Recorder(stop_at=2)
    with system.dead_letters.subscribe() as letters:
        await queue(system, recorder, 6)
        await recorder.ctx.ref.wait_stopped()
        dropped = [letters.receive_nowait().message for _ in range(3)]
    assert recorder.log == ["start", 0, 1, 2, "end", "stop"]
    assert dropped == [Note(3), Note(4), Note(5)]


async def test_an_interrupting_stop_takes_effect_before_the_next_message_of_a_spell(
    system: actors.ActorSystem,
) -> None:
    recorder = Recorder(interrupt_at=1)
    await queue(system, recorder, 6)
    reason = await recorder.ctx.ref.wait_stopped()
    assert reason == actors.Normal()
    # The loop checks for cancellation between two messages of a spell.
    assert recorder.log == ["start", 0, 1, "end", "stop"]


async def test_the_end_hook_runs_shielded_when_a_handler_is_interrupted(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = Recorder()
    ref = await system.spawn(recorder)
    ref.tell_nowait(Note(0))
    ref.tell_nowait(Hang())
    await trio.testing.wait_all_tasks_blocked()
    await ref.stop()
    # The end hook awaits (a checkpoint) under the cancellation, and still finishes.
    assert recorder.log == ["start", 0, "hang", "end", "stop"]


async def test_a_failing_end_hook_fails_the_actor(system: actors.ActorSystem) -> None:
    recorder = Recorder(fail_spell_end=True)
    ref = await system.spawn(recorder)
    ref.tell_nowait(Note(0))
    reason = await ref.wait_stopped()
    assert isinstance(reason, actors.Failed)
    assert str(reason.error) == "spell end failed"
    assert recorder.log == ["start", 0, "end", "stop"]


@pytest.mark.parametrize("hooks", [False, True])
async def test_spells_keep_the_order_of_messages_with_or_without_hooks(
    system: actors.ActorSystem, hooks: bool
) -> None:
    @attrs.define(eq=False)
    class Plain(actors.Actor[Note]):
        seen: list[int] = attrs.Factory(list)

        @actors.handler
        def note(self, message: Note) -> None:
            self.seen.append(message.n)

    recorder, plain = Recorder(), Plain()
    ref: actors.ActorRef[Note] = await system.spawn(
        recorder if hooks else plain, mailbox_size=2 * MESSAGES
    )
    for i in range(MESSAGES):
        ref.tell_nowait(Note(i))
    await trio.testing.wait_all_tasks_blocked()
    handled: list[object] = [*recorder.log] if hooks else [*plain.seen]
    assert [entry for entry in handled if isinstance(entry, int)] == list(range(MESSAGES))
    assert ref.statistics().processed == MESSAGES
