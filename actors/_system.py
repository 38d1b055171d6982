"""``open_system``: the actor system that owns the root nursery."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, final, overload

import attrs
import trio

from . import _groups, _introspection, _registry, _router, _topic
from ._actor import Actor
from ._cell import Cell, Parent, check_thread
from ._dead_letters import DeadLetters
from ._deadlines import AskDeadlines
from ._events import publish_dead_letter
from ._exceptions import SystemClosedError
from ._messages import MailboxOverflow

if TYPE_CHECKING:
    from typing import Never

    from ._events import SystemEvent
    from ._groups import GroupFeed
    from ._introspection import SystemSnapshot
    from ._ref import ActorRef
    from ._router import Router
    from ._routing import Routing
    from ._subscription import OverflowPolicy
    from ._topic import Topic

M = TypeVar("M")
T = TypeVar("T")

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
        self.children_changes = 0
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
        # The system's own state: names, groups, topics and the event stream.
        self._registry = _registry.Registry()
        self._groups = _groups.Groups()
        self._topics: dict[str, Topic[Any]] = {}
        self._event_stream: Topic[SystemEvent] | None = None

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
        overflow: MailboxOverflow = MailboxOverflow.BLOCK,
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

        ``overflow`` (a :class:`MailboxOverflow`) says what a full mailbox does
        with a new ordinary message: wait (``BLOCK``, the default), drop it
        (``DROP_NEWEST``), drop the oldest queued (``DROP_OLDEST``) or raise
        :exc:`MailboxFullError` in the sender (``FAIL``). Drops are counted and
        dead-lettered.
        """
        return await self.spawn_child(
            actor,
            name,
            mailbox_size,
            stop_timeout,
            max_bytes=max_bytes,
            weigher=weigher,
            overflow=overflow,
        )

    @property
    def events(self) -> Topic[SystemEvent]:
        """The system event stream: actor failures, restarts and dead letters.

        A ``DROP_OLDEST`` topic (buffer :data:`EVENT_STREAM_BUFFER`), so the
        runtime never waits on a listener; a listener that falls behind loses
        its oldest events, counted in ``statistics().dropped`` but not sent to
        dead letters (that would publish yet more events). Subscribe to it like
        to any topic::

            with system.events.subscribe() as events:
                async for event in events:
                    if isinstance(event, actors.ActorFailed):
                        ...
        """
        return _topic.event_stream(self)

    # -- names (Erlang's ``register``) ---------------------------------------------------

    def register(self, name: str, ref: ActorRef[Never]) -> None:
        """Register ``ref`` under ``name`` until it stops for good.

        The name survives restarts of the actor by its supervisor. An actor may
        have several names; registering the same ref under the same name again
        does nothing. Raises :exc:`NameTakenError` if another actor holds the
        name, and :exc:`ActorStoppedError` if the actor has stopped or is stopping.
        """
        _registry.register(self, name, ref)

    def unregister(self, name: str) -> None:
        """Free ``name`` (the actor keeps running); a free name is left as it is."""
        _registry.unregister(self, name)

    @overload
    def lookup(self, name: str) -> ActorRef[Never] | None: ...
    @overload
    def lookup(self, name: str, *, handles: type[M]) -> ActorRef[M] | None: ...
    def lookup(
        self, name: str, *, handles: type[M] | None = None
    ) -> ActorRef[M] | ActorRef[Never] | None:
        """The ref registered under ``name``, or ``None`` if the name is free.

        A ref found by name is an ``ActorRef[Never]``: nothing is known of what
        it accepts. Pass ``handles=MessageType`` to get an
        ``ActorRef[MessageType]`` instead, checked now:
        :exc:`UnhandledMessageError` is raised if the actor has no handler for
        that type.
        """
        return _registry.lookup(self, name, handles=handles)

    @overload
    async def wait_registered(self, name: str) -> ActorRef[Never]: ...
    @overload
    async def wait_registered(self, name: str, *, handles: type[M]) -> ActorRef[M]: ...
    async def wait_registered(
        self, name: str, *, handles: type[M] | None = None
    ) -> ActorRef[M] | ActorRef[Never]:
        """Wait until some actor is registered under ``name``, and return its ref.

        Returns at once (after a checkpoint) if the name is taken. It waits
        without a deadline: bound it with :func:`trio.fail_after`. ``handles``
        as in :meth:`lookup`.
        """
        return await _registry.wait_registered(self, name, handles=handles)

    # -- process groups (Erlang's ``pg``) ------------------------------------------------------

    def join_group(self, group: str, ref: ActorRef[Never]) -> None:
        """Add ``ref`` to ``group`` until it leaves or stops for good.

        Joining a group twice is one membership; a supervisor's restart keeps
        it. Raises :exc:`ActorStoppedError` if the actor has stopped or is
        stopping.
        """
        _groups.join_group(self, group, ref)

    def leave_group(self, group: str, ref: ActorRef[Never]) -> None:
        """Take ``ref`` out of ``group``; nothing happens if it is not a member."""
        _groups.leave_group(self, group, ref)

    @overload
    def group_members(self, group: str) -> list[ActorRef[Never]]: ...
    @overload
    def group_members(self, group: str, *, handles: type[M]) -> list[ActorRef[M]]: ...
    def group_members(
        self, group: str, *, handles: type[M] | None = None
    ) -> list[ActorRef[M]] | list[ActorRef[Never]]:
        """The members of ``group``, in the order they joined (empty for an unknown group).

        Members of a group are ``ActorRef[Never]``; pass ``handles=MessageType``
        to get ``ActorRef[MessageType]`` refs, checked now: raises
        :exc:`UnhandledMessageError` if a member has no handler for that type.
        """
        return _groups.group_members(self, group, handles=handles)

    def group_names(self) -> list[str]:
        """The groups that have members, oldest first."""
        return _groups.group_names(self)

    @contextlib.contextmanager
    def group_changes(
        self, group: str, *, buffer: int = _groups.DEFAULT_FEED_BUFFER
    ) -> Iterator[GroupFeed]:
        """Follow the membership of ``group`` for the duration of the ``with`` block.

        The feed starts with a snapshot (``feed.members``) and then receives a
        :class:`GroupJoined` or :class:`GroupLeft` for each change, in order.
        It buffers up to ``buffer`` changes; when it is full, further changes
        are dropped for this feed, counted in ``feed.dropped`` and sent to dead
        letters: the runtime never waits for a slow reader::

            with system.group_changes("workers") as feed:
                workers = set(feed.members)
                async for change in feed:
                    ...
        """
        with _groups.group_changes(self, group, buffer=buffer) as feed:
            yield feed

    # -- routers ------------------------------------------------------------------------------

    async def spawn_pool(
        self,
        factory: Callable[[], Actor[M]],
        *,
        size: int,
        routing: Routing | None = None,
        name: str | None = None,
        mailbox_size: int | None = None,
        max_restarts: int = 3,
        within: float = 5.0,
    ) -> Router[M]:
        """Start a pool of ``size`` routees made by ``factory`` and return its :class:`Router`.

        The pool is a :class:`Supervisor` (named ``name``) with one permanent
        child per routee (``routee-1``, ``routee-2``, ...), each with its own
        ``mailbox_size``: a routee that crashes is restarted with a fresh
        actor from ``factory`` and keeps its ref and its queued messages,
        within the restart intensity ``max_restarts`` per ``within`` seconds
        (past it the pool fails, as any supervisor). ``routing`` (default
        :class:`RoundRobin`) picks the routee of each message. Returns once
        every routee has started; :meth:`Router.resize` changes the size.
        """
        return await _router.spawn_pool(
            self,
            factory,
            size=size,
            routing=routing,
            name=name,
            mailbox_size=mailbox_size,
            max_restarts=max_restarts,
            within=within,
        )

    def group_router(
        self, group: str, *, handles: type[M], routing: Routing | None = None
    ) -> Router[M]:
        """A :class:`Router` over the members of ``group``, as they join and leave.

        ``handles`` is the message type the router sends (each member is
        checked to handle it, as in :meth:`group_members`); ``routing``
        defaults to :class:`RoundRobin`. The router reads the membership
        live: a member that leaves or stops gets nothing more, one that joins
        takes its share at once. With no member, sends raise
        :exc:`NoRouteesError`.
        """
        return _router.group_router(self, group, handles, routing)

    # -- topics -----------------------------------------------------------------------------

    def topic(
        self,
        name: str,
        *,
        policy: OverflowPolicy | None = None,
        buffer: int | None = None,
    ) -> Topic[T]:
        """The topic called ``name``, created on first use.

        Annotate the variable to give the topic its message type::

            prices: actors.Topic[Price] = system.topic(
                "prices", policy=actors.OverflowPolicy.DROP_OLDEST, buffer=64
            )

        ``policy`` (default ``BLOCK``) and ``buffer`` (default
        :data:`DEFAULT_TOPIC_BUFFER`, per subscriber) apply when the topic is
        created and are the defaults of its subscriptions; a later lookup may
        omit them, but must not contradict them (``ValueError``). The topic
        lives until :meth:`Topic.close` or until the system shuts down.
        Raises :exc:`SystemClosedError` on a closed system.
        """
        return _topic.topic(self, name, policy=policy, buffer=buffer)

    # -- introspection ----------------------------------------------------------------------

    def snapshot(self) -> SystemSnapshot:
        """Copy the state of every live actor into a frozen :class:`SystemSnapshot`.

        Synchronous and cheap: it reads counters, it does not message the
        actors, so a busy actor is observed as it is (mid-handler, mailbox
        full). Each actor's registered names and groups are included.
        """
        return _introspection.snapshot(self)

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
    _topic.close_topics(system)
    system.dead_letters.close()
    if system._escalated is not None:
        raise system._escalated
    if body_error is not None:
        raise body_error


def _is_cancelled(exc: BaseException) -> bool:
    return isinstance(exc, trio.Cancelled)
