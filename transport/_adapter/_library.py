"""The library adapter: a connection opened and driven through trio-websocket.

The connection actor sees only :class:`Backend` (send, receive, ping, close, abort) and
:class:`ServerHandshake`; the library's objects never leave this module. The connection
handed to the library is the frame guard's (``_guard``); a server's request was read and
parsed before (``_request``) by the wsproto connection the library is then given.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, final

import trio
import trio_websocket as tw
import wsproto
import wsproto.connection
import wsproto.events
import wsproto.utilities

from .._close_codes import CloseCode
from .._exceptions import HandshakeError, HandshakeRejected
from .._redact import redact_target
from ._answer import PLAIN_TEXT
from ._guard import GuardedConnection
from ._hooks import (
    PongListener,
    abort_library,
    expect_pong,
    install_sink,
    installed_sink,
    library_messages,
    library_request,
    mark_accepted,
    route_receive_side,
    run_reader,
    send_ping_frame,
    stream_lock,
    wait_open,
)
from ._limits import DEFAULT_LIMITS, BackendLimits, Violation
from ._request import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    HandshakeDeadline,
    Headers,
    ServerRequest,
    answer_and_close,
    close_lingering,
    decode_headers,
    encode_headers,
    read_request,
    tls_handshake,
)

# The library's own message queue. The connection actor's reader drains it without ever
# blocking, so a small bound suffices; the real inbound queue (with its overflow
# policy) belongs to the actor.
_LIBRARY_QUEUE_SIZE = 4


class BackendClosed(Exception):
    """The library reports the connection closed (internal; never leaves the package)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"websocket closed with {code} {reason!r}")
        self.code = code
        self.reason = reason


