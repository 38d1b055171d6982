"""Tutorial step 1: a first actor, told a few messages, then stopped.

Run it from the repository root: ``python -m examples.tutorial.step1_first_actor``.
"""

from __future__ import annotations

import attrs
import trio

import actors


@attrs.frozen
class Greet:
    name: str


@attrs.define(eq=False)
class Greeter(actors.Actor[Greet]):
    greeted: int = 0

    @actors.handler
    def greet(self, message: Greet) -> None:
        self.greeted += 1
        print(f"hello, {message.name}! ({self.greeted} so far)")

    async def on_stop(self, reason: actors.StopReason) -> None:
        print(f"{self.ctx.path} stops: {reason!r}")


async def main() -> None:
    async with actors.open_system() as system:
        greeter = await system.spawn(Greeter(), name="greeter")
        for name in ["trio", "erlang", "akka"]:
            await greeter.tell(Greet(name))  # queued; returns before the greeting is printed
        reason = await greeter.stop(drain=True)  # handle what is queued, then stop
        print(f"stopped with {reason!r}; processed {greeter.statistics().processed} messages")


if __name__ == "__main__":
    trio.run(main)
