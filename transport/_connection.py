"""The connection actor: the one owner of a WebSocket stream.

Its tasks besides the actor's own message loop:

- the library's *reader* (inside the io scope) is the only task that reads. It
  hands each message, decoded, to the bounded inbound queue from inside its own
  loop (``route_inbound``): it never waits on the application, and the overflow
  policy decides when the queue is full;
- the *io task* (the io scope: shielded, only the actor itself cancels it) owns
  the library's nursery, and once the connection is open it is the *writer*, the
  only task that writes messages. It takes frames from the outbox, which the
  actor and the connection's handle fill (bounded: senders wait for room);
- the *watch* task (outside the io scope) runs the timers: the write watchdog (a
  write that does not finish within ``write_timeout`` aborts the connection: the
  stream is closed first, then the write is cancelled, so a half-written frame is
  never followed by anything), keepalive pings and their pong timeout, the idle
  timeout, and the end of the reader. When the actor is stopped or cancelled from
  outside, its cancellation turns into a close with 1001, bounded by
  ``write_timeout + close_timeout``;
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

from ._acked_wire import Retained
from ._backend import Backend, BackendClosed, route_inbound, send_ping_to
from ._close_codes import CloseCode, ConnectionClosed, Situation, close_code_for
from ._codec import DecodePolicy, EncodeError, as_decode_error
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
    _ready: trio.Event = attrs.field(init=False, factory=trio.Event)
    _io_scope: trio.CancelScope = attrs.field(init=False)
    # What the watch task needs once the connection is open: the backend and the
    # channel that ends with the library's reader. Only the actor's own tasks use it.
    _open: tuple[Backend, trio.MemoryReceiveChannel[str | bytes]] | None = attrs.field(
        init=False, default=None
    )
    # The writer's scope, and when its current write started (None between writes):
    # the watchdog's whole view of the writer.
    _write_scope: trio.CancelScope | None = attrs.field(init=False, default=None)
    _write_started: float | None = attrs.field(init=False, default=None)
    _outcome: ConnectionClosed | None = attrs.field(init=False, default=None)
    _closing: bool = attrs.field(init=False, default=False)
    _application_done: trio.Event = attrs.field(init=False, factory=trio.Event)
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
        self._io_scope = trio.CancelScope(shield=True)
        self.ctx.start_soon(self._run_io, name="websocket-io")
        self.ctx.start_soon(self._watch, name="websocket-watch")
        await self._ready.wait()
        if self._start_error is not None:
            raise self._start_error
        if self._application is not None:
            self.ctx.start_soon(self._run_application, self.handle(), name="websocket-app")
        else:
            self._application_done.set()

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

    def _reader_ended(self, backend: Backend) -> None:
        """The library marked the connection closed, or its reader ended: no more input."""
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
        if isinstance(message, SendBytes) and isinstance(message.data, Retained):
            return  # made again on the next connection: not lost
        self._dead_letters.publish(
            actors.DeadLetter(
                message=message, recipient=self._path, sender=None, reason=reason, error=error
            )
        )

    # -- the io task ----------------------------------------------------------------

    async def _run_io(self) -> None:
        error: BaseException | None = None
        with self._io_scope:
            error = await self._io()
        self._opener = None
        self._open = None
        outcome = self._final_outcome(error)
        self._counters.closed = outcome
        self._inbound.close()
        if self._application is not None and self._application_done.is_set():
            self._dead_letter_inbound()
        self._outbox.close()
        self._dead_letter_outbound()
        if self._start_error is not None:
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
                    await self._serve(nursery, backend)
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
        self._last_inbound = trio.current_time()
        # From here on the library's reader delivers straight into the inbound queue.
        reader_watch = route_inbound(
            backend, self._deliverer(), lambda: self._reader_ended(backend)
        )
        self._open = (backend, reader_watch)
        self._ready.set()
        forwarded: trio.Event | None = None
        if self._subscriber is not None:
            forwarded = trio.Event()
            nursery.start_soon(
                forward, self._inbound, self._subscriber, self._undelivered, forwarded
            )
        # This task is the writer (the only one); it returns once the outbox has closed
        # and the close handshake is done.
        await self._write_loop(backend)
        self._inbound.close()
        with trio.move_on_after(options.close_timeout):
            if forwarded is not None:
                await forwarded.wait()
            await self._application_done.wait()
        nursery.cancel_scope.cancel()

    def _deliverer(self) -> Callable[[str | bytes], None]:
        """What the library's reader calls with each inbound message (never blocks or raises)."""
        inbound = self._inbound
        put = inbound.put
        counters = self._counters
        situation = inbound.policy.close_situation
        decode = self._options.codec.decode
        track_idle = self._options.idle_timeout is not None
        current_time = trio.current_time

        def deliver(message: str | bytes) -> None:
            counters.messages_received += 1
            if track_idle:
                self._last_inbound = current_time()
            try:  # decoding is plain code: the reader never awaits on it
                received = Received(decode(message))
            except Exception as exc:  # noqa: BLE001 - bad input never stops the reader
                received = self._undecodable(exc, message)
            dropped = put(received)
            if dropped is not None:
                self._dead_letter(dropped, actors.DeadLetterReason.DROPPED)
                if situation is not None:
                    self._request_close(situation, "inbound queue overflow")

        return deliver

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
        # No cancel scope per frame: the watch task bounds each write (see _run_timers).
        # A write is cancelled mid-frame only after the stream was closed (the watchdog)
        # or on the io scope's way out, which closes the stream in _io.
        options = self._options
        counters = self._counters
        outbox = self._outbox
        current_time = trio.current_time
        broken = False
        frame: Frame | None = None
        with trio.CancelScope() as self._write_scope:  # noqa: ASYNC912 - writes and waits checkpoint
            try:
                while True:
                    try:
                        frame = outbox.take()
                    except trio.WouldBlock:
                        if outbox.closed:
                            break
                        await outbox.wait()
                        continue
                    if broken:
                        self._dead_letter(frame, actors.DeadLetterReason.STOPPED)
                        frame = None
                        continue
                    data = frame.text if isinstance(frame, SendText) else frame.data
                    self._write_started = current_time()
                    try:
                        await backend.send(data)
                    except BackendClosed:
                        # Dead-letter until the reader has seen the end (and its code).
                        broken = True
                        self._dead_letter(frame, actors.DeadLetterReason.STOPPED)
                    else:
                        counters.messages_sent += 1
                    finally:
                        self._write_started = None
                    frame = None
            finally:
                self._write_scope = None
                if frame is not None:  # cancelled while writing it
                    self._dead_letter(frame, actors.DeadLetterReason.STOPPED)
        outcome = self._outcome
        if (
            broken
            or outcome is None
            or outcome.by_peer
            or outcome.code == CloseCode.ABNORMAL_CLOSURE
        ):
            # Nothing to close: the peer closed, or the connection was aborted.
            return  # noqa: ASYNC910 - the loop waited unless the outbox was closed at once
        with trio.move_on_after(options.write_timeout + options.close_timeout) as scope:
            await backend.close(outcome.code, outcome.reason)
        if scope.cancelled_caught:
            await self._abort(backend, "the close handshake timed out")

    # -- the watch task -------------------------------------------------------------

    async def _watch(self) -> None:
        try:
            await self._ready.wait()
            if self._open is not None:
                backend, reader_watch = self._open
                with reader_watch:
                    await self._run_timers(backend, reader_watch)
            await trio.sleep_forever()
        finally:
            # Outside the io scope's shield: when the actor is stopped or cancelled from
            # outside, turn that into a bounded close with 1001 instead of cutting the
            # stream mid-frame.
            self._request_close(Situation.SHUTDOWN, "going away")
            grace = self._options.write_timeout + self._options.close_timeout
            self._io_scope.deadline = min(self._io_scope.deadline, trio.current_time() + grace)

    async def _run_timers(
        self, backend: Backend, reader_watch: trio.MemoryReceiveChannel[str | bytes]
    ) -> None:
        """The write watchdog, keepalive, idle timeout and the reader's end, in one task.

        Returns when the connection was aborted (the task then only waits to be
        cancelled). While no write is in progress the watchdog looks again every
        ``write_timeout``; a write that started meanwhile is then due exactly
        ``write_timeout`` after its start.
        """
        options = self._options
        counters = self._counters
        write_timeout = options.write_timeout
        interval = options.ping_interval
        idle_timeout = options.idle_timeout
        current_time = trio.current_time
        next_ping = math.inf if interval is None else current_time() + interval
        pong: _Pong | None = None
        reading = True
        while True:
            now = current_time()
            started = self._write_started
            if started is not None and now >= started + write_timeout:
                await self._abort(backend, f"a write did not finish within {write_timeout}s")
                if self._write_scope is not None:
                    self._write_scope.cancel()
                return
            wake = now + write_timeout if started is None else started + write_timeout
            if pong is not None:
                if pong.answered:
                    pong = None
                elif now >= pong.sent_at + options.pong_timeout:
                    await self._abort(backend, f"keepalive: no pong within {options.pong_timeout}s")
                    return
                else:
                    wake = min(wake, pong.sent_at + options.pong_timeout)
            if interval is not None and pong is None and not self._closing:
                if now >= next_ping:
                    counters.pings_sent += 1
                    pong = _Pong(counters, now)
                    with trio.CancelScope(shield=True, deadline=now + write_timeout) as scope:  # noqa: ASYNC912 - the write checkpoints unless it fails at once
                        try:
                            await send_ping_to(
                                backend, counters.pings_sent.to_bytes(8, "big"), pong
                            )
                        except BackendClosed:
                            interval = None
                    if scope.cancelled_caught:
                        await self._abort(backend, "a keepalive ping could not be written")
                        return
                    next_ping = now + (interval or math.inf)
                    await trio.lowlevel.checkpoint()
                    continue
                wake = min(wake, next_ping)
            if idle_timeout is not None:
                idle_at = self._last_inbound + idle_timeout
                if now >= idle_at:
                    self._request_close(Situation.IDLE_TIMEOUT, "idle timeout")
                    idle_timeout = None
                    await trio.lowlevel.checkpoint()
                    continue
                wake = min(wake, idle_at)
            if not reading:
                await trio.sleep_until(wake)
                continue
            with trio.move_on_at(wake):  # noqa: ASYNC912 - receive checkpoints
                try:
                    await reader_watch.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    reading = False
                    self._reader_ended(backend)
                    await trio.lowlevel.checkpoint()


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
