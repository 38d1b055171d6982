"""Tutorial step 4: when things go wrong: ask deadlines, failures, stop reasons, dead letters.

Run it from the repository root: ``python -m examples.tutorial.step4_failures``.
"""

from __future__ import annotations

import attrs
import trio

import actors


@attrs.frozen
class Deposit:
    amount: int


@attrs.frozen
class Withdraw(actors.Request[int]):
    amount: int


@attrs.frozen
class Audit(actors.Request[str]):
    seconds: float


@attrs.define(eq=False)
class Account(actors.Actor[Deposit | Withdraw | Audit]):
    balance: int = 0

    @actors.handler
    def deposit(self, message: Deposit) -> None:
        self.balance += message.amount

    @actors.handler
    def withdraw(self, message: Withdraw) -> int:
        if message.amount > self.balance:
            raise ValueError(f"cannot withdraw {message.amount} from a balance of {self.balance}")
        self.balance -= message.amount
        return self.balance

    @actors.handler
    async def audit(self, message: Audit) -> str:
        await trio.sleep(message.seconds)
        return "audit passed"


async def main() -> None:
    async with actors.open_system() as system:
        account = await system.spawn(Account(), name="account")

        # 1. Every ask has a deadline (5 s unless you say otherwise). A reply that
        #    arrives after the asker gave up is not lost: it becomes a dead letter.
        try:
            await account.ask(Audit(seconds=0.2), timeout=0.05)
        except actors.AskTimeoutError as exc:
            print(f"1. {exc}")

        # 2. A handler that raises fails its actor. Whoever asked gets the handler's
        #    own exception; the actor stops with Failed(exception) as its reason.
        await account.tell(Deposit(10))
        try:
            await account.ask(Withdraw(25))
        except ValueError as exc:
            print(f"2. the ask raised {exc!r}")
        print(f"   {account.path} stopped: {await account.wait_stopped()!r}")

        # 3. A stopped actor refuses messages: the sender is told, nothing is dropped silently.
        try:
            await account.tell(Deposit(5))
        except actors.ActorStoppedError as exc:
            print(f"3. {exc}")

        # 4. What was not delivered is in the dead letters, with the reason.
        for letter in system.dead_letters.recent():
            print(
                f"4. dead letter to {letter.recipient} ({letter.reason.value}): {letter.message!r}"
            )
        counts = system.dead_letters.statistics().by_reason
        print("   by reason: " + ", ".join(f"{r.value}: {n}" for r, n in counts.items()))


if __name__ == "__main__":
    trio.run(main)