@final
class Backend:
    """An open WebSocket connection, owned by exactly one connection actor."""

    __slots__ = (
        "_connection",
        "_reader",
        "_socket",
        "_stream",
        "_ws",
        "compression",
        "headers",
        "subprotocol",
    )

    def __init__(
        self,
        ws: tw.WebSocketConnection,
        stream: trio.abc.Stream,
        headers: Headers,
        reader: trio.CancelScope,
        connection: GuardedConnection,
    ):
        self._ws = ws
        self._stream = stream
        # A plain TCP stream's socket, for writes that need no wait (write_now).
        self._socket = stream.socket if type(stream) is trio.SocketStream else None
        self._reader = reader
        self._connection = connection  # the library's wsproto connection
        self.subprotocol: str | None = ws.subprotocol
        self.headers = headers
        #: The permessage-deflate parameters agreed on, or ``None``.
        self.compression = connection.compression

    async def send(self, message: str | bytes) -> None:
        """Write one message frame; raises :exc:`BackendClosed` if the connection is closed."""
        # The hot path: a try block costs nothing, a generator context manager a few
        # microseconds per frame.
        ws = self._ws
        try:
            await ws.send_message(message)
        except (tw.ConnectionClosed, wsproto.utilities.LocalProtocolError) as exc:
            raise _as_backend_closed(ws, exc) from None

    def encode(self, message: str | bytes) -> bytes:
        """One message frame as the bytes to write, for :meth:`send_encoded` (no I/O).

        Frames must be written in the order they were encoded (permessage-deflate
        keeps state from one to the next). Raises :exc:`BackendClosed` if the
        connection is closed or closing.
        """
        ws = self._ws
        closed = ws.closed
        if closed is not None:
            raise _backend_closed(closed)
        try:
            return self._connection.encode_message(message)
        except wsproto.utilities.LocalProtocolError:
            raise _backend_closed(ws.closed) from None

    @property
    def writes_directly(self) -> bool:
        """True when :meth:`write_now` can write (the stream is a plain TCP socket)."""
        return self._socket is not None

    def write_now(self, data: bytes) -> int:
        """Write what the socket takes of ``data`` at once, without waiting; the count.

        No I/O wait and no checkpoint: the caller needs no cancel scope, and writes the
        rest, if any, with :meth:`send_encoded`. 0 when the stream is not a plain TCP
        socket (TLS encrypts first), when another write holds the stream (the
        library's reader writing a Pong or a Close), when the socket has no room, and
        when it fails (then :meth:`send_encoded` meets the error again and reports it).
        """
        sock = self._socket
        if sock is None or stream_lock(self._ws).locked() or sock.did_shutdown_SHUT_WR:
            return 0
        fd = sock.fileno()  # -1 once closed (never a stale number)
        if fd < 0:
            return 0
        try:
            return os.write(fd, data)
        except OSError:
            return 0

    async def send_encoded(self, data: bytes | memoryview) -> None:
        """Write frames made by :meth:`encode`, in one write; the caller shields and bounds it.

        The write holds the library's stream lock, as the library's own writes do, so
        it never interleaves with the reader's (a Pong, a Close); the lock is taken
        without a wait when it is free. Raises :exc:`BackendClosed` if the stream is
        broken or closed (the library then marks the connection closed, 1006).
        """
        ws = self._ws
        lock = stream_lock(ws)
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await abort_library(ws)  # noqa: ASYNC120 - the caller's scope is shielded
            raise _backend_closed(ws.closed) from None
        finally:
            lock.release()

    async def receive(self) -> str | bytes:
        """The next inbound message; raises :exc:`BackendClosed` once the connection closed."""
        with _closed_as_backend_closed(self._ws):
            return await self._ws.get_message()

    async def send_ping(self, payload: bytes) -> trio.Event:
        """Write a Ping frame; the returned event is set when its Pong arrives.

        Only the frame write is awaited here, so the caller can shield and
        bound it, and wait for the Pong separately (cancellable).
        """
        pong = trio.Event()
        await send_ping_to(self, payload, pong)
        return pong

    async def close(self, code: int, reason: str) -> None:  # noqa: ASYNC910 - aclose checkpoints
        """Send a Close frame, wait for the peer's, then close the stream (caller bounds it)."""
        with contextlib.suppress(tw.ConnectionClosed, wsproto.utilities.LocalProtocolError):
            await self._ws.aclose(code, reason or None)

    async def fail(self, code: int, reason: str) -> None:
        """Write a Close frame with ``code``, then close the stream (caller bounds it).

        For a protocol error or a broken limit that the owner took on itself (see
        :func:`route_inbound`): the reader stops, the peer's Close is not waited for
        (RFC 6455 section 7.1.7), and a TCP stream closes lingering, so that the peer
        reads the Close frame before the connection goes. Nothing else writes by now:
        the owner has written what came before.
        """
        self._reader.cancel()
        data = self._connection.send(
            wsproto.events.CloseConnection(code=code, reason=reason or None)
        )
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._stream.send_all(data)
        await close_lingering(self._stream)

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
        connection = self._connection
        if connection.violation is not None:
            return False
        return connection.state is not wsproto.connection.ConnectionState.LOCAL_CLOSING

    def closed_with(self) -> tuple[int, str] | None:
        """The close code and reason the library recorded, or ``None`` while open."""
        closed = self._ws.closed
        # int(): the library may hand back its own enum; nothing of it leaves the adapter.
        return None if closed is None else (int(closed.code), closed.reason or "")


def open_request(
    request: ServerRequest,
    nursery: trio.Nursery,
    *,
    limits: BackendLimits = DEFAULT_LIMITS,
    hold_violations: bool = False,
) -> ServerHandshake:
    """Hand the request's stream to the library; its reader task starts in ``nursery``
    once the request is accepted.

    From here on only the owner of ``nursery`` may touch the stream. The library
    gets the wsproto connection that parsed the request, and the request event
    itself: nothing is parsed twice. ``hold_violations``: as for
    :func:`client_handshake`. The reader starts only after the 101 is written, so
    that its first look at the connection finds the frames a client sent with its
    request, if any (see ``take_handshake``), and a rejected request never has one.
    """
    connection = request.connection  # it parsed the request
    connection.set_limits(limits, hold_violations=hold_violations)
    stream = request.stream
    ws = tw.WebSocketConnection(
        _LingeringStream(stream) if isinstance(stream, trio.SocketStream) else stream,
        connection,
        message_queue_size=_LIBRARY_QUEUE_SIZE,
        max_message_size=limits.max_message_size,
        receive_buffer_size=limits.receive_buffer_size,
    )
    parsed = library_request(ws, request.event)
    install_sink(ws, _InboundSink)
    return ServerHandshake(ws, parsed, stream, request.headers, nursery, connection)


