"""actors.testing: the actor_system fixture, probes, wait_idle and fault injection.

These tests are also the examples: they read the way users' tests should.
"""

from __future__ import annotations

import inspect
import pathlib
import subprocess
import sys
import textwrap

import attrs
import pytest
import trio
import trio.testing

import actors
from actors.testing import InjectedFault, TestProbe, inject_faults, spawn_probe, wait_idle
from tests.messages import Add, Boom, Counter, Total


@attrs.frozen
class Greeting:
    text: str


@attrs.frozen
class Greet:
    name: str
    reply_to: actors.ActorRef[Greeting]


@attrs.define(eq=False)
class Greeter(actors.Actor[Greet]):
    @actors.handler
    async def greet(self, message: Greet) -> None:
        await message.reply_to.tell(Greeting(f"hello {message.name}"))


@attrs.frozen
class Item:
    number: int


@attrs.define(eq=False)
class Stage(actors.Actor[Item]):
    """Takes ``seconds`` per item, then passes it on."""

    seconds: float
    downstream: actors.ActorRef[Item] | None = None

    @actors.handler
    async def item(self, message: Item) -> None:
        await trio.sleep(self.seconds)
        if self.downstream is not None:
            await self.downstream.tell(message)


# -- probes -----------------------------------------------------------------------------------


async def test_the_fixture_yields_an_open_system(actor_system: actors.ActorSystem) -> None:
    greeter = await actor_system.spawn(Greeter(), name="greeter")
    assert greeter.path == "/greeter"


async def test_probe_stands_in_for_a_reply_target(actor_system: actors.ActorSystem) -> None:
    probe = await spawn_probe(actor_system)
    greeter = await actor_system.spawn(Greeter())

    await greeter.tell(Greet("ada", reply_to=probe.ref))

    greeting = await probe.expect(Greeting)
    assert greeting.text == "hello ada"
    assert probe.last_sender is greeter
    await probe.expect_no_message()


async def test_expect_message_compares_by_equality(actor_system: actors.ActorSystem) -> None:
    probe = await spawn_probe(actor_system)
    greeter = await actor_system.spawn(Greeter())

    await greeter.tell(Greet("bob", reply_to=probe.ref))
    await probe.expect_message(Greeting("hello bob"))

    await greeter.tell(Greet("eve", reply_to=probe.ref))
    with pytest.raises(AssertionError, match=r"expected Greeting\(text='hello bob'\) but received"):
        await probe.expect_message(Greeting("hello bob"))


async def test_expect_names_what_arrived_instead(actor_system: actors.ActorSystem) -> None:
    probe = await spawn_probe(actor_system, name="probe")
    await probe.ref.tell(Item(7))
    with pytest.raises(
        AssertionError, match=r"probe /probe expected Greeting but received Item\(number=7\)"
    ):
        await probe.expect(Greeting)


