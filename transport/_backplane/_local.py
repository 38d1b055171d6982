"""The in-process backplane: the same interface, no server, nothing leaves this process.

Topics are :meth:`actors.ActorSystem.topic` instances, streams are in-memory logs with consumer
groups, names live in a dictionary. Messages are passed as objects (the codec is
not used), so nothing is lost to a network and there are never gaps.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar, cast, final

import trio

import actors

from .._census import SourceKind, report_ended, report_started
from ._groups import (
    GroupView,
    follow_local,
    local_group_name,
    local_members,
    pick,
    tell_members,
)
from ._interface import (
    DEFAULT_STREAM_MAXLEN,
    Backplane,
    BackplaneState,
    BackplaneStatistics,
    ClusterGroupChange,
    ClusterMember,
    DistributedTopic,
    RemoteActorUnavailableError,
    RemoteError,
    RemoteRef,
    check_name,
    local_topic_name,
    tell_watcher,
    terminated,
    unavailable_reason,
)
from ._local_stream import LocalStream

if TYPE_CHECKING:
    from typing import Never

T = TypeVar("T")
R = TypeVar("R")


@final
class LocalBackplane(Backplane):
    """The in-process :class:`Backplane`; open it with :func:`open_local_backplane`."""

    def __init__(self, system: actors.ActorSystem, nursery: trio.Nursery) -> None:
        self.system = system
        self.node = uuid.uuid4().hex[:12]
        self.nursery = nursery
        self._views: dict[str, GroupView] = {}
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

    # -- groups ----------------------------------------------------------------------------------

    async def join_group(self, group: str, ref: actors.ActorRef[Never]) -> None:
        """See :meth:`Backplane.join_group`."""
        check_name(group, "a group name")
        await trio.lowlevel.checkpoint()
        self.system.join_group(local_group_name(group), ref)

    async def leave_group(self, group: str, ref: actors.ActorRef[Never]) -> None:
        """See :meth:`Backplane.leave_group`."""
        await trio.lowlevel.checkpoint()
        self.system.leave_group(local_group_name(group), ref)

    async def group_members(self, group: str) -> tuple[ClusterMember, ...]:
        """See :meth:`Backplane.group_members`."""
        await trio.lowlevel.checkpoint()
        return tuple(
            ClusterMember(self.node, ref.path) for ref in local_members(self.system, group)
        )

    @contextlib.asynccontextmanager
    async def group_changes(  # noqa: ASYNC911 - leaving does not wait
        self, group: str, *, buffer: int | None = None
    ) -> AsyncIterator[
        tuple[tuple[ClusterMember, ...], actors.TopicReceiveChannel[ClusterGroupChange]]
    ]:
        """See :meth:`Backplane.group_changes`."""
        check_name(group, "a group name")
        view = self._views.get(group)
        if view is None or view.topic.is_closed:
            view = self._views[group] = GroupView(self.system, group)
            await self.nursery.start(
                follow_local, self.system, group, functools.partial(self._local_change, view)
            )
        else:
            await trio.lowlevel.checkpoint()
        with view.follow(buffer) as followed:
            yield followed

    async def _local_change(
        self, view: GroupView, ref: actors.ActorRef[Never], reason: str | None
    ) -> None:
        member = ClusterMember(self.node, ref.path)
        if reason is None:
            view.joined(member)
        else:
            view.left(member, reason)
        await trio.lowlevel.checkpoint()

    async def broadcast(self, group: str, message: object) -> None:
        """See :meth:`Backplane.broadcast`."""
        check_name(group, "a group name")
        await trio.lowlevel.checkpoint()
        self._published += 1
        tell_members(self.system, local_members(self.system, group), message, f"group {group!r}")

    async def route(self, group: str, message: object) -> ClusterMember:
        """See :meth:`Backplane.route`."""
        check_name(group, "a group name")
        refs = {
            ClusterMember(self.node, ref.path): ref for ref in local_members(self.system, group)
        }
        member = pick(refs)
        if member is None:
            raise RemoteActorUnavailableError(
                f"the group {group!r} has no member; join one with Backplane.join_group()"
            )
        try:
            await cast("actors.ActorRef[object]", refs[member]).tell(message)
        except actors.ActorStoppedError as exc:
            raise RemoteActorUnavailableError(
                f"the member {member.path} of group {group!r} stopped"
            ) from exc
        return member

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

    async def watch(self, watcher: actors.ActorRef[actors.Terminated]) -> None:
        holder = self._backplane._holder(self.name)
        if holder is None:
            await tell_watcher(
                watcher, terminated(self, unavailable_reason(self.name, "nobody holds it"))
            )
            return
        await trio.lowlevel.checkpoint()
        self._backplane.nursery.start_soon(self._watch, holder, watcher)

    async def _watch(
        self, holder: actors.ActorRef[Never], watcher: actors.ActorRef[actors.Terminated]
    ) -> None:
        reason = await holder.wait_stopped()
        await tell_watcher(watcher, terminated(self, reason))

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


@contextlib.asynccontextmanager
async def open_local_backplane(  # noqa: ASYNC911 - leaving cancels, without waiting
    system: actors.ActorSystem,
) -> AsyncIterator[LocalBackplane]:
    """An in-process :class:`Backplane` for ``system``: no server, nothing leaves the process.

    The default for one process and for tests; swap in :func:`open_redis_backplane`
    to span processes without changing the code that uses it::

        async with transport.backplane.open_local_backplane(system) as backplane:
            chat: transport.backplane.DistributedTopic[Chat] = await backplane.topic("chat")
    """
    async with trio.open_nursery() as nursery:
        backplane = LocalBackplane(system, nursery)
        report_started(
            system, backplane, SourceKind.BACKPLANE, backplane.node, backplane.statistics
        )
        try:
            yield backplane
        finally:
            backplane._closed = True
            report_ended(system, backplane, backplane.statistics())
            nursery.cancel_scope.cancel()
