"""Testing actors with ``actors.testing``: the tests the testing guide shows, as users write them.

The plugin is loaded by the package's ``pytest11`` entry point (``actors.testing``), which
provides the ``actor_system`` fixture; pytest-trio provides ``autojump_clock``, under which
every timeout below passes in virtual time: the whole file runs in a fraction of a second.
"""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

import actors
from actors.testing import InjectedFault, inject_faults, spawn_probe, wait_idle

# -- the code under test ----------------------------------------------------------------------


@attrs.frozen
class Confirmed:
    order: str


@attrs.frozen
class TimedOut:
    order: str


@attrs.frozen
class Charged:
    order: str


@attrs.frozen
class Charge:
    order: str
    amount: int
    reply_to: actors.ActorRef[Charged]


@attrs.frozen
class Checkout:
    order: str
    amount: int
    reply_to: actors.ActorRef[Confirmed | TimedOut]


@attrs.frozen
class PaymentOverdue:
    order: str


@attrs.define(eq=False)
class OrderDesk(actors.Actor[Checkout | Charged | PaymentOverdue]):
    """Has payments charge each order; confirms it, or gives up after ``patience`` seconds."""

    payments: actors.ActorRef[Charge]
    patience: float = 5.0
    waiting: dict[str, actors.ActorRef[Confirmed | TimedOut]] = attrs.Factory(dict)

    @actors.handler
    async def checkout(self, message: Checkout) -> None:
        self.waiting[message.order] = message.reply_to
        await self.payments.tell(Charge(message.order, message.amount, reply_to=self.ctx.ref))
        overdue = PaymentOverdue(message.order)
        self.ctx.timers.start_single(("overdue", message.order), overdue, self.patience)

    @actors.handler
    async def charged(self, message: Charged) -> None:
        self.ctx.timers.cancel(("overdue", message.order))
        customer = self.waiting.pop(message.order, None)
        if customer is not None:  # None: a late charge for an order that timed out
            await customer.tell(Confirmed(message.order))

    @actors.handler
    async def overdue(self, message: PaymentOverdue) -> None:
        customer = self.waiting.pop(message.order)
        await customer.tell(TimedOut(message.order))


@attrs.define(eq=False)
class Payments(actors.Actor[Charge]):
    """A stand-in payment service that takes ``seconds`` per charge."""

    seconds: float = 0.0

    @actors.handler
    async def charge(self, message: Charge) -> None:
        await trio.sleep(self.seconds)
        await message.reply_to.tell(Charged(message.order))


# -- probes: expect, expect_message, expect_no_message ----------------------------------------


