"""The connection actor: the one owner of a WebSocket stream.

Its tasks, all inside one shielded scope that only the actor itself cancels:

- the *reader* is the only task that reads; it never waits on the application,
  it moves each message into the bounded inbound queue (overflow policy);
- the *writer* is the only task that writes messages; each frame write is
  shielded and bounded by ``write_timeout``, and a write that cannot finish
  aborts the connection (a frame is never left half-written);
- *keepalive* pings, *idle* watch, and the *forwarder* to a subscriber actor.

Stopping the actor from outside (``ref.stop()``, system shutdown) is turned into a
close with 1001, bounded by ``write_timeout + close_timeout``. The actor stops with
:class:`ConnectionClosed`, which its subscriber also receives as the last message.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Never, final

import attrs
import trio

import actors

from ._backend import Backend, BackendClosed
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
    GetStatistics,
    Received,
    SendBytes,
    SendMessage,
    SendText,
    SubscriberMessage,
    Undecodable,
)

if TYPE_CHECKING:
    from ._handle import WebSocketConnection

logger = logging.getLogger("transport")

#: Runs the handshake with the library's reader in the given nursery (the actor's own);
#: closes its stream itself if it fails.
Opener = Callable[[trio.Nursery], Awaitable[tuple[Backend, ConnectionInfo]]]
#: A server's per-connection application code.
Application = Callable[["WebSocketConnection"], Awaitable[object]]

Frame = SendText | SendBytes
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

    _opener: Opener
    _options: ConnectionOptions
    _subscriber: actors.ActorRef[SubscriberMessage] | None = None
    _application: Application | None = None
    _inbound: InboundQueue[Received] = attrs.field(init=False)
    _counters: Counters = attrs.field(init=False)
    _info: ConnectionInfo | None = attrs.field(init=False, default=None)
    _start_error: BaseException | None = attrs.field(init=False, default=None)
    _ready: trio.Event = attrs.field(init=False, factory=trio.Event)
    _io_scope: trio.CancelScope = attrs.field(init=False)
    _outbound_send: trio.MemorySendChannel[Frame] = attrs.field(init=False)
    _outbound_receive: trio.MemoryReceiveChannel[Frame] = attrs.field(init=False)
    _outcome: ConnectionClosed | None = attrs.field(init=False, default=None)
    _closing: bool = attrs.field(init=False, default=False)
    _application_done: trio.Event = attrs.field(init=False, factory=trio.Event)
    _last_inbound: float = attrs.field(init=False, default=0.0)
    _dead_letters: actors.DeadLetters = attrs.field(init=False)
    _path: str = attrs.field(init=False, default="")
    _ref: actors.ActorRef[ConnectionMessage | ApplicationEnded] | None = attrs.field(
        init=False, default=None
    )

    def __attrs_post_init__(self) -> None:
        options = self._options
        self._inbound = InboundQueue(options.inbound_queue_size, options.overflow)
        self._counters = Counters(outbound_capacity=options.outbound_queue_size)
        self._outbound_send, self._outbound_receive = trio.open_memory_channel[Frame](
            options.outbound_queue_size
        )

    def handle(self) -> WebSocketConnection:
        """The public handle of this connection (after a successful spawn)."""
        from ._handle import WebSocketConnection

        assert self._info is not None
        assert self._ref is not None
        return WebSocketConnection(
            self._ref, self._info, self._counters, self._inbound, self._options.codec
        )

    # -- lifecycle ------------------------------------------------------------------

    async def on_start(self) -> None:
        """Run the handshake in the actor's own nursery; ``spawn`` fails if it fails."""
        self._dead_letters = self.ctx.system.dead_letters
        self._path = self.ctx.path
        self._ref = self.ctx.ref
        self._io_scope = trio.CancelScope(shield=True)
        self.ctx.start_soon(self._run_io, name="websocket-io")
        self.ctx.start_soon(self._watch_stop, name="websocket-stop-watch")
        await self._ready.wait()
        if self._start_error is not None:
            raise self._start_error
        if self._application is not None:
            self.ctx.start_soon(self._run_application, self.handle(), name="websocket-app")
        else:
            self._application_done.set()

    async def _watch_stop(self) -> None:
        # Outside the shield: when the actor is stopped or cancelled from outside, turn
        # that into a bounded close with 1001 instead of cutting the stream mid-frame.
        try:
            await trio.sleep_forever()
        finally:
            self._request_close(Situation.SHUTDOWN, "going away")
            grace = self._options.write_timeout + self._options.close_timeout
            self._io_scope.deadline = min(self._io_scope.deadline, trio.current_time() + grace)

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
        return self._counters.snapshot(self._inbound)

    async def _enqueue(self, frame: Frame) -> None:  # noqa: ASYNC910 - send checkpoints unless the channel is closed
        try:
            await self._outbound_send.send(frame)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._dead_letter(frame, actors.DeadLetterReason.STOPPED)
        else:
            self._counters.outbound_depth += 1

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
        self._outbound_send.close()

    def _note_outcome(self, outcome: ConnectionClosed) -> None:
        if self._outcome is None:
            self._outcome = outcome

    async def _abort(self, backend: Backend, reason: str) -> None:
        self._note_outcome(ConnectionClosed(CloseCode.ABNORMAL_CLOSURE, reason))
        self._closing = True
        self._outbound_send.close()
        await backend.abort()

    def _dead_letter_outbound(self) -> None:
        while True:
            try:
                frame = self._outbound_receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            self._counters.outbound_depth -= 1
            self._dead_letter(frame, actors.DeadLetterReason.STOPPED)

    def _undelivered(self, message: Received, error: BaseException | None) -> None:
        self._dead_letter(message, actors.DeadLetterReason.STOPPED, error)

    def _unreachable(self, message: SubscriberMessage, error: BaseException | None) -> None:
        self._dead_letter(message, actors.DeadLetterReason.UNDELIVERABLE, error)

    def _dead_letter(
        self, message: object, reason: actors.DeadLetterReason, error: BaseException | None = None
    ) -> None:
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
        outcome = self._final_outcome(error)
        self._counters.closed = outcome
        self._inbound.close()
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
        try:
            async with trio.open_nursery() as nursery:
                try:
                    backend, self._info = await self._opener(nursery)
                except Exception as exc:  # noqa: BLE001 - re-raised by spawn, from on_start
                    self._start_error = exc
                    nursery.cancel_scope.cancel()
                else:
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
        self._ready.set()
        if options.ping_interval is not None:
            nursery.start_soon(self._keepalive, backend, options.ping_interval)
        if options.idle_timeout is not None:
            nursery.start_soon(self._idle_watch, options.idle_timeout)
        forwarded = trio.Event()
        if self._subscriber is not None:
            nursery.start_soon(
                forward, self._inbound, self._subscriber, self._undelivered, forwarded
            )
        else:
            forwarded.set()
        async with trio.open_nursery() as core:
            core.start_soon(self._read_loop, backend)
            core.start_soon(self._write_loop, backend)
        self._inbound.close()
        with trio.move_on_after(options.close_timeout):
            await forwarded.wait()
            await self._application_done.wait()
        nursery.cancel_scope.cancel()

    async def _read_loop(self, backend: Backend) -> None:  # noqa: ASYNC910 - a task body
        inbound = self._inbound
        counters = self._counters
        situation = inbound.policy.close_situation
        decode = self._options.codec.decode
        try:
            while True:
                message = await backend.receive()
                counters.messages_received += 1
                self._last_inbound = trio.current_time()
                try:  # decoding is plain code: the reader never awaits on it
                    received = Received(decode(message))
                except Exception as exc:  # noqa: BLE001 - bad input never stops the reader
                    received = self._undecodable(exc, message)
                dropped = inbound.put(received)
                if dropped is not None:
                    self._dead_letter(dropped, actors.DeadLetterReason.DROPPED)
                    if situation is not None:
                        self._request_close(situation, "inbound queue overflow")
        except BackendClosed as closed:
            by_peer = backend.closed_by_peer()
            self._note_outcome(ConnectionClosed(closed.code, closed.reason, by_peer=by_peer))
        finally:
            self._closing = True
            self._outbound_send.close()

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
        options = self._options
        counters = self._counters
        broken = False
        async for frame in self._outbound_receive:
            counters.outbound_depth -= 1
            if broken:
                self._dead_letter(frame, actors.DeadLetterReason.STOPPED)
                continue
            data = frame.text if isinstance(frame, SendText) else frame.data
            with trio.CancelScope(shield=True) as scope:  # noqa: ASYNC912 - the write checkpoints unless it fails at once
                scope.deadline = trio.current_time() + options.write_timeout
                try:
                    await backend.send(data)
                except BackendClosed:
                    broken = True
            if scope.cancelled_caught:
                broken = True
                await self._abort(
                    backend, f"a write did not finish within {options.write_timeout}s"
                )
            if broken:
                self._dead_letter(frame, actors.DeadLetterReason.STOPPED)
            else:
                counters.messages_sent += 1
        outcome = self._outcome
        if broken or outcome is None or outcome.by_peer:
            return
        with trio.move_on_after(options.write_timeout + options.close_timeout) as scope:
            await backend.close(outcome.code, outcome.reason)
        if scope.cancelled_caught:
            await self._abort(backend, "the close handshake timed out")

    async def _keepalive(self, backend: Backend, interval: float) -> None:
        options = self._options
        counters = self._counters
        while True:
            await trio.sleep(interval)
            counters.pings_sent += 1
            sent_at = trio.current_time()
            with trio.CancelScope(shield=True) as scope:  # noqa: ASYNC912 - the write checkpoints unless it fails at once
                scope.deadline = sent_at + options.write_timeout
                try:
                    pong = await backend.send_ping(counters.pings_sent.to_bytes(8, "big"))
                except BackendClosed:
                    return
            if scope.cancelled_caught:
                await self._abort(backend, "a keepalive ping could not be written")
                return
            with trio.move_on_after(options.pong_timeout):
                await pong.wait()
                counters.latency = trio.current_time() - sent_at
                continue
            await self._abort(backend, f"keepalive: no pong within {options.pong_timeout}s")
            return

    async def _idle_watch(self, idle_timeout: float) -> None:
        while True:
            deadline = self._last_inbound + idle_timeout
            if trio.current_time() >= deadline:
                self._request_close(Situation.IDLE_TIMEOUT, "idle timeout")
                await trio.lowlevel.checkpoint()
                return
            await trio.sleep_until(deadline)


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
