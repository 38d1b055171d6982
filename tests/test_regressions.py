"""Regressions: a slow fixed-rate timer must not starve the mailbox, and a child that
cannot start must not take its supervisor down (OTP's start_child returns the error)."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

import actors


@attrs.frozen
class Beat:
    pass


@attrs.frozen
class Ping(actors.Request[str]):
    pass


@attrs.define(eq=False)
class SlowBeat(actors.Actor[Beat | Ping]):
    """Beats every second at a fixed rate; each beat takes ``work`` seconds."""

    work: float

    async def on_start(self) -> None:
        self.ctx.timers.start_fixed_rate("beat", Beat(), 1.0)

    @actors.handler
    async def beat(self, message: Beat) -> None:
        await trio.sleep(self.work)

    @actors.handler
    def ping(self, message: Ping) -> str:
        return "pong"


async def test_a_slow_fixed_rate_handler_still_lets_user_messages_through(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    beating = await system.spawn(SlowBeat(work=1.5))
    await trio.sleep(2.2)  # a beat is being handled, the next one is queued
    assert await beating.ask(Ping(), timeout=30) == "pong"


async def test_a_fixed_rate_handler_shorter_than_the_interval_lets_user_messages_through(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    beating = await system.spawn(SlowBeat(work=0.9))
    await trio.sleep(2.2)
    assert await beating.ask(Ping(), timeout=30) == "pong"


async def test_a_child_that_fails_to_start_leaves_its_supervisor_running(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    supervisor = await system.spawn(actors.Supervisor(max_children=10), name="sessions")
    first = await actors.start_child(supervisor, actors.ChildSpec("a", lambda: SlowBeat(0.1)))
    with pytest.raises(actors.NameTakenError):
        await actors.start_child(supervisor, actors.ChildSpec("a", lambda: SlowBeat(0.1)))
    await trio.sleep(1)
    assert supervisor.is_alive
    assert first.is_alive
