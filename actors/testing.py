"""Test helpers for code built on actors: probes, quiescence, fault injection, a fixture.

Everything runs on the trio clock, so with pytest-trio's ``autojump_clock``
fixture every timeout below is virtual: a test that waits "3 seconds" for a
message that never comes finishes at once.

This module imports pytest (install the ``test`` extra). It is a pytest
plugin, registered by the package's ``pytest11`` entry point: with
trio-actors installed (and pytest-trio in ``trio_mode``), every test can ask
for the ``actor_system`` fixture. A test then reads like an Akka TestKit
test::

    async def test_greeter_replies(actor_system, autojump_clock):
        probe = await spawn_probe(actor_system)
        greeter = await actor_system.spawn(Greeter())
        await greeter.tell(Greet("ada", reply_to=probe.ref))
        greeting = await probe.expect(Greeting)
        assert greeting.text == "hello ada"
        await probe.expect_no_message(0.5)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar, final

import pytest
import trio
import trio.testing

from ._actor import Actor, handler
from ._cell import Cell, State
from ._system import ActorSystem, open_system
from ._testkit import InjectedFault as InjectedFault, inject_faults as inject_faults
from ._watch import Terminated, watch_cell

if TYPE_CHECKING:
    from typing import Never

    from ._messages import StopReason
    from ._ref import ActorRef

__all__ = [
    "DEFAULT_EXPECT_TIMEOUT",
    "InjectedFault",
    "TestProbe",
    "actor_system",
    "inject_faults",
    "spawn_probe",
    "wait_idle",
]

T = TypeVar("T")

#: Seconds a probe waits for an expected message unless told otherwise (Akka's default).
DEFAULT_EXPECT_TIMEOUT = 3.0
#: Seconds ``expect_no_message`` listens by default.
DEFAULT_NO_MESSAGE_DURATION = 0.1
# How long wait_idle lets time pass between two looks at a busy system.
_IDLE_POLL = 0.001


@pytest.fixture
async def actor_system() -> AsyncIterator[ActorSystem]:
    """An open :class:`~actors.ActorSystem` named ``"test"``, shut down after the test."""
    async with open_system("test") as system:
        yield system


class Probe(Actor[object]):
    """The actor behind a :class:`TestProbe`: accepts any message and hands it to the test."""

    def __init__(self, inbox: trio.MemorySendChannel[tuple[object, Cell | None]]) -> None:
        self._inbox = inbox
        self._auto_pilot: Callable[[object], object] | None = None

    @handler(object)
    async def receive(self, message: object) -> object:
        """Record ``message`` for the test; reply with the auto-pilot's answer, if any."""
        await self._inbox.send((message, self._actor_cell.sender))
        return None if self._auto_pilot is None else self._auto_pilot(message)


