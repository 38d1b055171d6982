"""The Redis (or Valkey) backplane, through coredis, which runs natively under trio.

Two clients: one for commands (publish, streams, keys) and one connection held by the
subscriber task, which carries every Pub/Sub subscription of this process: one
channel per distributed topic, one per name registered here, and this process's own
reply channel. coredis buffers pushed messages in an unbounded stream unless a
channel has a handler, so every channel has one: it decodes the message and puts it
straight into the topic's bounded local queues (or hands it to the request server).
A topic message costs no extra task switch or checkpoint here: coredis's reader loop
checkpoints once per message, and the handler waits only when a ``BLOCK`` topic is full.
Topic messages published here leave in batches (``_publisher``). Users reach this
module only through ``open_redis_backplane`` (``_redis_open``), which imports it on first use.

The subscriber task reconnects with :class:`actors.Backoff` when the connection is
lost, restores every subscription, then tells each topic's subscribers a
:class:`BackplaneGap`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, final

import attrs
import coredis
import trio
from coredis.patterns.pubsub import SubscriptionCallback
from coredis.response.types import PubSubMessage
from coredis.retry import NoRetryPolicy

import actors

from .._census import SourceKind, report_ended, report_started
from .._codec import Codec, DecodeError, RawCodec
from ._failures import describe, is_connection_failure, is_start_failure
from ._interface import (
    DEFAULT_STREAM_MAXLEN,
    Backplane,
    BackplaneGap,
    BackplaneState,
    BackplaneStatistics,
    BackplaneUnavailableError,
    ClusterGroupChange,
    ClusterMember,
    DistributedTopic,
    check_name,
    local_topic_name,
)
from ._presence import Presence
from ._publisher import TopicPublisher
from ._redis_open import redact
from ._remote import NameKeeper, RedisRemoteRef, RequestServer
from ._remote_watch import RemoteWatches
from ._streams import RedisStream
from ._wire import decode_payload, encode_payload

if TYPE_CHECKING:
    from typing import Never

logger = logging.getLogger("transport.backplane")

#: Seconds between two sweeps of what coredis queues for ``get_message`` (see ``_discard_unread``).
UNREAD_SWEEP_INTERVAL = 1.0


@final
class _TranslateErrors:
    """A reusable ``with`` block raising :exc:`BackplaneUnavailableError` for a lost connection."""

    __slots__ = ("_backplane", "_what")

    def __init__(self, backplane: RedisBackplane, what: str) -> None:
        self._backplane = backplane
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, Exception) and is_connection_failure(exc):
            self._backplane.unavailable(self._what, exc)


@attrs.define(eq=False)
class _TopicState:
    topic: DistributedTopic[Any]
    # Computed once, not per message: the Redis channel and the error translation of publish.
    channel: bytes
    publish_errors: _TranslateErrors
    # Set once subscribed: such topics get a gap notice after a lost connection.
    live: bool = False


def _discard_unread(pubsub: object) -> None:
    """Drop what coredis queued for ``get_message``, which the backplane never calls.

    coredis 6.9 puts every push it reads into an unbounded stream: a ``None`` for each
    message a channel handler took, and the (un)subscribe confirmations. Swept regularly,
    it holds at most ``UNREAD_SWEEP_INTERVAL`` seconds of them.
    """
    stream = getattr(pubsub, "_receive_stream", None)
    if stream is None:  # pragma: no cover - another coredis: nothing of the kind to sweep
        return
    for _ in range(stream.statistics().current_buffer_used):
        stream.receive_nowait()


@final
class RedisBackplane(Backplane):
    """The Redis :class:`Backplane`; open it with :func:`open_redis_backplane`."""

    def __init__(
        self,
        system: actors.ActorSystem,
        url: str,
        *,
        codec: Codec,
        namespace: str,
        max_message_size: int,
        connect_timeout: float,
        reconnect: actors.Backoff,
        name_ttl: float,
        heartbeat: float,
    ) -> None:
        if not 0 < heartbeat < name_ttl:
            raise ValueError(
                f"the heartbeat ({heartbeat} s) must be positive and shorter than the name "
                f"ttl ({name_ttl} s), or names would expire while their owner lives"
            )
        self.system = system
        self.url = url
        self.codec = codec
        self.namespace = namespace
        self.max_message_size = max_message_size
        self.connect_timeout = connect_timeout
        self.reconnect = reconnect
        self.node = uuid.uuid4().hex[:12]
        self.node_channel = f"{namespace}:node:{self.node}"
        self.client: coredis.Redis[bytes] = coredis.Redis.from_url(
            url,
            connect_timeout=connect_timeout,
            stream_timeout=max(connect_timeout, 10.0),
            retry_policy=NoRetryPolicy(),  # a retried PUBLISH could deliver twice
        )
        self._subscriber_client: coredis.Redis[bytes] = coredis.Redis.from_url(
            url, connect_timeout=connect_timeout, retry_policy=NoRetryPolicy()
        )
        self._topics: dict[str, _TopicState] = {}
        self._streams: dict[str, RedisStream[Any]] = {}
        # channel -> handler; the subscriber task subscribes to exactly these.
        self._channels: dict[str, Callable[[PubSubMessage], Awaitable[None]]] = {}
        self._channels_changed = trio.Event()
        self._channel_ready: dict[str, trio.Event] = {}
        self.names = NameKeeper(self, ttl=name_ttl, heartbeat=heartbeat)
        self.presence = Presence(self, ttl=name_ttl, heartbeat=heartbeat)
        self.watches = RemoteWatches(self)
        self.requests = RequestServer(self)
        self.publisher = TopicPublisher(self.client)
        self._state = BackplaneState.CONNECTED
        self._connected_once = False
        self._lost_at: float | None = None
        self._reconnected_at = -math.inf  # trio time
        self._attempt = 0
        self._disconnects = 0
        self._gaps = 0
        self._published = 0
        self._received = 0
        self._undeliverable = 0

    def __repr__(self) -> str:
        return f"<RedisBackplane {redact(self.url)} node={self.node} {self._state.name}>"

    # -- errors, at one boundary -----------------------------------------------------------

    def translate_errors(self, what: str) -> _TranslateErrors:
        """A ``with`` block raising :exc:`BackplaneUnavailableError` for a lost or refused
        connection (to ``what``)."""
        return _TranslateErrors(self, what)

    def unavailable(self, what: str, exc: BaseException) -> NoReturn:
        """Raise :exc:`BackplaneUnavailableError` for ``what``, naming the (redacted) URL."""
        raise BackplaneUnavailableError(
            f"cannot {what}: redis at {redact(self.url)} cannot be reached ({describe(exc)}); "
            "start the server or fix the url"
        ) from exc

    @property
    def state(self) -> BackplaneState:
        """Whether the backplane is connected now."""
        return self._state

    def settled(self, delay: float) -> bool:
        """True when connected for at least ``delay`` seconds since the last reconnection."""
        return (
            self._state is BackplaneState.CONNECTED
            and trio.current_time() - self._reconnected_at >= delay
        )

    def count_published(self) -> None:
        """Count one message sent through the backplane."""
        self._published += 1

    def channel(self, kind: str, name: str) -> str:
        """The Redis channel or key ``<namespace>:<kind>:<name>``."""
        return f"{self.namespace}:{kind}:{name}"

    def dead_letter(self, message: object, recipient: str, error: BaseException | None) -> None:
        """Record a backplane message that cannot be delivered."""
        self._undeliverable += 1
        self.system.dead_letters.publish(
            actors.DeadLetter(
                message=message,
                recipient=recipient,
                sender=None,
                reason=actors.DeadLetterReason.UNDELIVERABLE,
                error=error,
            )
        )

    # -- subscriptions ------------------------------------------------------------------------

    async def subscribe_channel(
        self, channel: str, handler: Callable[[PubSubMessage], Awaitable[None]]
    ) -> None:
        """Subscribe ``channel`` (now and after every reconnection); wait until confirmed."""
        self._channels[channel] = handler
        ready = self._channel_ready.get(channel)
        if ready is None:
            ready = self._channel_ready[channel] = trio.Event()
            self._channels_changed.set()
        await ready.wait()

    def unsubscribe_channel(self, channel: str) -> None:
        """Stop listening to ``channel`` (the subscriber task unsubscribes soon)."""
        if self._channels.pop(channel, None) is not None:
            self._channel_ready.pop(channel, None)
            self._channels_changed.set()

    async def serve_subscriber(self, *, task_status: trio.TaskStatus[None]) -> None:  # noqa: ASYNC128 - _subscribe_all calls started()
        """Hold the Pub/Sub connection: subscribe, reconnect, restore, report gaps."""
        while True:
            try:
                await self._subscribe_all(None if self._connected_once else task_status)
            except Exception as exc:
                if not self._connected_once or not is_connection_failure(exc):
                    raise
                if self._lost_at is None:
                    self._lost_at = time.time()
                    self._disconnects += 1
                    logger.warning(
                        "backplane: lost redis at %s: %s", redact(self.url), describe(exc)
                    )
                    for channel, ready in self._channel_ready.items():
                        if ready.is_set():
                            self._channel_ready[channel] = trio.Event()
                self._state = BackplaneState.RECONNECTING
                self._attempt += 1
            # _subscribe_all only ends by an exception: here, a lost connection.
            await trio.sleep(self.reconnect.delay(self._attempt - 1, random.random()))

    async def _subscribe_all(self, task_status: trio.TaskStatus[None] | None) -> None:
        handlers: dict[str | bytes, SubscriptionCallback] = dict(self._channels.items())
        subscribed = set(self._channels)
        async with self._subscriber_client.pubsub(
            channel_handlers=handlers,
            retry_policy=None,
            subscription_timeout=self.connect_timeout,
        ) as pubsub:
            self._state = BackplaneState.CONNECTED
            self._attempt = 0
            for channel in subscribed:
                self._channel_ready[channel].set()
            if task_status is not None:
                self._connected_once = True
                task_status.started()
            if self._lost_at is not None:
                self._reconnected_at = trio.current_time()
                since, self._lost_at = self._lost_at, None
                await self._report_gap(since, time.time())
            while True:
                with trio.move_on_after(UNREAD_SWEEP_INTERVAL):
                    await self._channels_changed.wait()
                _discard_unread(pubsub)
                if not self._channels_changed.is_set():
                    continue
                self._channels_changed = trio.Event()
                wanted = dict(self._channels)
                new = {c: h for c, h in wanted.items() if c not in subscribed}
                old = [c for c in subscribed if c not in wanted]
                if new:
                    await pubsub.subscribe(**new)
                    subscribed.update(new)
                    for channel in new:
                        ready = self._channel_ready.get(channel)
                        if ready is not None:
                            ready.set()
                if old:
                    await pubsub.unsubscribe(*old)
                    subscribed.difference_update(old)

    async def _report_gap(self, since: float, until: float) -> None:
        await trio.lowlevel.checkpoint()
        for state in list(self._topics.values()):
            if not state.live:
                continue
            self._gaps += 1
            with contextlib.suppress(actors.TopicClosedError):
                await state.topic.local.publish(BackplaneGap(state.topic.name, since, until))

    # -- topics ---------------------------------------------------------------------------------

    async def topic(
        self,
        name: str,
        *,
        policy: actors.OverflowPolicy | None = None,
        buffer: int | None = None,
    ) -> DistributedTopic[Any]:
        """See :meth:`Backplane.topic`."""
        check_name(name, "a topic name")
        local: actors.Topic[Any] = self.system.topic(
            local_topic_name(name), policy=policy, buffer=buffer
        )
        state = self._topics.get(name)
        channel = self.channel("topic", name)
        if state is None:
            state = self._topics[name] = _TopicState(
                DistributedTopic(name, local, self._publish),
                channel.encode(),
                self.translate_errors(f"publish to topic {name!r}"),
            )
        elif state.topic.local is not local:  # the local topic was closed and made anew
            state.topic = DistributedTopic(name, local, self._publish)
        if channel not in self._channels:
            await self.subscribe_channel(channel, self._topic_handler(name))
        else:
            await self._channel_ready[channel].wait()
        state.live = True
        return state.topic

    def _topic_handler(self, name: str) -> Callable[[PubSubMessage], Awaitable[None]]:
        recipient = f"backplane topic {name!r}"

        async def deliver(pushed: PubSubMessage) -> None:  # noqa: ASYNC910 - coredis checkpoints
            self._received += 1
            data = pushed["data"]
            try:
                if not isinstance(data, bytes):
                    raise DecodeError("a topic message must be bytes", str(data))
                message = decode_payload(self.codec, data, self.max_message_size)
            except DecodeError as exc:
                self.dead_letter(data, recipient, exc)
                return  # noqa: ASYNC910 - coredis's reader loop checkpoints
            state = self._topics.get(name)
            if state is None or state.topic.local.is_closed:
                self.dead_letter(message, recipient, None)
                return  # noqa: ASYNC910 - coredis's reader loop checkpoints
            local = state.topic.local
            try:
                # coredis's reader loop has just checkpointed: no second one per message.
                local.publish_nowait(message)
            except trio.WouldBlock:  # BLOCK, and a subscriber is full: wait in line
                with contextlib.suppress(actors.TopicClosedError):
                    await local.publish(message)
            except actors.TopicClosedError:
                pass

        return deliver

    async def _publish(self, name: str, message: object) -> None:
        data = encode_payload(self.codec, message, self.max_message_size)
        state = self._topics[name]
        with state.publish_errors:
            await self.publisher.publish(state.channel, data)
        self._published += 1

    # -- streams and names ---------------------------------------------------------------------

    def stream(self, name: str, *, maxlen: int = DEFAULT_STREAM_MAXLEN) -> RedisStream[Any]:
        """See :meth:`Backplane.stream`."""
        check_name(name, "a stream name")
        existing = self._streams.get(name)
        if existing is None or existing.maxlen != maxlen:
            existing = self._streams[name] = RedisStream(self, name, maxlen)
        return existing

    async def register(self, name: str, ref: actors.ActorRef[Never]) -> None:
        """See :meth:`Backplane.register`."""
        await self.names.register(name, ref)

    async def unregister(self, name: str) -> None:
        """See :meth:`Backplane.unregister`."""
        await self.names.unregister(name)

    def remote(self, name: str) -> RedisRemoteRef[Any]:
        """See :meth:`Backplane.remote`."""
        check_name(name, "a registered name")
        return RedisRemoteRef(self, name)

    # -- groups ----------------------------------------------------------------------------------

    async def join_group(self, group: str, ref: actors.ActorRef[Never]) -> None:
        """See :meth:`Backplane.join_group`."""
        await self.presence.join(group, ref)

    async def leave_group(self, group: str, ref: actors.ActorRef[Never]) -> None:
        """See :meth:`Backplane.leave_group`."""
        await self.presence.leave(group, ref)

    async def group_members(self, group: str) -> tuple[ClusterMember, ...]:
        """See :meth:`Backplane.group_members`."""
        return await self.presence.members(group)

    def group_changes(
        self, group: str, *, buffer: int | None = None
    ) -> contextlib.AbstractAsyncContextManager[
        tuple[tuple[ClusterMember, ...], actors.TopicReceiveChannel[ClusterGroupChange]]
    ]:
        """See :meth:`Backplane.group_changes`."""
        return self.presence.changes(group, buffer)

    async def broadcast(self, group: str, message: object) -> None:
        """See :meth:`Backplane.broadcast`."""
        await self.presence.broadcast(group, message)

    async def route(self, group: str, message: object) -> ClusterMember:
        """See :meth:`Backplane.route`."""
        return await self.presence.route(group, message)

    def statistics(self) -> BackplaneStatistics:
        """See :meth:`Backplane.statistics`."""
        return BackplaneStatistics(
            kind="redis",
            url=redact(self.url),
            node=self.node,
            state=self._state,
            attempt=self._attempt,
            disconnects=self._disconnects,
            gaps=self._gaps,
            topics=len(self._topics),
            published=self._published,
            received=self._received,
            undeliverable=self._undeliverable,
            names=len(self.names.held),
        )

    async def _connect(self) -> None:
        with trio.fail_after(self.connect_timeout):
            await self.client.ping()


@contextlib.asynccontextmanager
async def open_backplane(  # noqa: ASYNC911 - leaving closes and cancels, without waiting
    system: actors.ActorSystem,
    url: str,
    *,
    codec: Codec | None,
    namespace: str,
    max_message_size: int,
    connect_timeout: float,
    reconnect: actors.Backoff,
    name_ttl: float,
    heartbeat: float,
) -> AsyncIterator[RedisBackplane]:
    """What ``open_redis_backplane`` does once coredis is imported (same arguments)."""
    backplane = RedisBackplane(
        system,
        url,
        codec=RawCodec() if codec is None else codec,
        namespace=namespace,
        max_message_size=max_message_size,
        connect_timeout=connect_timeout,
        reconnect=reconnect,
        name_ttl=name_ttl,
        heartbeat=heartbeat,
    )
    opened = False
    try:
        async with backplane.client, backplane._subscriber_client:
            await backplane._connect()
            async with trio.open_nursery() as nursery:
                backplane._channels[backplane.node_channel] = backplane.requests.on_reply
                backplane._channel_ready[backplane.node_channel] = trio.Event()
                with trio.fail_after(connect_timeout):
                    await nursery.start(backplane.serve_subscriber)
                await nursery.start(backplane.names.serve)
                await nursery.start(backplane.presence.serve)
                await nursery.start(backplane.watches.serve)
                await nursery.start(backplane.requests.serve)
                await nursery.start(backplane.publisher.serve)
                opened = True
                report_started(
                    system, backplane, SourceKind.BACKPLANE, backplane.node, backplane.statistics
                )
                try:
                    yield backplane
                finally:
                    with trio.CancelScope(shield=True), trio.move_on_after(connect_timeout):
                        await backplane.presence.release_all()
                        await backplane.names.release_all()
                    backplane._state = BackplaneState.CLOSED
                    report_ended(system, backplane, backplane.statistics())
                    nursery.cancel_scope.cancel()
    except Exception as exc:
        if opened or not is_start_failure(exc, trio.TooSlowError):
            raise
        backplane.unavailable("connect", exc)
