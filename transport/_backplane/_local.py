"""The in-process backplane: the same interface, no server, nothing leaves this process.

Topics are :meth:`actors.ActorSystem.topic` instances, streams are in-memory logs with consumer
groups, names live in a dictionary. Messages are passed as objects (the codec is
not used), so nothing is lost to a network and there are never gaps.
"""

from __future__ import annotations

import collections
import contextlib
import math
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar, final

import trio

import actors

from ._interface import (
    DEFAULT_MIN_IDLE,
    DEFAULT_STREAM_MAXLEN,
    Backplane,
    BackplaneState,
    BackplaneStatistics,
    DistributedTopic,
    DurableStream,
    RemoteActorUnavailableError,
    RemoteError,
    RemoteRef,
    StreamMessage,
    check_consumer,
    check_name,
    local_topic_name,
)

if TYPE_CHECKING:
    from typing import Never

T = TypeVar("T")
R = TypeVar("R")


@final
class LocalBackplane(Backplane):
    """The in-process :class:`Backplane`; open it with :func:`open_local_backplane`."""

    def __init__(self, system: actors.ActorSystem) -> None:
        self.system = system
        self.node = uuid.uuid4().hex[:12]
        self._topics: dict[str, DistributedTopic[Any]] = {}
        self._streams: dict[str, LocalStream[Any]] = {}
        self._names: dict[str, actors.ActorRef[Never]] = {}
        self._published = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<LocalBackplane node={self.node}>"

    async def topic(
        self,
        name: str,
        *,
        policy: actors.OverflowPolicy | None = None,
        buffer: int | None = None,
    ) -> DistributedTopic[Any]:
        """See :meth:`Backplane.topic`."""
        check_name(name, "a topic name")
        await trio.lowlevel.checkpoint()
        local: actors.Topic[Any] = self.system.topic(
            local_topic_name(name), policy=policy, buffer=buffer
        )
        existing = self._topics.get(name)
        if existing is None or existing.local is not local:
            existing = self._topics[name] = DistributedTopic(name, local, self._publish)
        return existing

    async def _publish(self, name: str, message: object) -> None:
        self._published += 1
        await self._topics[name].local.publish(message)

    def stream(self, name: str, *, maxlen: int = DEFAULT_STREAM_MAXLEN) -> LocalStream[Any]:
        """See :meth:`Backplane.stream`."""
        check_name(name, "a stream name")
        existing = self._streams.get(name)
        if existing is None:
            existing = self._streams[name] = LocalStream(self, name, maxlen)
        return existing

    async def register(self, name: str, ref: actors.ActorRef[Never]) -> None:
        """See :meth:`Backplane.register`."""
        check_name(name, "a registered name")
        await trio.lowlevel.checkpoint()
        holder = self._holder(name)
        if holder is not None and holder is not ref:
            raise actors.NameTakenError(
                f"the name {name!r} is already held on the backplane by actor {holder.path}; "
                "unregister it first or pick another name"
            )
        if not ref.is_alive:
            raise actors.ActorStoppedError(f"actor {ref.path} has stopped; it cannot hold {name!r}")
        self._names[name] = ref

    async def unregister(self, name: str) -> None:
        """See :meth:`Backplane.unregister`."""
        await trio.lowlevel.checkpoint()
        self._names.pop(name, None)

    def _holder(self, name: str) -> actors.ActorRef[Never] | None:
        ref = self._names.get(name)
        if ref is not None and not ref.is_alive:
            del self._names[name]
            return None
        return ref

    def remote(self, name: str) -> LocalRemoteRef[Any]:
        """See :meth:`Backplane.remote`."""
        check_name(name, "a registered name")
        return LocalRemoteRef(self, name)

    def statistics(self) -> BackplaneStatistics:
        """See :meth:`Backplane.statistics`."""
        return BackplaneStatistics(
            kind="local",
            url=None,
            node=self.node,
            state=BackplaneState.CLOSED if self._closed else BackplaneState.CONNECTED,
            attempt=0,
            disconnects=0,
            gaps=0,
            topics=len(self._topics),
            published=self._published,
            received=self._published,
            undeliverable=0,
            names=sum(1 for name in list(self._names) if self._holder(name) is not None),
        )


