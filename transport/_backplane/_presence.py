"""Cluster-wide groups and presence through Redis.

Keys and channels (``ns`` is the namespace)::

    ns:presence:<node>   this process is alive; expires ``ttl`` after its last heartbeat
    ns:group:<group>     a set of "<node> <path>", one per member in every process
    ns:gchange:<group>   Pub/Sub: a notice per join and leave, for the processes that follow it
    ns:gmsg:<group>      Pub/Sub: messages to the group, for the processes holding members

Every heartbeat a process renews its presence key and adds its members to their
groups again (``SADD`` is idempotent), so after Redis lost its data (restarted without
persistence) everything is back within one heartbeat. Members are read through a
script that keeps only those whose process is present and removes the others: a
process that dies (or cannot reach Redis) vanishes from every group within ``ttl``.

A process following a group (:meth:`Backplane.group_changes`) keeps a view of it
(``_groups.GroupView``), changed at once by the notices and, every heartbeat, made
equal to the members read from Redis: members found gone are reported ``"lost"``.
After a reconnection this waits one ``ttl``, while the other processes put their
members back.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, cast, final

import trio
from coredis.response.types import PubSubMessage

import actors

from .._codec import DecodeError
from ._groups import (
    GroupView,
    follow_local,
    local_group_name,
    local_members,
    pick,
    tell_members,
)
from ._interface import (
    BackplaneState,
    ClusterGroupChange,
    ClusterMember,
    RemoteActorUnavailableError,
    check_name,
)
from ._wire import (
    EVERY_MEMBER,
    decode_group_message,
    decode_notice,
    decode_payload,
    encode_group_message,
    encode_notice,
    encode_payload,
)

if TYPE_CHECKING:
    from typing import Never

    from ._redis import RedisBackplane

logger = logging.getLogger("transport.backplane")

# KEYS[1] the group's set; ARGV[1] the presence key prefix. Returns the live members.
_LIVE_MEMBERS = """
local live = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    local node = string.match(member, '^[^ ]+')
    if node and redis.call('EXISTS', ARGV[1] .. node) == 1 then
        table.insert(live, member)
    else
        redis.call('SREM', KEYS[1], member)
    end
end
return live
"""


def member_key(member: ClusterMember) -> str:
    """How a member is written in its group's set."""
    return f"{member.node} {member.path}"


def parse_member(key: bytes | str) -> ClusterMember:
    """The member a set entry names."""
    text = key.decode() if isinstance(key, bytes) else key
    node, _, path = text.partition(" ")
    return ClusterMember(node, path)