@final
class ServerHandshake:
    """A request handed to the library; accept it (or reject it late)."""

    __slots__ = (
        "_connection",
        "_nursery",
        "_stream",
        "_ws",
        "headers",
        "path",
        "subprotocols",
    )

    def __init__(
        self,
        ws: tw.WebSocketConnection,
        request: tw.WebSocketRequest,
        stream: trio.abc.Stream,
        headers: Headers,
        nursery: trio.Nursery,
        connection: GuardedConnection,
    ) -> None:
        self._ws = ws
        self._stream = stream
        self._nursery = nursery
        self._connection = connection
        self.path = request.path
        self.headers = headers
        self.subprotocols: tuple[str, ...] = request.proposed_subprotocols

    async def accept(
        self, subprotocol: str | None, extra_headers: Sequence[tuple[str, str]], within: float
    ) -> Backend:
        """Send the 101 response; the connection is open when this returns.

        Written as the library's ``WebSocketRequest.accept`` would, holding its stream
        lock, but taking the lock without a wait when it is free (it is: the library's
        reader starts only after it), then recorded in the library (``mark_accepted``).
        """
        ws = self._ws
        data = self._connection.send(
            wsproto.events.AcceptConnection(
                subprotocol=subprotocol, extra_headers=encode_headers(extra_headers)
            )
        )
        lock = stream_lock(ws)
        with HandshakeDeadline(within, "accepting the websocket handshake"):
            try:
                lock.acquire_nowait()
            except trio.WouldBlock:  # pragma: no cover - nothing else writes before the 101
                await lock.acquire()
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await abort_library(ws)  # noqa: ASYNC120 - as the library's own write does; a cancellation ends the handshake all the same
                raise HandshakeError(
                    "the client went away during the websocket handshake"
                ) from None
            finally:
                lock.release()
        mark_accepted(ws, self.path, subprotocol)
        reader = trio.CancelScope()
        self._nursery.start_soon(_run_reader, ws, reader, None, None)
        return Backend(ws, self._stream, self.headers, reader, self._connection)

    async def reject(
        self, status: int, body: bytes, extra_headers: Sequence[tuple[str, str]], within: float
    ) -> None:
        """Answer with an HTTP ``status`` (and ``body``), then close the stream.

        The same answer as :meth:`ServerRequest.reject` (``_request.answer_and_close``),
        written past the library: its reader has not started, and nothing else writes.
        """
        await answer_and_close(
            self._stream, status, extra_headers, body, within, default_type=PLAIN_TEXT
        )


