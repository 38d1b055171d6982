"""``ReconnectingClient``: one actor in front of a succession of client connection actors.

The client's run task is a plain loop (each connection is a child actor that owns its
stream, exactly as with :func:`connect_websocket`)::

    connect ──ok──> on_connected hook ──> Connected notice ──> flush the buffer ──> live
       │                                                                             │
    failed                                                                 the connection ends
       ▼                                                                             ▼
    retry? ──yes──> back off (Backoff schedule) <──────yes── retry? <── Disconnected notice
       │no                                                    │no
       ▼                                                      ▼
    give up: the client stops with GaveUp; buffered messages go to dead letters

Which failures are retried is decided by the pure functions of ``_reconnect_policy``.

Outbound messages are handled one at a time by the client's handlers: while a
connection is live they are told to it (waiting while its mailbox is full: that is the
backpressure), otherwise they wait in the bounded :class:`Outbox`. Delivery across a
link failure is at most once: a message already handed to a connection that fails
before writing it is dead-lettered by that connection (reason ``STOPPED``).

Inbound messages are read from the live connection by a *pump* task, started after the
hook, and delivered to the subscriber actor (or into a receive channel); the next
connection's pump starts only after the previous one finished, so the subscriber sees
each connection's messages in order, framed by ``Connected`` and ``Disconnected``.
"""

from __future__ import annotations

import contextlib
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, final

import attrs
import trio

import actors

from ._client import connect_websocket, parse_url
from ._close_codes import CloseCode, ConnectionClosed
from ._handle import WebSocketConnection
from ._messages import (
    DEFAULT_OPTIONS,
    Close,
    ConnectionOptions,
    Received,
    SendBytes,
    SendMessage,
    SendText,
)
from ._reconnect_policy import (
    BufferFullError,
    ClientState,
    Outbox,
    WhenFull,
    close_refusal_reason,
    refusal_reason,
)
from ._reconnect_types import (
    DEFAULT_BACKOFF,
    ClientEvent,
    Connected,
    Disconnected,
    Frame,
    GaveUp,
    GetReconnectStatistics,
    ReconnectingMessage,
    ReconnectStatistics,
    Send,
    Status,
    as_closed,
    frame_of,
)

if TYPE_CHECKING:
    from ._reconnect_handle import ReconnectingConnection

#: Runs once on every new connection, before buffered messages are flushed to it.
ConnectedHook = Callable[[WebSocketConnection], Awaitable[object]]


