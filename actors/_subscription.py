"""The subscriber side of a topic: its bounded queue, a channel, an actor's subscription.

Each subscriber has one :class:`SubscriberQueue`: the topic puts into it
(and applies its overflow policy there), one task takes from it. That task
is the user's, reading a :class:`TopicReceiveChannel`, or, for an actor, a
forwarder in the system's nursery that moves each message into the actor's
mailbox with ``await ref.tell()`` (:func:`forward`).
"""

from __future__ import annotations

import contextlib
import enum
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import attrs
import outcome
import trio

from ._cell import current_cell
from ._exceptions import ActorError, ActorStoppedError, MailboxFullError, UnhandledMessageError
from ._messages import DeadLetterReason

if TYPE_CHECKING:
    from ._cell import Cell
    from ._ref import ActorRef
    from ._topic import Topic

T = TypeVar("T")


class OverflowPolicy(enum.Enum):
    """What a topic does when a subscriber's queue is full."""

    #: The publisher waits until every subscriber has room (the slowest sets the pace).
    BLOCK = "block"
    #: The subscriber's oldest queued message is dropped to make room.
    DROP_OLDEST = "drop oldest"
    #: The new message is dropped for that subscriber.
    DROP_NEWEST = "drop newest"
    #: The subscriber is removed and told it lagged once it has read what was queued.
    DISCONNECT = "disconnect"


class SubscriberLaggedError(ActorError, trio.BrokenResourceError):
    """A channel subscriber fell behind a ``DISCONNECT`` topic and was removed.

    Raised by ``receive`` once the messages queued before the disconnection
    have been read. ``topic`` names the topic; ``dropped`` counts the
    messages this subscriber missed.
    """

    def __init__(self, message: str, *, topic: str, dropped: int) -> None:
        super().__init__(message)
        self.topic = topic
        self.dropped = dropped


@final
@attrs.frozen
class Lagged:
    """Told to an actor removed from a ``DISCONNECT`` topic for falling behind.

    It arrives after the messages that were queued for the actor, so it marks
    where the gap starts. ``dropped`` counts the messages the actor missed.
    The actor may subscribe again.
    """

    topic: str
    dropped: int


@final
@attrs.frozen
class SubscriberStatistics:
    """A snapshot of one subscription.

    ``subscriber`` is the actor's path, or ``topic:<name>/channel-<n>`` for
    a channel; ``policy`` is this subscription's overflow policy (the topic's
    unless the subscriber chose one); ``depth`` counts messages queued for
    it; ``accepted`` counts messages put in its queue; ``dropped`` counts
    those it lost to the overflow policy; ``active`` is false once the
    subscription has ended.
    """

    topic: str
    subscriber: str
    policy: OverflowPolicy
    buffer: int
    depth: int
    accepted: int
    dropped: int
    active: bool


class SubscriberQueue(Generic[T]):
    """One subscriber's bounded queue; the topic puts, one task receives."""

    __slots__ = (
        "accepted",
        "actor_cell",
        "attached",
        "blocks",
        "capacity",
        "dropped",
        "end",
        "items",
        "label",
        "policy",
        "receive_task",
        "topic",
    )

    def __init__(
        self,
        topic: Topic[T],
        label: str,
        capacity: int,
        cell: Cell | None,
        policy: OverflowPolicy,
    ) -> None:
        self.topic = topic
        self.label = label
        self.capacity = capacity
        self.policy = policy
        #: A full queue of a BLOCK subscriber makes publishers wait.
        self.blocks = policy is OverflowPolicy.BLOCK
        self.actor_cell = cell
        self.items: deque[T] = deque()
        self.receive_task: trio.lowlevel.Task | None = None
        self.attached = True
        self.end: Callable[[], BaseException] | None = None
        self.accepted = 0
        self.dropped = 0

    def finish(self, end: Callable[[], BaseException]) -> None:
        """No more messages will come: once empty, ``receive`` raises ``end()``."""
        if self.end is None:
            self.end = end
        if self.receive_task is not None:
            task, self.receive_task = self.receive_task, None
            trio.lowlevel.reschedule(task, outcome.Error(self.end()))

    def receive_nowait(self) -> T:
        items = self.items
        if items:
            if self.blocks and self.attached and len(items) == self.capacity:
                self.topic._room_made()
            return items.popleft()
        if self.end is not None:
            raise self.end()
        raise trio.WouldBlock

    async def receive(self) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            item = self.receive_nowait()
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return item
        if self.receive_task is not None:
            raise trio.BusyResourceError(
                f"another task is already receiving from {self.label}; a subscription has "
                "one reader: subscribe once per reading task"
            )
        self.receive_task = trio.lowlevel.current_task()

        def abort_fn(_: object) -> trio.lowlevel.Abort:
            self.receive_task = None
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort_fn)  # type: ignore[no-any-return]

    def statistics(self) -> SubscriberStatistics:
        return SubscriberStatistics(
            topic=self.topic.name,
            subscriber=self.label,
            policy=self.policy,
            buffer=self.capacity,
            depth=len(self.items),
            accepted=self.accepted,
            dropped=self.dropped,
            active=self.attached,
        )