async def server_handshake(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    *,
    limits: BackendLimits = DEFAULT_LIMITS,
    within: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> ServerHandshake:
    """:func:`read_request`, then :func:`open_request` in ``nursery``."""
    request = await read_request(stream, within=within)
    return open_request(request, nursery, limits=limits)


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
    hold_violations: bool = False,
) -> Backend:
    """Run the client side of the opening handshake over ``stream``.

    The library's reader task is started in ``nursery`` (the owning actor's).
    With ``hold_violations`` (a connection actor that will route the reader), a protocol
    error in frames that come with the 101 is held for :func:`route_inbound` instead of
    being answered by the library at once (strict close order).
    Raises :exc:`TLSError`, :exc:`HandshakeRejected`,
    :exc:`HandshakeTimeoutError` or :exc:`HandshakeError`; the caller closes
    the stream on failure.
    """
    with HandshakeDeadline(within, f"opening a websocket to {host}{redact_target(resource)}"):
        await tls_handshake(stream)
        connection = GuardedConnection(wsproto.ConnectionType.CLIENT, limits, hold_violations)
        ws = tw.WebSocketConnection(
            stream,
            connection,
            host=host,
            path=resource,
            client_subprotocols=list(subprotocols),
            client_extra_headers=encode_headers(extra_headers),
            message_queue_size=_LIBRARY_QUEUE_SIZE,
            max_message_size=limits.max_message_size,
            receive_buffer_size=limits.receive_buffer_size,
        )
        rejected: list[tw.ConnectionRejected] = []
        install_sink(ws, _InboundSink)
        reader = trio.CancelScope()
        with trio.CancelScope() as waiting:
            nursery.start_soon(_run_reader, ws, reader, waiting, rejected)
            await wait_open(ws)
    if rejected:
        exc = rejected[0]
        raise HandshakeRejected(exc.status_code, decode_headers(exc.headers or ()), exc.body or b"")
    failure = connection.handshake_failure
    if failure is not None and connection.extension_failure:
        raise HandshakeError(
            f"invalid permessage-deflate answer from {host}: {failure}; the connection was"
            " failed with 1002 (connect with compression=False to do without it)",
            CloseCode.PROTOCOL_ERROR,
        )
    if failure is not None:
        raise HandshakeError(f"invalid websocket handshake response from {host}: {failure}")
    if not connection.is_open:
        raise HandshakeError(f"the connection to {host} closed during the websocket handshake")
    # Open, even if the peer's first messages and its Close came in the same read as the
    # 101 (the reader may have ended already): they wait in the library's queue, and the
    # connection actor takes them before it sees the end.
    return Backend(ws, stream, decode_headers(ws.handshake_headers), reader, connection)


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

    # The socket stream's own coroutines, not wrappers around them: the reader waits in
    # receive_some on every idle connection, with one frame fewer alive.
    def send_all(self, data: bytes | bytearray | memoryview) -> Coroutine[object, None, None]:
        return self._stream.send_all(data)

    def wait_send_all_might_not_block(self) -> Coroutine[object, None, None]:
        return self._stream.wait_send_all_might_not_block()

    def receive_some(self, max_bytes: int | None = None) -> Coroutine[object, None, bytes]:
        return self._stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await close_lingering(self._stream)


async def _run_reader(  # noqa: ASYNC910 - a task body
    ws: tw.WebSocketConnection,
    reader: trio.CancelScope,
    waiting: trio.CancelScope | None,
    rejected: list[tw.ConnectionRejected] | None,
) -> None:
    # The library's reader, plus: its message channel goes through an _InboundSink
    # (installed before it starts, see route_inbound), it runs in ``reader`` (which the owner of the open connection
    # shields, see Backend.shield_reader), a rejection raised inside it is reported
    # instead of crashing the nursery (a server gets none), and a client's handshake
    # waiter is woken as soon as it ends.
    try:
        with reader:
            await run_reader(ws)
    except tw.ConnectionRejected as exc:
        if rejected is None:
            raise
        rejected.append(exc)
    finally:
        if waiting is not None:
            waiting.cancel()


@contextlib.contextmanager
def _closed_as_backend_closed(ws: tw.WebSocketConnection) -> Iterator[None]:
    try:
        yield
    except (tw.ConnectionClosed, wsproto.utilities.LocalProtocolError) as exc:
        raise _as_backend_closed(ws, exc) from None


def _as_backend_closed(
    ws: tw.WebSocketConnection, exc: tw.ConnectionClosed | wsproto.utilities.LocalProtocolError
) -> BackendClosed:
    """What the library raised on a closed connection, as :exc:`BackendClosed`."""
    if isinstance(exc, tw.ConnectionClosed):
        return _backend_closed(exc.reason)
    # trio-websocket #175: a send while the peer's Close is being processed.
    return _backend_closed(ws.closed)


def _backend_closed(reason: tw.CloseReason | None) -> BackendClosed:
    if reason is None:
        return BackendClosed(CloseCode.ABNORMAL_CLOSURE, "")
    return BackendClosed(reason.code, reason.reason or "")


