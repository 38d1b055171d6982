"""Message and actor classes shared by the runtime tests."""

from __future__ import annotations

import contextlib
import math

import attrs
import trio

import actors


@attrs.frozen
class Add:
    amount: int = 1


@attrs.frozen
class Total(actors.Request[int]):
    pass


@attrs.frozen
class Boom(actors.Request[int]):
    error: Exception


@attrs.frozen
class Sleep(actors.Request[str]):
    seconds: float


@attrs.frozen
class Record:
    value: object


CounterMessage = Add | Total | Boom | Sleep


@attrs.define(eq=False)
class Counter(actors.Actor[CounterMessage]):
    total: int = 0

    @actors.handler
    def add(self, message: Add) -> None:
        self.total += message.amount

    @actors.handler
    def get_total(self, message: Total) -> int:
        return self.total

    @actors.handler
    def boom(self, message: Boom) -> int:
        raise message.error

    @actors.handler
    async def sleep(self, message: Sleep) -> str:
        await trio.sleep(message.seconds)
        return "slept"


@attrs.define(eq=False)
class Recorder(actors.Actor[Record]):
    """Appends every value it receives, in order, to a list the test owns."""

    seen: list[object]

    @actors.handler
    def record(self, message: Record) -> None:
        self.seen.append(message.value)


async def keep_busy(counter: actors.ActorRef[Sleep], seconds: float) -> None:
    """Occupy the actor's handler for ``seconds`` (virtual time); tolerate it stopping."""
    with contextlib.suppress(actors.ActorStoppedError):
        await counter.ask(Sleep(seconds), timeout=math.inf)
