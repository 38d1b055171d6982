"""Topics: publish once, deliver to every subscriber, each through its own bounded queue.

A topic belongs to an actor system and is found by name (:func:`topic`), as
in Akka's distributed pub/sub or Phoenix.PubSub. Every subscriber, an actor
or a receive channel, gets its own queue of ``buffer`` messages, and the
topic's :class:`OverflowPolicy` says what happens when one is full: the
publisher waits (``BLOCK``), or the subscriber loses its oldest message
(``DROP_OLDEST``), the new one (``DROP_NEWEST``) or its subscription
(``DISCONNECT``). Under the three non-blocking policies a publisher never
waits for a subscriber, so one stuck subscriber only loses its own messages.
Every drop is counted and recorded as a dead letter.

Delivery is at most once and in publish order per subscriber. The topic's
state lives as long as its system: forwarding tasks run in the system's
nursery, and when the system shuts down every topic is closed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import attrs
import outcome
import trio

from ._actor import resolve_handler
from ._exceptions import ActorError, ActorStoppedError, UnhandledMessageError, WrongThreadError
from ._messages import DeadLetter, DeadLetterReason
from ._subscription import (
    Lagged,
    OverflowPolicy,
    SubscriberLaggedError,
    SubscriberQueue,
    Subscription,
    TopicReceiveChannel,
    forward,
)

if TYPE_CHECKING:
    from ._cell import Cell
    from ._events import SystemEvent
    from ._ref import ActorRef
    from ._system import ActorSystem

T = TypeVar("T")

#: Per-subscriber queue bound used when neither the topic nor ``subscribe`` names one.
DEFAULT_TOPIC_BUFFER = 100
#: Per-subscriber queue bound of the system event stream.
EVENT_STREAM_BUFFER = 1000


class TopicClosedError(ActorError, trio.ClosedResourceError):
    """The topic was closed (by :meth:`Topic.close` or because its system shut down)."""


@final
@attrs.frozen
class TopicStatistics:
    """A snapshot of one topic.

    ``published`` counts messages accepted by ``publish``; ``dropped`` counts
    per-subscriber drops (each one a dead letter, except on the event
    stream); ``disconnected`` counts subscribers removed for lagging;
    ``publishers_waiting`` counts tasks blocked in ``publish`` (``BLOCK``).
    """

    name: str
    policy: OverflowPolicy
    buffer: int
    subscribers: int
    published: int
    dropped: int
    disconnected: int
    publishers_waiting: int


@final
class Topic(Generic[T]):
    """A named publish/subscribe channel of an actor system; get one from :func:`topic`.

    Each subscriber has its own queue of ``buffer`` messages (a subscriber may
    choose another bound). For an actor subscriber, a forwarding task in the
    system's nursery moves messages from that queue into the actor's mailbox
    with ``await ref.tell()``. The policy therefore applies to a queue the
    topic owns and can shape: ``DROP_OLDEST`` really drops the oldest message
    *of this topic* for that actor, and the actor's mailbox, shared with its
    other senders, is never filled or waited on by the publisher. (Putting
    with ``tell_nowait`` instead would make the mailbox the queue: the bound
    would be shared with unrelated traffic and ``DROP_OLDEST`` impossible.)
    A subscriber holds at most ``buffer`` messages in the topic plus what
    fits in its mailbox.
    """

    __slots__ = (
        "__weakref__",
        "_actors",
        "_channels_made",
        "_closed_why",
        "_disconnected",
        "_dropped",
        "_full",
        "_lock",
        "_published",
        "_queues",
        "_report",
        "_room",
        "_snapshot",
        "_system",
        "_waiting",
        "_watched",
        "buffer",
        "name",
        "policy",
    )

    def __init__(
        self,
        system: ActorSystem,
        name: str,
        policy: OverflowPolicy,
        buffer: int,
        *,
        report: bool = True,
    ) -> None:
        self._system = system
        self.name = name
        self.policy = policy
        self.buffer = buffer
        self._report = report
        self._queues: dict[SubscriberQueue[T], None] = {}
        self._snapshot: tuple[SubscriberQueue[T], ...] | None = ()
        self._actors: dict[Cell, SubscriberQueue[T]] = {}
        self._watched: set[Cell] = set()  # cells with our termination callback
        self._full = 0
        self._room = trio.lowlevel.ParkingLot()
        self._lock = trio.Lock()
        self._waiting = 0
        self._published = 0
        self._dropped = 0
        self._disconnected = 0
        self._closed_why: str | None = None
        self._channels_made = 0

    def __repr__(self) -> str:
        return f"<Topic {self.name!r} {self.policy.name}, {len(self._queues)} subscribers>"

    @property
    def is_closed(self) -> bool:
        """True once the topic is closed; publishing then raises :exc:`TopicClosedError`."""
        return self._closed_why is not None

    # -- publishing ----------------------------------------------------------------------

    def publish_nowait(self, message: T) -> None:
        """Deliver ``message`` to every subscriber's queue without waiting.

        Raises :exc:`trio.WouldBlock` only when the queue of a subscriber
        whose policy is ``BLOCK`` is full (or another publisher is already
        waiting): then nobody gets the message. When no subscriber blocks, it
        always succeeds.
        """
        self._check_open("publish")
        if self._full or self._waiting:
            raise trio.WouldBlock
        self._deliver(message)

    async def publish(self, message: T) -> None:
        """Deliver ``message`` to every subscriber's queue.

        While the queue of a ``BLOCK`` subscriber is full, this waits until
        it has room, then delivers to all at once; cancelled while waiting,
        it delivers to none. Subscribers with the other policies never make
        it wait (apart from the checkpoint). Waiting publishers are served
        first come, first served.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open("publish")
        if not (self._full or self._waiting):
            self._deliver(message)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        self._waiting += 1
        try:
            async with self._lock:
                while True:
                    self._check_open("publish")
                    if not self._full:
                        break
                    await self._room.park()
                self._deliver(message)
        finally:
            self._waiting -= 1

    def _check_open(self, what: str) -> None:
        if threading.get_ident() != self._system.thread_id:
            raise WrongThreadError(
                f"topic {self.name!r}: {what} must be called from the actor system's trio "
                "thread; from another thread go through trio.from_thread.run()"
            )
        if self._closed_why is not None:
            raise TopicClosedError(
                f"topic {self.name!r} is closed ({self._closed_why}); cannot {what}. "
                "Use topics only while their system runs"
            )

    def _deliver(self, message: T) -> None:
        self._published += 1
        queues = self._snapshot
        if queues is None:
            queues = self._snapshot = tuple(self._queues)
        for queue in queues:
            task = queue.receive_task
            if task is not None:
                queue.receive_task = None
                queue.accepted += 1
                trio.lowlevel.reschedule(task, outcome.Value(message))
                continue
            items = queue.items
            if len(items) < queue.capacity:
                items.append(message)
                queue.accepted += 1
                if queue.blocks and len(items) == queue.capacity:
                    self._full += 1
            else:
                self._overflow(queue, message)

    def _overflow(self, queue: SubscriberQueue[T], message: T) -> None:
        queue.dropped += 1
        self._dropped += 1
        lost = message
        error: BaseException | None = None
        if queue.policy is OverflowPolicy.DROP_OLDEST:
            lost = queue.items.popleft()
            queue.items.append(message)
            queue.accepted += 1
        elif queue.policy is OverflowPolicy.DISCONNECT:
            self._disconnected += 1
            self._detach(queue)
            error = self._lagged_error(queue)
            queue.finish(lambda: self._lagged_error(queue))
        self._dead_letter(lost, queue.label, DeadLetterReason.DROPPED, error)

    def _lagged_error(self, queue: SubscriberQueue[T]) -> SubscriberLaggedError:
        return SubscriberLaggedError(
            f"{queue.label} fell more than {queue.capacity} messages behind topic "
            f"{self.name!r} (policy DISCONNECT) and was unsubscribed; read faster, "
            "subscribe with a larger buffer, or subscribe again and accept the gap",
            topic=self.name,
            dropped=queue.dropped,
        )

    def _dead_letter(
        self, message: object, recipient: str, reason: DeadLetterReason, error: BaseException | None
    ) -> None:
        if self._report:
            self._system.dead_letters.publish(
                DeadLetter(
                    message=message, recipient=recipient, sender=None, reason=reason, error=error
                )
            )

    def _offer_event(self, event: T) -> None:
        if self._queues and self._closed_why is None:
            self._deliver(event)

    def _room_made(self) -> None:
        self._full -= 1
        if not self._full and self._room:
            self._room.unpark_all()

    # -- subscribing ------------------------------------------------------------------------

    @contextlib.contextmanager
    def subscribe(
        self, *, buffer: int | None = None, policy: OverflowPolicy | None = None
    ) -> Iterator[TopicReceiveChannel[T]]:
        """Receive the messages published while the ``with`` block is open::

            with prices.subscribe(buffer=10) as receive_channel:
                async for price in receive_channel:
                    ...

        ``buffer`` bounds this subscriber's queue and ``policy`` says what
        happens when it is full (default: the topic's own); see
        :meth:`subscribe_actor`. Leaving the block ends the subscription and
        discards what is queued.
        """
        self._check_open("subscribe")
        self._channels_made += 1
        label = f"topic:{self.name}/channel-{self._channels_made}"
        queue = SubscriberQueue(
            self,
            label,
            _check_buffer(self.buffer if buffer is None else buffer),
            None,
            self.policy if policy is None else OverflowPolicy(policy),
        )
        self._attach(queue)
        channel = TopicReceiveChannel(queue)
        try:
            yield channel
        finally:
            channel.close()

    def subscribe_actor(
        self,
        ref: ActorRef[T],
        *,
        buffer: int | None = None,
        policy: OverflowPolicy | None = None,
    ) -> Subscription:
        """Deliver every message published from now on to the actor ``ref``.

        ``buffer`` and ``policy`` are this subscription's own (default: the
        topic's): a slow subscriber that may lose messages can pick
        ``DROP_OLDEST`` on a ``BLOCK`` topic, and a subscriber that must see
        everything can pick ``BLOCK`` on a dropping topic (publishers then
        wait for it when its queue is full). The subscription ends by itself
        when the actor stops (messages still queued for it go to dead
        letters, like the rest of its mailbox). Under ``DISCONNECT`` the actor
        must handle :class:`Lagged`. Raises :exc:`ActorStoppedError` if the
        actor has stopped and ``ValueError`` if it is already subscribed to
        this topic.
        """
        self._check_open("subscribe")
        policy = self.policy if policy is None else OverflowPolicy(policy)
        cell = ref._cell
        if not ref.is_alive:
            raise ActorStoppedError(
                f"actor {cell.path} has stopped; it cannot subscribe to topic {self.name!r}"
            )
        if policy is OverflowPolicy.DISCONNECT and not (
            Lagged in cell.handlers or resolve_handler(cell.handlers, Lagged)
        ):
            raise UnhandledMessageError(
                f"actor {cell.path} has no handler for actors.Lagged, which topic "
                f"{self.name!r} (policy DISCONNECT) tells a subscriber that falls behind; "
                "add a handler for it, or subscribe with another policy"
            )
        if cell in self._actors:
            raise ValueError(
                f"actor {cell.path} is already subscribed to topic {self.name!r}; keep the "
                "Subscription that subscribe_actor() returned"
            )
        capacity = _check_buffer(self.buffer if buffer is None else buffer)
        nursery = self._system._open_nursery("subscribe an actor to a topic")
        queue: SubscriberQueue[T] = SubscriberQueue(self, cell.path, capacity, cell, policy)
        self._attach(queue)
        self._actors[cell] = queue
        if cell not in self._watched:
            self._watched.add(cell)
            cell.add_termination_callback(self._subscriber_stopped)
        nursery.start_soon(forward, self, queue, ref, name=f"actors:topic:{self.name}>{cell.path}")
        return Subscription(queue)

    def _attach(self, queue: SubscriberQueue[T]) -> None:
        self._queues[queue] = None
        self._snapshot = None

    def _detach(self, queue: SubscriberQueue[T]) -> None:
        if not queue.attached:
            return
        if queue.blocks and len(queue.items) >= queue.capacity:
            self._room_made()
        queue.attached = False
        del self._queues[queue]
        self._snapshot = None
        if queue.actor_cell is not None:
            del self._actors[queue.actor_cell]

    def _subscriber_stopped(self, cell: Cell, reason: object) -> None:
        queue = self._actors.get(cell)
        if queue is not None:
            # A forwarder inside tell() sees ActorStoppedError and dead-letters the rest.
            self._detach(queue)
            queue.finish(trio.EndOfChannel)
        self._watched.discard(cell)

    # -- the rest -------------------------------------------------------------------------------

    def statistics(self) -> TopicStatistics:
        """A snapshot of the topic's counters."""
        return TopicStatistics(
            name=self.name,
            policy=self.policy,
            buffer=self.buffer,
            subscribers=len(self._queues),
            published=self._published,
            dropped=self._dropped,
            disconnected=self._disconnected,
            publishers_waiting=self._waiting,
        )

    def close(self) -> None:
        """Close the topic: subscribers read what is queued, then see the end; publishing fails.

        Channel subscribers then get :exc:`trio.EndOfChannel`; waiting
        publishers get :exc:`TopicClosedError`. The name is free again.
        """
        self._close("closed with Topic.close()")

    def _close(self, why: str) -> None:
        if self._closed_why is not None:
            return
        self._closed_why = why
        for queue in list(self._queues):
            self._detach(queue)
            queue.finish(trio.EndOfChannel)
        self._room.unpark_all()
        system = self._system
        if system._topics.get(self.name) is self:
            del system._topics[self.name]
        if system._event_stream is self:
            system._event_stream = None


