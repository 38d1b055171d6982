"""The connection actor: the one owner of a WebSocket stream.

One door into the writer: every frame reaches the stream through the actor's
mailbox (``WebSocketConnection.send`` tells it, like ``ref.tell(SendText(...))``),
and the actor's own message loop is the *writer*: its frame handlers encode each
frame, and the frames of a busy spell (the messages the loop takes in a row) are
written together when it ends, up to :data:`FLUSH_FRAMES` per write. So frames from
one sender are written in the order it sent them, whichever call it used; the
mailbox is bounded in messages and in bytes, and waiting senders are served in
arrival order. :class:`Close`, :class:`GetStatistics` and the keepalive's pings are
control messages: they overtake queued frames and are handled after at most the
write under way.

Each write is shielded and bounded by ``write_timeout`` (by up to a quarter more, see
:meth:`ConnectionActor._flush`): a write that does not finish in time is cut, and the
stream is closed before any other task runs, so a half-written frame is never
followed by anything.

Its tasks besides the message loop:

- the library's *reader* is the only task that reads. It hands each message,
  decoded, to the bounded inbound queue from inside its own loop
  (``route_inbound``): it never waits on the application, and the overflow policy
  decides when a message does not fit (in count or in bytes). Once the connection
  is open it is shielded from cancellation from outside (it answers pings and sees
  the peer's Close while the connection closes); the io task stops it. It reports
  its own end. A protocol error it detects ends its reading: the messages before
  it stay deliverable, and the Close follows the application's replies (strict
  close order, bounded by ``close_timeout``);
- the *io task* owns the library's nursery. Once the connection is open it runs
  the timers (the pong timeout, the idle timeout, the bound of a strict close),
  sleeping between them without a cancel scope: the run's one alarm clock (see
  ``_alarms``) wakes it. The keepalive's routine does not wake it: the alarm clock
  tells the loop to write the Ping, and the Ping's write and its Pong move the
  alarm. When the loop has written the frames that precede a close it runs the
  close handshake. When the actor is stopped or cancelled from outside, it turns
  that into a close with 1001, bounded by ``write_timeout + close_timeout``;
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
from .._adapter._limits import Violation
from .._census import SourceKind, report_ended, report_started
from .._close_codes import CloseCode, ConnectionClosed, Situation, close_code_for
from .._codec import DecodePolicy, EncodeError, RawCodec, as_decode_error
from .._overflow import close_situation
from ._alarms import Alarm, cancel_alarm, set_alarm
from ._inbound import ByteBudget, InboundQueue, deliver_last, forward
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
    frame_weight,
    payload_size,
)

if TYPE_CHECKING:
    from ._handle import WebSocketConnection

logger = logging.getLogger("transport")
# How much later than write_timeout a write may be cut: the writer moves its deadline
# once per this share of write_timeout instead of at every write.
WRITE_TIMEOUT_SLACK = 0.25
#: The writer writes the frames of a busy spell together when the spell ends, or as
#: soon as they are this many, or add up to this many bytes. Larger writes would let a
#: fast writer fill the socket's send buffer, and a write that waits for room there
#: holds back control messages until the peer has read a good part of it.
FLUSH_FRAMES = 4
FLUSH_BYTES = 64 * 1024

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
@attrs.frozen
class KeepalivePing(actors.ControlMessage):
    """The io task's request to the writer: write a keepalive Ping now (internal)."""


@final
@attrs.frozen
class BeginClose(actors.ControlMessage):
    """A close began outside the message loop: count, in the loop, the messages queued
    before it (internal; see ``ConnectionActor._request_close``)."""


#: Everything a connection actor's mailbox carries.
ActorMessage = ConnectionMessage | ApplicationEnded | KeepalivePing | BeginClose


