"""The one adapter over trio-websocket: everything specific to that library lives here.

The connection actor sees only :class:`Backend` (send, receive, ping, close, abort) and
:class:`ServerHandshake`; nothing else in the package imports ``trio_websocket``, so the
library can be swapped (``websockets.trio`` is the likely alternative) by rewriting this
module alone.

What this adapter closes of trio-websocket 0.12.2's known gaps:

- Handshake deadlines: client and server handshakes (TLS, HTTP upgrade) run under one
  deadline, 10 s by default instead of the library's 60 s, and end early, not at the
  deadline, when the peer goes away during the handshake.
- A client whose TLS certificate check fails used to wait for the connect timeout,
  because the library's reader swallows the TLS error (trio-websocket #199). Here the TLS
  handshake runs first, explicitly, and its failure is a :exc:`TLSError` at once.
- A rejection (HTTP status) is raised by the library from inside its reader task; it is
  caught here and becomes :exc:`HandshakeRejected`.
- A Ping frame write is shielded and bounded on its own; waiting for the Pong is not.
- The library's receive buffer defaults to 4 KiB (half the throughput on large
  messages); trio chooses the size here.
- A protocol error detected on receive (``wsproto`` ``ParseFailed``: an unmasked client
  frame, reserved bits or opcodes, a fragmented control frame, invalid UTF-8) made the
  library drop TCP without a Close frame: wsproto reports it as a close event while its
  state stays OPEN, and the library only answers closes in state REMOTE_CLOSING. The
  wsproto connection handed to the library here (:class:`_GuardedConnection`) reports
  that event as a remote close, so the library answers with a Close frame carrying the
  event's code (1002, or 1007 for invalid UTF-8) before closing the stream.
- The limits of :class:`~transport.InboundLimits` (the same connection object enforces
  them on wsproto's events, and closes the same way): a frame header announcing more than
  ``max_message_size`` bytes is refused with 1009 when the header arrives, not after the
  peer streamed the bytes; the frames of one message are counted (a flood of empty
  continuation frames grew the library's list of parts without bound); an optional
  message rate (1008). The message size is counted in bytes, text included.
- The opening request is read and decided on before the library (or a connection actor)
  is involved (:func:`read_request`); a refused client never costs a task or an actor.
  A ``Sec-WebSocket-Key`` that is not 16 bytes of base64 is refused with 400.

What it cannot close from above, and how the actor contains it instead:

- A Ping that arrives after a local close makes the library's reader raise
  ``LocalProtocolError`` (#184, fix unmerged). The reader runs in the connection actor's
  own nursery, so the error ends that connection only.
- wsproto keeps the request bytes a client pipelines behind its opening request and
  drops them at the 101 (clients must wait for it, RFC 6455 section 4.1).

The library's private hooks used here (``_reader_task``, ``_open_handshake``,
``_get_request``, ``_pings``, ``_send``) are the ones its own ``wrap_*_stream`` and
``ping`` functions use; wsproto's frame decoder is read (never written) to see a frame
header before its payload. All are pinned by the tests of this package.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ssl
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, final

import attrs
import trio
import trio_websocket as tw
import wsproto
import wsproto.connection
import wsproto.events
import wsproto.frame_protocol
import wsproto.utilities

from ._close_codes import CloseCode
from ._exceptions import HandshakeError, HandshakeRejected, HandshakeTimeoutError, TLSError
from ._limits import DEFAULT_INBOUND_LIMITS, InboundGuard, InboundLimits, Violation
from ._redact import redact_target

#: Seconds the opening handshake (TLS and HTTP upgrade) may take by default.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: Default limit on one inbound message, in bytes (characters for text).
DEFAULT_MAX_MESSAGE_SIZE = 2**20

# The library's own message queue. The connection actor's reader drains it without ever
# blocking, so a small bound suffices; the real inbound queue (with its overflow
# policy) belongs to the actor.
_LIBRARY_QUEUE_SIZE = 4
# Reads of the opening request. h11 refuses a request head over 16 KiB (400), so the
# bytes held for one request stay below that plus one read.
_REQUEST_READ_SIZE = 4096
# A server closing a plain TCP connection first sends FIN and reads what the client
# still sends, for this long or this many bytes at most (see _LingeringStream).
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1 << 20

Headers = tuple[tuple[str, str], ...]


@final
@attrs.frozen
class BackendLimits:
    """Per-connection limits handed to the library."""

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: ``None`` lets trio choose (large); the library's 4 KiB default halves throughput.
    receive_buffer_size: int | None = None
    inbound: InboundLimits = DEFAULT_INBOUND_LIMITS


DEFAULT_LIMITS = BackendLimits()


class BackendClosed(Exception):
    """The library reports the connection closed (internal; never leaves the package)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"websocket closed with {code} {reason!r}")
        self.code = code
        self.reason = reason


