"""Keyed timers: single, fixed delay, fixed rate, replace, cancel, no stale or piled-up ticks."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

import actors
from actors._timers import timers_of
from tests.messages import Add


@attrs.frozen
class Tick:
    label: str


@attrs.frozen
class Busy:
    """Keep the actor's handler busy for ``seconds`` (virtual), then maybe fail."""

    seconds: float
    fail: bool = False


@attrs.define(eq=False)
class Ticker(actors.Actor[Tick | Busy]):
    """Records (label, time) of every tick it handles, into a list the test owns."""

    seen: list[tuple[str, float]]
    tick_seconds: float = 0.0
    first_tick_seconds: float | None = None

    @actors.handler
    async def tick(self, message: Tick) -> None:
        first = not self.seen
        self.seen.append((message.label, trio.current_time()))
        seconds = self.tick_seconds
        if first and self.first_tick_seconds is not None:
            seconds = self.first_tick_seconds
        await trio.sleep(seconds)

    @actors.handler
    async def busy(self, message: Busy) -> None:
        await trio.sleep(message.seconds)
        if message.fail:
            raise RuntimeError("failed while busy")


@attrs.frozen
class Beat:
    pass


@attrs.frozen
class Beats(actors.Request[int]):
    pass


@attrs.define(eq=False)
class Heartbeat(actors.Actor[Beat | Beats]):
    """Starts its own timer in on_start, as real actors do."""

    count: int = 0

    async def on_start(self) -> None:
        self.ctx.timers.start_fixed_rate("beat", Beat(), 1.0)

    @actors.handler
    def beat(self, message: Beat) -> None:
        self.count += 1
        if self.count == 3:
            self.ctx.timers.cancel("beat")

    @actors.handler
    def beats(self, message: Beats) -> int:
        return self.count


async def spawn_ticker(
    system: actors.ActorSystem, **options: float
) -> tuple[
    actors.ActorRef[Tick | Busy], actors.Timers[Tick | Busy], list[tuple[str, float]], float
]:
    seen: list[tuple[str, float]] = []
    ticker = Ticker(seen, **options)
    ref = await system.spawn(ticker)
    return ref, timers_of(ticker), seen, trio.current_time()


def at(seen: list[tuple[str, float]], start: float) -> list[tuple[str, float]]:
    return [(label, round(when - start, 6)) for label, when in seen]