def _check_buffer(buffer: object) -> int:
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        raise ValueError(f"a topic buffer must be an int of at least 1, not {buffer!r}")
    return buffer


def _registry(system: ActorSystem, what: str) -> dict[str, Topic[Any]]:
    system._check_thread(what)
    system._open_nursery(what)  # refuses a closed system
    return system._topics


def close_topics(system: ActorSystem) -> None:
    """Close every topic of ``system`` and its event stream (the system has shut down)."""
    for each in list(system._topics.values()):
        each._close("its actor system has shut down")
    if system._event_stream is not None:
        system._event_stream._close("its actor system has shut down")


def topic(
    system: ActorSystem,
    name: str,
    *,
    policy: OverflowPolicy | None = None,
    buffer: int | None = None,
) -> Topic[T]:
    """The implementation of the :meth:`ActorSystem.topic` method."""
    if not name or not isinstance(name, str):
        raise ValueError(f"a topic name is a non-empty string, not {name!r}")
    registry = _registry(system, "look up a topic")
    existing = registry.get(name)
    if existing is None:
        created: Topic[T] = Topic(
            system,
            name,
            OverflowPolicy.BLOCK if policy is None else policy,
            DEFAULT_TOPIC_BUFFER if buffer is None else _check_buffer(buffer),
        )
        registry[name] = created
        return created
    if (policy is not None and policy is not existing.policy) or (
        buffer is not None and buffer != existing.buffer
    ):
        raise ValueError(
            f"topic {name!r} already exists with policy {existing.policy.name} and buffer "
            f"{existing.buffer}; look it up without policy= and buffer=, or with the same values"
        )
    return existing


def event_stream(system: ActorSystem) -> Topic[SystemEvent]:
    """The implementation of the :attr:`ActorSystem.events` property."""
    stream = system._event_stream
    if stream is None:
        _registry(system, "open the event stream")
        stream = Topic(
            system, "events", OverflowPolicy.DROP_OLDEST, EVENT_STREAM_BUFFER, report=False
        )
        system._event_stream = stream
    return stream
