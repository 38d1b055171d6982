"""``open_system``: the actor system that owns the root nursery."""

from __future__ import annotations

import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar, final

import attrs
import trio

from ._actor import Actor
from ._cell import Cell, Parent, check_thread
from ._dead_letters import DeadLetters
from ._deadlines import AskDeadlines
from ._events import publish_dead_letter
from ._exceptions import SystemClosedError

if TYPE_CHECKING:
    from ._events import SystemEvent
    from ._ref import ActorRef
    from ._topic import Topic

M = TypeVar("M")

#: Mailbox bound used when neither the system nor ``spawn`` names one.
DEFAULT_MAILBOX_SIZE = 256
#: Seconds an ``ask`` waits by default.
DEFAULT_ASK_TIMEOUT = 5.0
#: Seconds an actor's ``on_stop`` (and a graceful stop) may take by default.
DEFAULT_STOP_TIMEOUT = 5.0


@final
@attrs.frozen
class SystemStatistics:
    """Counters of a whole system: live actors, dead letters, late replies."""

    actors: int
    dead_letters: int
    late_replies: int


@final
class ActorSystem(Parent):
    """A running actor system; get one from :func:`open_system`.

    It owns the root nursery: every actor runs inside it, and none outlives
    the ``async with`` block.
    """

    def __init__(
        self,
        name: str,
        *,
        mailbox_size: int,
        ask_timeout: float,
        stop_timeout: float,
        dead_letter_history: int,
    ) -> None:
        if mailbox_size < 1:
            raise ValueError(f"mailbox_size must be at least 1, not {mailbox_size!r}")
        if ask_timeout <= 0:
            raise ValueError(f"ask_timeout must be positive, not {ask_timeout!r}")
        if stop_timeout <= 0:
            raise ValueError(f"stop_timeout must be positive, not {stop_timeout!r}")
        self.name = name
        self.system = self
        self.path = "/"
        self.children: dict[str, Cell] = {}
        self.mailbox_size = mailbox_size
        self.ask_timeout = ask_timeout
        self.stop_timeout = stop_timeout
        self.dead_letters = DeadLetters(
            dead_letter_history, on_publish=functools.partial(publish_dead_letter, self)
        )
        self.late_replies = 0
        self.ask_deadlines = AskDeadlines()
        self.thread_id = threading.get_ident()
        self.token = trio.lowlevel.current_trio_token()
        self._nursery: trio.Nursery | None = None
        self._escalated: BaseException | None = None
        self.names_given = 0

    def __repr__(self) -> str:
        state = "open" if self._nursery is not None else "closed"
        return f"<ActorSystem {self.name!r} {state}, {len(self.children)} top-level actors>"

    async def spawn(
        self,
        actor: Actor[M] | Callable[[], Actor[M]],
        *,
        name: str | None = None,
        mailbox_size: int | None = None,
        stop_timeout: float | None = None,
        max_bytes: int | None = None,
        weigher: Callable[[M], int] | None = None,
    ) -> ActorRef[M]:
        """Start a top-level actor and return its ref once ``on_start`` has finished.

        ``actor`` is an :class:`Actor` instance or a factory returning one.
        ``name`` must be unique among the system's top-level actors (one is
        generated if omitted). ``mailbox_size`` bounds the mailbox (default:
        the system's); ``stop_timeout`` bounds ``on_stop`` and a graceful stop.
        If ``on_start`` raises, so does ``spawn``.

        ``max_bytes`` bounds the mailbox in bytes as well, as weighed by
        ``weigher(message)`` (both or neither): an ordinary message is admitted
        while the weight queued plus its own stays within ``max_bytes``, and
        always when nothing is queued, so a single message larger than the
        bound gets through on its own instead of blocking forever. Waiting
        senders are served in arrival order. :class:`ControlMessage` messages
        are not weighed.
        """
        return await self.spawn_child(
            actor, name, mailbox_size, stop_timeout, max_bytes=max_bytes, weigher=weigher
        )

    @property
    def events(self) -> Topic[SystemEvent]:
        """The system event stream: failures, restarts and dead letters (see :func:`event_stream`)."""
        from ._topic import event_stream

        return event_stream(self)

    def statistics(self) -> SystemStatistics:
        """Counters of the whole system."""
        return SystemStatistics(
            actors=_count(self.children.values()),
            dead_letters=self.dead_letters.count,
            late_replies=self.late_replies,
        )

    def _check_thread(self, what: str) -> None:
        check_thread(self.thread_id, what)

    def _escalate(self, error: BaseException) -> None:
        """A top-level supervisor gave up: tear the system down and raise ``error`` from it."""
        if self._escalated is None:
            self._escalated = error
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _open_nursery(self, what: str) -> trio.Nursery:
        if self._nursery is None:
            raise SystemClosedError(
                f"actor system {self.name!r} is closed; cannot {what}. Open one with "
                "`async with actors.open_system() as system:` and spawn inside the block"
            )
        return self._nursery

    async def _shutdown(self) -> None:
        nursery, self._nursery = self._nursery, None
        await self.stop_children()
        if nursery is not None:
            nursery.cancel_scope.cancel()


def _count(cells: Iterable[Cell]) -> int:
    total = 0
    stack = list(cells)
    while stack:
        cell = stack.pop()
        total += 1
        stack.extend(cell.children.values())
    return total


@asynccontextmanager
async def open_system(
    name: str = "system",
    *,
    mailbox_size: int = DEFAULT_MAILBOX_SIZE,
    ask_timeout: float = DEFAULT_ASK_TIMEOUT,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    dead_letter_history: int = 1000,
) -> AsyncIterator[ActorSystem]:
    """Open an actor system for the duration of the ``async with`` block.

    On leaving the block, top-level actors are stopped youngest first (each
    stops its own children first), each within its ``stop_timeout``; whatever
    is still running after that is cancelled. If the block is cancelled, the
    actors are cancelled with it (their ``on_stop`` hooks still run).
    Exceptions raised in the block propagate unchanged, not wrapped in a group.
    If a top-level :class:`Supervisor` gives up (its restart intensity is
    exceeded), the block is cancelled, every actor stops, and the
    supervisor's error (a :exc:`RestartIntensityError`) is raised from here.

    ``mailbox_size``, ``ask_timeout`` and ``stop_timeout`` are the defaults
    for actors that don't set their own; ``dead_letter_history`` bounds how
    many recent dead letters :meth:`DeadLetters.recent` keeps.
    """
    system = ActorSystem(
        name,
        mailbox_size=mailbox_size,
        ask_timeout=ask_timeout,
        stop_timeout=stop_timeout,
        dead_letter_history=dead_letter_history,
    )
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        system._nursery = nursery
        nursery.start_soon(system.ask_deadlines.watch, name="actors:ask-deadlines")
        try:
            yield system
        except GeneratorExit:
            raise
        except BaseException as exc:  # noqa: BLE001, ASYNC103 - re-raised below, outside the nursery
            body_error = exc
        if body_error is None or not _is_cancelled(body_error):
            await system._shutdown()
        system._nursery = None
        nursery.cancel_scope.cancel()
    system.dead_letters.close()
    if system._escalated is not None:
        raise system._escalated
    if body_error is not None:
        raise body_error


def _is_cancelled(exc: BaseException) -> bool:
    return isinstance(exc, trio.Cancelled)
