"""The alarm clock that wakes the connections' io tasks: order, cancellation, an
earlier alarm while the clock sleeps, one task only while alarms are set."""

from __future__ import annotations

import logging

import attrs
import pytest
import trio
import trio.testing

from transport._connection._alarms import Alarm, cancel_alarm, set_alarm


@attrs.define(eq=False)
class Owner:
    name: str
    rung: list[tuple[str, float]]
    fail: bool = False

    def _ring(self, alarm: Alarm) -> None:
        self.rung.append((self.name, trio.current_time()))
        if self.fail:
            raise RuntimeError("owner failed")


def _living() -> int:
    return trio.lowlevel.current_statistics().tasks_living


async def test_alarms_ring_in_time_order_at_their_time(autojump_clock: trio.abc.Clock) -> None:
    rung: list[tuple[str, float]] = []
    start = trio.current_time()
    for name, delay in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("a2", 1.0)]:
        set_alarm(start + delay, Owner(name, rung))
    await trio.sleep(10)
    assert rung == [("a", start + 1), ("a2", start + 1), ("b", start + 2), ("c", start + 3)]


async def test_a_cancelled_alarm_never_rings(autojump_clock: trio.abc.Clock) -> None:
    rung: list[tuple[str, float]] = []
    start = trio.current_time()
    first = set_alarm(start + 1, Owner("first", rung))
    set_alarm(start + 2, Owner("second", rung))
    cancel_alarm(first)
    await trio.sleep(10)
    assert rung == [("second", start + 2)]
    cancel_alarm(first)  # twice, and after the clock has gone: nothing happens


async def test_an_earlier_alarm_set_while_the_clock_sleeps_rings_first(
    autojump_clock: trio.abc.Clock,
) -> None:
    rung: list[tuple[str, float]] = []
    start = trio.current_time()
    set_alarm(start + 10, Owner("late", rung))
    await trio.sleep(1)  # the clock sleeps until the late one
    set_alarm(start + 2, Owner("early", rung))
    await trio.sleep(20)
    assert rung == [("early", start + 2), ("late", start + 10)]


async def test_the_clock_runs_one_task_only_while_alarms_are_set() -> None:
    await trio.testing.wait_all_tasks_blocked()
    before = _living()
    rung: list[tuple[str, float]] = []
    alarms = [set_alarm(trio.current_time() + 60, Owner(str(i), rung)) for i in range(500)]
    await trio.testing.wait_all_tasks_blocked()
    assert _living() == before + 1
    for alarm in alarms:
        cancel_alarm(alarm)
    await trio.testing.wait_all_tasks_blocked()  # the clock rebuilt its heap and went
    assert _living() == before
    assert rung == []
    set_alarm(trio.current_time(), Owner("again", rung))  # a new clock when needed
    await trio.testing.wait_all_tasks_blocked()
    assert [name for name, _ in rung] == ["again"]
    assert _living() == before


async def test_an_owner_that_fails_is_logged_and_the_others_still_ring(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    rung: list[tuple[str, float]] = []
    start = trio.current_time()
    set_alarm(start + 1, Owner("failing", rung, fail=True))
    set_alarm(start + 2, Owner("next", rung))
    with caplog.at_level(logging.ERROR):
        await trio.sleep(5)
    assert rung == [("failing", start + 1), ("next", start + 2)]
    assert "an alarm's owner failed when rung" in caplog.text


def test_an_alarm_at_infinity_is_refused() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="finite time"):
            set_alarm(float("inf"), Owner("never", []))

    trio.run(main)