@final
@attrs.define(eq=False)
class ConnectionActor(actors.Actor[ActorMessage]):
    """Owns one WebSocket connection; spawned by the client and server functions."""

    # Dropped once the handshake ran: a server's opener holds the request it answered.
    _opener: Opener | None
    _options: ConnectionOptions
    _subscriber: actors.ActorRef[SubscriberMessage] | None = None
    _application: Application | None = None
    _budget: ByteBudget | None = None
    _inbound: InboundQueue[Received] = attrs.field(init=False)
    _counters: Counters = attrs.field(init=False)
    _info: ConnectionInfo | None = attrs.field(init=False, default=None)
    _start_error: BaseException | None = attrs.field(init=False, default=None)
    # Set once the handshake ended either way; dropped once on_start has seen it.
    _ready: trio.Event | None = attrs.field(init=False, factory=trio.Event)
    # The open connection. Only the actor's own tasks use it.
    _backend: Backend | None = attrs.field(init=False, default=None)
    _outcome: ConnectionClosed | None = attrs.field(init=False, default=None)
    _closing: bool = attrs.field(init=False, default=False)
    # Mailbox messages still to handle before the Close frame (those queued or waiting
    # when the close began); the io task runs the close handshake once they are done.
    _before_close: int = attrs.field(init=False, default=0)
    _counted: bool = attrs.field(init=False, default=False)
    _close_ready: bool = attrs.field(init=False, default=False)
    # A protocol error the connection took on itself (strict close order), and the
    # time by which it closes even if the application has not taken everything.
    _violation: Violation | None = attrs.field(init=False, default=None)
    _violation_deadline: float = attrs.field(init=False, default=math.inf)
    # The io task, while it waits between its timers, and the alarm that wakes it for
    # the next one (see _alarms).
    _io_waiting: trio.lowlevel.Task | None = attrs.field(init=False, default=None)
    _alarm: Alarm | None = attrs.field(init=False, default=None)
    # The handler's end; the event is made only when the io task has to wait for it.
    _application_ended: bool = attrs.field(init=False, default=False)
    _application_done: trio.Event | None = attrs.field(init=False, default=None)
    # The timers the io task runs (math.inf: off).
    _next_ping: float = attrs.field(init=False, default=math.inf)
    _ping_told: bool = attrs.field(init=False, default=False)
    _pong: _Pong | None = attrs.field(init=False, default=None)
    _idle_timeout: float | None = attrs.field(init=False, default=None)
    # The writer: the frames of the busy spell not written yet (with their encoded
    # bytes, see _write), a write in progress, its deadline (shared by the writes that
    # follow each other closely, see _flush), whether a write failed because the
    # library reports the connection closed, and a close that waits for the spell's
    # write (see _ready_to_close).
    _pending: list[tuple[Frame, bytes]] | None = attrs.field(init=False, default=None)
    _pending_bytes: int = attrs.field(init=False, default=0)
    # What the socket did not take at once, for the io task to write (see _flush).
    _remainder: tuple[bytes | memoryview, list[tuple[Frame, bytes]]] | None = attrs.field(
        init=False, default=None
    )
    _writing: bool = attrs.field(init=False, default=False)
    _write_deadline: float = attrs.field(init=False, default=-math.inf)
    _write_failed: bool = attrs.field(init=False, default=False)
    _close_after_flush: bool = attrs.field(init=False, default=False)
    _last_inbound: float = attrs.field(init=False, default=0.0)
    _dead_letters: actors.DeadLetters = attrs.field(init=False)
    _path: str = attrs.field(init=False, default="")
    _ref: actors.ActorRef[ActorMessage] | None = attrs.field(init=False, default=None)
    _thread_id: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        options = self._options
        self._inbound = InboundQueue(
            options.inbound_queue_size, options.overflow, options.inbound_max_bytes, self._budget
        )
        self._inbound.on_end = self._inbound_taken
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

    # -- mailbox: the frames (the loop is the writer) ----------------------------------

    @actors.handler
    async def send_text(self, message: SendText) -> None:
        await self._write(message, message.text)

    @actors.handler
    async def send_bytes(self, message: SendBytes) -> None:
        await self._write(message, message.data)

    @actors.handler
    async def send_message(self, message: SendMessage) -> None:
        try:
            data = self._options.codec.encode(message.message)
        except EncodeError as exc:  # the sender is gone: report, don't fail the connection
            logger.warning("%s cannot send %r: %s", self._path, message.message, exc)
            self._dead_letter(message, actors.DeadLetterReason.FAILED, exc)
            self._handled_before_close(counted=self._counted)
            return  # noqa: ASYNC910 - a handler: the actor's loop checkpoints
        frame = SendText(data) if isinstance(data, str) else SendBytes(data)
        await self._write(frame, data)

    @actors.handler
    def application_ended(self, message: ApplicationEnded) -> None:
        self._handled_before_close(counted=self._counted)
        self._request_close(message.situation, message.reason, error=message.error, in_loop=True)

    # -- mailbox: control (overtakes queued frames) ------------------------------------

    @actors.handler
    def close(self, message: Close) -> None:
        self._request_close(None, message.reason, code=message.code, in_loop=True)

    @actors.handler
    def begin_close(self, message: BeginClose) -> None:
        self._count_before_close()

    @actors.handler
    def get_statistics(self, message: GetStatistics) -> ConnectionStatistics:
        return self._statistics()

    def _statistics(self) -> ConnectionStatistics:
        assert self._ref is not None
        return self._counters.snapshot(self._inbound, self._ref.statistics())

    @actors.handler
    async def keepalive_ping(self, message: KeepalivePing) -> None:  # noqa: ASYNC910 - the write checkpoints
        self._ping_told = False
        if self._remainder is not None:
            return  # noqa: ASYNC910 - the io task waits for room: no ping now (one is due later)
        if self._pending is not None:
            await self._flush()  # the frames handled before it go first
        backend = self._backend
        if backend is None or self._closing or self._write_failed:
            return  # noqa: ASYNC910 - a handler: the actor's loop checkpoints
        options = self._options
        counters = self._counters
        counters.pings_sent += 1
        self._pong = pong = _Pong(
            self, counters, trio.current_time(), options.pong_timeout, self._inbound.pauses
        )
        self._writing = True
        with _write_bound(options.write_timeout) as scope:
            try:
                await send_ping_to(backend, counters.pings_sent.to_bytes(8, "big"), pong)
            except BackendClosed:
                self._pong = None
                self._next_ping = math.inf  # no more pings: the reader sees the end
        self._writing = False
        self._arm_timers()  # the next timer is the pong timeout now
        if scope.cancelled_caught:
            await self._abort(backend, "a keepalive ping could not be written")

    async def on_spell_end(self) -> None:
        """Write the frames of the busy spell that ended (the loop's hook)."""
        if self._pending is not None:
            await self._flush()
        else:
            await trio.lowlevel.checkpoint()

    async def _write(self, frame: Frame, data: str | bytes) -> None:  # noqa: ASYNC910 - the flush checkpoints
        """Encode one frame for the busy spell's write (see :meth:`_flush`).

        The frames of a spell are written together when it ends, or as soon as they
        are :data:`FLUSH_FRAMES` or add up to :data:`FLUSH_BYTES`; a control message that writes (a keepalive
        ping) writes them first.
        """
        backend = self._backend
        # Whether the messages before a close had been counted when this one began.
        counted = self._counted
        if backend is None or self._write_failed or self._close_ready or self._close_after_flush:
            self._dead_letter(frame, actors.DeadLetterReason.STOPPED)
            self._handled_before_close(counted=counted)
            return  # noqa: ASYNC910 - a handler: the actor's loop checkpoints
        try:
            encoded = backend.encode(data)
        except BackendClosed:
            # Dead-letter until the reader has seen the end (and its code).
            self._write_failed = True
            self._dead_letter(frame, actors.DeadLetterReason.STOPPED)
            self._handled_before_close(counted=counted)
            return  # noqa: ASYNC910 - a handler: the actor's loop checkpoints
        pending = self._pending
        if pending is None:
            pending = self._pending = []
        pending.append((frame, encoded))
        self._pending_bytes += len(encoded)
        self._handled_before_close(counted=counted)
        # In the middle of a spell, a write that needed no wait still lets the other
        # tasks run (senders, askers whose replies the spell settled), as one that waits
        # does; at a spell's end the loop's own wait does that.
        if (
            len(pending) >= FLUSH_FRAMES or self._pending_bytes >= FLUSH_BYTES
        ) and not await self._flush():
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def _flush(self) -> bool:  # noqa: ASYNC910 - the write checkpoints
        """Write the encoded frames in one write: shielded, and bounded by ``write_timeout``;
        false if the socket took them at once (no wait, no checkpoint).

        One cancel scope for all of them; its deadline is moved only when it falls
        outside between ``write_timeout`` and a quarter more from now (the writes of
        busy spells that follow each other share it). A write cut by it aborts the connection
        before anything else runs, and its frames go to dead letters (some may have
        reached the peer: reported, never lost silently). Nothing here waits after
        the write, so a stop from outside never catches a frame that was written.
        """
        pending = self._pending
        assert pending is not None
        self._pending = None
        self._pending_bytes = 0
        backend = self._backend
        counters = self._counters
        if backend is None:  # pragma: no cover - the io task ends after the loop
            for frame, _ in pending:
                self._dead_letter(frame, actors.DeadLetterReason.STOPPED)
            await trio.lowlevel.checkpoint()
            return True
        data = pending[0][1] if len(pending) == 1 else b"".join([item[1] for item in pending])
        # What the socket takes at once is written without a wait, so without a scope.
        sent = backend.write_now(data)
        if sent == len(data):
            counters.messages_sent += len(pending)
            for frame, _ in pending:
                counters.bytes_sent += frame_weight(frame)
            if self._close_after_flush:
                self._close_after_flush = False
                self._ready_to_close()
            return False  # noqa: ASYNC910 - no wait: the caller checkpoints
        rest = memoryview(data)[sent:] if sent else data
        if backend.writes_directly:
            # The rest waits for room in the io task, and the loop takes control messages
            # only meanwhile: a statistics ask or a Close never waits for the peer's window.
            self._remainder = (rest, pending)
            self._writing = True
            self.ctx.hold_messages()
            self._wake_io()
            return False  # noqa: ASYNC910 - no wait: the caller checkpoints
        await self._write_rest(backend, rest, pending)
        return True

    async def _write_rest(  # noqa: ASYNC910 - the write checkpoints
        self, backend: Backend, rest: bytes | memoryview, pending: list[tuple[Frame, bytes]]
    ) -> None:
        """Write ``rest`` of the frames ``pending``: shielded and bounded (see :meth:`_flush`)."""
        counters = self._counters
        write_timeout = self._options.write_timeout
        bound = trio.current_time() + write_timeout
        deadline = self._write_deadline
        if not bound <= deadline <= bound + write_timeout * WRITE_TIMEOUT_SLACK:
            deadline = self._write_deadline = bound + write_timeout * WRITE_TIMEOUT_SLACK
        self._writing = True
        with trio.CancelScope(shield=True, deadline=deadline) as scope:  # noqa: ASYNC912 - the write checkpoints
            try:
                await backend.send_encoded(rest)
            except BackendClosed:
                # Dead-letter until the reader has seen the end (and its code).
                self._write_failed = True
                for frame, _ in pending:
                    self._dead_letter(frame, actors.DeadLetterReason.STOPPED)
            else:
                counters.messages_sent += len(pending)
                for frame, _ in pending:
                    counters.bytes_sent += frame_weight(frame)
        self._writing = False
        if scope.cancelled_caught:
            # Cut mid-frame: close the stream before any other task runs.
            for frame, _ in pending:
                self._dead_letter(frame, actors.DeadLetterReason.STOPPED)
            with trio.CancelScope(shield=True):
                await self._abort(backend, f"a write did not finish within {write_timeout}s")
        if self._close_after_flush:
            self._close_after_flush = False
            self._ready_to_close()

    async def _write_remainder(self, backend: Backend) -> None:
        """Write what the socket did not take at once (the io task's part of :meth:`_flush`),
        then let the loop take ordinary messages again."""
        remainder = self._remainder
        assert remainder is not None
        try:
            await self._write_rest(backend, *remainder)
        finally:
            self._remainder = None
            self._writing = False
            self.ctx.release_messages()
        if self._counted and self._before_close <= 0 and not self._close_ready:
            self._ready_to_close()  # the close was counted while the rest was written

    # -- closing --------------------------------------------------------------------

    def _request_close(
        self,
        situation: Situation | None,
        reason: str,
        *,
        code: int | None = None,
        error: BaseException | None = None,
        in_loop: bool = False,
    ) -> None:
        """Start a local close: the messages queued in the mailbox now (or waiting for
        room) are handled first, then the io task writes the Close frame.

        They are counted in the message loop (``in_loop``, or through a
        :class:`BeginClose` control message): from outside, a message may be on its
        way from the mailbox to the loop, in neither.
        """
        if self._closing:
            return
        self._closing = True
        self._counters.closing = True
        if code is None:
            assert situation is not None
            code = close_code_for(situation)
        self._note_outcome(ConnectionClosed(code, reason, by_peer=False, error=error))
        if in_loop:
            self._count_before_close()
            return
        assert self._ref is not None
        try:
            self._ref.tell_nowait(BeginClose())
        except trio.WouldBlock:  # the control lane is full: count here, nearly as well
            self._count_before_close()
        except actors.ActorStoppedError:
            pass  # the loop has ended: the io task closes

    def _count_before_close(self) -> None:
        if self._counted:
            return
        self._counted = True
        assert self._ref is not None
        queued = self._ref.statistics()
        self._before_close = queued.depth + queued.senders_waiting
        if self._before_close <= 0 and not self._writing:
            self._ready_to_close()

    def _handled_before_close(self, *, counted: bool) -> None:
        """An ordinary message was handled: the close may be ready (the loop's call).

        ``counted``: the messages before the close had been counted when its handler
        started (the message being handled then was not in the mailbox any more).
        """
        if not counted or self._close_ready:
            return
        self._before_close -= 1
        assert self._ref is not None
        # Fewer may come than counted (a waiting sender gave up): an empty mailbox is
        # the end too.
        if self._before_close <= 0 or self._ref.statistics().depth == 0:
            self._ready_to_close()

    def _ready_to_close(self) -> None:
        if self._pending is not None:
            # Frames of this spell come before the Close: after their write (_flush).
            self._close_after_flush = True
            return
        self._close_ready = True
        self._wake_io()

    def _wake_io(self) -> None:
        task = self._io_waiting
        if task is not None:
            self._io_waiting = None
            trio.lowlevel.reschedule(task)

    def _set_alarm(self, due: float) -> None:
        alarm = self._alarm
        if alarm is None or alarm[0] != due:
            if alarm is not None:
                cancel_alarm(alarm)
            self._alarm = None if due == math.inf else set_alarm(due, self)

    def _arm_timers(self) -> None:
        # A timer changed while the io task waits: move its alarm (when it does not
        # wait, its loop sets the alarm before it waits again).
        if self._io_waiting is not None:
            self._set_alarm(self._timers_due())

    def _ring(self, alarm: Alarm) -> None:
        # The alarm clock's call when the io task's next timer is due. The keepalive's
        # routine runs here and in the callbacks (the Ping's write, its Pong), without
        # waking the io task; the rest (a late Pong, the idle timeout, the bound of a
        # strict close) wakes it.
        if alarm is not self._alarm:
            return
        self._alarm = None
        if self._io_waiting is None:
            return  # busy: its loop sets the next alarm
        now = trio.current_time()
        due = self._timers_due()
        if due > now:
            self._set_alarm(due)  # moved meanwhile (data came in): nothing is due yet
        elif self._only_ping_due(now):
            self._tell_ping(now)
            self._arm_timers()
        else:
            self._wake_io()

    def _pong_answered(self, pong: _Pong) -> None:
        # The reader's call when the Pong of the last Ping arrived.
        if pong is self._pong:
            self._pong = None
            self._arm_timers()

    def _abort_io_wait(self, _: object) -> trio.lowlevel.Abort:
        self._io_waiting = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _note_outcome(self, outcome: ConnectionClosed) -> None:
        if self._outcome is None:
            self._outcome = outcome

    def _reader_ended(self) -> None:
        """The library marked the connection closed, or its reader ended: no more input."""
        if self._violation is not None:
            return  # the reader was stopped at a protocol error: the close is ours
        backend = self._backend
        assert backend is not None
        if self._outcome is None:
            closed = backend.closed_with()
            code, reason = closed if closed is not None else (CloseCode.ABNORMAL_CLOSURE, "")
            self._note_outcome(ConnectionClosed(code, reason, by_peer=backend.closed_by_peer()))
        self._closing = True
        self._counters.closing = True
        self._ready_to_close()

    def _violated(self, violation: Violation) -> bool:
        """The peer broke the protocol or a limit (the reader's call, from the frame guard).

        Strict close order: the reader stops, the messages it delivered before stay
        in the inbound queue, and the Close with the violation's code follows the
        replies the application writes to them, once it has taken them all (or
        ``close_timeout`` has passed). False while already closing: the library
        answers at once.
        """
        backend = self._backend
        if self._closing or backend is None:
            return False
        self._violation = violation
        self._note_outcome(ConnectionClosed(violation.code, violation.reason, by_peer=False))
        self._violation_deadline = trio.current_time() + self._options.close_timeout
        backend.stop_reading()
        inbound = self._inbound
        inbound.close()
        consumer = (
            inbound.read
            or self._subscriber is not None
            or (self._application is not None and not self._application_ended)
        )
        if not consumer and not len(inbound):
            self._inbound_taken()  # nothing came before it, and nobody reads
        self._wake_io()
        return True

    def _inbound_taken(self) -> None:
        """The consumer has taken every message of the closed inbound queue."""
        violation = self._violation
        if violation is not None:
            self._request_close(None, violation.reason, code=violation.code)

    async def _abort(self, backend: Backend, reason: str) -> None:
        self._note_outcome(ConnectionClosed(CloseCode.ABNORMAL_CLOSURE, reason))
        self._closing = True
        self._counters.closing = True
        self._ready_to_close()
        await backend.abort()

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

    async def _run_io(self) -> None:  # noqa: ASYNC910 - a task body
        # One function (with _serve) for the whole task: an idle connection keeps two
        # frames of it, not five.
        error: BaseException | None = None
        backend: Backend | None = None
        opener = self._opener
        assert opener is not None
        try:
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
                        report_started(
                            self.ctx.system,
                            self,
                            SourceKind.CLIENT_CONNECTION
                            if self._info.is_client
                            else SourceKind.SERVER_CONNECTION,
                            self._path,
                            self._statistics,
                        )
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
        finally:
            # Also on the way out of a cancellation from outside (after its bounded close).
            if self._alarm is not None:
                cancel_alarm(self._alarm)
                self._alarm = None
            self._opener = None
            self._backend = None
            outcome = self._final_outcome(error)
            self._counters.closed = outcome
            report_ended(self.ctx.system, self, self._statistics())
            self._counters.closing = True
            self._inbound.close()
            if self._application is not None and self._application_ended:
                self._dead_letter_inbound()
        if self._start_error is not None:
            assert self._ready is not None
            self._ready.set()
            return  # noqa: ASYNC910 - a task body: the handshake checkpointed
        if self._subscriber is not None:
            timeout = self._options.close_timeout
            await deliver_last(self._subscriber, outcome, timeout, self._unreachable)
        self.ctx.stop(outcome)

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
        # and only this task stops it (_run_io).
        route_inbound(backend, self._deliver, self._reader_ended, self._violated, self._inbound)
        backend.shield_reader()
        assert self._ready is not None
        self._ready.set()
        forwarded: trio.Event | None = None
        if self._subscriber is not None:
            forwarded = trio.Event()
            nursery.start_soon(
                forward, self._inbound, self._subscriber, self._undelivered, forwarded
            )
        # This task runs the timers (keepalive, idle timeout and the bound of a strict
        # close) until the loop has written what precedes the close, or the connection
        # was aborted, then the close handshake. It parks itself between the timers
        # (see _wake_io), in this frame.
        wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
        try:
            while not self._close_ready:
                if self._remainder is not None:
                    await self._write_remainder(backend)
                    continue
                self._set_alarm(self._timers_due())
                self._io_waiting = trio.lowlevel.current_task()
                await wait_task_rescheduled(self._abort_io_wait)
                if not await self._timers_step(backend):
                    break
        except trio.Cancelled:
            if nursery.cancel_scope.cancel_called:
                raise  # the reader or the forwarder failed: nothing to close gracefully
            # Stopped or cancelled from outside (the loop has ended: the mailbox's frames
            # went to dead letters): close with 1001 (the reader, shielded, still reads
            # the peer's answer), bounded in time.
            self._request_close(Situation.SHUTDOWN, "going away")
            grace = options.write_timeout + options.close_timeout
            with trio.CancelScope(shield=True, deadline=trio.current_time() + grace):
                await self._close_handshake(backend)
            raise
        await self._close_handshake(backend)
        self._inbound.close()
        with trio.move_on_after(options.close_timeout):  # noqa: ASYNC912 - no wait if nothing runs
            if forwarded is not None:
                await forwarded.wait()
            if self._application is not None and not self._application_ended:
                self._application_done = trio.Event()
                await self._application_done.wait()
        nursery.cancel_scope.cancel()

    async def _close_handshake(self, backend: Backend) -> None:
        """Write the Close frame and wait for the peer's (bounded), unless there is
        nothing to close: the peer closed, or the connection was aborted."""
        if self._remainder is not None:  # frames the loop handed over go first
            await self._write_remainder(backend)
        # The reader must read on to the peer's Close: what does not fit now is dropped.
        self._inbound.stop_pausing()
        outcome = self._outcome
        if (
            self._write_failed
            or outcome is None
            or outcome.by_peer
            or outcome.code == CloseCode.ABNORMAL_CLOSURE
        ):
            await trio.lowlevel.checkpoint()
            return
        options = self._options
        with _write_bound(options.write_timeout + options.close_timeout) as scope:
            if self._violation is not None:
                await backend.fail(outcome.code, outcome.reason)
            else:
                await backend.close(outcome.code, outcome.reason)
        if scope.cancelled_caught:
            await self._abort(backend, "the close handshake timed out")

    def _deliver(self, message: str | bytes) -> None:
        """What the library's reader calls with each inbound message (never blocks or raises)."""
        counters = self._counters
        counters.messages_received += 1
        if self._idle_timeout is not None:
            self._last_inbound = trio.current_time()
        size = len(message) if type(message) is bytes else payload_size(message)
        counters.bytes_received += size
        codec = self._options.codec
        if type(codec) is RawCodec:  # it decodes nothing
            received = Received(message)
        else:
            try:  # decoding is plain code: the reader never awaits on it
                received = Received(codec.decode(message))
            except Exception as exc:  # noqa: BLE001 - bad input never stops the reader
                received = self._undecodable(exc, message)
        inbound = self._inbound
        dropped = inbound.put(received, size)
        if dropped:
            for message_dropped in dropped:
                self._dead_letter(message_dropped, actors.DeadLetterReason.DROPPED)
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

    # -- the timers (run by the io task) ------------------------------------------------

    def _timers_due(self) -> float:
        """When the io task must next run the timers (math.inf: never)."""
        if self._closing:
            # Only the wait for the loop to write what precedes the Close is bounded.
            return math.inf if self._close_ready else self._violation_deadline
        pong = self._pong
        if pong is not None:
            due = pong.due
        elif self._ping_told:
            due = math.inf
        else:
            due = self._next_ping
        if self._idle_timeout is not None:
            due = min(due, self._last_inbound + self._idle_timeout)
        return min(due, self._violation_deadline)

    def _only_ping_due(self, now: float) -> bool:
        """Whether the keepalive's next Ping is all that is due (nothing else to check)."""
        idle_timeout = self._idle_timeout
        return (
            not self._closing
            and self._pong is None
            and not self._ping_told
            and not self._inbound.paused
            and self._next_ping <= now < self._violation_deadline
            and (idle_timeout is None or now < self._last_inbound + idle_timeout)
        )

    def _tell_ping(self, now: float) -> None:
        """Tell the loop to write a keepalive Ping (it writes it, see :meth:`keepalive_ping`)."""
        interval = self._options.ping_interval
        assert interval is not None
        assert self._ref is not None
        with contextlib.suppress(trio.WouldBlock, actors.ActorStoppedError):
            self._ref.tell_nowait(KeepalivePing())
            self._ping_told = True
        self._next_ping = now + interval

    async def _timers_step(self, backend: Backend) -> bool:
        """Run the timers that are due; False if the connection was aborted."""
        if self._close_ready:
            return True  # noqa: ASYNC910 - a step of the io task's loop, which waits
        options = self._options
        now = trio.current_time()
        if now >= self._violation_deadline:
            # The application did not take what came before the error in time.
            violation = self._violation
            assert violation is not None
            self._violation_deadline = math.inf
            self._request_close(None, violation.reason, code=violation.code)
        if self._closing:
            return True  # noqa: ASYNC910 - a step of the io task's loop, which waits
        pong = self._pong
        inbound = self._inbound
        if pong is not None and (inbound.paused or inbound.pauses != pong.pauses):
            # The reader waits, or has waited, for the application since the Ping
            # (Overflow.PAUSE): the Pong may be behind the data it left unread. Not late.
            pong.pauses = inbound.pauses
            pong.due = now + options.pong_timeout
        if inbound.paused:
            # The peer's data waits unread: it is not idle, and no Ping goes out.
            if options.ping_interval is not None:
                self._next_ping = now + options.ping_interval
            self._last_inbound = now
            return True  # noqa: ASYNC910 - a step of the io task's loop, which waits
        if pong is not None:
            if pong.answered:
                self._pong = pong = None
            elif now >= pong.due:
                await self._abort(backend, f"keepalive: no pong within {options.pong_timeout}s")
                return False
        if pong is None and not self._ping_told and now >= self._next_ping:
            self._tell_ping(now)
        idle_timeout = self._idle_timeout
        if idle_timeout is not None and now >= self._last_inbound + idle_timeout:
            self._idle_timeout = None
            self._request_close(Situation.IDLE_TIMEOUT, "idle timeout")
        return True  # noqa: ASYNC910 - a step of the io task's loop, which waits


