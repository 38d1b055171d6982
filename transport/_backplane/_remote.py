"""Names that span processes, and tells and asks to them through Redis.

A name is held by the key ``<namespace>:name:<name>``, whose value is the owning
process's node id and which expires ``ttl`` seconds after its last renewal; the owner
renews it every ``heartbeat`` seconds (a compare-and-set script, so a process never
renews a name another one took). Requests for the name go to the Pub/Sub channel
``<namespace>:actor:<name>``, which only the owner subscribes to, and replies to the
asker's own channel ``<namespace>:node:<node>``.

An asker checks, every half heartbeat while it waits, that the name's key still
exists and that its channel still has a subscriber. A process that dies loses its
subscription as soon as Redis sees its socket close, and its keys within ``ttl``, so
asks to its names fail within a fraction of a second to ``ttl``, not at their timeout.
Tells are at most once: a tell to a live name returns once Redis accepted it.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any, TypeVar, cast, final

import attrs
import trio
from coredis.response.types import PubSubMessage

import actors

from .._codec import DecodeError, EncodeError
from ._interface import RemoteActorUnavailableError, RemoteError, RemoteRef, check_name
from ._wire import (
    ReplyHeader,
    RequestHeader,
    decode_envelope,
    decode_payload,
    encode_payload,
    encode_reply,
    encode_request,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Never

    from ._redis import RedisBackplane

logger = logging.getLogger("transport.backplane")

T = TypeVar("T")
R = TypeVar("R")

#: Requests served at once by one process; more are dropped to dead letters.
MAX_REQUESTS_IN_FLIGHT = 1000

_RENEW = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
if not held then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


@final
class NameKeeper:
    """The names this process holds on the backplane, and their heartbeat."""

    def __init__(self, backplane: RedisBackplane, *, ttl: float, heartbeat: float) -> None:
        self._backplane = backplane
        self.ttl = ttl
        self.heartbeat = heartbeat
        self.held: dict[str, actors.ActorRef[Never]] = {}

    def _key(self, name: str) -> str:
        return self._backplane.channel("name", name)

    async def register(self, name: str, ref: actors.ActorRef[Never]) -> None:
        check_name(name, "a registered name")
        backplane = self._backplane
        current = self.held.get(name)
        if current is ref:
            await trio.lowlevel.checkpoint()
            return
        if current is not None and current.is_alive:
            raise actors.NameTakenError(
                f"the name {name!r} is already held on the backplane by actor {current.path} "
                "of this process; unregister it first or pick another name"
            )
        if not ref.is_alive:
            raise actors.ActorStoppedError(f"actor {ref.path} has stopped; it cannot hold {name!r}")
        client = backplane.client
        with backplane.translate_errors(f"register the name {name!r}"):
            taken = await client.eval(
                _RENEW, keys=[self._key(name)], args=[backplane.node, int(self.ttl * 1000)]
            )
            if taken != 1:
                owner = await client.get(self._key(name))
                raise actors.NameTakenError(
                    f"the name {name!r} is already held on the backplane by process "
                    f"{owner!r}; unregister it there first or pick another name"
                )
        self.held[name] = ref
        await backplane.subscribe_channel(
            backplane.channel("actor", name), backplane.requests.handler_for(name)
        )

    async def unregister(self, name: str) -> None:
        backplane = self._backplane
        if self.held.pop(name, None) is None:
            await trio.lowlevel.checkpoint()
            return
        backplane.unsubscribe_channel(backplane.channel("actor", name))
        with backplane.translate_errors(f"unregister the name {name!r}"):
            await backplane.client.eval(_RELEASE, keys=[self._key(name)], args=[backplane.node])

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Renew every held name each heartbeat; let go of those whose actor stopped."""
        client = self._backplane.client
        task_status.started()
        while True:
            await trio.sleep(self.heartbeat)
            for name, ref in list(self.held.items()):
                try:
                    if not ref.is_alive:
                        await self.unregister(name)
                        continue
                    renewed = await client.eval(
                        _RENEW,
                        keys=[self._key(name)],
                        args=[self._backplane.node, int(self.ttl * 1000)],
                    )
                except Exception as exc:  # noqa: BLE001 - Redis is away: the next heartbeat tries again
                    logger.debug("backplane: heartbeat of %r failed: %r", name, exc)
                    continue
                if renewed != 1 and self.held.get(name) is ref:
                    logger.warning("backplane: the name %r was taken by another process", name)
                    del self.held[name]
                    self._backplane.unsubscribe_channel(self._backplane.channel("actor", name))

    async def release_all(self) -> None:
        """Let go of every name (when the backplane closes)."""
        await trio.lowlevel.checkpoint()
        for name in list(self.held):
            try:
                await self.unregister(name)
            except Exception as exc:  # noqa: BLE001 - Redis is away: the keys expire by themselves
                logger.debug("backplane: releasing %r failed: %r", name, exc)

    async def owner_alive(self, name: str) -> bool:
        """True while a process holds ``name`` and listens on its channel."""
        backplane = self._backplane
        with backplane.translate_errors(f"check the owner of {name!r}"):
            channel = backplane.channel("actor", name)
            listeners = await backplane.client.pubsub_numsub(channel)
            if not listeners.get(channel.encode(), 0):
                return False
            return bool(await backplane.client.exists([self._key(name)]))


