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

What it cannot close from above, and how the actor contains it instead:

- A Ping that arrives after a local close makes the library's reader raise
  ``LocalProtocolError`` (#184, fix unmerged). The reader runs in the connection actor's
  own nursery, so the error ends that connection only.
- After a protocol error detected on receive (``wsproto`` ``ParseFailed``) the library
  closes TCP without sending a Close frame with 1002 (its reader treats the error as a
  close received in state OPEN). The peer sees an abnormal closure (1006).
- ``max_message_size`` counts characters for text messages (``len()``), not bytes.

The library's private hooks used here (``_reader_task``, ``_open_handshake``,
``_get_request``, ``_pings``, ``_send``) are the ones its own ``wrap_*_stream`` and
``ping`` functions use; they are pinned by the tests of this package.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator, Sequence
from typing import final

import attrs
import trio
import trio_websocket as tw
import wsproto
import wsproto.connection
import wsproto.events
import wsproto.utilities

from ._close_codes import CloseCode
from ._exceptions import HandshakeError, HandshakeRejected, HandshakeTimeoutError, TLSError

#: Seconds the opening handshake (TLS and HTTP upgrade) may take by default.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: Default limit on one inbound message, in bytes (characters for text).
DEFAULT_MAX_MESSAGE_SIZE = 2**20

# The library's own message queue. The connection actor's reader drains it without ever
# blocking, so a small bound suffices; the real inbound queue (with its overflow
# policy) belongs to the actor.
_LIBRARY_QUEUE_SIZE = 4

Headers = tuple[tuple[str, str], ...]


@final
@attrs.frozen
class BackendLimits:
    """Per-connection limits handed to the library."""

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: ``None`` lets trio choose (large); the library's 4 KiB default halves throughput.
    receive_buffer_size: int | None = None


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

    __slots__ = ("_stream", "_ws", "headers", "subprotocol")

    def __init__(self, ws: tw.WebSocketConnection, stream: trio.abc.Stream, headers: Headers):
        self._ws = ws
        self._stream = stream
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

    async def abort(self) -> None:
        """Close the stream at once, without a close handshake."""
        await trio.aclose_forcefully(self._stream)

    def closed_by_peer(self) -> bool:
        """After a close: false if this side's library started it (a too-big message)."""
        return self._ws._wsproto.state is not wsproto.connection.ConnectionState.LOCAL_CLOSING

    def closed_with(self) -> tuple[int, str] | None:
        """The close code and reason the library recorded, or ``None`` while open."""
        closed = self._ws.closed
        return None if closed is None else (closed.code, closed.reason or "")


@final
class ServerHandshake:
    """A client's opening request, read by the server; accept or reject it."""

    __slots__ = ("_request", "_stream", "headers", "path", "subprotocols")

    def __init__(self, request: tw.WebSocketRequest, stream: trio.abc.Stream) -> None:
        self._request = request
        self._stream = stream
        self.path = request.path
        self.headers: Headers = _decode_headers(request.headers)
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
        return Backend(ws, self._stream, self.headers)

    async def reject(
        self, status: int, body: bytes, extra_headers: Sequence[tuple[str, str]], within: float
    ) -> None:
        """Answer with an HTTP ``status`` (and ``body``), then close the stream."""
        with trio.move_on_after(within), contextlib.suppress(tw.ConnectionClosed):
            await self._request.reject(
                status, extra_headers=_encode_headers(extra_headers), body=body or None
            )
        await trio.aclose_forcefully(self._stream)


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
    with _handshake_deadline(within, f"opening a websocket to {host}{resource}"):
        await _tls_handshake(stream)
        ws = tw.WebSocketConnection(
            stream,
            wsproto.WSConnection(wsproto.ConnectionType.CLIENT),
            host=host,
            path=resource,
            client_subprotocols=list(subprotocols),
            client_extra_headers=_encode_headers(extra_headers),
            message_queue_size=_LIBRARY_QUEUE_SIZE,
            max_message_size=limits.max_message_size,
            receive_buffer_size=limits.receive_buffer_size,
        )
        rejected: list[tw.ConnectionRejected] = []
        with trio.CancelScope() as waiting:
            nursery.start_soon(_run_reader, ws, waiting, rejected)
            await ws._open_handshake.wait()
    if rejected:
        exc = rejected[0]
        raise HandshakeRejected(
            exc.status_code, _decode_headers(exc.headers or ()), exc.body or b""
        )
    if waiting.cancelled_caught or ws.closed is not None:
        raise HandshakeError(f"the connection to {host} closed during the websocket handshake")
    return Backend(ws, stream, _decode_headers(ws.handshake_headers))


async def server_handshake(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    *,
    limits: BackendLimits = DEFAULT_LIMITS,
    within: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> ServerHandshake:
    """Read a client's opening request from ``stream`` (TLS handshake first, if any).

    The library's reader task is started in ``nursery``. Raises
    :exc:`HandshakeTimeoutError` if no request arrives in time,
    :exc:`TLSError` or :exc:`HandshakeError`.
    """
    with _handshake_deadline(within, "waiting for a websocket request"):
        await _tls_handshake(stream)
        ws = tw.WebSocketConnection(
            stream,
            wsproto.WSConnection(wsproto.ConnectionType.SERVER),
            message_queue_size=_LIBRARY_QUEUE_SIZE,
            max_message_size=limits.max_message_size,
            receive_buffer_size=limits.receive_buffer_size,
        )
        with trio.CancelScope() as waiting:
            nursery.start_soon(_run_reader, ws, waiting, [])
            request = await ws._get_request()
    if waiting.cancelled_caught:
        raise HandshakeError("the client went away before completing its websocket request")
    return ServerHandshake(request, stream)


async def reject_stream(
    stream: trio.abc.Stream, status: int, body: bytes, within: float = DEFAULT_HANDSHAKE_TIMEOUT
) -> None:
    """Read the request on ``stream``, answer with ``status`` and close it (bounded by ``within``)."""
    try:
        with trio.move_on_after(within):  # noqa: ASYNC912 - the handshake checkpoints
            async with trio.open_nursery() as nursery:
                with contextlib.suppress(HandshakeError):
                    handshake = await server_handshake(nursery, stream, within=within)
                    await handshake.reject(status, body, (), within)
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)


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


async def _run_reader(  # noqa: ASYNC910 - a task body
    ws: tw.WebSocketConnection, waiting: trio.CancelScope, rejected: list[tw.ConnectionRejected]
) -> None:
    # The library's reader, plus: a rejection raised inside it is reported instead of
    # crashing the nursery, and a handshake waiter is woken as soon as it ends.
    try:
        await ws._reader_task()
    except tw.ConnectionRejected as exc:
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
