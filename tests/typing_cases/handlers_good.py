"""Handlers whose replies match their requests: mypy --strict finds nothing here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import assert_type

import attrs

import actors


@attrs.frozen
class GetTotal(actors.Request[int]):
    pass


@attrs.frozen
class GetName(actors.Request[str]):
    pass


@attrs.frozen
class Add:
    amount: int


@attrs.define(eq=False)
class Counter(actors.Actor[GetTotal | GetName | Add]):
    total: int = 0

    @actors.handler
    def add(self, message: Add) -> None:
        self.total += message.amount

    @actors.handler(GetTotal)
    def get_total(self, message: GetTotal) -> int:
        return self.total

    @actors.handler(GetName)
    async def get_name(self, message: GetName) -> str:
        return self.ctx.name


assert_type(Counter.get_total, Callable[[Counter, GetTotal], int])
assert_type(Counter.get_name, Callable[[Counter, GetName], Awaitable[str]])


async def ask(
    counter: actors.ActorRef[GetTotal | GetName | Add], router: actors.Router[GetTotal]
) -> None:
    assert_type(await counter.ask(GetTotal()), int)
    assert_type(await counter.ask(GetName()), str)
    assert_type(await router.ask(GetTotal()), int)
    pending = await counter.send_request(GetTotal())
    assert_type(pending, actors.PendingReply[int])
    assert_type(await pending.wait(), int)
    assert_type(pending.result(), int)