async def test_single_timer_fires_once_after_its_delay(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    _, timers, seen, start = await spawn_ticker(system)
    timers.start_single("once", Tick("once"), 2.5)
    assert timers.is_active("once")
    await trio.sleep(10)
    assert at(seen, start) == [("once", 2.5)]
    assert not timers.is_active("once")


async def test_starting_a_key_again_replaces_the_timer(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    _, timers, seen, start = await spawn_ticker(system)
    timers.start_fixed_rate("k", Tick("old"), 1.0)
    await trio.sleep(2.5)
    timers.start_single("k", Tick("new"), 3.0)
    await trio.sleep(10)
    assert at(seen, start) == [("old", 1.0), ("old", 2.0), ("new", 5.5)]
    assert timers.active_keys == []


async def test_cancel_stops_a_timer_and_other_keys_keep_running(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    _, timers, seen, start = await spawn_ticker(system)
    timers.start_fixed_rate("a", Tick("a"), 1.0)
    timers.start_fixed_rate("b", Tick("b"), 1.5)
    await trio.sleep(2.25)
    timers.cancel("a")
    timers.cancel("never started")  # nothing to cancel: no error
    assert timers.active_keys == ["b"]
    await trio.sleep(2.5)
    assert at(seen, start) == [("a", 1.0), ("b", 1.5), ("a", 2.0), ("b", 3.0), ("b", 4.5)]
    timers.cancel_all()
    await trio.sleep(10)
    assert len(seen) == 5


async def test_a_cancelled_timers_queued_tick_is_never_delivered(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref, timers, seen, _ = await spawn_ticker(system)
    await ref.tell(Busy(5))  # the handler is busy from 0 to 5
    timers.start_single("k", Tick("stale"), 1.0)
    await trio.sleep(2)
    assert ref._cell.mailbox.depth == 1  # the tick is queued, waiting for the handler
    timers.cancel("k")
    await trio.sleep(10)
    assert seen == []


async def test_a_replaced_timers_queued_tick_is_never_delivered(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref, timers, seen, start = await spawn_ticker(system)
    await ref.tell(Busy(5))
    timers.start_fixed_rate("k", Tick("old"), 1.0)
    await trio.sleep(2)
    timers.start_single("k", Tick("new"), 0)
    await trio.sleep(10)
    assert at(seen, start) == [("new", 5.0)]


async def test_fixed_rate_keeps_the_grid_and_fixed_delay_rests_after_each_tick(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    _, rate_timers, rate_seen, start = await spawn_ticker(system, tick_seconds=0.5)
    _, delay_timers, delay_seen, _ = await spawn_ticker(system, tick_seconds=0.5)
    rate_timers.start_fixed_rate("rate", Tick("rate"), 1.0)
    delay_timers.start_fixed_delay("delay", Tick("delay"), 1.0)
    await trio.sleep(10.25)
    assert [when for _, when in at(rate_seen, start)] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert [when for _, when in at(delay_seen, start)] == [1, 2.5, 4, 5.5, 7, 8.5, 10]


async def test_initial_delay_defaults_to_the_interval(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    _, timers, seen, start = await spawn_ticker(system)
    timers.start_fixed_rate("now", Tick("now"), 2.0, initial_delay=0)
    timers.start_fixed_delay("later", Tick("later"), 2.0)
    await trio.sleep(4.5)
    assert sorted(at(seen, start)) == [
        ("later", 2),
        ("later", 4),
        ("now", 0),
        ("now", 2),
        ("now", 4),
    ]


async def test_a_slow_actor_gets_one_late_tick_not_a_burst(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    # The first tick takes 5 s to handle; the instants 2..5 come meanwhile.
    _, rate_timers, rate_seen, start = await spawn_ticker(system, first_tick_seconds=5)
    _, delay_timers, delay_seen, _ = await spawn_ticker(system, first_tick_seconds=5)
    rate_timers.start_fixed_rate("rate", Tick("rate"), 1.0)
    delay_timers.start_fixed_delay("delay", Tick("delay"), 1.0)
    await trio.sleep(10.25)
    # Fixed rate: the tick sent at 2 waited; 3, 4 and 5 were skipped, then back on the grid.
    assert [when for _, when in at(rate_seen, start)] == [1, 6, 7, 8, 9, 10]
    # Fixed delay: one interval of rest after the slow handler returned.
    assert [when for _, when in at(delay_seen, start)] == [1, 7, 8, 9, 10]


async def test_at_most_one_tick_per_key_is_pending(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref, timers, seen, _ = await spawn_ticker(system, tick_seconds=0)
    await ref.tell(Busy(100))
    timers.start_fixed_rate("fast", Tick("fast"), 0.01)
    timers.start_fixed_delay("slow", Tick("slow"), 0.01)
    await trio.sleep(50)
    assert ref._cell.mailbox.depth == 2  # one tick per key, not thousands
    await trio.sleep(50.005)
    assert sorted(label for label, _ in seen) == ["fast", "slow"]


async def test_timers_die_with_the_actor(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref, timers, seen, _ = await spawn_ticker(system)
    timers.start_fixed_rate("k", Tick("k"), 1.0)
    await trio.sleep(3.5)
    await ref.stop()
    await trio.sleep(10)
    assert len(seen) == 3
    assert not ref._cell.children
    await trio.testing.wait_all_tasks_blocked()


async def test_timers_started_in_on_start_and_cancelled_from_a_handler(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    heart = await system.spawn(Heartbeat())
    await trio.sleep(10)
    assert await heart.ask(Beats()) == 3


async def test_a_restart_resets_timers_and_skips_their_queued_ticks(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[tuple[str, float]] = []
    made: list[Ticker] = []

    def factory() -> Ticker:
        made.append(Ticker(seen))
        return made[-1]

    supervisor = await system.spawn(actors.Supervisor())
    ticker = await actors.start_child(supervisor, actors.ChildSpec("ticker", factory))
    timers_of(made[0]).start_fixed_rate("old", Tick("old"), 10.0)
    await ticker.tell(Busy(2, fail=True))
    timers_of(made[0]).start_single("queued", Tick("queued"), 1.0)
    await trio.sleep(1.5)
    assert ticker._cell.mailbox.depth == 1  # queued behind the busy handler
    await trio.sleep(30)  # fails at 2 and restarts; nothing from the old incarnation
    assert len(made) == 2
    assert ticker._cell.restarts == 1
    assert seen == []
    fresh = timers_of(made[1])
    assert fresh.active_keys == []
    fresh.start_single("new", Tick("new"), 1.0)
    await trio.sleep(2)
    assert [label for label, _ in seen] == ["new"]


async def test_a_timer_message_must_be_handled_by_the_actor(system: actors.ActorSystem) -> None:
    _, timers, _, _ = await spawn_ticker(system)
    with pytest.raises(actors.UnhandledMessageError, match=r"has no handler for Add"):
        timers.start_single("k", Add(1), 1.0)  # type: ignore[arg-type]
    assert not timers.is_active("k")


@pytest.mark.parametrize(
    ("start", "match"),
    [
        (lambda t: t.start_single("k", Tick("k"), -1), "delay must be"),
        (lambda t: t.start_fixed_rate("k", Tick("k"), 0), "interval must be"),
        (lambda t: t.start_fixed_delay("k", Tick("k"), float("inf")), "interval must be"),
        (lambda t: t.start_fixed_delay("k", Tick("k"), 1, initial_delay=-2), "initial_delay"),
    ],
)
async def test_bad_durations_are_refused(
    system: actors.ActorSystem, start: object, match: str
) -> None:
    _, timers, _, _ = await spawn_ticker(system)
    assert callable(start)
    with pytest.raises(ValueError, match=match):
        start(timers)
    assert timers.active_keys == []


async def test_a_stopped_actor_cannot_start_timers(system: actors.ActorSystem) -> None:
    ref, timers, _, _ = await spawn_ticker(system)
    await ref.stop()
    with pytest.raises(actors.ActorStoppedError, match="cannot start tasks"):
        timers.start_single("k", Tick("k"), 1.0)