@final
class Backend:
    """An open WebSocket connection, owned by exactly one connection actor."""

    __slots__ = ("_reader", "_stream", "_ws", "headers", "subprotocol")

    def __init__(
        self,
        ws: tw.WebSocketConnection,
        stream: trio.abc.Stream,
        headers: Headers,
        reader: trio.CancelScope,
    ):
        self._ws = ws
        self._stream = stream
        self._reader = reader
        self.subprotocol: str | None = ws.subprotocol
        self.headers = headers

    async def send(self, message: str | bytes) -> None:
        """Write one message frame; raises :exc:`BackendClosed` if the connection is closed."""
        with _closed_as_backend_closed(self._ws):
            await self._ws.send_message(message)

    async def receive(self) -> str | bytes:
        """The next inbound message; raises :exc:`BackendClosed` once the connection closed."""
        with _closed_as_backend_closed(self._ws):
            return await self._ws.get_message()

    async def send_ping(self, payload: bytes) -> trio.Event:
        """Write a Ping frame; the returned event is set when its Pong arrives.

        Only the frame write is awaited here, so the caller can shield and
        bound it, and wait for the Pong separately (cancellable).
        """
        ws = self._ws
        if ws.closed is not None:
            raise _backend_closed(ws.closed)
        pong = trio.Event()
        ws._pings[payload] = pong
        with _closed_as_backend_closed(ws):
            await ws._send(wsproto.events.Ping(payload=payload))
        return pong

    async def close(self, code: int, reason: str) -> None:  # noqa: ASYNC910 - aclose checkpoints
        """Send a Close frame, wait for the peer's, then close the stream (caller bounds it)."""
        with contextlib.suppress(tw.ConnectionClosed, wsproto.utilities.LocalProtocolError):
            await self._ws.aclose(code, reason or None)

    def shield_reader(self) -> None:
        """Shield the library's reader from cancellation from outside.

        It then keeps reading (and answering pings and the peer's Close) while its
        owner closes the connection, until :meth:`stop_reading` or :meth:`abort`.
        """
        self._reader.shield = True

    def stop_reading(self) -> None:
        """Cancel the library's reader, shielded or not."""
        self._reader.cancel()

    async def abort(self) -> None:
        """Close the stream at once, without a close handshake, and stop the reader."""
        self._reader.cancel()
        await trio.aclose_forcefully(self._stream)

    def closed_by_peer(self) -> bool:
        """After a close: false if this side started it (a limit or protocol error)."""
        connection = self._ws._wsproto
        if isinstance(connection, _GuardedConnection) and connection.violation is not None:
            return False
        return connection.state is not wsproto.connection.ConnectionState.LOCAL_CLOSING

    def closed_with(self) -> tuple[int, str] | None:
        """The close code and reason the library recorded, or ``None`` while open."""
        closed = self._ws.closed
        # int(): the library may hand back its own enum; nothing of it leaves the adapter.
        return None if closed is None else (int(closed.code), closed.reason or "")