async def test_a_charged_order_is_confirmed(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    payments = await spawn_probe(actor_system, name="payments")
    customer = await spawn_probe(actor_system, name="customer")
    desk = await actor_system.spawn(OrderDesk(payments.ref), name="desk")

    await desk.tell(Checkout("A-1", 30, reply_to=customer.ref))
    charge = await payments.expect(Charge)  # the next message must be a Charge
    assert charge.amount == 30
    assert payments.last_sender is desk
    await charge.reply_to.tell(Charged("A-1"))  # the probe plays the payment service

    await customer.expect_message(Confirmed("A-1"))
    await customer.expect_no_message(60)  # the timer was cancelled: no TimedOut, ever


async def test_an_unanswered_charge_times_out_in_virtual_time(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    payments = await spawn_probe(actor_system)
    customer = await spawn_probe(actor_system)
    desk = await actor_system.spawn(OrderDesk(payments.ref, patience=5))
    start = trio.current_time()

    await desk.tell(Checkout("A-2", 10, reply_to=customer.ref))
    await payments.expect(Charge)  # ... and never answer it

    await customer.expect(TimedOut, timeout=10)
    assert trio.current_time() - start == 5  # five virtual seconds, no real waiting


# -- fish_for: the message that matters among others ------------------------------------------


async def test_fish_for_skips_the_replies_that_do_not_matter(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    payments = await spawn_probe(actor_system)
    customer = await spawn_probe(actor_system)
    desk = await actor_system.spawn(OrderDesk(payments.ref))
    for number in range(4):  # one order a second
        await desk.tell(Checkout(f"B-{number}", number, reply_to=customer.ref))
        await trio.sleep(1)
    charges = [await payments.expect(Charge) for _ in range(4)]
    await charges[2].reply_to.tell(Charged("B-2"))  # only B-2 is ever charged

    # Confirmed("B-2") comes first, then B-0, B-1 and B-3 time out, one by one.
    last = await customer.fish_for(lambda message: message == TimedOut("B-3"), timeout=10)
    assert last == TimedOut("B-3")
    await customer.expect_no_message(60)


# -- wait_idle: let the whole system settle ---------------------------------------------------


async def test_wait_idle_returns_once_every_order_went_through(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    payments = await actor_system.spawn(Payments(seconds=1))
    customer = await spawn_probe(actor_system)
    desk = await actor_system.spawn(OrderDesk(payments))
    start = trio.current_time()
    for number in range(3):
        await desk.tell(Checkout(f"C-{number}", number, reply_to=customer.ref))

    await wait_idle(actor_system)  # mailboxes empty, every actor waiting for mail

    # One virtual second per charge, one after the other (wait_idle polls in 1 ms steps).
    assert trio.current_time() - start == pytest.approx(3, abs=0.01)
    assert desk.statistics().processed == 6  # three checkouts, three charges
    for number in range(3):
        await customer.expect_message(Confirmed(f"C-{number}"))


# -- inject_faults: crash, delay and drop on chosen message types -----------------------------


async def test_a_slow_payment_service_makes_orders_time_out(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    slow = inject_faults(Payments, delay={Charge: 8})
    payments = await actor_system.spawn(slow)
    customer = await spawn_probe(actor_system)
    desk = await actor_system.spawn(OrderDesk(payments, patience=5))

    await desk.tell(Checkout("D-1", 1, reply_to=customer.ref))

    await customer.expect_message(TimedOut("D-1"), timeout=10)
    await customer.expect_no_message(60)  # the charge comes at 8 s: too late, ignored
    assert payments.statistics().processed == 1


async def test_a_lost_charge_is_a_dead_letter_and_the_order_times_out(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    lossy = inject_faults(Payments, drop=Charge)
    payments = await actor_system.spawn(lossy, name="payments")
    customer = await spawn_probe(actor_system)
    desk = await actor_system.spawn(OrderDesk(payments))

    with actor_system.dead_letters.subscribe() as letters:
        await desk.tell(Checkout("D-2", 1, reply_to=customer.ref))
        await customer.expect_message(TimedOut("D-2"), timeout=10)
        letter = letters.receive_nowait()

    assert letter.reason is actors.DeadLetterReason.DROPPED
    assert letter.recipient == "/payments"
    assert isinstance(letter.message, Charge)


async def test_a_desk_that_crashes_is_restarted_without_its_orders(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    payments = await spawn_probe(actor_system)
    customer = await spawn_probe(actor_system)
    flaky = inject_faults(lambda: OrderDesk(payments.ref), crash_on=Charged)
    supervisor = await actor_system.spawn(actors.Supervisor())
    desk = await actors.start_child(supervisor, actors.ChildSpec("desk", flaky))

    await desk.tell(Checkout("E-1", 5, reply_to=customer.ref))
    charge = await payments.expect(Charge)
    await charge.reply_to.tell(Charged("E-1"))  # the desk crashes on it
    await wait_idle(actor_system)

    assert desk.is_alive  # restarted in place, under the same ref
    assert actor_system.snapshot().find(desk.path).restarts == 1
    # The new incarnation has no orders and no timers: the customer hears nothing.
    await customer.expect_no_message(60)


async def test_an_unsupervised_desk_that_crashes_stays_stopped(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    payments = await spawn_probe(actor_system)
    customer = await spawn_probe(actor_system)
    desk = await actor_system.spawn(
        inject_faults(lambda: OrderDesk(payments.ref), crash_on=Checkout)
    )

    await desk.tell(Checkout("E-2", 5, reply_to=customer.ref))

    reason = await customer.expect_terminated(desk)  # watches the desk, waits for its end
    assert isinstance(reason, actors.Failed)
    assert isinstance(reason.error, InjectedFault)
    await payments.expect_no_message(60)
