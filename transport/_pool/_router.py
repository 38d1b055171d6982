"""A pool of dedicated connections to one endpoint, behind one router actor.

Instead of many producers sharing one connection, a pool gives the endpoint N
connections, each its own :class:`ReconnectingClient` (so each owns its stream, reconnects
with backoff and buffers while down), started by an :class:`actors.Supervisor` as
``PERMANENT`` children with a restart backoff: a member that gives up (or fails) is
replaced while its peers carry on; past ``max_restarts`` within ``within`` seconds the
supervisor gives up and the pool fails with :exc:`actors.RestartIntensityError`.

The router in front accepts the same messages as one client and picks a member per
message (:class:`Routing`; the choice itself is the pure :func:`choose_member`):

- a member that is down is skipped by ``ROUND_ROBIN`` and ``LEAST_LOADED`` while any
  member is up (counted in ``rerouted``); with none up, the chosen member buffers;
- ``KEY_HASH`` never re-routes: a key's member buffers while it is down, so the key's
  messages keep their order, at the cost of waiting for that one member.

Members are started with the template's settings (``attrs.evolve``); inbound messages of
every member go to the template's subscriber, or into one channel read through the
pool's ``receive()``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import final

import attrs
import trio

import actors

from .._codec import Codec
from .._connection._actor import Spawner
from .._connection._messages import SendBytes, SendMessage, SendText
from .._reconnect._client import ReconnectingClient
from .._reconnect._inbox_reader import InboxReader
from .._reconnect._policy import BufferFullError, ClientState
from .._reconnect._types import Outgoing, ReconnectingMessage, ReconnectStatistics, Send, frame_of
from ._routing import Routing, choose_member

#: Restarts of a member that gave up: 0.5 s doubling to 30 s.
DEFAULT_RESTART_BACKOFF = actors.Backoff(minimum=0.5, maximum=30.0)


@final
@attrs.frozen
class GetPoolStatistics(actors.Request["PoolStatistics"]):
    """Ask a pool's router for its :class:`PoolStatistics`."""


#: Every message a pool's router accepts.
PoolMessage = SendText | SendBytes | SendMessage | Send | GetPoolStatistics


@final
@attrs.frozen
class PoolStatistics:
    """A snapshot of a pool.

    ``connected`` counts members connected now; ``routed`` how many messages went to
    each member; ``rerouted`` how many went elsewhere because their member was down;
    ``replaced`` how many members the supervisor restarted; ``members`` each member's
    own statistics.
    """

    routing: Routing
    connected: int
    routed: tuple[int, ...]
    rerouted: int
    replaced: int
    members: tuple[ReconnectStatistics, ...]