@final
@attrs.define(eq=False, kw_only=True)
class ReconnectingClient(actors.Actor[ReconnectingMessage]):
    """A WebSocket client that reconnects with backoff and buffers while disconnected.

    Spawn it (``system.spawn(ReconnectingClient(url=...))``, or under a
    :class:`actors.Supervisor`), or use :func:`open_reconnecting_client`. Tell it
    :class:`SendText`, :class:`SendBytes`, :class:`SendMessage`, :class:`Close`; ask it
    :class:`Send` (refusals under ``WhenFull.FAIL`` come back as :exc:`BufferFullError`)
    and :class:`GetReconnectStatistics`. Spawned directly, give it a ``subscriber`` or an
    ``inbox``: the channel it makes otherwise is only readable through :meth:`handle`.

    - ``backoff``: the delay before attempt n+1 after n consecutive failures is
      ``backoff.delay(n, random)``; a connection that lived ``backoff.reset_after``
      seconds starts the schedule again. ``max_attempts`` caps consecutive failed
      attempts (``None``: no cap).
    - ``buffer`` / ``when_full``: at most ``buffer`` messages wait while disconnected;
      see :class:`WhenFull`.
    - ``on_connected(connection)``: runs on every new connection before the buffer is
      flushed and before inbound messages are delivered (log in, resubscribe); it may
      send and receive on the connection. If it raises while the connection is up,
      the client closes it with 1011 and gives up; if the connection went away under
      it, that is a disconnect like any other.
    - Inbound messages go to ``subscriber`` (with :class:`Connected`,
      :class:`Disconnected` and a final :class:`GaveUp`), or into ``inbox`` (a channel
      the client closes when it stops), or, with neither, into a channel read through
      the handle's ``receive()``.
    """

    url: str
    ssl_context: ssl.SSLContext | None = None
    subprotocols: Sequence[str] = ()
    headers: Sequence[tuple[str, str]] = ()
    options: ConnectionOptions = DEFAULT_OPTIONS
    backoff: actors.Backoff = DEFAULT_BACKOFF
    max_attempts: int | None = None
    buffer: int = 100
    when_full: WhenFull = WhenFull.DROP_OLDEST
    on_connected: ConnectedHook | None = None
    subscriber: actors.ActorRef[ClientEvent] | None = None
    inbox: trio.MemorySendChannel[object] | None = None
    _status: Status = attrs.field(init=False)
    _inbox_receive: trio.MemoryReceiveChannel[object] | None = attrs.field(init=False, default=None)
    _live: WebSocketConnection | None = attrs.field(init=False, default=None)
    _announced: bool = attrs.field(init=False, default=False)
    _last_closed: ConnectionClosed | None = attrs.field(init=False, default=None)
    _closing: bool = attrs.field(init=False, default=False)
    _serial: int = attrs.field(init=False, default=0)
    _random: random.Random = attrs.field(init=False, factory=random.Random)
    _path: str = attrs.field(init=False, default="")

    def __attrs_post_init__(self) -> None:
        target = parse_url(self.url)
        if self.ssl_context is not None and not target.secure:
            raise ValueError(f"an ssl_context was given for the plain-text url {self.url!r}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1 or None, not {self.max_attempts!r}")
        if self.subscriber is not None and self.inbox is not None:
            raise ValueError("give a reconnecting client a subscriber or an inbox, not both")
        self._status = Status(Outbox(self.buffer, self.when_full))

    def handle(self) -> ReconnectingConnection:
        """The public handle of this client (after a successful spawn)."""
        from ._reconnect_handle import ReconnectingConnection

        return ReconnectingConnection(
            self.ctx.ref, self._status, self._inbox_receive, self.options.codec
        )

    @property
    def state(self) -> ClientState:
        """Where the client is now (connected, backing off...)."""
        return self._status.state

    def statistics(self) -> ReconnectStatistics:
        """A snapshot of the client's counters (the handle's ``statistics()``)."""
        return self._status.snapshot()

    # -- lifecycle ------------------------------------------------------------------------

    async def on_start(self) -> None:
        """Start the connect loop; the client accepts messages at once (they are buffered)."""
        self._path = self.ctx.path
        if self.subscriber is None and self.inbox is None:
            self.inbox, self._inbox_receive = trio.open_memory_channel[object](
                self.options.inbound_queue_size
            )
        self.ctx.start_soon(self._run, name="reconnect-loop")
        await trio.lowlevel.checkpoint()

    async def on_stop(self, reason: actors.StopReason) -> None:  # noqa: ASYNC910 - a hook
        """Report what can no longer be sent, tell the subscriber, close the inbox."""
        status = self._status
        gave_up = isinstance(reason, GaveUp)
        status.set_state(ClientState.GAVE_UP if gave_up else ClientState.CLOSED)
        letter = (
            actors.DeadLetterReason.UNDELIVERABLE if gave_up else actors.DeadLetterReason.STOPPED
        )
        for frame in status.outbox.take_all():
            status.undelivered += 1
            self._dead_letter(frame, letter, reason.error if isinstance(reason, GaveUp) else None)
        status.next_attempt_at = None
        if self._announced:
            closed = self._last_closed or ConnectionClosed(CloseCode.GOING_AWAY)
            await self._notify(Disconnected(self._path, closed, reconnecting=False))
        if self.inbox is not None:
            self.inbox.close()

    # -- mailbox --------------------------------------------------------------------------

    @actors.handler
    async def send_text(self, message: SendText) -> None:
        """Send now if connected, else buffer (see :class:`WhenFull`)."""
        await self._submit(message)

    @actors.handler
    async def send_bytes(self, message: SendBytes) -> None:
        """Send now if connected, else buffer (see :class:`WhenFull`)."""
        await self._submit(message)

    @actors.handler
    async def send_message(self, message: SendMessage) -> None:
        """Send now if connected, else buffer; the connection encodes it."""
        await self._submit(message)

    @actors.handler
    async def send(self, message: Send) -> None:
        """Like :class:`SendText` / :class:`SendBytes`, replying once the message is taken."""
        await self._submit(frame_of(message.data))

    @actors.handler
    async def close(self, message: Close) -> None:  # noqa: ASYNC910 - a handler
        """Close the connection (if any) with the given code and stop for good."""
        self._closing = True
        connection = self._status.connection
        if connection is not None:
            await connection.close(message.code, message.reason)
        self.ctx.stop()

    @actors.handler
    def get_statistics(self, message: GetReconnectStatistics) -> ReconnectStatistics:
        """Reply with the client's statistics."""
        return self._status.snapshot()

    async def _submit(self, frame: Frame) -> None:  # noqa: ASYNC910 - a handler
        live = self._live
        if live is not None:
            try:
                await live.ref.tell(frame)
            except actors.ActorStoppedError:
                pass  # it went down while we waited for room: buffer the message
            else:
                return
        status = self._status
        gave_way = status.outbox.put(frame)
        if gave_way is None:
            return  # noqa: ASYNC910
        status.dropped += 1
        if gave_way is frame and self.when_full is WhenFull.FAIL:
            raise actors.ErrorReply(
                BufferFullError(
                    f"reconnecting client {self._path} is {status.state.value} and its buffer "
                    f"of {status.outbox.capacity} messages is full; retry once connected"
                )
            )
        self._dead_letter(gave_way, actors.DeadLetterReason.DROPPED)

    # -- the connect loop -----------------------------------------------------------------

    async def _run(self) -> None:
        status = self._status
        streak = 0  # back-off delays since the last connection that lived reset_after
        while True:
            status.set_state(ClientState.CONNECTING)
            status.attempts += 1
            try:
                connection = await self._connect()
            except actors.ActorStoppedError:
                await trio.sleep_forever()  # this client is stopping: no more children
            except Exception as exc:  # noqa: BLE001 - classified, then reported in GaveUp
                status.failed_attempts += 1
                status.last_error = exc
                why = refusal_reason(exc)
                cap = self.max_attempts
                if why is None and cap is not None and status.failed_attempts >= cap:
                    why = f"{cap} connection attempts failed in a row (last: {exc})"
                if why is not None:
                    await self._give_up(why, exc)
                    return
            else:
                status.failed_attempts = 0
                started = trio.current_time()
                closed = await self._serve_connection(connection)
                if closed is None:
                    return
                if self._closing or not self.ctx.ref.is_alive:
                    await trio.sleep_forever()  # closing: on_stop does the rest
                why = close_refusal_reason(closed)
                status.last_error = closed.error
                if self._announced:
                    await self._notify(Disconnected(self._path, closed, why is None))
                    self._announced = False
                if why is not None:
                    await self._give_up(why, closed.error)
                    return
                if trio.current_time() - started >= self.backoff.reset_after:
                    streak = 0
            delay = self.backoff.delay(streak, self._random.random())
            streak += 1
            status.next_attempt_at = trio.current_time() + delay
            status.set_state(ClientState.BACKING_OFF)
            await trio.sleep(delay)
            status.next_attempt_at = None

    async def _connect(self) -> WebSocketConnection:
        self._serial += 1
        return await connect_websocket(
            self.ctx,
            self.url,
            ssl_context=self.ssl_context,
            subprotocols=self.subprotocols,
            headers=self.headers,
            options=self.options,
            name=f"connection-{self._serial}",
        )

    async def _serve_connection(self, connection: WebSocketConnection) -> ConnectionClosed | None:
        """Serve one connection until it ends; ``None`` if the client gave up meanwhile."""
        status = self._status
        status.connection = connection
        try:
            if self.on_connected is not None:
                try:
                    await self.on_connected(connection)
                except Exception as exc:  # noqa: BLE001 - the hook is user code
                    if await self._hook_failed(connection, exc):
                        return None
            if connection.closed is None:
                status.connects += 1
                status.set_state(ClientState.CONNECTED)
                self._announced = True
                await self._notify(Connected(self._path, status.connects, connection.info))
                async with trio.open_nursery() as nursery:
                    pumped = trio.Event()
                    nursery.start_soon(self._pump, connection, pumped)
                    await self._flush(connection)
                    reason = await connection.ref.wait_stopped()
                    self._live = None
                    with trio.move_on_after(self.options.close_timeout):
                        await pumped.wait()
                    nursery.cancel_scope.cancel()
            else:
                reason = await connection.ref.wait_stopped()
        finally:
            # Also when the client is stopped from outside: its children (this
            # connection among them) have stopped before its tasks are cancelled.
            await self._drain(connection)  # noqa: ASYNC102 - shielded and bounded inside
            self._forget_connection(connection)
        return as_closed(reason)

    async def _hook_failed(self, connection: WebSocketConnection, error: Exception) -> bool:
        """Close after a failed hook; True if the client gave up (the connection was fine)."""
        with trio.move_on_after(self.options.write_timeout + self.options.close_timeout):
            await connection.close(1011, "on_connected failed")
        closed = connection.closed
        if closed is None or (closed.code == 1011 and not closed.by_peer):
            await self._give_up(f"the on_connected hook raised {error!r}", error)
            return True
        return False

    def _forget_connection(self, connection: WebSocketConnection) -> None:
        status = self._status
        if status.connection is connection:
            status.connection = None
            status.sent_before += connection.statistics().messages_sent
            self._last_closed = connection.closed
        self._live = None

    async def _flush(self, connection: WebSocketConnection) -> None:  # noqa: ASYNC910 - a task's step
        """Hand the buffered messages to the new connection, then make it live."""
        outbox = self._status.outbox
        while outbox and connection.closed is None:
            frame = outbox.take()
            try:
                await connection.ref.tell(frame)
            except actors.ActorStoppedError:
                for dropped in outbox.put_back(frame):
                    self._status.dropped += 1
                    self._dead_letter(dropped, actors.DeadLetterReason.DROPPED)
                return  # noqa: ASYNC910
        if connection.closed is None:
            self._live = connection  # the outbox is empty: no await since the check

    async def _pump(self, connection: WebSocketConnection, done: trio.Event) -> None:  # noqa: ASYNC910 - a task body
        try:
            while True:
                try:
                    data = await connection.receive_message()
                except trio.EndOfChannel:
                    return  # noqa: ASYNC910
                self._status.received += 1
                await self._deliver(data)
        finally:
            done.set()

    async def _deliver(self, data: object) -> None:  # noqa: ASYNC910 - a task's step
        try:
            if self.subscriber is not None:
                await self.subscriber.tell(Received(data))
            else:
                assert self.inbox is not None
                await self.inbox.send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._dead_letter(Received(data), actors.DeadLetterReason.STOPPED, exc)
        except BaseException:
            self._dead_letter(Received(data), actors.DeadLetterReason.STOPPED)  # cancelled
            raise

    async def _drain(self, connection: WebSocketConnection) -> None:  # noqa: ASYNC910 - bounded
        """Dead-letter what the ended connection received and nobody delivered."""
        with (
            trio.move_on_after(self.options.close_timeout, shield=True),
            contextlib.suppress(trio.BusyResourceError),
        ):
            async for data in connection.messages():
                self._dead_letter(Received(data), actors.DeadLetterReason.STOPPED)

    async def _give_up(self, why: str, error: BaseException | None) -> None:
        reason = GaveUp(why, self._status.attempts, error)
        self._status.set_state(ClientState.GAVE_UP)
        await self._notify(reason)
        self.ctx.stop(reason)

    async def _notify(self, event: Connected | Disconnected | GaveUp) -> None:  # noqa: ASYNC910 - a task's step
        """Tell the subscriber (never blocking longer than ``close_timeout``)."""
        subscriber = self.subscriber
        if subscriber is None:
            await trio.lowlevel.checkpoint()
            return
        error: BaseException | None = None
        with trio.move_on_after(self.options.close_timeout):  # noqa: ASYNC912 - tell checkpoints
            try:
                await subscriber.tell(event)
            except actors.ActorStoppedError as exc:
                error = exc
            else:
                return
        self._dead_letter(event, actors.DeadLetterReason.UNDELIVERABLE, error)

    def _dead_letter(
        self, message: object, reason: actors.DeadLetterReason, error: BaseException | None = None
    ) -> None:
        self.ctx.system.dead_letters.publish(
            actors.DeadLetter(
                message=message, recipient=self._path, sender=None, reason=reason, error=error
            )
        )
