"""Watching a remote ref through Redis: a ``Terminated`` when the named actor is gone.

The owner of a name announces its actor's stop on ``<namespace>:down:<name>`` (the stop
reason, then it releases the name). A process watching the name subscribes to that
channel and, every heartbeat, reads who holds the name's key: when it is no longer the
process that held it when the watch began (the key expired: that process died or lost
Redis for longer than the name's ttl), the watchers are told at once. After a
reconnection the check waits one ttl, while the owners write their keys back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, final

import attrs
import trio
from coredis.response.types import PubSubMessage

import actors

from .._codec import DecodeError
from ._interface import RemoteError, RemoteRef, tell_watcher, terminated, unavailable_reason
from ._wire import decode_notice, encode_notice

if TYPE_CHECKING:
    from typing import Any, Never

    from ._redis import RedisBackplane

logger = logging.getLogger("transport.backplane")


def encode_reason(reason: actors.StopReason) -> dict[str, str]:
    """The fields of a stop notice for ``reason``."""
    if isinstance(reason, actors.Failed):
        error = reason.error
        return {"reason": "failed", "type": type(error).__qualname__, "detail": str(error)}
    return {"reason": "cancelled" if isinstance(reason, actors.Cancelled) else "normal"}


def decode_reason(name: str, fields: dict[str, str | bool]) -> actors.StopReason:
    """The stop reason a notice's fields describe (a remote failure as :exc:`RemoteError`)."""
    kind = fields.get("reason")
    if kind == "failed":
        remote_type, detail = str(fields.get("type", "")), str(fields.get("detail", ""))
        return actors.Failed(
            RemoteError(
                f"the actor named {name!r} failed with {remote_type}: {detail}",
                remote_type=remote_type,
                detail=detail,
            )
        )
    return actors.Cancelled() if kind == "cancelled" else actors.Normal()


@attrs.define(eq=False)
class _Watch:
    remote: RemoteRef[Any]
    watcher: actors.ActorRef[actors.Terminated]
    owner: bytes


@final
class RemoteWatches:
    """The watches of this process on remote names, and the stop notices of its own names."""

    def __init__(self, backplane: RedisBackplane) -> None:
        self._backplane = backplane
        self._watches: dict[str, list[_Watch]] = {}
        self._nursery: trio.Nursery | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the announcing and notifying tasks; check the watched names each heartbeat."""
        backplane = self._backplane
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(backplane.names.heartbeat)
                if not self._watches or not backplane.settled(backplane.names.ttl):
                    continue
                try:
                    await self._check()
                except Exception as exc:  # noqa: BLE001 - Redis is away: the next heartbeat tries again
                    logger.debug("backplane: checking watched names failed: %r", exc)

    async def _check(self) -> None:
        await trio.lowlevel.checkpoint()
        backplane = self._backplane
        for name, watches in list(self._watches.items()):
            holder = await backplane.client.get(backplane.channel("name", name))
            gone = [watch for watch in watches if watch.owner != holder]
            if gone:
                self._fire(name, gone, unavailable_reason(name, "its process went away"))

    # -- the watcher's side -------------------------------------------------------------------

    async def watch(
        self, remote: RemoteRef[Any], watcher: actors.ActorRef[actors.Terminated]
    ) -> None:
        """See :meth:`RemoteRef.watch`."""
        backplane = self._backplane
        name = remote.name
        with backplane.translate_errors(f"watch the name {name!r}"):
            holder = await backplane.client.get(backplane.channel("name", name))
        watch = _Watch(remote, watcher, holder or b"")
        if holder is None:
            self._notify(watch, unavailable_reason(name, "nobody holds it"))
            return
        self._watches.setdefault(name, []).append(watch)
        # A stop announced before this subscription is confirmed is missed: the heartbeat's
        # check then finds the name released, and tells the watcher all the same.
        await backplane.subscribe_channel(backplane.channel("down", name), self._handler(name))

    def _handler(self, name: str) -> Callable[[PubSubMessage], Awaitable[None]]:
        backplane = self._backplane

        async def on_down(pushed: PubSubMessage) -> None:
            await trio.lowlevel.checkpoint()
            try:
                fields = decode_notice(pushed["data"], "node", "reason")
            except DecodeError as exc:
                backplane.dead_letter(pushed["data"], f"backplane watch {name!r}", exc)
                return
            node = str(fields["node"]).encode()
            gone = [watch for watch in self._watches.get(name, ()) if watch.owner == node]
            self._fire(name, gone, decode_reason(name, fields))

        return on_down

    def _fire(self, name: str, gone: list[_Watch], reason: actors.StopReason) -> None:
        watches = self._watches.get(name, [])
        for watch in gone:
            if watch in watches:
                watches.remove(watch)
                self._notify(watch, reason)
        self._forget_if_unwatched(name)

    def _forget_if_unwatched(self, name: str) -> None:
        if not self._watches.get(name):
            self._watches.pop(name, None)
            self._backplane.unsubscribe_channel(self._backplane.channel("down", name))

    def _notify(self, watch: _Watch, reason: actors.StopReason) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(tell_watcher, watch.watcher, terminated(watch.remote, reason))

    # -- the owner's side ---------------------------------------------------------------------

    def announce_stop(self, name: str, ref: actors.ActorRef[Never]) -> None:
        """Once ``ref`` stops, tell the watchers of ``name`` why, then release the name."""
        assert self._nursery is not None
        self._nursery.start_soon(self._announce, name, ref)

    async def _announce(self, name: str, ref: actors.ActorRef[Never]) -> None:
        reason = await ref.wait_stopped()
        backplane = self._backplane
        if backplane.names.held.get(name) is not ref:
            return
        notice = encode_notice(node=backplane.node, **encode_reason(reason))
        try:
            await backplane.client.publish(backplane.channel("down", name), notice)
        except Exception as exc:  # noqa: BLE001 - the watchers find the key gone within its ttl
            logger.debug("backplane: stop notice of %r not sent: %r", name, exc)
        try:
            await backplane.names.unregister(name)
        except Exception as exc:  # noqa: BLE001 - Redis is away: the key expires by itself
            logger.debug("backplane: releasing %r failed: %r", name, exc)
