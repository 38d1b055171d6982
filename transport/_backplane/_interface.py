"""The backplane: topics, durable streams and named actors that span processes.

One interface, two implementations. :func:`open_local_backplane` keeps everything in
this process and needs no server (the default, and what tests use);
:func:`open_redis_backplane` goes through Redis or Valkey, so any number of processes
on any number of hosts share the same topics, streams and names. Code written against
:class:`Backplane` runs unchanged on either.

Guarantees (the Redis ones are those of the Redis features underneath):

* **Topics** (Redis Pub/Sub) are **at most once**. Each process holds one Redis
  subscription per topic and feeds a local :meth:`actors.ActorSystem.topic`, so the topic's bounded
  per-subscriber queues and overflow policy apply here exactly as for a local topic.
  While the connection to Redis is down, messages published elsewhere are lost; when it
  is back the subscriptions are restored and every subscriber gets a
  :class:`BackplaneGap` saying when messages may have been missed.
* **Durable streams** (Redis Streams with consumer groups) are **at least once**: an
  entry is acknowledged only after the consumer actor's handler returned, and entries
  left pending by a consumer that died are claimed by a live one of its group after
  ``min_idle`` seconds. Handle them idempotently by their :attr:`StreamMessage.id`.
* **Remote refs**: a name registered with :meth:`Backplane.register` can be told and
  asked from every process. Asks carry a deadline and fail promptly (not at their
  timeout) when the owning process goes away. :meth:`RemoteRef.watch` tells a local
  actor :class:`actors.Terminated` when the remote one stops or its process dies.
* **Groups** span processes: :meth:`Backplane.join_group` adds an actor to a
  cluster-wide group, every process lists the members and follows the changes, and
  :meth:`Backplane.broadcast` or :meth:`Backplane.route` tell them (at most once).
  A process's members vanish within the presence ttl when it dies.

Errors::

    TransportError
    └── BackplaneError
        ├── BackplaneUnavailableError      (trio.BrokenResourceError)  Redis cannot be reached
        ├── RemoteActorUnavailableError    (trio.BrokenResourceError)  no live process holds the name
        └── RemoteError                                                the remote handler raised
"""

from __future__ import annotations

import abc
import contextlib
import enum
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, final

import attrs
import trio

import actors

from .._exceptions import TransportError

if TYPE_CHECKING:
    from typing import Never

T = TypeVar("T")
R = TypeVar("R")

#: Default approximate cap on the length of a durable stream (``MAXLEN ~``).
DEFAULT_STREAM_MAXLEN = 10_000
#: Default idle time after which a pending stream entry is claimed by another consumer.
DEFAULT_MIN_IDLE = 30.0


class BackplaneError(TransportError):
    """Base class of the errors of the backplane."""


class BackplaneUnavailableError(BackplaneError, trio.BrokenResourceError):
    """The backplane's server cannot be reached (at start, or for an operation now)."""


class RemoteActorUnavailableError(BackplaneError, trio.BrokenResourceError):
    """No live process holds the name (never registered, stopped, or its process died)."""


class RemoteError(BackplaneError):
    """The remote actor's handler raised; ``remote_type`` names the exception's class."""

    def __init__(self, message: str, *, remote_type: str, detail: str) -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.detail = detail


class BackplaneState(enum.Enum):
    """Whether the backplane is connected to its server."""

    #: Connected; for the in-process backplane, always.
    CONNECTED = "connected"
    #: The connection was lost; ``statistics().attempt`` counts the tries so far.
    RECONNECTING = "reconnecting"
    #: The backplane was closed.
    CLOSED = "closed"


@final
@attrs.frozen
class BackplaneGap:
    """Told to a distributed topic's subscribers after its connection to Redis came back.

    Messages published to ``topic`` between ``since`` and ``until`` (wall-clock
    :func:`time.time` seconds) may not have been delivered: topics are at most once.
    Subscribers that keep state from the topic should resynchronise.
    """

    topic: str
    since: float
    until: float


@final
@attrs.frozen
class StreamMessage(actors.Request[None], Generic[T]):
    """One entry of a durable stream, delivered to a consumer actor.

    It is a request: the entry is acknowledged once the handler that handles it
    returned (for an entry the actor stashes, the handler that finally handles it).
    If the handler raises or rejects it, or the actor stops before handling it, the
    entry stays pending and is delivered again, to this or another consumer of the
    group, after the stream's ``min_idle``. ``id`` is the stream's entry id (unique
    and increasing), the key for idempotent handling.
    """

    stream: str
    group: str
    id: str
    message: T


