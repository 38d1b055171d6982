"""The connection actor: the one owner of a WebSocket stream.

Its tasks besides the actor's own message loop:

- the library's *reader* is the only task that reads. It hands each message,
  decoded, to the bounded inbound queue from inside its own loop
  (``route_inbound``): it never waits on the application, and the overflow policy
  decides when the queue is full. Once the connection is open it is shielded from
  cancellation from outside (it answers pings and sees the peer's Close while the
  connection closes); the io task stops it. It reports its own end;
- the *io task* owns the library's nursery, and once the connection is open it is
  the *writer*, the only task that writes messages. It takes frames from the
  outbox, which the actor and the connection's handle fill (bounded: senders wait
  for room). It also runs the timers between writes: keepalive pings and their
  pong timeout, and the idle timeout. Each write is shielded and bounded by
  ``write_timeout`` (a frame's by up to a quarter more, see ``_write_frames``):
  a write that does not finish in time is cut, and the stream
  is closed before any other task runs, so a half-written frame is never followed
  by anything. When the actor is stopped or cancelled from outside, the io task
  sees the cancellation between writes and turns it into a close with 1001,
  bounded by ``write_timeout + close_timeout``;
- the server's handler task, or the *forwarder* to a subscriber actor.

The actor stops with :class:`ConnectionClosed`, which its subscriber also receives
as the last message.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Never, final

import attrs
import trio

import actors

from .._adapter._library import Backend, BackendClosed, route_inbound, send_ping_to
from .._close_codes import CloseCode, ConnectionClosed, Situation, close_code_for
from .._codec import DecodePolicy, EncodeError, as_decode_error
from .._overflow import close_situation
from ._inbound import InboundQueue, deliver_last, forward
from ._messages import (
    Close,
    ConnectionInfo,
    ConnectionMessage,
    ConnectionOptions,
    ConnectionStatistics,
    Counters,
    Frame,
    GetStatistics,
    KeptBySender,
    Received,
    SendBytes,
    SendMessage,
    SendText,
    SubscriberMessage,
    Undecodable,
)
from ._outbox import Outbox

if TYPE_CHECKING:
    from ._handle import WebSocketConnection

logger = logging.getLogger("transport")
# How much later than write_timeout a write may be cut: the writer moves its deadline
# once per this share of write_timeout instead of at every frame.
WRITE_TIMEOUT_SLACK = 0.25

#: Runs the handshake with the library's reader in the given nursery (the actor's own);
#: closes its stream itself if it fails.
Opener = Callable[[trio.Nursery], Awaitable[tuple[Backend, ConnectionInfo]]]
#: A server's per-connection application code.
Application = Callable[["WebSocketConnection"], Awaitable[object]]

#: Where a connection actor can be spawned: the system, or inside another actor.
Spawner = actors.ActorSystem | actors.ActorContext[Never]


@final
@attrs.frozen
class ApplicationEnded:
    """The server handler returned or raised (sent to the actor's own mailbox, so it
    comes after every message the handler sent)."""

    situation: Situation
    reason: str
    error: BaseException | None = attrs.field(default=None, eq=False)


@final
@attrs.define(eq=False)
class ConnectionActor(actors.Actor[ConnectionMessage | ApplicationEnded]):
    """Owns one WebSocket connection; spawned by the client and server functions."""

    # Dropped once the handshake ran: a server's opener holds the request it answered.
    _opener: Opener | None
    _options: ConnectionOptions
    _subscriber: actors.ActorRef[SubscriberMessage] | None = None
    _application: Application | None = None
    _inbound: InboundQueue[Received] = attrs.field(init=False)
    _outbox: Outbox[Frame] = attrs.field(init=False)
    _counters: Counters = attrs.field(init=False)
    _info: ConnectionInfo | None = attrs.field(init=False, default=None)
    _start_error: BaseException | None = attrs.field(init=False, default=None)
    # Set once the handshake ended either way; dropped once on_start has seen it.
    _ready: trio.Event | None = attrs.field(init=False, factory=trio.Event)
    # The open connection. Only the actor's own tasks use it.
    _backend: Backend | None = attrs.field(init=False, default=None)
    _outcome: ConnectionClosed | None = attrs.field(init=False, default=None)
    _closing: bool = attrs.field(init=False, default=False)
    # The handler's end; the event is made only when the io task has to wait for it.
    _application_ended: bool = attrs.field(init=False, default=False)
    _application_done: trio.Event | None = attrs.field(init=False, default=None)
    # The timers the writer runs between writes (math.inf: off).
    _next_ping: float = attrs.field(init=False, default=math.inf)
    _pong: _Pong | None = attrs.field(init=False, default=None)
    _idle_timeout: float | None = attrs.field(init=False, default=None)
    # A write failed because the library reports the connection closed.
    _write_failed: bool = attrs.field(init=False, default=False)
    _in_flight: Frame | None = attrs.field(init=False, default=None)
    _last_inbound: float = attrs.field(init=False, default=0.0)
    _dead_letters: actors.DeadLetters = attrs.field(init=False)
    _path: str = attrs.field(init=False, default="")
    _ref: actors.ActorRef[ConnectionMessage | ApplicationEnded] | None = attrs.field(
        init=False, default=None
    )
    _thread_id: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        options = self._options
        self._inbound = InboundQueue(options.inbound_queue_size, options.overflow)
        self._outbox = Outbox(options.outbound_queue_size)
        self._counters = Counters(outbound_capacity=options.outbound_queue_size)

    def handle(self) -> WebSocketConnection:
        """The public handle of this connection (after a successful spawn)."""
        from ._handle import WebSocketConnection

        assert self._info is not None
        assert self._ref is not None
        return WebSocketConnection(
            self._ref,
            self._info,
            self._counters,
            self._inbound,
            self._options.codec,
            outbox=self._outbox,
            thread_id=self._thread_id,
        )

    # -- lifecycle ------------------------------------------------------------------

    async def on_start(self) -> None:
        """Run the handshake in the actor's own nursery; ``spawn`` fails if it fails."""
        self._dead_letters = self.ctx.system.dead_letters
        self._thread_id = self.ctx.system.thread_id
        self._path = self.ctx.path
        self._ref = self.ctx.ref
        ready = self._ready
        assert ready is not None
        self.ctx.start_soon(self._run_io, name="websocket-io")
        await ready.wait()
        self._ready = None
        if self._start_error is not None:
            raise self._start_error
        if self._application is not None:
            self.ctx.start_soon(self._run_application, self.handle(), name="websocket-app")

    async def _run_application(self, handle: WebSocketConnection) -> None:  # noqa: ASYNC910 - a task body
        assert self._application is not None
        assert self._ref is not None
        try:
            try:
                await self._application(handle)
            except Exception as exc:  # a failing handler is a close with 1011
                logger.error("websocket handler of %s raised", self._path, exc_info=exc)
                ended = ApplicationEnded(Situation.HANDLER_FAILED, "internal error", exc)
            else:
                ended = ApplicationEnded(Situation.NORMAL, "")
            with contextlib.suppress(actors.ActorStoppedError):
                await self._ref.tell(ended)
        finally:
            self._application_ended = True
            if self._application_done is not None:
                self._application_done.set()
            if self._inbound.closed:
                self._dead_letter_inbound()

    # -- mailbox --------------------------------------------------------------------

    @actors.handler
    async def send_text(self, message: SendText) -> None:
        await self._enqueue(message)

    @actors.handler
    async def send_bytes(self, message: SendBytes) -> None:
        await self._enqueue(message)

    @actors.handler
    async def send_message(self, message: SendMessage) -> None:
        try:
            data = self._options.codec.encode(message.message)
        except EncodeError as exc:  # the sender is gone: report, don't fail the connection
            logger.warning("%s cannot send %r: %s", self._path, message.message, exc)
            self._dead_letter(message, actors.DeadLetterReason.FAILED, exc)
            await trio.lowlevel.checkpoint()
            return
        await self._enqueue(SendText(data) if isinstance(data, str) else SendBytes(data))

    @actors.handler
    def close(self, message: Close) -> None:
        self._request_close(None, message.reason, code=message.code)

    @actors.handler
    def application_ended(self, message: ApplicationEnded) -> None:
        self._request_close(message.situation, message.reason, error=message.error)

    @actors.handler
    def get_statistics(self, message: GetStatistics) -> ConnectionStatistics:
        return self._counters.snapshot(self._inbound, len(self._outbox))

    async def _enqueue(self, frame: Frame) -> None:  # noqa: ASYNC910 - put checkpoints unless the outbox is closed
        try:
            await self._outbox.put(frame)
        except trio.ClosedResourceError:
            self._dead_letter(frame, actors.DeadLetterReason.STOPPED)

    # -- closing --------------------------------------------------------------------

    def _request_close(
        self,
        situation: Situation | None,
        reason: str,
        *,
        code: int | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Start a local close: queued frames are written, then the Close frame."""
        if self._closing:
            return
        self._closing = True
        if code is None:
            assert situation is not None
            code = close_code_for(situation)
        self._note_outcome(ConnectionClosed(code, reason, by_peer=False, error=error))
        self._outbox.close()

    def _note_outcome(self, outcome: ConnectionClosed) -> None:
        if self._outcome is None:
            self._outcome = outcome

    def _reader_ended(self) -> None:
        """The library marked the connection closed, or its reader ended: no more input."""
        backend = self._backend
        assert backend is not None
        if self._outcome is None:
            closed = backend.closed_with()
            code, reason = closed if closed is not None else (CloseCode.ABNORMAL_CLOSURE, "")
            self._note_outcome(ConnectionClosed(code, reason, by_peer=backend.closed_by_peer()))
        self._closing = True
        self._outbox.close()

    async def _abort(self, backend: Backend, reason: str) -> None:
        self._note_outcome(ConnectionClosed(CloseCode.ABNORMAL_CLOSURE, reason))
        self._closing = True
        self._outbox.close()
        await backend.abort()

    def _dead_letter_outbound(self) -> None:
        for frame in self._outbox.drain():
            self._dead_letter(frame, actors.DeadLetterReason.STOPPED)

    def _dead_letter_inbound(self) -> None:
        # A server handler that has ended never reads what is left (guarantee 5).
        for message in self._inbound.drain():
            self._undelivered(message, None)

    def _undelivered(self, message: Received, error: BaseException | None) -> None:
        self._dead_letter(message, actors.DeadLetterReason.STOPPED, error)

    def _unreachable(self, message: SubscriberMessage, error: BaseException | None) -> None:
        self._dead_letter(message, actors.DeadLetterReason.UNDELIVERABLE, error)

    def _dead_letter(
        self, message: object, reason: actors.DeadLetterReason, error: BaseException | None = None
    ) -> None:
        if isinstance(message, SendBytes) and isinstance(message.data, KeptBySender):
            return  # made again on the next connection: not lost
        self._dead_letters.publish(
            actors.DeadLetter(
                message=message, recipient=self._path, sender=None, reason=reason, error=error
            )
        )

    # -- the io task ----------------------------------------------------------------

    async def _run_io(self) -> None:
        error: BaseException | None = None
        try:
            error = await self._io()
        finally:
            # Also on the way out of a cancellation from outside (after its bounded close).
            self._opener = None
            self._backend = None
            outcome = self._final_outcome(error)
            self._counters.closed = outcome
            self._inbound.close()
            if self._application is not None and self._application_ended:
                self._dead_letter_inbound()
            self._outbox.close()
            self._dead_letter_outbound()
        if self._start_error is not None:
            assert self._ready is not None
            self._ready.set()
            return
        if self._subscriber is not None:
            timeout = self._options.close_timeout
            await deliver_last(self._subscriber, outcome, timeout, self._unreachable)
        self.ctx.stop(outcome)

    async def _io(self) -> BaseException | None:  # noqa: ASYNC910 - a task body
        backend: Backend | None = None
        error: BaseException | None = None
        opener = self._opener
        assert opener is not None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    backend, self._info = await opener(nursery)
                except Exception as exc:  # noqa: BLE001 - re-raised by spawn, from on_start
                    self._start_error = exc
                    nursery.cancel_scope.cancel()
                else:
                    del opener
                    self._opener = None
                    try:
                        await self._serve(nursery, backend)
                    finally:
                        backend.stop_reading()
        except* Exception as group:  # noqa: BLE001
            # One connection's failure (trio-websocket #184 among them) ends that
            # connection only.
            error = group
        finally:
            if backend is not None:
                with trio.CancelScope(shield=True):
                    await backend.abort()
        return error  # noqa: ASYNC910

    def _final_outcome(self, error: BaseException | None) -> ConnectionClosed:
        if self._start_error is not None:
            return ConnectionClosed(CloseCode.ABNORMAL_CLOSURE, "handshake failed")
        if error is not None and not self._closing:
            logger.error("websocket connection %s failed", self._path, exc_info=error)
            return ConnectionClosed(CloseCode.ABNORMAL_CLOSURE, "connection failed", error=error)
        return self._outcome or ConnectionClosed(CloseCode.ABNORMAL_CLOSURE, "")

    async def _serve(self, nursery: trio.Nursery, backend: Backend) -> None:
        options = self._options
        now = trio.current_time()
        self._last_inbound = now
        if options.ping_interval is not None:
            self._next_ping = now + options.ping_interval
        self._idle_timeout = options.idle_timeout
        self._backend = backend
        # From here on the library's reader delivers straight into the inbound queue,
        # and only this task stops it (_io).
        route_inbound(backend, self._deliver, self._reader_ended)
        backend.shield_reader()
        assert self._ready is not None
        self._ready.set()
        forwarded: trio.Event | None = None
        if self._subscriber is not None:
            forwarded = trio.Event()
            nursery.start_soon(
                forward, self._inbound, self._subscriber, self._undelivered, forwarded
            )
        # This task is the writer (the only one); it returns once the outbox has closed
        # and the close handshake is done, or the connection was aborted.
        try:
            await self._write_loop(backend)
        except trio.Cancelled:
            if nursery.cancel_scope.cancel_called:
                raise  # the reader or the forwarder failed: nothing to close gracefully
            # Stopped or cancelled from outside, between writes: close with 1001 (the
            # reader, shielded, still reads the peer's answer), bounded in time.
            self._request_close(Situation.SHUTDOWN, "going away")
            grace = options.write_timeout + options.close_timeout
            with trio.CancelScope(shield=True, deadline=trio.current_time() + grace):
                await self._write_loop(backend)
            raise
        self._inbound.close()
        with trio.move_on_after(options.close_timeout):  # noqa: ASYNC912 - no wait if nothing runs
            if forwarded is not None:
                await forwarded.wait()
            if self._application is not None and not self._application_ended:
                self._application_done = trio.Event()
                await self._application_done.wait()
        nursery.cancel_scope.cancel()

    def _deliver(self, message: str | bytes) -> None:
        """What the library's reader calls with each inbound message (never blocks or raises)."""
        self._counters.messages_received += 1
        if self._idle_timeout is not None:
            self._last_inbound = trio.current_time()
        try:  # decoding is plain code: the reader never awaits on it
            received = Received(self._options.codec.decode(message))
        except Exception as exc:  # noqa: BLE001 - bad input never stops the reader
            received = self._undecodable(exc, message)
        inbound = self._inbound
        dropped = inbound.put(received)
        if dropped is not None:
            self._dead_letter(dropped, actors.DeadLetterReason.DROPPED)
            situation = close_situation(inbound.policy)
            if situation is not None:
                self._request_close(situation, "inbound queue overflow")

    def _undecodable(self, exc: Exception, message: str | bytes) -> Received:
        """Report a message the codec refused; close if the policy says so."""
        error = as_decode_error(exc, message)
        self._counters.undecodable += 1
        notice = Undecodable(error)
        self._dead_letter(notice, actors.DeadLetterReason.UNDELIVERABLE, error)
        if self._options.on_decode_error is DecodePolicy.CLOSE:
            self._request_close(None, "undecodable message", code=error.close_code)
        return Received(notice)

    async def _write_loop(self, backend: Backend) -> None:
        """Write the outbox's frames and run the timers, until the outbox closes; then
        run the close handshake.

        Cancellable only while it waits: each write (of a frame, a ping or the Close)
        runs in a shielded scope bounded by its own timeout (a frame's by up to a
        quarter more) and by the deadline this loop runs under. A write cut by that
        bound aborts the connection at once.
        """
        options = self._options
        # The deadline this loop runs under (the bounded close of _serve), taken here:
        # the timers' wake-ups below must not bound the writes.
        limit = trio.current_effective_deadline()
        while True:
            # One scope per timer period, not per frame: a scope costs microseconds.
            due = self._timers_due()
            written: bool | None = False
            if due == math.inf:
                written = await self._write_frames(backend, limit)
            else:
                with trio.move_on_at(due):
                    written = await self._write_frames(backend, limit)
            if written is None:
                return  # aborted
            if written:
                break
            if not await self._run_timers(backend, limit):
                return  # aborted
        outcome = self._outcome
        if (
            self._write_failed
            or outcome is None
            or outcome.by_peer
            or outcome.code == CloseCode.ABNORMAL_CLOSURE
        ):
            # Nothing to close: the peer closed, or the connection was aborted.
            return  # noqa: ASYNC910 - the frames' loop waited unless the outbox was closed at once
        # A stop from outside that came meanwhile is seen here, so that the close below
        # runs under its bound (in _serve) rather than cut at once.
        await trio.lowlevel.checkpoint_if_cancelled()
        timeout = options.write_timeout + options.close_timeout
        with _write_bound(timeout, limit) as scope:
            await backend.close(outcome.code, outcome.reason)
        if scope.cancelled_caught:
            await self._abort(backend, "the close handshake timed out")

    async def _write_frames(self, backend: Backend, limit: float) -> bool | None:  # noqa: ASYNC910 - waits and writes checkpoint
        """Write frames until the outbox has closed and is empty (True), or the
        connection was aborted (None); the caller's timer scope may interrupt a wait."""
        write_timeout = self._options.write_timeout
        slack = write_timeout * WRITE_TIMEOUT_SLACK
        counters = self._counters
        outbox = self._outbox
        checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
        current_time = trio.current_time
        while True:
            # Waiting is the only place this task is cancelled from outside.
            await outbox.wait()
            # A scope costs microseconds to make and some 600 bytes to keep, so one
            # serves the frames of a busy spell: shielded only while a frame is
            # written, its deadline bounds each write to between write_timeout and
            # (1 + WRITE_TIMEOUT_SLACK) times that, and is moved only when it falls
            # outside. Once it passes while the writer waits, the spell is over.
            with trio.CancelScope() as scope:
                while True:
                    await checkpoint_if_cancelled()
                    frame = outbox.take()
                    if frame is None:
                        if outbox.closed:
                            return True
                        await outbox.wait()
                        continue
                    if self._write_failed:
                        self._dead_letter(frame, actors.DeadLetterReason.STOPPED)
                        continue
                    data = frame.text if isinstance(frame, SendText) else frame.data
                    bound = min(current_time() + write_timeout, limit)
                    if not bound <= scope.deadline <= bound + slack:
                        scope.deadline = min(bound + slack, limit)
                    self._in_flight = frame
                    scope.shield = True
                    try:
                        await backend.send(data)
                    except BackendClosed:
                        # Dead-letter until the reader has seen the end (and its code).
                        self._write_failed = True
                        self._dead_letter(frame, actors.DeadLetterReason.STOPPED)
                    else:
                        counters.messages_sent += 1
                    scope.shield = False
                    self._in_flight = None
            frame = self._in_flight
            if frame is not None:
                # Cut mid-frame: close the stream before any other task runs.
                self._in_flight = None
                self._dead_letter(frame, actors.DeadLetterReason.STOPPED)
                await self._abort(backend, f"a write did not finish within {write_timeout}s")
                return None

    # -- the timers (run by the writer between writes) --------------------------------

    def _timers_due(self) -> float:
        """When the writer must next run the timers (math.inf: never)."""
        pong = self._pong
        if pong is not None:
            due = pong.sent_at + self._options.pong_timeout
        elif self._closing:
            due = math.inf
        else:
            due = self._next_ping
        if self._idle_timeout is not None:
            due = min(due, self._last_inbound + self._idle_timeout)
        return due

    async def _run_timers(self, backend: Backend, limit: float) -> bool:
        """Keepalive and idle timeout; False if the connection was aborted."""
        options = self._options
        now = trio.current_time()
        pong = self._pong
        if pong is not None:
            if pong.answered:
                self._pong = pong = None
            elif now >= pong.sent_at + options.pong_timeout:
                await self._abort(backend, f"keepalive: no pong within {options.pong_timeout}s")
                return False
        if pong is None and not self._closing and now >= self._next_ping:
            interval = options.ping_interval
            assert interval is not None
            counters = self._counters
            counters.pings_sent += 1
            self._pong = _Pong(counters, now)
            with _write_bound(options.write_timeout, limit) as scope:
                try:
                    await send_ping_to(backend, counters.pings_sent.to_bytes(8, "big"), self._pong)
                except BackendClosed:
                    self._pong = None
                    interval = math.inf  # no more pings: the reader sees the end
            if scope.cancelled_caught:
                await self._abort(backend, "a keepalive ping could not be written")
                return False
            self._next_ping = now + interval
        idle_timeout = self._idle_timeout
        if idle_timeout is not None and now >= self._last_inbound + idle_timeout:
            self._request_close(Situation.IDLE_TIMEOUT, "idle timeout")
            self._idle_timeout = None
        return True  # noqa: ASYNC910 - a step of the writer's loop, which checkpoints


def _write_bound(timeout: float, limit: float) -> trio.CancelScope:
    """A shielded scope that ends ``timeout`` from now, or at ``limit`` if sooner."""
    return trio.CancelScope(shield=True, deadline=min(trio.current_time() + timeout, limit))


@final
class _Pong:
    """Set by the library's reader when the Pong of a keepalive Ping arrives."""

    __slots__ = ("answered", "counters", "sent_at")

    def __init__(self, counters: Counters, sent_at: float) -> None:
        self.counters = counters
        self.sent_at = sent_at
        self.answered = False

    def set(self) -> None:
        if not self.answered:
            self.answered = True
            self.counters.latency = trio.current_time() - self.sent_at


async def spawn_connection(
    parent: Spawner,
    opener: Opener,
    options: ConnectionOptions,
    *,
    subscriber: actors.ActorRef[SubscriberMessage] | None = None,
    application: Application | None = None,
    name: str | None = None,
) -> WebSocketConnection:
    """Spawn a connection actor under ``parent``; returns once the handshake succeeded."""
    actor = ConnectionActor(opener, options, subscriber, application)
    await parent.spawn(actor, name=name)
    return actor.handle()