@final
@attrs.define(eq=False, kw_only=True)
class PoolRouter(actors.Actor[PoolMessage]):
    """The router of a connection pool; its members are copies of ``client``.

    ``client`` is a template, never started itself: its URL, options, backoff,
    buffer policy, hook and subscriber are those of every member.
    """

    client: ReconnectingClient
    size: int = 4
    routing: Routing = Routing.ROUND_ROBIN
    restart_backoff: actors.Backoff = DEFAULT_RESTART_BACKOFF
    max_restarts: int = 5
    within: float = 60.0
    _members: list[ReconnectingClient | None] = attrs.field(init=False)
    _refs: list[actors.ActorRef[ReconnectingMessage]] = attrs.field(init=False, factory=list)
    _routed: list[int] = attrs.field(init=False)
    _turn: int = attrs.field(init=False, default=0)
    _rerouted: int = attrs.field(init=False, default=0)
    _replaced: int = attrs.field(init=False, default=0)
    _changed: trio.Event = attrs.field(init=False, factory=trio.Event)
    _inbox: trio.MemorySendChannel[object] | None = attrs.field(init=False, default=None)
    _inbox_receive: trio.MemoryReceiveChannel[object] | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"a pool needs at least one connection, not size={self.size!r}")
        if self.client.inbox is not None:
            raise ValueError("a pool's template client must not have an inbox; the pool makes one")
        self._members = [None] * self.size
        self._routed = [0] * self.size

    def handle(self) -> ConnectionPool:
        """The public handle of this pool (after a successful spawn)."""
        return ConnectionPool(self, self.ctx.ref, tuple(self._refs), self._inbox_receive)

    async def on_start(self) -> None:
        """Start the supervisor and the members (they connect in the background)."""
        if self.client.subscriber is None:
            self._inbox, self._inbox_receive = trio.open_memory_channel[object](
                self.client.options.inbound_queue_size
            )
        supervisor = await self.ctx.spawn(
            actors.Supervisor(max_restarts=self.max_restarts, within=self.within),
            name="members",
        )
        for index in range(self.size):
            spec = actors.ChildSpec(
                name=f"connection-{index}",
                factory=functools.partial(self._new_member, index),
                restart=actors.RestartType.PERMANENT,
                backoff=self.restart_backoff,
            )
            self._refs.append(await actors.start_child(supervisor, spec))

    async def on_stop(self, reason: actors.StopReason) -> None:
        """Close the pool's end of the inbound channel (members closed theirs)."""
        if self._inbox is not None:
            self._inbox.close()
        self._notify_change()
        await trio.lowlevel.checkpoint()

    def _new_member(self, index: int) -> ReconnectingClient:
        inbox = None if self._inbox is None else self._inbox.clone()
        member = attrs.evolve(self.client, inbox=inbox)
        member._status.listener = self._notify_change
        if self._members[index] is not None:
            self._replaced += 1
        self._members[index] = member
        self._notify_change()
        return member

    def _notify_change(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- routing ------------------------------------------------------------------------

    @actors.handler
    async def send_text(self, message: SendText) -> None:
        """Route to a member (see :class:`Routing`)."""
        await self._route(message, None)

    @actors.handler
    async def send_bytes(self, message: SendBytes) -> None:
        """Route to a member (see :class:`Routing`)."""
        await self._route(message, None)

    @actors.handler
    async def send_message(self, message: SendMessage) -> None:
        """Route to a member (see :class:`Routing`); the member's connection encodes it."""
        await self._route(message, None)

    @actors.handler
    async def send(self, message: Send) -> None:  # noqa: ASYNC910 - a handler
        """Route, replying once the member has taken the message (or with its refusal)."""
        member = self._refs[self._pick(message.key)]
        try:
            await member.ask(message, timeout=math.inf)
        except (BufferFullError, actors.ActorStoppedError) as exc:
            raise actors.ErrorReply(exc) from None

    @actors.handler
    def statistics(self, message: GetPoolStatistics) -> PoolStatistics:
        """Reply with the pool's statistics."""
        return self.snapshot()

    async def _route(self, frame: Outgoing, key: Hashable | None) -> None:  # noqa: ASYNC910 - a handler
        member = self._refs[self._pick(key)]
        try:
            await member.tell(frame)
        except actors.ActorStoppedError as exc:
            self.ctx.system.dead_letters.publish(
                actors.DeadLetter(
                    message=frame,
                    recipient=member.path,
                    sender=None,
                    reason=actors.DeadLetterReason.UNDELIVERABLE,
                    error=exc,
                )
            )

    def _pick(self, key: Hashable | None) -> int:
        members = self._members
        up = [m is not None and m.state is ClientState.CONNECTED for m in members]
        loads = [0] * self.size
        if self.routing is Routing.LEAST_LOADED:
            loads = [self._load(index) for index in range(self.size)]
        try:
            index = choose_member(self.routing, up=up, loads=loads, turn=self._turn, key=key)
        except ValueError as exc:
            raise actors.ErrorReply(exc) from None
        if self.routing is not Routing.KEY_HASH:
            everyone = [True] * self.size
            if index != choose_member(self.routing, up=everyone, loads=loads, turn=self._turn):
                self._rerouted += 1
            self._turn = index + 1
        self._routed[index] += 1
        return index

    def _load(self, index: int) -> int:
        member = self._members[index]
        waiting = self._refs[index].statistics().depth
        return waiting + (0 if member is None else member.statistics().outbound_depth)

    def snapshot(self) -> PoolStatistics:
        """The pool's statistics now (what :class:`GetPoolStatistics` replies)."""
        members = tuple(m.statistics() for m in self._members if m is not None)
        return PoolStatistics(
            routing=self.routing,
            connected=sum(m.state is ClientState.CONNECTED for m in members),
            routed=tuple(self._routed),
            rerouted=self._rerouted,
            replaced=self._replaced,
            members=members,
        )


@final
class ConnectionPool(InboxReader):
    """A handle on a connection pool: send (routed), receive (from any member), statistics."""

    __slots__ = ("_router", "members", "ref")

    def __init__(
        self,
        router: PoolRouter,
        ref: actors.ActorRef[PoolMessage],
        members: tuple[actors.ActorRef[ReconnectingMessage], ...],
        inbox: trio.MemoryReceiveChannel[object] | None,
    ) -> None:
        #: The router's ref: tell it :class:`SendText`, :class:`SendBytes`, :class:`Send`.
        self.ref = ref
        #: The members' refs, in index order (stable across their restarts).
        self.members = members
        super().__init__(inbox)
        self._router = router

    def __repr__(self) -> str:
        return f"<ConnectionPool {self.ref.path} size={len(self.members)}>"

    def _reader_name(self) -> str:
        return f"pool {self.ref.path}"

    def _reader_codec(self) -> Codec:
        return self._router.client.options.codec

    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool and its members."""
        return self._router.snapshot()

    async def send(self, message: str | bytes, *, key: Hashable | None = None) -> None:
        """Send ``message`` on the member the routing picks (``key`` for ``KEY_HASH``).

        Returns once that member has taken it (handed to its connection, or
        buffered). Raises :exc:`BufferFullError` (``Overflow.FAIL``),
        :exc:`ValueError` (no key under ``KEY_HASH``), :exc:`actors.ActorStoppedError`.
        """
        await self.ref.ask(Send(message, key), timeout=math.inf)

    def send_nowait(self, message: str | bytes, *, key: Hashable | None = None) -> None:
        """Queue ``message`` in the router's mailbox or raise :exc:`trio.WouldBlock`."""
        self.ref.tell_nowait(frame_of(message) if key is None else Send(message, key))

    async def send_message(self, message: object, *, key: Hashable | None = None) -> None:
        """Encode ``message`` with the members' codec, then :meth:`send` it."""
        await self.send(self._router.client.options.codec.encode(message), key=key)

    async def wait_connected(self) -> None:
        """Wait until every member is connected; :exc:`actors.ActorStoppedError` if the pool stops."""
        router = self._router
        while True:
            if not self.ref.is_alive:
                raise actors.ActorStoppedError(f"pool {self.ref.path} has stopped")
            if all(m is not None and m.state is ClientState.CONNECTED for m in router._members):
                await trio.lowlevel.checkpoint()
                return
            await router._changed.wait()

    async def aclose(self) -> actors.StopReason:
        """Stop the router, its supervisor and every member (connections close with 1001)."""
        return await self.ref.stop()


async def connect_connection_pool(
    parent: Spawner,
    client: ReconnectingClient,
    *,
    size: int = 4,
    routing: Routing = Routing.ROUND_ROBIN,
    restart_backoff: actors.Backoff = DEFAULT_RESTART_BACKOFF,
    max_restarts: int = 5,
    within: float = 60.0,
    name: str | None = None,
) -> ConnectionPool:
    """Spawn a pool of ``size`` copies of the ``client`` template under ``parent``.

    Returns at once; the members connect in the background and buffer meanwhile
    (:meth:`ConnectionPool.wait_connected` waits for all of them).
    """
    router = PoolRouter(
        client=client,
        size=size,
        routing=routing,
        restart_backoff=restart_backoff,
        max_restarts=max_restarts,
        within=within,
    )
    await parent.spawn(router, name=name)
    return router.handle()


@asynccontextmanager
async def open_connection_pool(
    parent: Spawner,
    client: ReconnectingClient,
    *,
    size: int = 4,
    routing: Routing = Routing.ROUND_ROBIN,
    restart_backoff: actors.Backoff = DEFAULT_RESTART_BACKOFF,
    max_restarts: int = 5,
    within: float = 60.0,
    name: str | None = None,
) -> AsyncIterator[ConnectionPool]:
    """:func:`connect_connection_pool` for the duration of an ``async with`` block.

    Leaving the block stops the pool and waits for its members (bounded).
    """
    pool = await connect_connection_pool(
        parent,
        client,
        size=size,
        routing=routing,
        restart_backoff=restart_backoff,
        max_restarts=max_restarts,
        within=within,
        name=name,
    )
    try:
        yield pool
    finally:
        options = client.options
        with trio.move_on_after(options.write_timeout + options.close_timeout + 1, shield=True):
            await pool.aclose()