@final
@attrs.frozen
class BackplaneStatistics:
    """A snapshot of a backplane.

    ``kind`` is ``"local"`` or ``"redis"``; ``url`` the server's address with any
    password masked; ``node`` this process's id on the backplane. ``attempt``
    counts reconnection tries since the connection was lost (0 when connected);
    ``disconnects`` and ``gaps`` count lost connections and the gap notices sent
    for them. ``published`` and ``received`` count topic messages;
    ``undeliverable`` counts backplane messages sent to dead letters (oversized,
    undecodable, late replies); ``names`` counts names registered from here.
    """

    kind: str
    url: str | None
    node: str
    state: BackplaneState
    attempt: int
    disconnects: int
    gaps: int
    topics: int
    published: int
    received: int
    undeliverable: int
    names: int


@final
class DistributedTopic(Generic[T]):
    """A topic every process on the backplane shares; get one from :meth:`Backplane.topic`.

    :meth:`publish` sends through the backplane (so this process's subscribers get the
    message too, in the same order as everybody else); subscribing is subscribing to
    :attr:`local`, the :meth:`actors.ActorSystem.topic` the backplane feeds, with its queues and
    overflow policy. Subscribers receive ``T`` messages and :class:`BackplaneGap`
    notices.
    """

    __slots__ = ("_publish", "local", "name")

    def __init__(
        self,
        name: str,
        local: actors.Topic[T | BackplaneGap],
        publish: Callable[[str, object], Coroutine[Any, Any, None]],
    ) -> None:
        self.name = name
        #: The in-process topic that receives this topic's messages.
        self.local = local
        self._publish = publish

    def __repr__(self) -> str:
        return f"<DistributedTopic {self.name!r} {self.local.policy.name}>"

    async def publish(self, message: T) -> None:
        """Publish ``message`` to every subscriber in every process.

        Raises :exc:`~transport.EncodeError` if the codec cannot encode it or it is
        larger than ``max_message_size``, and :exc:`BackplaneUnavailableError` while
        the server cannot be reached (the message is then not sent).
        """
        await self._publish(self.name, message)

    @contextlib.contextmanager
    def subscribe(
        self, *, buffer: int | None = None
    ) -> Iterator[actors.TopicReceiveChannel[T | BackplaneGap]]:
        """Receive this topic's messages while the ``with`` block is open (see
        :meth:`actors.Topic.subscribe`)."""
        with self.local.subscribe(buffer=buffer) as channel:
            yield channel

    def subscribe_actor(
        self, ref: actors.ActorRef[T | BackplaneGap], *, buffer: int | None = None
    ) -> actors.Subscription:
        """Deliver this topic's messages to ``ref`` (see :meth:`actors.Topic.subscribe_actor`).

        Give the actor a handler for :class:`BackplaneGap`, so that a lost connection
        is never silent; without one, gap notices go to dead letters.
        """
        return self.local.subscribe_actor(ref, buffer=buffer)

    def statistics(self) -> actors.TopicStatistics:
        """The local topic's counters."""
        return self.local.statistics()


