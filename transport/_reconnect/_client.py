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

Which failures are retried is decided by the pure functions of ``_policy``.

Outbound messages are handled one at a time by the client's handlers: while a
connection is live they are told to it (waiting while its mailbox is full: that is the
backpressure), otherwise they wait in the bounded :class:`SendBuffer`. Delivery across a
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
import secrets
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, final

import attrs
import trio

import actors

from .._client._connect import connect_websocket, parse_url
from .._close_codes import CloseCode, ConnectionClosed
from .._codec import DecodeError, EncodeError, RawCodec
from .._connection._handle import WebSocketConnection
from .._connection._messages import (
    DEFAULT_OPTIONS,
    Close,
    ConnectionOptions,
    Received,
    SendBytes,
    SendMessage,
    SendText,
    Undecodable,
)
from .._overflow import Overflow
from ._acked._wire import SESSION_ID_BYTES, AckProtocolError, Window, hello, parse_ack, parse_server
from ._policy import (
    BufferFullError,
    ClientState,
    SendBuffer,
    close_refusal_reason,
    refusal_reason,
)
from ._types import (
    DEFAULT_BACKOFF,
    ClientEvent,
    Connected,
    Disconnected,
    GaveUp,
    GetReconnectStatistics,
    Outgoing,
    ReconnectingMessage,
    ReconnectStatistics,
    Send,
    Status,
    UnconfirmedError,
    as_closed,
    frame_of,
)

if TYPE_CHECKING:
    from ._handle import ReconnectingConnection

#: Runs once on every new connection, before buffered messages are flushed to it.
ConnectedHook = Callable[[WebSocketConnection], Awaitable[object]]