@final
class Presence:
    """This process's members of cluster-wide groups, its views of groups, and the heartbeat."""

    def __init__(self, backplane: RedisBackplane, *, ttl: float, heartbeat: float) -> None:
        self._backplane = backplane
        self.ttl = ttl
        self.heartbeat = heartbeat
        self.me = backplane.channel("presence", backplane.node)
        self._views: dict[str, GroupView] = {}
        # Groups with (or that had) members here, whose local feed is followed.
        self._local: set[str] = set()
        # Members whose removal from Redis failed: removed by the next heartbeat.
        self._stale: dict[str, set[str]] = {}
        self._nursery: trio.Nursery | None = None

    # -- membership -------------------------------------------------------------------------

    async def join(self, group: str, ref: actors.ActorRef[Never]) -> None:
        check_name(group, "a group name")
        backplane = self._backplane
        if not ref.is_alive:
            raise actors.ActorStoppedError(
                f"actor {ref.path} has stopped; it cannot join group {group!r}"
            )
        member = ClusterMember(backplane.node, ref.path)
        with backplane.translate_errors(f"join group {group!r}"):
            await self._renew_presence()
            added = await backplane.client.sadd(self._group_key(group), [member_key(member)])
        await self._follow_local(group)
        try:
            backplane.system.join_group(local_group_name(group), ref)
        except actors.ActorStoppedError:  # it stopped meanwhile: the next heartbeat removes it
            self._stale.setdefault(group, set()).add(member_key(member))
            raise
        if added:
            await self._notify(group, member, joined=True, reason="joined")

    async def leave(self, group: str, ref: actors.ActorRef[Never]) -> None:
        backplane = self._backplane
        backplane.system.leave_group(local_group_name(group), ref)
        await self._remove(group, ClusterMember(backplane.node, ref.path), "left", raising=True)

    async def _remove(
        self, group: str, member: ClusterMember, reason: str, *, raising: bool
    ) -> None:
        await trio.lowlevel.checkpoint()
        backplane = self._backplane
        key = member_key(member)
        removed = 0
        try:
            with backplane.translate_errors(f"leave group {group!r}"):
                removed = await backplane.client.srem(self._group_key(group), [key])
        except Exception:
            self._stale.setdefault(group, set()).add(key)  # the next heartbeat removes it
            if raising:
                raise
        if removed:
            await self._notify(group, member, joined=False, reason=reason)

    async def _follow_local(self, group: str) -> None:
        if group in self._local:
            await trio.lowlevel.checkpoint()
            return
        self._local.add(group)
        assert self._nursery is not None
        await self._nursery.start(
            follow_local,
            self._backplane.system,
            group,
            functools.partial(self._local_change, group),
        )
        await self._backplane.subscribe_channel(
            self._backplane.channel("gmsg", group), self._message_handler(group)
        )

    async def _local_change(
        self, group: str, ref: actors.ActorRef[Never], reason: str | None
    ) -> None:
        if reason == "stopped":  # leave_group removed it already; joins are written by join
            await self._remove(
                group, ClusterMember(self._backplane.node, ref.path), reason, raising=False
            )
        else:
            await trio.lowlevel.checkpoint()

    async def _notify(
        self, group: str, member: ClusterMember, *, joined: bool, reason: str
    ) -> None:
        backplane = self._backplane
        notice = encode_notice(node=member.node, path=member.path, joined=joined, reason=reason)
        await trio.lowlevel.checkpoint()
        try:
            await backplane.client.publish(backplane.channel("gchange", group), notice)
        except Exception as exc:  # noqa: BLE001 - followers reconcile at their next heartbeat
            logger.debug("backplane: change notice of group %r not sent: %r", group, exc)

    # -- reading ----------------------------------------------------------------------------

    def _group_key(self, group: str) -> str:
        return self._backplane.channel("group", group)

    async def members(self, group: str) -> tuple[ClusterMember, ...]:
        check_name(group, "a group name")
        backplane = self._backplane
        with backplane.translate_errors(f"read the members of group {group!r}"):
            found = await backplane.client.eval(
                _LIVE_MEMBERS,
                keys=[self._group_key(group)],
                args=[backplane.channel("presence", "")],
            )
        assert isinstance(found, list)
        return tuple(parse_member(key) for key in sorted(cast("list[bytes]", found)))

    @contextlib.asynccontextmanager
    async def changes(  # noqa: ASYNC911 - leaving does not wait
        self, group: str, buffer: int | None
    ) -> AsyncIterator[
        tuple[tuple[ClusterMember, ...], actors.TopicReceiveChannel[ClusterGroupChange]]
    ]:
        check_name(group, "a group name")
        view = self._views.get(group)
        if view is None or view.topic.is_closed:
            view = GroupView(self._backplane.system, group)
            await self._backplane.subscribe_channel(
                self._backplane.channel("gchange", group), self._change_handler(view)
            )
            view.reconcile(await self.members(group))
            self._views[group] = view
        else:
            await trio.lowlevel.checkpoint()
        with view.follow(buffer) as followed:
            yield followed

    def _change_handler(self, view: GroupView) -> Callable[[PubSubMessage], Awaitable[None]]:
        backplane = self._backplane
        recipient = f"backplane group {view.group!r}"

        async def on_change(pushed: PubSubMessage) -> None:
            await trio.lowlevel.checkpoint()
            try:
                fields = decode_notice(pushed["data"], "node", "path", "joined", "reason")
            except DecodeError as exc:
                backplane.dead_letter(pushed["data"], recipient, exc)
                return
            member = ClusterMember(str(fields["node"]), str(fields["path"]))
            if fields["joined"] is True:
                view.joined(member)
            else:
                view.left(member, str(fields["reason"]))

        return on_change

    # -- messages ---------------------------------------------------------------------------

    async def broadcast(self, group: str, message: object) -> None:
        check_name(group, "a group name")
        await self._send(group, EVERY_MEMBER, message)

    async def route(self, group: str, message: object) -> ClusterMember:
        member = pick(await self.members(group))
        if member is None:
            raise RemoteActorUnavailableError(
                f"the group {group!r} has no member in any process; join one with "
                "Backplane.join_group()"
            )
        if not await self._send(group, member_key(member), message):
            raise RemoteActorUnavailableError(
                f"the member {member.path} of group {group!r} vanished with its process"
            )
        return member

    async def _send(self, group: str, target: str, message: object) -> int:
        backplane = self._backplane
        payload = encode_payload(backplane.codec, message, backplane.max_message_size)
        with backplane.translate_errors(f"send to group {group!r}"):
            receivers = await backplane.client.publish(
                backplane.channel("gmsg", group), encode_group_message(target, payload)
            )
        backplane.count_published()
        return receivers

    def _message_handler(self, group: str) -> Callable[[PubSubMessage], Awaitable[None]]:
        backplane = self._backplane
        recipient = f"backplane group {group!r}"
        mine = f"{backplane.node} "

        async def on_message(pushed: PubSubMessage) -> None:
            await trio.lowlevel.checkpoint()
            data = pushed["data"]
            try:
                if not isinstance(data, bytes):
                    raise DecodeError("a group message must be bytes", str(data))
                target, payload = decode_group_message(data, backplane.max_message_size)
                if target != EVERY_MEMBER and not target.startswith(mine):
                    return  # routed to a member of another process
                message = decode_payload(backplane.codec, payload, backplane.max_message_size)
            except DecodeError as exc:
                backplane.dead_letter(data, recipient, exc)
                return
            refs = local_members(backplane.system, group)
            if target != EVERY_MEMBER:
                path = target[len(mine) :]
                refs = [ref for ref in refs if ref.path == path]
                if not refs:  # it left, or stopped, after it was chosen
                    backplane.dead_letter(message, f"{recipient} member {path}", None)
            tell_members(backplane.system, refs, message, recipient)

        return on_message

    # -- heartbeat --------------------------------------------------------------------------

    async def _renew_presence(self) -> None:
        await self._backplane.client.set(self.me, b"1", px=int(self.ttl * 1000))

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Each heartbeat: renew presence, write this process's members, reconcile the views."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(self.heartbeat)
                try:
                    await self._beat()
                except Exception as exc:  # noqa: BLE001 - Redis is away: the next heartbeat tries again
                    logger.debug("backplane: group heartbeat failed: %r", exc)

    async def _beat(self) -> None:
        backplane = self._backplane
        client = backplane.client
        await self._renew_presence()
        for group in list(self._local):
            stale = self._stale.pop(group, set())
            want = {
                member_key(ClusterMember(backplane.node, ref.path))
                for ref in local_members(backplane.system, group)
            }
            stale -= want
            try:
                if want:
                    await client.sadd(self._group_key(group), list(want))
                if stale:
                    await client.srem(self._group_key(group), list(stale))
            except BaseException:
                self._stale.setdefault(group, set()).update(stale)
                raise
        if not backplane.settled(self.ttl):
            return
        for group, view in list(self._views.items()):
            if view.topic.is_closed:
                del self._views[group]
                backplane.unsubscribe_channel(backplane.channel("gchange", group))
                continue
            members = await self.members(group)
            if backplane.state is BackplaneState.CONNECTED:
                view.reconcile(members)

    async def release_all(self) -> None:
        """Leave every group and drop the presence key (when the backplane closes)."""
        await trio.lowlevel.checkpoint()
        backplane = self._backplane
        for group in list(self._local):
            for ref in local_members(backplane.system, group):
                backplane.system.leave_group(local_group_name(group), ref)
                await self._remove(
                    group, ClusterMember(backplane.node, ref.path), "left", raising=False
                )
        try:
            await backplane.client.delete([self.me])
        except Exception as exc:  # noqa: BLE001 - Redis is away: the key expires by itself
            logger.debug("backplane: dropping the presence key failed: %r", exc)