class DurableStream(abc.ABC, Generic[T]):
    """An append-only log whose entries consumer groups share out, at least once.

    Get one from :meth:`Backplane.stream`. The stream keeps about ``maxlen`` entries
    (older ones are trimmed, approximately, as new ones are added, whether or not a
    group has read them), so size it for the longest consumer outage you tolerate.
    """

    name: str
    maxlen: int

    @abc.abstractmethod
    async def add(self, message: T) -> str:
        """Append ``message``; returns its entry id.

        Raises :exc:`BackplaneUnavailableError` when the server cannot be reached. If the
        connection was lost while the append was on its way, the server may have appended
        it all the same (its answer was lost with the connection): a producer that adds
        it again after the error may add it twice, which consumers handle as they handle
        any redelivery (idempotently, see :meth:`serve_consumer`).
        """

    @abc.abstractmethod
    async def serve_consumer(
        self,
        ref: actors.ActorRef[StreamMessage[T]],
        *,
        group: str,
        consumer: str | None = None,
        min_idle: float = DEFAULT_MIN_IDLE,
        handler_timeout: float | None = None,
        batch: int = 16,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Deliver the group's entries to ``ref``, one at a time, until cancelled.

        Use with ``nursery.start``: it returns once the group exists (created at the
        start of the stream if new, so a new group reads every retained entry). Each
        entry goes to the actor as a :class:`StreamMessage` and is acknowledged after
        its handler returned; ``handler_timeout`` (default: the system's ask timeout)
        bounds each wait for the actor. Entries are read ``batch`` at a time, one batch
        ahead; on Redis a whole batch goes into the actor's mailbox in a row, each entry
        a request (the actor still handles them one by one, in order), and each entry
        is acknowledged once its own reply holds a value, in batches behind the
        handlers, so an entry handled just before its consumer died may be delivered
        again. Entries pending for ``min_idle`` seconds with any consumer of the group
        (one that crashed, or whose handler failed) are claimed and delivered again.
        ``consumer`` names this consumer in the group (default: unique to this
        process). Returns when the actor stops.
        """

    @abc.abstractmethod
    async def pending(self, group: str) -> int:
        """How many entries of ``group`` were delivered but not yet acknowledged."""


class RemoteRef(abc.ABC, Generic[T]):
    """An actor registered on the backplane under ``name``, in whichever process holds it."""

    name: str

    @abc.abstractmethod
    async def tell(self, message: T) -> None:
        """Send ``message`` (at most once); :exc:`RemoteActorUnavailableError` if nobody holds the name."""

    @abc.abstractmethod
    async def ask(self, message: actors.Request[R], *, timeout: float | None = None) -> R:  # noqa: ASYNC109
        """Send ``message`` and wait for the reply.

        ``timeout`` defaults to the system's ask timeout; :exc:`actors.AskTimeoutError`
        when it passes. Raises :exc:`RemoteActorUnavailableError` as soon as no live
        process holds the name (also while waiting), and :exc:`RemoteError` if the
        handler raised.
        """

    @abc.abstractmethod
    async def watch(self, watcher: actors.ActorRef[actors.Terminated]) -> None:
        """Tell ``watcher`` an :class:`actors.Terminated` once the actor holding the name is gone.

        The notice comes when that actor stops (its own stop reason), when its
        process dies or loses the backplane for longer than the name's ttl
        (:class:`actors.Failed` with a :exc:`RemoteActorUnavailableError`), or at
        once if nobody holds the name now. The notice's ``ref`` is this remote ref
        (compare it with ``is``). One notice per call; watch again to follow the
        next holder of the name.
        """


class Backplane(abc.ABC):
    """Topics, durable streams, named actors and groups shared by every process on the backplane."""

    @final
    @attrs.frozen
    class Member:
        """A member of a cluster-wide group: the actor at ``path`` in the process ``node``.

        ``node`` is that process's :attr:`Backplane.node`. Compare members with ``==``.
        """

        node: str
        path: str

    @final
    @attrs.frozen
    class GroupChange:
        """A change of a cluster-wide group, from :meth:`Backplane.group_changes`.

        ``joined`` is true when ``member`` joined ``group``; otherwise it left, and
        ``reason`` says how: ``"left"`` (:meth:`Backplane.leave_group`), ``"stopped"``
        (the actor stopped), or ``"lost"`` (its process stopped renewing its presence:
        it died, or lost Redis for longer than the presence ttl; or the change happened
        while this process was cut off from Redis).
        """

        group: str
        member: Backplane.Member
        joined: bool
        reason: str = "joined"

    system: actors.ActorSystem
    #: This process's id on the backplane.
    node: str

    @abc.abstractmethod
    async def topic(
        self,
        name: str,
        *,
        policy: actors.OverflowPolicy | None = None,
        buffer: int | None = None,
    ) -> DistributedTopic[Any]:
        """The distributed topic ``name``, subscribed in this process when this returns.

        ``policy`` and ``buffer`` are those of the local topic (see :meth:`actors.ActorSystem.topic`).
        Annotate the variable to give the topic its message type::

            prices: transport.backplane.DistributedTopic[Price] = await backplane.topic("prices")

        With Redis it waits until the subscription is confirmed (through a
        reconnection if need be): bound it with :func:`trio.fail_after`.
        """

    @abc.abstractmethod
    def stream(self, name: str, *, maxlen: int = DEFAULT_STREAM_MAXLEN) -> DurableStream[Any]:
        """The durable stream ``name``, capped at about ``maxlen`` entries."""

    @abc.abstractmethod
    async def register(self, name: str, ref: actors.ActorRef[Never]) -> None:
        """Hold ``name`` for ``ref`` across the backplane until the actor stops.

        Raises :exc:`actors.NameTakenError` if another actor, here or in another
        process, holds it.
        """

    @abc.abstractmethod
    async def unregister(self, name: str) -> None:
        """Release ``name`` if this process holds it."""

    @abc.abstractmethod
    def remote(self, name: str) -> RemoteRef[Any]:
        """A ref to whichever actor holds ``name``, now or later (nothing is checked yet)."""

    @abc.abstractmethod
    async def join_group(self, group: str, ref: actors.ActorRef[Never]) -> None:
        """Add ``ref`` to the cluster-wide ``group`` until it leaves or stops.

        Every process sees it in :meth:`group_members`; if this process dies, its
        members vanish everywhere within the presence ttl (the name ttl). Joining
        twice is one membership. Raises :exc:`actors.ActorStoppedError` for a
        stopped actor and :exc:`BackplaneUnavailableError` while Redis is away.
        """

    @abc.abstractmethod
    async def leave_group(self, group: str, ref: actors.ActorRef[Never]) -> None:
        """Take ``ref`` out of ``group``; nothing happens if it is not a member."""

    @abc.abstractmethod
    async def group_members(self, group: str) -> tuple[Backplane.Member, ...]:
        """The members of ``group`` in every process (empty for an unknown group)."""

    @abc.abstractmethod
    def group_changes(
        self, group: str, *, buffer: int | None = None
    ) -> contextlib.AbstractAsyncContextManager[
        tuple[tuple[Backplane.Member, ...], actors.TopicReceiveChannel[Backplane.GroupChange]]
    ]:
        """Follow ``group`` across the cluster while the ``async with`` block is open.

        Yields the members when the block was entered and a channel of every
        :class:`Backplane.GroupChange` after that: joins and leaves in any process,
        and the members of a process that died (``reason="lost"``)::

            async with backplane.group_changes("lobby") as (members, changes):
                async for change in changes:
                    ...

        The channel holds ``buffer`` changes (the local topic's default when
        ``None``); when full, the oldest is dropped and counted in the
        subscription's statistics: then read :meth:`group_members` again.
        """

    @abc.abstractmethod
    async def broadcast(self, group: str, message: object) -> None:
        """Tell ``message`` to every member of ``group`` in every process (at most once).

        A member whose mailbox is full does not hold up the others: its copy goes
        to dead letters. Returns once the message left (with Redis: once Redis took it).
        """

    @abc.abstractmethod
    async def route(self, group: str, message: object) -> Backplane.Member:
        """Tell ``message`` to one member of ``group``, chosen at random; returns it.

        Raises :exc:`RemoteActorUnavailableError` if the group has no member (or the
        one chosen vanished before the message reached its process).
        """

    @abc.abstractmethod
    def statistics(self) -> BackplaneStatistics:
        """A snapshot of the backplane's state and counters."""


#: A member of a cluster-wide group (its public name is ``Backplane.Member``).
ClusterMember = Backplane.Member
#: A change of a cluster-wide group (its public name is ``Backplane.GroupChange``).
ClusterGroupChange = Backplane.GroupChange


def terminated(remote: RemoteRef[Any], reason: actors.StopReason) -> actors.Terminated:
    """The :class:`actors.Terminated` notice of a remote watch: its ``ref`` is ``remote``."""
    return actors.Terminated(cast("actors.ActorRef[Never]", remote), reason)


async def tell_watcher(
    watcher: actors.ActorRef[actors.Terminated], notice: actors.Terminated
) -> None:
    """Tell ``watcher`` its notice; nothing happens if it stopped first."""
    await trio.lowlevel.checkpoint()
    with contextlib.suppress(actors.ActorStoppedError):
        await watcher.tell(notice)


def unavailable_reason(name: str, why: str) -> actors.Failed:
    """The stop reason of a watched name whose holder is gone without a word."""
    return actors.Failed(
        RemoteActorUnavailableError(f"no live process holds the name {name!r} ({why})")
    )


def local_topic_name(name: str) -> str:
    """The name of the in-process topic that a distributed topic feeds."""
    return f"backplane:{name}"


def check_consumer(group: str, min_idle: float) -> None:
    """Refuse a bad consumer group name or a ``min_idle`` that is not positive."""
    check_name(group, "a consumer group name")
    if not min_idle > 0:
        raise ValueError(f"min_idle must be positive, not {min_idle!r}")


def check_name(name: str, what: str) -> None:
    """Refuse names that are not non-empty strings."""
    value: object = name
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, not {name!r}")