@final
class ServerRequest:
    """A client's opening request, read before any connection actor exists.

    Holds the stream and the bytes read so far until :meth:`reject` answers
    it or :meth:`open` hands both to the library in the owning actor's nursery.
    """

    __slots__ = ("_probe", "_received", "_stream", "headers", "path", "subprotocols")

    def __init__(
        self,
        stream: trio.abc.Stream,
        received: bytes,
        request: wsproto.events.Request,
        probe: wsproto.WSConnection,
    ) -> None:
        self._stream = stream
        self._received = received
        self._probe = probe
        self.path = request.target
        self.headers: Headers = _decode_headers(list(request.extra_headers))
        self.subprotocols: tuple[str, ...] = tuple(request.subprotocols)

    def __repr__(self) -> str:
        return f"<ServerRequest {redact_target(self.path)!r}>"

    async def reject(
        self, status: int, body: bytes, extra_headers: Sequence[tuple[str, str]], within: float
    ) -> None:
        """Answer with an HTTP ``status`` (and ``body``), then close the stream."""
        response = wsproto.events.RejectConnection(
            status_code=status, headers=_encode_headers(extra_headers), has_body=bool(body)
        )
        data = self._probe.send(response)
        if body:
            data += self._probe.send(wsproto.events.RejectData(data=body))
        # On cancellation the caller closes the stream (as on every handshake failure).
        with trio.move_on_after(within):  # noqa: ASYNC912 - send_all checkpoints unless it fails at once
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._stream.send_all(data)
        await _close_lingering(self._stream)

    async def open(
        self, nursery: trio.Nursery, *, limits: BackendLimits = DEFAULT_LIMITS
    ) -> ServerHandshake:
        """Hand the stream to the library, its reader task started in ``nursery``.

        From here on only the owner of ``nursery`` may touch the stream. The
        request is replayed to the library from the bytes already read.
        """
        connection = _GuardedConnection(wsproto.ConnectionType.SERVER, limits)
        connection.receive_data(self._received)
        stream = self._stream
        ws = tw.WebSocketConnection(
            _LingeringStream(stream) if isinstance(stream, trio.SocketStream) else stream,
            connection,
            message_queue_size=_LIBRARY_QUEUE_SIZE,
            max_message_size=limits.max_message_size,
            receive_buffer_size=limits.receive_buffer_size,
        )
        reader = trio.CancelScope()
        with trio.CancelScope() as waiting:
            nursery.start_soon(_run_reader, ws, reader, waiting, None)
            request = await ws._get_request()  # at once: the request is already buffered
        if waiting.cancelled_caught:  # pragma: no cover - the replayed request is complete
            raise HandshakeError("the library did not see the websocket request")
        return ServerHandshake(request, self._stream, self.headers, reader)


@final
class ServerHandshake:
    """A request handed to the library; accept it (or reject it late)."""

    __slots__ = ("_reader", "_request", "_stream", "headers", "path", "subprotocols")

    def __init__(
        self,
        request: tw.WebSocketRequest,
        stream: trio.abc.Stream,
        headers: Headers,
        reader: trio.CancelScope,
    ) -> None:
        self._request = request
        self._stream = stream
        self._reader = reader
        self.path = request.path
        self.headers = headers
        self.subprotocols: tuple[str, ...] = request.proposed_subprotocols

    async def accept(
        self, subprotocol: str | None, extra_headers: Sequence[tuple[str, str]], within: float
    ) -> Backend:
        """Send the 101 response; the connection is open when this returns."""
        with _handshake_deadline(within, "accepting the websocket handshake"):
            with _closed_as_handshake_error():
                ws = await self._request.accept(
                    subprotocol=subprotocol, extra_headers=_encode_headers(extra_headers)
                )
        return Backend(ws, self._stream, self.headers, self._reader)

    async def reject(
        self, status: int, body: bytes, extra_headers: Sequence[tuple[str, str]], within: float
    ) -> None:
        """Answer with an HTTP ``status`` (and ``body``), then close the stream."""
        with trio.move_on_after(within), contextlib.suppress(tw.ConnectionClosed):
            await self._request.reject(
                status, extra_headers=_encode_headers(extra_headers), body=body or None
            )
        await trio.aclose_forcefully(self._stream)


async def read_request(
    stream: trio.abc.Stream, *, within: float = DEFAULT_HANDSHAKE_TIMEOUT
) -> ServerRequest:
    """Run the TLS handshake (if any) and read a client's opening request from ``stream``.

    A request that is not a valid websocket upgrade is answered at once
    (400, or 426 for an unsupported version) and raises :exc:`HandshakeError`;
    no request in time raises :exc:`HandshakeTimeoutError`. The caller closes
    the stream on failure.
    """
    with _handshake_deadline(within, "waiting for a websocket request"):
        await _tls_handshake(stream)
        probe = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        received = bytearray()
        while True:
            try:
                data = await stream.receive_some(_REQUEST_READ_SIZE)
            except trio.BrokenResourceError as exc:
                raise HandshakeError("the connection broke during the websocket request") from exc
            if not data:
                raise HandshakeError("the client went away before completing its websocket request")
            received += data
            problem: str | wsproto.utilities.RemoteProtocolError | None
            try:
                probe.receive_data(bytes(data))
                request = next(
                    (e for e in probe.events() if isinstance(e, wsproto.events.Request)), None
                )
                problem = None if request is None else _request_problem(request)
            except wsproto.utilities.RemoteProtocolError as exc:
                request, problem = None, exc
            if problem is not None:
                await _answer_bad_request(stream, probe, problem)
                raise HandshakeError(f"invalid websocket request: {problem}")
            if request is not None:
                return ServerRequest(stream, bytes(received), request, probe)


