"""Tutorial step 5: a first supervised actor, restarted after a crash under the same ref.

Run it from the repository root: ``python -m examples.tutorial.step5_supervision``.
"""

from __future__ import annotations

import attrs
import trio

import actors


@attrs.frozen
class Add:
    amount: int


@attrs.frozen
class Explode:
    pass


@attrs.frozen
class GetTotal(actors.Request[int]):
    pass


@attrs.define(eq=False)
class Counter(actors.Actor[Add | Explode | GetTotal]):
    total: int = 0

    async def on_start(self) -> None:
        print(f"{self.ctx.path} starts with total {self.total}")

    @actors.handler
    def add(self, message: Add) -> None:
        self.total += message.amount

    @actors.handler
    def explode(self, message: Explode) -> None:
        raise RuntimeError("boom")

    @actors.handler
    def get_total(self, message: GetTotal) -> int:
        return self.total


async def main() -> None:
    async with actors.open_system() as system:
        supervisor = await system.spawn(actors.Supervisor(), name="counters")
        # The spec names the child and gives a factory: every (re)start makes a fresh Counter.
        spec = actors.ChildSpec("counter", Counter, restart=actors.RestartType.PERMANENT)
        counter = await actors.start_child(supervisor, spec)

        await counter.tell(Add(2))
        await counter.tell(Explode())  # the handler raises: the counter fails...
        await counter.tell(Add(3))  # ...and this waits in the mailbox for the restart
        total = await counter.ask(GetTotal())
        print(f"{counter.path}: total = {total}")

        children = await supervisor.ask(actors.WhichChildren())
        print(f"same ref after the restart: {children['counter'] is counter}")
        print(f"restarts: {system.snapshot().find(counter.path).restarts}")
        for letter in system.dead_letters.recent():
            print(f"dead letter ({letter.reason.value}): {letter.message!r}")


if __name__ == "__main__":
    trio.run(main)