@final
class LocalRemoteRef(RemoteRef[T]):
    """A :class:`RemoteRef` of the in-process backplane."""

    def __init__(self, backplane: LocalBackplane, name: str) -> None:
        self._backplane = backplane
        self.name = name

    def __repr__(self) -> str:
        return f"<RemoteRef {self.name!r} (local)>"

    def _ref(self) -> actors.ActorRef[Any]:
        ref = self._backplane._holder(self.name)
        if ref is None:
            raise RemoteActorUnavailableError(
                f"no actor holds the name {self.name!r} on the backplane; register one with "
                "Backplane.register()"
            )
        return ref

    async def tell(self, message: T) -> None:
        try:
            await self._ref().tell(message)
        except actors.ActorStoppedError as exc:
            raise RemoteActorUnavailableError(f"the actor named {self.name!r} stopped") from exc

    async def ask(self, message: actors.Request[R], *, timeout: float | None = None) -> R:  # noqa: ASYNC109
        try:
            return await self._ref().ask(message, timeout=timeout)
        except actors.ActorStoppedError as exc:
            raise RemoteActorUnavailableError(f"the actor named {self.name!r} stopped") from exc
        except (actors.ActorError, RemoteActorUnavailableError):
            raise
        except Exception as exc:
            # Same shape as across processes: the handler's error is reported, not re-raised.
            raise RemoteError(
                f"the actor named {self.name!r} raised {type(exc).__qualname__}: {exc}",
                remote_type=type(exc).__qualname__,
                detail=str(exc),
            ) from exc


class _Group:
    __slots__ = ("next_seq", "pending")

    def __init__(self, next_seq: int) -> None:
        self.next_seq = next_seq
        # entry seq -> trio time it was (last) delivered or failed
        self.pending: dict[int, float] = {}


@final
class LocalStream(DurableStream[T]):
    """An in-memory :class:`DurableStream`: exact trimming at ``maxlen``, groups, redelivery."""

    def __init__(self, backplane: LocalBackplane, name: str, maxlen: int) -> None:
        value: object = maxlen
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"a stream's maxlen must be an int of at least 1, not {maxlen!r}")
        self._backplane = backplane
        self.name = name
        self.maxlen = maxlen
        self._entries: collections.deque[tuple[int, T]] = collections.deque()
        self._next_seq = 1
        self._groups: dict[str, _Group] = {}
        self._changed = trio.lowlevel.ParkingLot()
        self._consumers = 0

    def __repr__(self) -> str:
        return f"<DurableStream {self.name!r} (local), {len(self._entries)} entries>"

    async def add(self, message: T) -> str:
        await trio.lowlevel.checkpoint()
        seq = self._next_seq
        self._next_seq += 1
        self._entries.append((seq, message))
        while len(self._entries) > self.maxlen:
            self._entries.popleft()
        self._changed.unpark_all()
        return f"{seq}-0"

    async def pending(self, group: str) -> int:
        await trio.lowlevel.checkpoint()
        found = self._groups.get(group)
        return 0 if found is None else len(found.pending)

    def _entry(self, seq: int) -> T | None:
        if not self._entries or seq < self._entries[0][0]:
            return None
        index = seq - self._entries[0][0]
        return self._entries[index][1] if index < len(self._entries) else None

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
        check_consumer(group, min_idle)
        state = self._groups.get(group)
        if state is None:
            first = self._entries[0][0] if self._entries else self._next_seq
            state = self._groups[group] = _Group(first)
        await trio.lowlevel.checkpoint()
        task_status.started()
        while ref.is_alive:
            seq, wait = self._next_for(state, min_idle)
            if seq is None:
                with trio.move_on_after(wait):
                    await self._changed.park()
                continue
            message = self._entry(seq)
            if message is None:  # trimmed before it was acknowledged
                state.pending.pop(seq, None)
                continue
            state.pending[seq] = trio.current_time()
            try:
                await ref.ask(
                    StreamMessage(self.name, group, f"{seq}-0", message), timeout=handler_timeout
                )
            except actors.ActorStoppedError:
                return
            except Exception:  # noqa: BLE001 - the handler failed or was too slow: delivered again later
                state.pending[seq] = trio.current_time()
                self._changed.unpark_all()
            else:
                state.pending.pop(seq, None)

    def _next_for(self, state: _Group, min_idle: float) -> tuple[int | None, float]:
        """The entry to deliver next (claimed first, then new), or how long to wait."""
        now = trio.current_time()
        wait = math.inf
        for seq, since in state.pending.items():
            idle = now - since
            if idle >= min_idle:
                state.pending[seq] = now  # claimed: nobody else takes it meanwhile
                return seq, 0.0
            wait = min(wait, min_idle - idle)
        if self._entries:
            state.next_seq = max(state.next_seq, self._entries[0][0])
        if state.next_seq < self._next_seq:
            seq = state.next_seq
            state.next_seq += 1
            return seq, 0.0
        return None, wait


@contextlib.asynccontextmanager
async def open_local_backplane(  # noqa: ASYNC911 - nothing to wait for when leaving
    system: actors.ActorSystem,
) -> AsyncIterator[LocalBackplane]:
    """An in-process :class:`Backplane` for ``system``: no server, nothing leaves the process.

    The default for one process and for tests; swap in :func:`open_redis_backplane`
    to span processes without changing the code that uses it::

        async with transport.open_local_backplane(system) as backplane:
            chat: transport.DistributedTopic[Chat] = await backplane.topic("chat")
    """
    backplane = LocalBackplane(system)
    try:
        await trio.lowlevel.checkpoint()
        yield backplane
    finally:
        backplane._closed = True