@attrs.define(eq=False)
class _Reply:
    done: trio.Event = attrs.field(factory=trio.Event)
    header: ReplyHeader | None = None
    payload: bytes = b""


@final
class RequestServer:
    """Serves requests to the names held here, and routes replies to waiting asks."""

    def __init__(self, backplane: RedisBackplane) -> None:
        self._backplane = backplane
        self.pending: dict[str, _Reply] = {}
        self._nursery: trio.Nursery | None = None
        self._in_flight = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the tasks that serve requests (run in the backplane's nursery)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def handler_for(self, name: str) -> Callable[[PubSubMessage], Awaitable[None]]:
        recipient = f"backplane name {name!r}"

        async def on_request(pushed: PubSubMessage) -> None:
            await trio.lowlevel.checkpoint()
            data = pushed["data"]
            backplane = self._backplane
            try:
                if not isinstance(data, bytes):
                    raise DecodeError("a request must be bytes", str(data))
                header, payload = decode_envelope(data, backplane.max_message_size)
                if not isinstance(header, RequestHeader):
                    raise DecodeError("a reply arrived on a request channel", data)
            except DecodeError as exc:
                backplane.dead_letter(data, recipient, exc)
                return
            if self._nursery is None or self._in_flight >= MAX_REQUESTS_IN_FLIGHT:
                backplane.dead_letter(data, recipient, None)
                return
            self._in_flight += 1
            self._nursery.start_soon(self._handle, header, payload)

        return on_request

    async def _handle(self, header: RequestHeader, payload: bytes) -> None:
        try:
            reply = await self._answer(header, payload)
            if reply is not None and header.reply_to is not None:
                await self._send(header.reply_to, *reply)
        finally:
            self._in_flight -= 1

    async def _answer(
        self, header: RequestHeader, payload: bytes
    ) -> tuple[ReplyHeader, bytes] | None:
        await trio.lowlevel.checkpoint()
        backplane = self._backplane
        recipient = f"backplane name {header.name!r}"
        ref: actors.ActorRef[Any] | None = backplane.names.held.get(header.name)
        if ref is None or not ref.is_alive:
            if header.reply_to is None:
                backplane.dead_letter(payload, recipient, None)
            await trio.lowlevel.checkpoint()
            return ReplyHeader(header.id, error="ActorStoppedError", stopped=True), b""
        try:
            message = decode_payload(backplane.codec, payload, backplane.max_message_size)
        except DecodeError as exc:
            backplane.dead_letter(payload, recipient, exc)
            await trio.lowlevel.checkpoint()
            return ReplyHeader(header.id, error=type(exc).__name__, detail=str(exc)), b""
        if header.reply_to is None:
            try:
                await ref.tell(message)
            except (actors.ActorStoppedError, actors.UnhandledMessageError) as exc:
                backplane.dead_letter(message, recipient, exc)
            return None
        if not isinstance(message, actors.Request):
            await trio.lowlevel.checkpoint()
            return ReplyHeader(
                header.id,
                error="TypeError",
                detail=f"{type(message).__qualname__} is not an actors.Request; tell it instead",
            ), b""
        try:
            result = await ref.ask(message, timeout=header.timeout)
        except actors.ActorStoppedError:
            return ReplyHeader(header.id, error="ActorStoppedError", stopped=True), b""
        except Exception as exc:  # noqa: BLE001 - the handler's error is the asker's answer
            return ReplyHeader(header.id, error=type(exc).__qualname__, detail=str(exc)), b""
        try:
            return ReplyHeader(header.id), encode_payload(
                backplane.codec, result, backplane.max_message_size
            )
        except EncodeError as exc:
            return ReplyHeader(header.id, error=type(exc).__name__, detail=str(exc)), b""

    async def _send(self, channel: str, header: ReplyHeader, payload: bytes) -> None:
        await trio.lowlevel.checkpoint()
        try:
            await self._backplane.client.publish(channel, encode_reply(header, payload))
        except Exception as exc:  # noqa: BLE001 - Redis is away: the asker notices by itself
            logger.debug("backplane: reply %s not sent: %r", header.id, exc)

    async def on_reply(self, pushed: PubSubMessage) -> None:
        """Handler of this process's own channel: a reply to one of its asks."""
        await trio.lowlevel.checkpoint()
        backplane = self._backplane
        data = pushed["data"]
        try:
            if not isinstance(data, bytes):
                raise DecodeError("a reply must be bytes", str(data))
            header, payload = decode_envelope(data, backplane.max_message_size)
            if not isinstance(header, ReplyHeader):
                raise DecodeError("a request arrived on a reply channel", data)
        except DecodeError as exc:
            backplane.dead_letter(data, f"backplane node {backplane.node}", exc)
            return
        waiting = self.pending.pop(header.id, None)
        if waiting is None:
            backplane._undeliverable += 1
            backplane.system.dead_letters.publish(
                actors.DeadLetter(
                    message=payload,
                    recipient=f"backplane node {backplane.node}",
                    sender=None,
                    reason=actors.DeadLetterReason.LATE_REPLY,
                )
            )
            return
        waiting.header = header
        waiting.payload = payload
        waiting.done.set()


@final
class RedisRemoteRef(RemoteRef[T]):
    """A :class:`RemoteRef` through Redis; see :meth:`Backplane.remote`."""

    def __init__(self, backplane: RedisBackplane, name: str) -> None:
        self._backplane = backplane
        self.name = name

    def __repr__(self) -> str:
        return f"<RemoteRef {self.name!r} via {self._backplane!r}>"

    def _gone(self, why: str) -> RemoteActorUnavailableError:
        return RemoteActorUnavailableError(
            f"no live process holds the name {self.name!r} on the backplane ({why})"
        )

    async def _send(self, header: RequestHeader, payload: bytes) -> None:
        backplane = self._backplane
        with backplane.translate_errors(f"send to {self.name!r}"):
            receivers = await backplane.client.publish(
                backplane.channel("actor", self.name), encode_request(header, payload)
            )
        if not receivers:
            raise self._gone("nobody listens for it")

    async def tell(self, message: T) -> None:
        backplane = self._backplane
        payload = encode_payload(backplane.codec, message, backplane.max_message_size)
        await self._send(RequestHeader(uuid.uuid4().hex, self.name, None, None), payload)

    async def ask(self, message: actors.Request[R], *, timeout: float | None = None) -> R:  # noqa: ASYNC109
        backplane = self._backplane
        if timeout is None:
            timeout = backplane.system.ask_timeout
        deadline = trio.current_time() + timeout
        payload = encode_payload(backplane.codec, message, backplane.max_message_size)
        request_id = uuid.uuid4().hex
        reply = backplane.requests.pending[request_id] = _Reply()
        check_every = backplane.names.heartbeat / 2
        try:
            await self._send(
                RequestHeader(request_id, self.name, backplane.node_channel, timeout), payload
            )
            while True:
                with trio.move_on_at(min(deadline, trio.current_time() + check_every)):
                    await reply.done.wait()
                if reply.done.is_set():
                    break
                if trio.current_time() >= deadline:
                    raise actors.AskTimeoutError(
                        f"no reply from the actor named {self.name!r} within {timeout} s"
                    )
                if not await backplane.names.owner_alive(self.name):
                    raise self._gone("its process went away while it was asked")
        finally:
            backplane.requests.pending.pop(request_id, None)
        header = reply.header
        assert header is not None
        if header.stopped:
            raise self._gone("its actor stopped")
        if header.error is not None:
            raise RemoteError(
                f"the actor named {self.name!r} answered with {header.error}: {header.detail}",
                remote_type=header.error,
                detail=header.detail,
            )
        return cast(R, decode_payload(backplane.codec, reply.payload, backplane.max_message_size))