def _write_bound(timeout: float) -> trio.CancelScope:
    """A shielded scope that ends ``timeout`` from now."""
    return trio.CancelScope(shield=True, deadline=trio.current_time() + timeout)


@final
class _Pong:
    """Set by the library's reader when the Pong of a keepalive Ping arrives."""

    __slots__ = ("answered", "counters", "due", "owner", "pauses", "sent_at")

    def __init__(
        self,
        owner: ConnectionActor,
        counters: Counters,
        sent_at: float,
        timeout: float,
        pauses: int,
    ) -> None:
        self.owner = owner
        self.counters = counters
        self.sent_at = sent_at
        #: When the Pong is late (moved on while the reader waits for room).
        self.due = sent_at + timeout
        #: The inbound queue's pause count when the Ping went out.
        self.pauses = pauses
        self.answered = False

    def set(self) -> None:
        if not self.answered:
            self.answered = True
            self.counters.latency = trio.current_time() - self.sent_at
            self.owner._pong_answered(self)


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
    await spawn_actor(parent, actor, options, name)
    return actor.handle()


async def spawn_actor(
    parent: Spawner, actor: ConnectionActor, options: ConnectionOptions, name: str | None
) -> actors.ActorRef[ActorMessage]:
    """Spawn ``actor`` (made with ``options``) with its mailbox sized as the connection's
    outbound queue: ``outbound_queue_size`` messages and ``outbound_max_bytes`` of frame
    payload."""
    return await parent.spawn(
        actor,
        name=name,
        mailbox_size=options.outbound_queue_size,
        max_bytes=options.outbound_max_bytes,
        weigher=frame_weight,
    )