@final
class TestProbe:
    """An actor that stands in for others in a test, and the assertions to check what it got.

    Give ``probe.ref`` to the actor under test wherever it expects a ref (it
    accepts any message type), then assert on what arrives. Get one from
    :func:`spawn_probe`. Messages are checked in arrival order; each
    ``expect*`` call consumes what it looks at. Failures raise
    :exc:`AssertionError` naming the probe, what was expected and what arrived.
    """

    __test__ = False  # not a pytest test class, despite its name

    __slots__ = ("_inbox", "_probe", "_ref", "_timeout", "last_sender")

    def __init__(
        self,
        ref: ActorRef[object],
        probe: Probe,
        inbox: trio.MemoryReceiveChannel[tuple[object, Cell | None]],
        timeout: float,
    ) -> None:
        self._ref = ref
        self._probe = probe
        self._inbox = inbox
        self._timeout = timeout
        #: The actor that sent the last message taken from the probe (None: sent from outside).
        self.last_sender: ActorRef[Never] | None = None

    def __repr__(self) -> str:
        return f"<TestProbe {self._ref.path}>"

    @property
    def ref(self) -> ActorRef[object]:
        """The probe's ref: usable as an ``ActorRef`` of any message type."""
        return self._ref

    def set_auto_pilot(self, reply: Callable[[object], object] | None) -> None:
        """Answer asks sent to the probe with ``reply(message)`` (``None`` turns it off).

        Messages are still recorded for ``expect*``. Without an auto-pilot, an
        ask to the probe is answered with ``None``.
        """
        self._probe._auto_pilot = reply

    async def receive(self, *, timeout: float | None = None) -> object:  # noqa: ASYNC109
        """Return the next message, whatever its type; fail if none comes within ``timeout``."""
        timeout = self._timeout if timeout is None else timeout
        with trio.move_on_after(timeout):
            return self._take(await self._inbox.receive())
        raise AssertionError(
            f"probe {self._ref.path} expected a message within {timeout}s but received nothing"
        )

    async def expect(self, message_type: type[T], *, timeout: float | None = None) -> T:  # noqa: ASYNC109
        """Return the next message, which must be an instance of ``message_type``.

        Fails at once if the next message is of another type, and after
        ``timeout`` seconds (default :data:`DEFAULT_EXPECT_TIMEOUT`, trio
        clock) if none arrives.
        """
        timeout = self._timeout if timeout is None else timeout
        expected = message_type.__qualname__
        with trio.move_on_after(timeout):
            message = self._take(await self._inbox.receive())
            if not isinstance(message, message_type):
                raise AssertionError(
                    f"probe {self._ref.path} expected {expected} but received {message!r}"
                )
            return message
        raise AssertionError(
            f"probe {self._ref.path} expected {expected} within {timeout}s but received nothing"
        )

    async def expect_message(self, expected: T, *, timeout: float | None = None) -> T:  # noqa: ASYNC109
        """Return the next message, which must equal ``expected``; fail otherwise."""
        message = await self.expect(type(expected), timeout=timeout)
        if message != expected:
            raise AssertionError(
                f"probe {self._ref.path} expected {expected!r} but received {message!r}"
            )
        return message

    async def expect_no_message(self, duration: float = DEFAULT_NO_MESSAGE_DURATION) -> None:
        """Fail if any message arrives within ``duration`` seconds (trio clock)."""
        with trio.move_on_after(duration):
            message = self._take(await self._inbox.receive())
            raise AssertionError(
                f"probe {self._ref.path} expected no message for {duration}s but received "
                f"{message!r}"
            )

    async def fish_for(
        self,
        predicate: Callable[[object], bool],
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> object:
        """Skip messages until one satisfies ``predicate``, and return it.

        ``timeout`` bounds the whole search; on failure the message lists what
        was skipped.
        """
        timeout = self._timeout if timeout is None else timeout
        skipped: list[object] = []
        with trio.move_on_after(timeout):
            while True:
                message = self._take(await self._inbox.receive())
                if predicate(message):
                    return message
                skipped.append(message)
        shown = ", ".join(repr(m) for m in skipped[:10]) + (", ..." if len(skipped) > 10 else "")
        raise AssertionError(
            f"probe {self._ref.path} found no message matching {_describe(predicate)} within "
            f"{timeout}s; skipped {len(skipped)}: [{shown}]"
        )

    async def expect_terminated(
        self,
        ref: ActorRef[Never],
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> StopReason:
        """Watch ``ref``; the next message must be its :class:`~actors.Terminated`.

        Returns the actor's stop reason. Works whether the actor has already
        stopped or stops within ``timeout`` seconds (trio clock); restarts by
        a supervisor do not count as stopping. Fails if another message comes
        first or none comes in time.
        """
        watch_cell(self._ref._cell, ref._cell)
        notice = await self.expect(Terminated, timeout=timeout)
        if notice.ref._cell is not ref._cell:
            raise AssertionError(
                f"probe {self._ref.path} expected Terminated of {ref.path} but received {notice!r}"
            )
        return notice.reason

    async def stop(self) -> None:
        """Stop the probe's actor (the system also stops it when it closes)."""
        await self._ref.stop()

    def _take(self, item: tuple[object, Cell | None]) -> object:
        message, sender = item
        self.last_sender = None if sender is None else sender.ref
        return message


async def spawn_probe(
    system: ActorSystem,
    *,
    name: str | None = None,
    capacity: int = 1000,
    timeout: float = DEFAULT_EXPECT_TIMEOUT,  # noqa: ASYNC109
) -> TestProbe:
    """Spawn a :class:`TestProbe` as a top-level actor of ``system``.

    ``capacity`` bounds how many received messages wait for the test; past it
    the probe's mailbox fills and senders wait, as with any actor.
    ``timeout`` is the default of the probe's ``expect*`` methods.
    """
    send, receive = trio.open_memory_channel[tuple[object, Cell | None]](capacity)
    probe = Probe(send)
    ref: ActorRef[object] = await system.spawn(probe, name=name)
    return TestProbe(ref, probe, receive, timeout)


async def wait_idle(system: ActorSystem) -> None:
    """Wait until the system is quiet: every task blocked and every actor waiting for mail.

    An actor counts as idle when its mailbox (both lanes) is empty and its
    task is waiting for the next message; one that is starting, stopping,
    restarting or still inside a handler does not. While something is busy,
    the trio clock is allowed to move (under ``autojump_clock`` it jumps), so
    handlers that sleep finish. Quiet is a moment, not a promise: a timer or a
    helper task that is sleeping may send a message later. Bound the wait
    yourself (``with trio.fail_after(...)``) if the system may never settle.
    """
    while True:
        await trio.testing.wait_all_tasks_blocked()
        if all(_is_idle(cell) for cell in _walk(system.children.values())):
            return
        await trio.sleep(_IDLE_POLL)


def _is_idle(cell: Cell) -> bool:
    if cell.state is State.STOPPED:
        return True
    mailbox = cell.mailbox
    # The receiver is parked only when both lanes (user and control) are empty.
    waiting_for_mail = mailbox.waiting
    return cell.state is State.RUNNING and mailbox.depth == 0 and waiting_for_mail


def _walk(cells: Iterable[Cell]) -> Iterator[Cell]:
    stack = list(cells)
    while stack:
        cell = stack.pop()
        yield cell
        stack.extend(cell.children.values())


def _describe(predicate: Callable[[object], bool]) -> str:
    return getattr(predicate, "__qualname__", None) or repr(predicate)
