"""A counter actor: tell it to add, ask it for the total.

Run it from the repository root: ``python -m examples.tutorial.step2_first_ask``.
"""

from __future__ import annotations

import attrs
import trio

import actors


@attrs.frozen
class Add:
    amount: int


@attrs.frozen
class GetTotal(actors.Request[int]):  # asked with ref.ask(); the reply is an int
    pass


@attrs.define(eq=False)
class Counter(actors.Actor[Add | GetTotal]):
    total: int = 0

    @actors.handler
    def add(self, message: Add) -> None:
        self.total += message.amount

    @actors.handler
    def get_total(self, message: GetTotal) -> int:
        return self.total  # the return value is the reply


async def main() -> None:
    async with actors.open_system() as system:
        counter = await system.spawn(Counter(), name="counter")
        await counter.tell(Add(2))
        await counter.tell(Add(3))
        total = await counter.ask(GetTotal())  # mypy knows: int
        print(f"{counter.path}: total = {total}")


if __name__ == "__main__":
    trio.run(main)