async def server_handshake(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    *,
    limits: BackendLimits = DEFAULT_LIMITS,
    within: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> ServerHandshake:
    """:func:`read_request`, then :meth:`ServerRequest.open` in ``nursery``."""
    request = await read_request(stream, within=within)
    return await request.open(nursery, limits=limits)


async def reject_stream(
    stream: trio.abc.Stream, status: int, body: bytes, within: float = DEFAULT_HANDSHAKE_TIMEOUT
) -> None:
    """Read the request on ``stream``, answer with ``status`` and close it (bounded by ``within``)."""
    try:
        with contextlib.suppress(HandshakeError):
            request = await read_request(stream, within=within)
            await request.reject(status, body, (), within)
    finally:
        await trio.aclose_forcefully(stream)


async def client_handshake(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    *,
    host: str,
    resource: str,
    subprotocols: Sequence[str] = (),
    extra_headers: Sequence[tuple[str, str]] = (),
    limits: BackendLimits = DEFAULT_LIMITS,
    within: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> Backend:
    """Run the client side of the opening handshake over ``stream``.

    The library's reader task is started in ``nursery`` (the owning actor's).
    Raises :exc:`TLSError`, :exc:`HandshakeRejected`,
    :exc:`HandshakeTimeoutError` or :exc:`HandshakeError`; the caller closes
    the stream on failure.
    """
    with _handshake_deadline(within, f"opening a websocket to {host}{redact_target(resource)}"):
        await _tls_handshake(stream)
        ws = tw.WebSocketConnection(
            stream,
            _GuardedConnection(wsproto.ConnectionType.CLIENT, limits),
            host=host,
            path=resource,
            client_subprotocols=list(subprotocols),
            client_extra_headers=_encode_headers(extra_headers),
            message_queue_size=_LIBRARY_QUEUE_SIZE,
            max_message_size=limits.max_message_size,
            receive_buffer_size=limits.receive_buffer_size,
        )
        rejected: list[tw.ConnectionRejected] = []
        reader = trio.CancelScope()
        with trio.CancelScope() as waiting:
            nursery.start_soon(_run_reader, ws, reader, waiting, rejected)
            await ws._open_handshake.wait()
    if rejected:
        exc = rejected[0]
        raise HandshakeRejected(
            exc.status_code, _decode_headers(exc.headers or ()), exc.body or b""
        )
    if not ws._open_handshake.is_set():
        raise HandshakeError(f"the connection to {host} closed during the websocket handshake")
    # Open, even if the peer's first messages and its Close came in the same read as the
    # 101 (the reader may have ended already): they wait in the library's queue, and the
    # connection actor takes them before it sees the end.
    return Backend(ws, stream, _decode_headers(ws.handshake_headers), reader)


def describe_remote(stream: trio.abc.Stream) -> str:
    """``"host:port"`` of the peer of a socket (or TLS-over-socket) stream, else ``""``."""
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if not isinstance(stream, trio.SocketStream):
        return ""
    try:
        host, port, *_ = stream.socket.getpeername()
    except OSError:
        return ""
    return f"{host}:{port}"


class _GuardedConnection(wsproto.WSConnection):
    """wsproto's connection, plus a Close frame on protocol errors and the inbound limits.

    When wsproto detects a protocol error it yields a close event but leaves
    its state OPEN, and the library then drops TCP without a Close frame. So
    do the limits of :class:`InboundGuard` when they are broken. In both cases
    this connection records the :class:`Violation`, reports its state as
    REMOTE_CLOSING and yields a close event: the library answers it with a
    Close frame carrying the code (built here, as wsproto would), marks the
    connection closed and closes the stream. Everything the peer sends after
    that is ignored.
    """

    def __init__(self, connection_type: wsproto.ConnectionType, limits: BackendLimits) -> None:
        super().__init__(connection_type)
        self._guard = InboundGuard(limits.inbound, limits.max_message_size, trio.current_time)
        self.violation: Violation | None = None
        self._close_sent = False
        # Once open, the finished HTTP/1.1 handshake (an h11 parser and its buffers) is
        # dropped; the events it still held are kept here until they are read.
        self._handshake_events: list[wsproto.events.Event] | None = None

    @property
    def state(self) -> wsproto.connection.ConnectionState:
        if self.violation is None:
            return super().state
        if self._close_sent:
            return wsproto.connection.ConnectionState.CLOSED
        return wsproto.connection.ConnectionState.REMOTE_CLOSING

    def send(self, event: wsproto.events.Event) -> bytes:
        if self.violation is None:
            data = super().send(event)
            self._drop_handshake()
            return data
        if isinstance(event, wsproto.events.CloseConnection) and not self._close_sent:
            self._close_sent = True
            frames = wsproto.frame_protocol.FrameProtocol(self.client, [])
            return bytes(frames.close(event.code, event.reason))
        raise wsproto.utilities.LocalProtocolError(
            f"Event {event} cannot be sent in state {self.state}."
        )

    def receive_data(self, data: bytes | None) -> None:
        if self.violation is None:
            super().receive_data(data)
            self._drop_handshake()

    def _drop_handshake(self) -> None:
        if self._handshake_events is None and self.connection is not None:
            self._handshake_events = list(self.handshake.events())
            del self.handshake

    def _library_events(self) -> Generator[wsproto.events.Event, None, None]:
        pending = self._handshake_events
        if pending is None:
            yield from super().events()
            return
        while pending:
            yield pending.pop(0)
        assert self.connection is not None
        yield from self.connection.events()

    def events(self) -> Generator[wsproto.events.Event, None, None]:
        if self.violation is not None:
            return
        for event in self._library_events():
            violation = self._check(event)
            if violation is not None:
                yield self._fail(violation)
                return
            yield event
        remaining = self._payload_announced()
        if remaining is not None:
            violation = self._guard.on_frame_header(remaining)
            if violation is not None:
                yield self._fail(violation)

    def _check(self, event: wsproto.events.Event) -> Violation | None:
        guard = self._guard
        if isinstance(event, wsproto.events.TextMessage):
            data = event.data
            size = len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
            return guard.on_data(size, event.frame_finished, event.message_finished)
        if isinstance(event, wsproto.events.BytesMessage):
            return guard.on_data(len(event.data), event.frame_finished, event.message_finished)
        if isinstance(event, wsproto.events.Ping | wsproto.events.Pong):
            return guard.on_control()
        if (
            isinstance(event, wsproto.events.CloseConnection)
            and super().state is wsproto.connection.ConnectionState.OPEN
        ):
            # wsproto's ParseFailed: a close event it did not receive from the peer.
            return Violation(event.code, event.reason or "")
        return None

    def _fail(self, violation: Violation) -> wsproto.events.CloseConnection:
        self.violation = violation
        return wsproto.events.CloseConnection(code=violation.code, reason=violation.reason)

    def _payload_announced(self) -> int | None:
        # Payload bytes a data frame's header announced and that have not arrived yet,
        # read from wsproto's frame decoder (None between frames and for control frames).
        decoder = getattr(getattr(self.connection, "_proto", None), "_frame_decoder", None)
        header = getattr(decoder, "header", None)
        if header is None or header.opcode.iscontrol():
            return None
        consumed = getattr(decoder, "payload_consumed", 0)
        return int(header.payload_len) - int(consumed)


@final
class _LingeringStream(trio.abc.Stream):
    """A server's TCP stream whose close lets the client read what was sent last.

    Closing a socket with unread input makes the kernel answer with a RST, and
    a RST can destroy the Close frame just written: a client that floods the
    server would never see why it was disconnected. So closing first sends
    FIN, then reads and discards until the client closes too (bounded by
    :data:`_LINGER_SECONDS` and :data:`_LINGER_BYTES`), then closes. Only the
    library holds this wrapper; the connection's :meth:`Backend.abort` closes
    the socket itself, at once.
    """

    __slots__ = ("_stream",)

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await _close_lingering(self._stream)


async def _close_lingering(stream: trio.abc.Stream) -> None:
    """Close ``stream``; a TCP stream first sends FIN and drains its input (bounded)."""
    try:
        if isinstance(stream, trio.SocketStream):
            with trio.move_on_after(_LINGER_SECONDS):  # noqa: ASYNC912 - send_eof checkpoints unless it fails at once
                with contextlib.suppress(
                    trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError
                ):
                    await stream.send_eof()
                    drained = 0
                    while drained < _LINGER_BYTES:
                        data = await stream.receive_some(65536)
                        if not data:
                            break
                        drained += len(data)
    finally:
        await trio.aclose_forcefully(stream)


def _request_problem(request: wsproto.events.Request) -> str | None:
    # What wsproto accepts but RFC 6455 section 4.2.1 does not: a key that is not
    # 16 bytes of base64.
    key = next((v for k, v in request.extra_headers if k.lower() == b"sec-websocket-key"), b"")
    try:
        if len(base64.b64decode(key, validate=True)) == 16:
            return None
    except binascii.Error:
        pass
    return "invalid Sec-WebSocket-Key"


async def _answer_bad_request(
    stream: trio.abc.Stream,
    probe: wsproto.WSConnection,
    problem: str | wsproto.utilities.RemoteProtocolError,
) -> None:
    hint = problem.event_hint if not isinstance(problem, str) else None
    if not isinstance(hint, wsproto.events.RejectConnection):
        hint = wsproto.events.RejectConnection(status_code=400)
    try:
        data = probe.send(hint)
    except wsproto.utilities.LocalProtocolError:  # h11 cannot answer this request
        data = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(data)
    await _close_lingering(stream)


async def _run_reader(  # noqa: ASYNC910 - a task body
    ws: tw.WebSocketConnection,
    reader: trio.CancelScope,
    waiting: trio.CancelScope,
    rejected: list[tw.ConnectionRejected] | None,
) -> None:
    # The library's reader, plus: its message channel goes through an _InboundSink
    # (see route_inbound), it runs in ``reader`` (which the owner of the open connection
    # shields, see Backend.shield_reader), a rejection raised inside it is reported
    # instead of crashing the nursery (a server gets none), and a handshake waiter is
    # woken as soon as it ends.
    ws._send_channel = _InboundSink(ws._send_channel)  # type: ignore[assignment]
    try:
        with reader:
            await ws._reader_task()
    except tw.ConnectionRejected as exc:
        if rejected is None:
            raise
        rejected.append(exc)
    finally:
        waiting.cancel()


async def _tls_handshake(stream: trio.abc.Stream) -> None:
    if not isinstance(stream, trio.SSLStream):
        await trio.lowlevel.checkpoint()
        return
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError):
            raise TLSError(f"tls handshake failed: {cause}") from cause
        raise HandshakeError("the connection broke during the tls handshake") from exc


@contextlib.contextmanager
def _handshake_deadline(timeout: float, what: str) -> Iterator[None]:
    try:
        with trio.fail_after(timeout):
            yield
    except trio.TooSlowError:
        raise HandshakeTimeoutError(
            f"timed out after {timeout}s {what}; raise handshake_timeout if the peer is slow"
        ) from None


@contextlib.contextmanager
def _closed_as_backend_closed(ws: tw.WebSocketConnection) -> Iterator[None]:
    try:
        yield
    except tw.ConnectionClosed as exc:
        raise _backend_closed(exc.reason) from None
    except wsproto.utilities.LocalProtocolError:
        # trio-websocket #175: a send while the peer's Close is being processed.
        raise _backend_closed(ws.closed) from None


@contextlib.contextmanager
def _closed_as_handshake_error() -> Iterator[None]:
    try:
        yield
    except tw.ConnectionClosed:
        raise HandshakeError("the client went away during the websocket handshake") from None


def _backend_closed(reason: tw.CloseReason | None) -> BackendClosed:
    if reason is None:
        return BackendClosed(CloseCode.ABNORMAL_CLOSURE, "")
    return BackendClosed(reason.code, reason.reason or "")


def _decode_headers(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers)


def _encode_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


# -- the connection actor's hooks into the library's reader --------------------------------

if TYPE_CHECKING:
    from collections.abc import Callable


class PongListener(Protocol):
    """Told when the Pong of a Ping arrives (or a Pong to a later Ping: the peer may skip)."""

    def set(self) -> None: ...


def route_inbound(
    backend: Backend, deliver: Callable[[str | bytes], None], ended: Callable[[], None]
) -> None:
    """Have the library's reader hand every inbound message to ``deliver``, at once.

    The library's reader task passes each complete message to
    ``await self._send_channel.send(message)``, and that channel is an
    :class:`_InboundSink` (see :func:`_run_reader`). Until this call the sink passes
    messages on to the library's own bounded channel (where :meth:`Backend.receive`
    takes them); from here on its ``send`` calls ``deliver`` and returns without
    blocking, so the reader never waits on the application (and no task of ours has
    to move messages out of the library's queue). ``deliver`` runs inside the reader:
    it must neither block nor raise. Messages the library had queued before this call
    are delivered first, in order; then its channel is dropped (an idle connection
    does not keep it), and :meth:`Backend.receive` no longer applies.

    ``ended`` is called, possibly more than once, when the library marks the
    connection closed (:meth:`Backend.closed_with` then holds the code), when it
    stops reading for a close of its own (a local close handshake, a message over its
    size limit), and when the reader task has ended by any path, including the few in
    which the library stops reading without marking the connection closed (a peer
    that resets while its Close is answered). Like ``deliver`` it must neither block
    nor raise.
    """
    ws = backend._ws
    sink: object = ws._send_channel
    assert isinstance(sink, _InboundSink)
    library = ws._recv_channel
    while True:
        try:
            message = library.receive_nowait()
        except trio.WouldBlock:
            break
        except (trio.EndOfChannel, trio.ClosedResourceError):
            # The reader has ended (or stopped reading for a close of its own).
            ended()
            break
        deliver(message)
    # No await since the drain: nothing was queued meanwhile.
    sink.route(deliver, ended)
    # The library closes its receive side on a close of its own: the sink hears that too.
    ws._recv_channel = sink  # type: ignore[assignment]


async def send_ping_to(backend: Backend, payload: bytes, pong: PongListener) -> None:
    """Write a Ping frame; ``pong.set()`` is called by the reader when its Pong arrives.

    Like :meth:`Backend.send_ping`, but nothing has to wait for the Pong: the caller
    checks its listener when the pong timeout is due.
    """
    ws = backend._ws
    if ws.closed is not None:
        raise _backend_closed(ws.closed)
    ws._pings[payload] = pong  # type: ignore[assignment]
    with _closed_as_backend_closed(ws):
        await ws._send(wsproto.events.Ping(payload=payload))


@final
class _InboundSink:
    """Stands in for the library's message channel (see :func:`route_inbound`).

    The library's reader holds it from its start (``async with``): leaving that
    block is the end of the reader, whatever ended it. Until routed it passes
    everything on to the library's own channel; once routed it is both ends of
    that channel as far as the library knows.
    """

    __slots__ = ("_deliver", "_ended", "_library")

    def __init__(self, library: trio.MemorySendChannel[str | bytes]) -> None:
        self._library: trio.MemorySendChannel[str | bytes] | None = library
        self._deliver: Callable[[str | bytes], None] | None = None
        self._ended: Callable[[], None] | None = None

    def route(self, deliver: Callable[[str | bytes], None], ended: Callable[[], None]) -> None:
        self._deliver = deliver
        self._ended = ended
        self._library = None

    async def __aenter__(self) -> _InboundSink:  # noqa: ASYNC910 - as the channel's own
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def send(self, message: str | bytes) -> None:  # noqa: ASYNC910 - must never block the reader
        if self._deliver is not None:
            self._deliver(message)
        else:
            assert self._library is not None
            await self._library.send(message)

    async def aclose(self) -> None:  # noqa: ASYNC910 - called by the reader while it closes
        if self._ended is not None:
            self._ended()
        if self._library is not None:
            await self._library.aclose()

    async def receive(self) -> str | bytes:
        """Once routed, messages never come this way (nor to :meth:`Backend.receive`)."""
        await trio.lowlevel.checkpoint()
        raise trio.ClosedResourceError("the messages are routed elsewhere")