# -- the connection actor's hooks into the library's reader --------------------------------

if TYPE_CHECKING:
    from collections.abc import Callable


def route_inbound(
    backend: Backend,
    deliver: Callable[[str | bytes], None],
    ended: Callable[[], None],
    violated: Callable[[Violation], bool] | None = None,
    room: Room | None = None,
) -> None:
    """Have the library's reader hand every inbound message to ``deliver``, at once.

    The library's reader task passes each complete message to
    ``await self._send_channel.send(message)``, and that channel is an
    :class:`_InboundSink` (see :func:`_run_reader`). Until this call the sink passes
    messages on to the library's own bounded channel (where :meth:`Backend.receive`
    takes them); from here on its ``send`` calls ``deliver`` and returns without
    blocking, so the reader never waits on the application (and no task of ours has
    to move messages out of the library's queue), except for room: with ``room``,
    the reader holds each message while ``room.full`` (in ``room.wait_room``) before
    it delivers it, and so stops reading the peer until the application has made room.
    ``deliver`` runs inside the reader:
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

    ``violated`` is called, from inside the reader too, when the peer breaks the
    protocol or a limit. If it returns true, its caller takes the close on itself:
    the library neither answers nor closes, the messages delivered before stay
    deliverable and replies to them can still be sent, and the caller stops the
    reader and ends with :meth:`Backend.fail`. If it returns false (or is not given),
    the library answers with the Close frame at once.
    """
    ws = backend._ws
    sink = installed_sink(ws)
    assert isinstance(sink, _InboundSink)
    library = library_messages(ws)
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
    sink.route(deliver, ended, room)
    # The library closes its receive side on a close of its own: the sink hears that too.
    route_receive_side(ws, sink)
    if violated is not None:
        connection = backend._connection
        connection.report = violated
        # A violation in the frames that came with the handshake, after their messages.
        connection.report_pending()


async def send_ping_to(backend: Backend, payload: bytes, pong: PongListener) -> None:
    """Write a Ping frame; ``pong.set()`` is called by the reader when its Pong arrives.

    Like :meth:`Backend.send_ping`, but nothing has to wait for the Pong: the caller
    checks its listener when the pong timeout is due.
    """
    ws = backend._ws
    if ws.closed is not None:
        raise _backend_closed(ws.closed)
    expect_pong(ws, payload, pong)
    with _closed_as_backend_closed(ws):
        await send_ping_frame(ws, payload)


class Room(Protocol):
    """Where routed messages go, as far as waiting for room goes (see :func:`route_inbound`)."""

    @property
    def full(self) -> bool:
        """True while the reader should wait before it reads on."""
        ...

    async def wait_room(self) -> None:
        """Wait until there is room (or no more reason to wait)."""
        ...


@final
class _InboundSink:
    """Stands in for the library's message channel (see :func:`route_inbound`).

    The library's reader holds it from its start (``async with``): leaving that
    block is the end of the reader, whatever ended it. Until routed it passes
    everything on to the library's own channel; once routed it is both ends of
    that channel as far as the library knows.
    """

    __slots__ = ("_deliver", "_ended", "_library", "_room")

    def __init__(self, library: trio.MemorySendChannel[str | bytes]) -> None:
        self._library: trio.MemorySendChannel[str | bytes] | None = library
        self._deliver: Callable[[str | bytes], None] | None = None
        self._ended: Callable[[], None] | None = None
        self._room: Room | None = None

    def route(
        self, deliver: Callable[[str | bytes], None], ended: Callable[[], None], room: Room | None
    ) -> None:
        self._deliver = deliver
        self._ended = ended
        self._room = room
        self._library = None

    async def __aenter__(self) -> _InboundSink:  # noqa: ASYNC910 - as the channel's own
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def send(self, message: str | bytes) -> None:  # noqa: ASYNC910 - waits for room only
        if self._deliver is not None:
            room = self._room
            if room is not None and room.full:
                await room.wait_room()
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