async def test_expect_times_out_in_virtual_time(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    probe = await spawn_probe(actor_system, name="probe")
    start = trio.current_time()
    with pytest.raises(AssertionError, match=r"expected Greeting within 30s but received nothing"):
        await probe.expect(Greeting, timeout=30)
    assert trio.current_time() - start == 30


async def test_expect_no_message_fails_when_something_arrives(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    probe = await spawn_probe(actor_system)
    slow = await actor_system.spawn(Stage(seconds=2, downstream=probe.ref))
    await slow.tell(Item(1))
    await probe.expect_no_message(1.5)
    with pytest.raises(AssertionError, match=r"expected no message for 1s but received Item"):
        await probe.expect_no_message(1)


async def test_fish_for_skips_messages_until_one_matches(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    probe = await spawn_probe(actor_system)
    for number in range(5):
        await probe.ref.tell(Item(number))

    found = await probe.fish_for(lambda m: isinstance(m, Item) and m.number == 3)
    assert found == Item(3)
    await probe.expect_message(Item(4))

    await probe.ref.tell(Item(10))
    with pytest.raises(AssertionError, match=r"skipped 1: \[Item\(number=10\)\]"):
        await probe.fish_for(lambda m: m == Item(99), timeout=1)


async def test_expect_terminated_reports_the_stop_reason(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    probe = await spawn_probe(actor_system)
    counter = await actor_system.spawn(Counter())
    await counter.tell(Boom(ValueError("bad")))
    reason = await probe.expect_terminated(counter)
    assert isinstance(reason, actors.Failed)
    assert isinstance(reason.error, ValueError)

    already = await actor_system.spawn(Counter())
    await already.stop()
    assert await probe.expect_terminated(already) == actors.Normal()


async def test_expect_terminated_fails_while_the_actor_runs(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    probe = await spawn_probe(actor_system)
    counter = await actor_system.spawn(Counter())
    with pytest.raises(AssertionError, match=r"expected Terminated within 2s but received nothing"):
        await probe.expect_terminated(counter, timeout=2)


async def test_auto_pilot_answers_asks(actor_system: actors.ActorSystem) -> None:
    probe = await spawn_probe(actor_system)
    probe.set_auto_pilot(lambda message: 42 if isinstance(message, Total) else None)
    backend: actors.ActorRef[Total] = probe.ref

    assert await backend.ask(Total()) == 42
    await probe.expect(Total)


def test_probe_is_not_collected_as_a_test_class() -> None:
    assert TestProbe.__test__ is False


def test_every_public_name_is_documented() -> None:
    for name in actors.testing.__all__:
        obj = getattr(actors.testing, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"actors.testing.{name} has no docstring"
    for name, member in vars(TestProbe).items():
        if not name.startswith("_") and callable(getattr(member, "fget", member)):
            assert getattr(member, "fget", member).__doc__, f"TestProbe.{name} has no docstring"


# -- wait_idle --------------------------------------------------------------------------------


async def test_wait_idle_waits_until_every_mailbox_has_drained(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    last = await actor_system.spawn(Stage(seconds=2))
    first = await actor_system.spawn(Stage(seconds=1, downstream=last))
    start = trio.current_time()
    for number in range(3):
        await first.tell(Item(number))

    await wait_idle(actor_system)

    assert trio.current_time() - start >= 7  # the last item leaves the second stage at 7
    assert first.statistics().processed == 3
    assert last.statistics().processed == 3
    assert last.statistics().depth == 0


async def test_wait_idle_returns_at_once_when_nothing_happens(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    await actor_system.spawn(Counter())
    start = trio.current_time()
    await wait_idle(actor_system)
    assert trio.current_time() - start < 0.01


# -- fault injection --------------------------------------------------------------------------


async def test_crash_on_makes_the_actor_fail_on_that_message(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    probe = await spawn_probe(actor_system)
    counter = await actor_system.spawn(inject_faults(Counter, crash_on=Add))
    assert await counter.ask(Total()) == 0  # other messages are untouched

    with actor_system.dead_letters.subscribe() as letters:
        await counter.tell(Add(1))
        reason = await probe.expect_terminated(counter)
        letter = await letters.receive()

    assert isinstance(reason, actors.Failed)
    assert isinstance(reason.error, InjectedFault)
    assert "crashed on Add(amount=1)" in str(reason.error)
    assert letter.reason is actors.DeadLetterReason.FAILED
    assert letter.message == Add(1)


async def test_delay_holds_the_message_before_its_handler(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await actor_system.spawn(inject_faults(Counter, delay={Add: 2.5}))
    start = trio.current_time()
    await counter.tell(Add(3))
    assert await counter.ask(Total()) == 3  # queued behind the delayed Add
    assert trio.current_time() - start == 2.5


async def test_drop_sends_the_message_to_dead_letters(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await actor_system.spawn(inject_faults(Counter, drop=Add), name="counter")
    with actor_system.dead_letters.subscribe() as letters:
        await counter.tell(Add(5))
        assert await counter.ask(Total()) == 0
        letter = await letters.receive()
    assert letter.reason is actors.DeadLetterReason.DROPPED
    assert letter.message == Add(5)
    assert letter.recipient == "/counter"
    assert counter.statistics().dead_lettered == 1


async def test_faults_survive_a_supervisor_restart(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    supervisor = await actor_system.spawn(actors.Supervisor())
    spec = actors.ChildSpec("counter", inject_faults(Counter, crash_on=Add))
    counter = await actors.start_child(supervisor, spec)
    await counter.tell(Add(1))
    await wait_idle(actor_system)
    assert counter._cell.restarts == 1
    await counter.tell(Add(1))
    await wait_idle(actor_system)
    assert counter._cell.restarts == 2
    assert await counter.ask(Total()) == 0


async def test_inject_faults_refuses_what_it_cannot_honour(
    actor_system: actors.ActorSystem,
) -> None:
    with pytest.raises(TypeError, match=r"cannot drop Total: it is a Request"):
        inject_faults(Counter, drop=Total)
    with pytest.raises(TypeError, match=r"takes a factory"):
        inject_faults(Counter(), crash_on=Add)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"delay for Add must be"):
        inject_faults(Counter, delay={Add: -1})
    with pytest.raises(
        actors.UnhandledMessageError, match=r"names Item, but Counter has no handler for it"
    ):
        await actor_system.spawn(inject_faults(Counter, crash_on=Item))


async def test_a_faulty_actor_keeps_its_name_and_state(actor_system: actors.ActorSystem) -> None:
    counter = await actor_system.spawn(inject_faults(lambda: Counter(total=10), crash_on=Boom))
    assert counter.name.startswith("counter-")
    await counter.tell(Add(1))
    assert await counter.ask(Total()) == 11


# -- the fixture from a user's conftest -------------------------------------------------------


@pytest.mark.parametrize(
    "conftest",
    ["", 'pytest_plugins = ["actors.testing"]\n'],
    ids=["entry point only", "and an explicit pytest_plugins"],
)
def test_the_plugin_is_loaded_by_installing_the_package(
    tmp_path: pathlib.Path, conftest: str
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import actors
            from actors.testing import spawn_probe

            async def test_uses_the_fixture(actor_system, autojump_clock):
                assert isinstance(actor_system, actors.ActorSystem)
                probe = await spawn_probe(actor_system)
                await probe.ref.tell("hello")
                assert await probe.expect(str) == "hello"
                await probe.expect_no_message(60)
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_every_test_of_this_suite_has_a_time_bound(pytestconfig: pytest.Config) -> None:
    assert float(pytestconfig.getini("timeout")) > 0