@final
@attrs.define(eq=False, kw_only=True)
class ReconnectingClient(actors.Actor[ReconnectingMessage]):
    """A WebSocket client that reconnects with backoff and buffers while disconnected.

    Spawn it (``system.spawn(ReconnectingClient(url=...))``, or under a
    :class:`actors.Supervisor`), or use :func:`open_reconnecting_client`. Tell it
    :class:`SendText`, :class:`SendBytes`, :class:`SendMessage`, :class:`Close`; ask it
    :class:`Send` (refusals under ``Overflow.FAIL`` come back as :exc:`BufferFullError`)
    and :class:`GetReconnectStatistics`. Spawned directly, give it a ``subscriber`` or an
    ``inbox``: the channel it makes otherwise is only readable through :meth:`handle`.

    - ``backoff``: the delay before attempt n+1 after n consecutive failures is
      ``backoff.delay(n, random)``; a connection that lived ``backoff.reset_after``
      seconds starts the schedule again. ``max_attempts`` caps consecutive failed
      attempts (``None``: no cap).
    - ``buffer`` / ``when_full``: at most ``buffer`` messages wait while disconnected;
      see :class:`Overflow`.
    - ``on_connected(connection)``: runs on every new connection before the buffer is
      flushed and before inbound messages are delivered (log in, resubscribe); it may
      send and receive on the connection. If it raises while the connection is up,
      the client closes it with 1011 and gives up; if the connection went away under
      it, that is a disconnect like any other.
    - Inbound messages go to ``subscriber`` (with :class:`Connected`,
      :class:`Disconnected` and a final :class:`GaveUp`), or into ``inbox`` (a channel
      the client closes when it stops), or, with neither, into a channel read through
      the handle's ``receive()``.
    - ``acknowledged=True``: acknowledged delivery, for a server whose handlers accept
      through :class:`AckedSessions`. Messages are numbered; at most ``window`` of them
      are on the wire unconfirmed, the rest wait in the buffer (``when_full`` applies
      whether connected or not: the client never waits for acknowledgements, so a
      subscriber that replies through it cannot deadlock with it). After a reconnect
      the unconfirmed ones are sent again and the server drops what it already had:
      each message reaches the server's application once, or is reported (dropped by
      the buffer, or still unconfirmed when the client stops: a dead letter with
      :exc:`UnconfirmedError`). Not combinable with ``on_connected``.
    """

    url: str
    ssl_context: ssl.SSLContext | None = None
    subprotocols: Sequence[str] = ()
    headers: Sequence[tuple[str, str]] = ()
    options: ConnectionOptions = DEFAULT_OPTIONS
    backoff: actors.Backoff = DEFAULT_BACKOFF
    max_attempts: int | None = None
    buffer: int = 100
    when_full: Overflow = Overflow.DROP_OLDEST
    on_connected: ConnectedHook | None = None
    subscriber: actors.ActorRef[ClientEvent] | None = None
    inbox: trio.MemorySendChannel[object] | None = None
    acknowledged: bool = False
    window: int = 100
    _status: Status = attrs.field(init=False)
    _inbox_receive: trio.MemoryReceiveChannel[object] | None = attrs.field(init=False, default=None)
    _live: WebSocketConnection | None = attrs.field(init=False, default=None)
    _announced: bool = attrs.field(init=False, default=False)
    _last_closed: ConnectionClosed | None = attrs.field(init=False, default=None)
    _closing: bool = attrs.field(init=False, default=False)
    _serial: int = attrs.field(init=False, default=0)
    _random: random.Random = attrs.field(init=False, factory=random.Random)
    _path: str = attrs.field(init=False, default="")
    _session: bytes = attrs.field(init=False, default=b"")

    def __attrs_post_init__(self) -> None:
        target = parse_url(self.url)
        if self.ssl_context is not None and not target.secure:
            raise ValueError(f"an ssl_context was given for the plain-text url {self.url!r}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1 or None, not {self.max_attempts!r}")
        if self.subscriber is not None and self.inbox is not None:
            raise ValueError("give a reconnecting client a subscriber or an inbox, not both")
        self._status = Status(SendBuffer(self.buffer, self.when_full))
        if self.acknowledged:
            if self.on_connected is not None:
                raise ValueError(
                    "an acknowledged client has no on_connected hook: what it would send "
                    "first, send through the client (it is numbered and resent like the rest)"
                )
            self._status.window = Window(self.window)
            self._session = secrets.token_bytes(SESSION_ID_BYTES)

    def handle(self) -> ReconnectingConnection:
        """The public handle of this client (after a successful spawn)."""
        from ._handle import ReconnectingConnection

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
        if status.window is not None:
            unconfirmed = UnconfirmedError(
                f"{self._path} stopped before the server acknowledged this message; "
                "it may or may not have reached the server's application"
            )
            for frame in status.window.take_all():
                status.undelivered += 1
                self._dead_letter(frame, actors.DeadLetterReason.UNDELIVERABLE, unconfirmed)
        status.next_attempt_at = None
        if self._announced:
            closed = self._last_closed or ConnectionClosed(CloseCode.GOING_AWAY)
            await self._notify(Disconnected(self._path, closed, reconnecting=False))
        if self.inbox is not None:
            self.inbox.close()

    # -- mailbox --------------------------------------------------------------------------

    @actors.handler
    async def send_text(self, message: SendText) -> None:
        """Send now if connected, else buffer (see :class:`Overflow`)."""
        await self._submit(message)

    @actors.handler
    async def send_bytes(self, message: SendBytes) -> None:
        """Send now if connected, else buffer (see :class:`Overflow`)."""
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
        status = self._status
        window = status.window
        if window is not None:
            # Give what is on its way the time to be acknowledged, over a reconnect if
            # need be (bounded); whatever is still unconfirmed then is reported.
            with trio.move_on_after(self.options.close_timeout):  # noqa: ASYNC912 - waits if anything is pending
                while window or status.outbox:
                    await window.wait_changed()
        self._closing = True
        connection = status.connection
        if connection is not None:
            await connection.close(message.code, message.reason)
        self.ctx.stop()

    @actors.handler
    def get_statistics(self, message: GetReconnectStatistics) -> ReconnectStatistics:
        """Reply with the client's statistics."""
        return self._status.snapshot()

    async def _submit(self, frame: Outgoing) -> None:  # noqa: ASYNC910 - a handler
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
        if status.window is not None:
            status.window.poke()  # the sender task moves buffered messages into the window
        if gave_way is None:
            return  # noqa: ASYNC910
        status.dropped += 1
        if gave_way is frame and self.when_full is Overflow.FAIL:
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
        options = self.options
        if self.acknowledged:
            options = attrs.evolve(options, codec=RawCodec())  # envelopes; payloads coded here
        return await connect_websocket(
            self.ctx,
            self.url,
            ssl_context=self.ssl_context,
            subprotocols=self.subprotocols,
            headers=self.headers,
            options=options,
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
            elif status.window is not None and not await self._resume(connection, status.window):
                return None  # noqa: ASYNC910 - connecting checkpointed
            if connection.closed is None:
                status.connects += 1
                status.set_state(ClientState.CONNECTED)
                self._announced = True
                await self._notify(Connected(self._path, status.connects, connection.info))
                async with trio.open_nursery() as nursery:
                    pumped = trio.Event()
                    nursery.start_soon(self._pump, connection, pumped)
                    if status.window is not None:
                        nursery.start_soon(self._send_numbered, connection, status.window)
                    else:
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
        window = self._status.window
        try:
            while True:
                try:
                    data = await connection.receive_message()
                except trio.EndOfChannel:
                    return  # noqa: ASYNC910
                if window is not None:
                    try:
                        data = self._unwrap(window, data)
                    except AckProtocolError as exc:
                        await self._protocol_error(connection, exc)
                        return
                    if data is None:
                        continue
                self._status.received += 1
                await self._deliver(data)
        finally:
            done.set()
            if window is not None:
                window.poke()  # the sender task sees the connection has ended

    def _unwrap(self, window: Window[Outgoing], frame: object) -> object:
        """A server message decoded, or ``None`` for an acknowledgement (applied)."""
        assert isinstance(frame, str | bytes)
        value = parse_server(frame)
        if isinstance(value, int):
            window.confirm(value)
            return None
        try:
            return self.options.codec.decode(value)
        except DecodeError as exc:
            notice = Undecodable(exc)
            self._dead_letter(notice, actors.DeadLetterReason.FAILED, exc)
            return notice

    async def _resume(self, connection: WebSocketConnection, window: Window[Outgoing]) -> bool:
        """Say hello, apply the server's acknowledgement, send the unconfirmed again.

        False if the client gave up (the server does not speak the protocol).
        """
        try:
            with trio.fail_after(self.options.handshake_timeout):
                if not await connection._send_kept(hello(self._session)):
                    raise trio.EndOfChannel
                window.confirm(parse_ack(await connection.receive()))
        except (trio.EndOfChannel, actors.ActorStoppedError, trio.TooSlowError):
            await connection.close(CloseCode.GOING_AWAY)  # no answer: try another connection
            return True
        except AckProtocolError as exc:
            await self._protocol_error(connection, exc)
            await self._give_up(f"the server does not acknowledge: {exc}", exc)
            return False
        for envelope in window.envelopes():
            if not await connection._send_kept(envelope):
                break
            self._status.resent += 1
        return True

    async def _send_numbered(  # noqa: ASYNC910 - a task body
        self, connection: WebSocketConnection, window: Window[Outgoing]
    ) -> None:
        """Move buffered messages into the window and onto the connection while it has room."""
        outbox = self._status.outbox
        codec = self.options.codec
        while connection.closed is None:
            if not outbox or window.full:
                await window.wait_changed()
                continue
            frame = outbox.take()
            if isinstance(frame, SendMessage):
                try:
                    payload = codec.encode(frame.message)
                except EncodeError as exc:
                    self._dead_letter(frame, actors.DeadLetterReason.FAILED, exc)
                    continue
            else:
                payload = frame.text if isinstance(frame, SendText) else frame.data
            if not await connection._send_kept(window.add(frame, payload)):
                return  # it is in the window: sent again on the next connection

    async def _protocol_error(
        self, connection: WebSocketConnection, error: AckProtocolError
    ) -> None:
        self._status.last_error = error
        await connection.close(CloseCode.PROTOCOL_ERROR, str(error)[:120])

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
        window = self._status.window
        with (
            trio.move_on_after(self.options.close_timeout, shield=True),
            contextlib.suppress(trio.BusyResourceError),
        ):
            async for data in connection.messages():
                if window is not None:
                    with contextlib.suppress(AckProtocolError):
                        data = self._unwrap(window, data)  # an acknowledgement still counts
                    if data is None:
                        continue
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