@final
class TopicReceiveChannel(trio.abc.ReceiveChannel[T]):
    """The receive side of a channel subscription (see :meth:`Topic.subscribe`).

    ``receive`` raises :exc:`trio.EndOfChannel` once the topic is closed and
    the queue is empty, :exc:`SubscriberLaggedError` after a ``DISCONNECT``,
    and :exc:`trio.ClosedResourceError` after this channel was closed.
    """

    __slots__ = ("_queue",)

    def __init__(self, queue: SubscriberQueue[T]) -> None:
        self._queue = queue

    def __repr__(self) -> str:
        return f"<TopicReceiveChannel {self._queue.label}>"

    def receive_nowait(self) -> T:
        """Take the next message, or raise :exc:`trio.WouldBlock` if none is queued."""
        return self._queue.receive_nowait()

    async def receive(self) -> T:
        """Wait for the next message published to the topic."""
        return await self._queue.receive()

    def statistics(self) -> SubscriberStatistics:
        """A snapshot of this subscription's queue and counters."""
        return self._queue.statistics()

    def close(self) -> None:
        """End the subscription; messages still queued are discarded (as trio channels do)."""
        queue = self._queue
        queue.topic._detach(queue)
        queue.items.clear()
        queue.end = None
        queue.finish(lambda: trio.ClosedResourceError(f"{queue.label} was closed"))

    async def aclose(self) -> None:
        """End the subscription (see :meth:`close`)."""
        self.close()
        await trio.lowlevel.checkpoint()


@final
class Subscription:
    """An actor's subscription to a topic, returned by :meth:`Topic.subscribe_actor`.

    It ends when the actor stops, when :meth:`unsubscribe` is called, when
    the topic closes, or (``DISCONNECT``) when the actor falls behind.
    """

    __slots__ = ("_queue",)

    def __init__(self, queue: SubscriberQueue[Any]) -> None:
        self._queue = queue

    def __repr__(self) -> str:
        state = "active" if self._queue.attached else "ended"
        return f"<Subscription of {self._queue.label} to {self._queue.topic.name!r} {state}>"

    @property
    def topic(self) -> str:
        """The topic's name."""
        return self._queue.topic.name

    @property
    def subscriber(self) -> str:
        """The subscribing actor's path."""
        return self._queue.label

    @property
    def is_active(self) -> bool:
        """True until the subscription ends."""
        return self._queue.attached

    def statistics(self) -> SubscriberStatistics:
        """A snapshot of this subscription's queue and counters."""
        return self._queue.statistics()

    def unsubscribe(self) -> None:
        """Stop receiving; messages already queued are still delivered. Idempotent."""
        queue = self._queue
        queue.topic._detach(queue)
        queue.finish(trio.EndOfChannel)


async def forward(topic: Topic[T], queue: SubscriberQueue[T], ref: ActorRef[Any]) -> None:
    """Move the messages of an actor's queue into its mailbox (a task in the system nursery).

    Ends when the queue ends (unsubscribed, topic closed) or the actor stops;
    after a ``DISCONNECT`` it tells the actor :class:`Lagged` last.
    """
    await trio.lowlevel.checkpoint()
    current_cell.set(None)  # the topic, not whoever subscribed, sends these
    try:
        async for message in TopicReceiveChannel(queue):
            if not await _tell(topic, queue, ref, message):
                return
    except SubscriberLaggedError as lagged:
        with contextlib.suppress(ActorStoppedError):
            await ref.tell(Lagged(topic.name, lagged.dropped))


async def _tell(topic: Topic[T], queue: SubscriberQueue[T], ref: ActorRef[Any], message: T) -> bool:
    """Tell ``message`` to the actor; False once the actor has stopped."""
    try:
        await ref.tell(message)
    except ActorStoppedError as exc:
        # The actor stopped: like its mailbox, what is queued goes to dead letters.
        topic._detach(queue)
        for lost in (message, *queue.items):
            topic._dead_letter(lost, queue.label, DeadLetterReason.STOPPED, exc)
        queue.items.clear()
        return False  # noqa: ASYNC910 - the forwarder's loop checkpoints
    except UnhandledMessageError as exc:
        topic._dead_letter(message, queue.label, DeadLetterReason.UNDELIVERABLE, exc)
    except MailboxFullError as exc:  # the actor's own overflow policy is FAIL
        topic._dead_letter(message, queue.label, DeadLetterReason.DROPPED, exc)
    return True  # noqa: ASYNC910 - the forwarder's loop checkpoints
