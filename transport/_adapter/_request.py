"""The opening of a server connection, before the library sees it: TLS, the request, refusals.

:func:`read_request` runs the TLS handshake (if any) and parses the client's opening
request once, with wsproto, before any connection actor or library object exists; a
refused client never costs a task or an actor. A request that is not a valid websocket
upgrade is answered here (400, or 426 for an unsupported version), and so are a
``Sec-WebSocket-Key`` that is not 16 bytes of base64 and an upgrade in HTTP/1.0
(400). A valid one is a :class:`ServerRequest`, which holds the stream and the bytes
read until it is rejected (:meth:`ServerRequest.reject`) or handed to the library
(``_library.open_request``) with the wsproto connection that parsed it: the request
is parsed once.
A server that answers plain HTTP too (``HandshakePolicy.http``) asks for it: a ``GET``
without an ``Upgrade`` header is then a :class:`PlainRequest`, parsed with h11 (wsproto's
own HTTP parser), answered once (:meth:`PlainRequest.respond`) and closed. Every
answer but the 101 is one whole response of ``_answer.format_response``, written by
:func:`answer_and_close`.

Also here, because the library adapter shares them: the handshake deadline, the TLS
handshake, header encoding and the lingering close of a server's TCP stream.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ssl
from collections.abc import Sequence
from types import TracebackType
from typing import Literal, final, overload

import h11
import trio
import wsproto
import wsproto.events
import wsproto.utilities

from .._exceptions import HandshakeError, HandshakeTimeoutError, TLSError
from .._redact import redact_target
from ._answer import PLAIN_TEXT, format_response
from ._guard import GuardedConnection
from ._hooks import request_http_version, request_method

#: Seconds the opening handshake (TLS and HTTP upgrade) may take by default.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0

# Reads of the opening request. h11 refuses a request head over 16 KiB (400), so the
# bytes held for one request stay below that plus one read.
_REQUEST_READ_SIZE = 4096
# A server closing a plain TCP connection first sends FIN and reads what the client
# still sends, for this long or this many bytes at most (see _LingeringStream).
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1 << 20

Headers = tuple[tuple[str, str], ...]


@final
class ServerRequest:
    """A client's opening request, read before any connection actor exists.

    Holds the stream, the wsproto connection that parsed the request and the request
    event until :meth:`reject` answers it or ``_library.open_request`` hands all three
    to the library in the owning actor's nursery.
    """

    __slots__ = ("_remote", "connection", "event", "headers", "path", "stream", "subprotocols")

    def __init__(
        self,
        stream: trio.abc.Stream,
        request: wsproto.events.Request,
        connection: GuardedConnection,
    ) -> None:
        self.stream = stream
        self.connection = connection
        self.event = request
        self.path = request.target
        self.headers: Headers = decode_headers(list(request.extra_headers))
        self.subprotocols: tuple[str, ...] = tuple(request.subprotocols)
        self._remote: str | None = None

    def __repr__(self) -> str:
        return f"<ServerRequest {redact_target(self.path)!r}>"

    @property
    def remote(self) -> str:
        """``"host:port"`` of the client (:func:`describe_remote`), asked of the socket once."""
        if self._remote is None:
            self._remote = describe_remote(self.stream)
        return self._remote

    async def reject(
        self, status: int, body: bytes, extra_headers: Sequence[tuple[str, str]], within: float
    ) -> None:
        """Answer with an HTTP ``status`` (and ``body``, text unless ``extra_headers`` give
        a ``Content-Type``), then close the stream; see :func:`answer_and_close`."""
        await answer_and_close(
            self.stream, status, extra_headers, body, within, default_type=PLAIN_TEXT
        )


@final
class PlainRequest:
    """A plain HTTP request (no websocket upgrade), for a server that answers those too.

    Holds the stream until :meth:`respond` answers it and closes it.
    """

    __slots__ = ("headers", "method", "path", "stream")

    def __init__(self, stream: trio.abc.Stream, request: h11.Request):
        self.stream = stream
        self.method = request.method.decode("ascii")
        self.path = request.target.decode("latin-1")
        self.headers: Headers = decode_headers(list(request.headers))

    def __repr__(self) -> str:
        return f"<PlainRequest {self.method} {redact_target(self.path)!r}>"

    async def respond(
        self, status: int, body: bytes, headers: Sequence[tuple[str, str]], within: float
    ) -> None:
        """Answer with ``status``, ``headers`` and ``body`` (none to a HEAD), then close;
        see :func:`answer_and_close`."""
        await answer_and_close(
            self.stream, status, headers, body, within, head=self.method == "HEAD"
        )


@overload
async def read_request(
    stream: trio.abc.Stream, *, within: float = ..., plain: Literal[False] = False
) -> ServerRequest: ...
@overload
async def read_request(
    stream: trio.abc.Stream, *, within: float = ..., plain: bool
) -> ServerRequest | PlainRequest: ...
async def read_request(
    stream: trio.abc.Stream, *, within: float = DEFAULT_HANDSHAKE_TIMEOUT, plain: bool = False
) -> ServerRequest | PlainRequest:
    """Run the TLS handshake (if any) and read a client's opening request from ``stream``.

    A request that is not a valid websocket upgrade is answered at once
    (400, or 426 for an unsupported version) and raises :exc:`HandshakeError`,
    except, with ``plain``, a request without an ``Upgrade`` header: that one
    is returned as a :class:`PlainRequest` for the caller to answer. No
    request in time raises :exc:`HandshakeTimeoutError`. The caller closes
    the stream on failure.
    """
    with HandshakeDeadline(within, "waiting for a websocket request"):
        if isinstance(stream, trio.SSLStream):  # a plain stream: no checkpoint to pay for here
            await tls_handshake(stream)
        probe = GuardedConnection(wsproto.ConnectionType.SERVER)
        received = bytearray()  # kept only for a plain HTTP answer
        while True:
            try:
                data = await stream.receive_some(_REQUEST_READ_SIZE)
            except trio.BrokenResourceError as exc:
                raise HandshakeError("the connection broke during the websocket request") from exc
            if not data:
                raise HandshakeError("the client went away before completing its websocket request")
            if plain:
                received += data
            problem: str | wsproto.utilities.RemoteProtocolError | None
            try:
                probe.receive_data(bytes(data))
                request = next(
                    (e for e in probe.events() if isinstance(e, wsproto.events.Request)), None
                )
                problem = None if request is None else _request_problem(request, probe)
            except wsproto.utilities.RemoteProtocolError as exc:
                request, problem = None, exc
            if problem is not None:
                parsed = _plain_request(bytes(received)) if plain else None
                if parsed is not None:
                    return PlainRequest(stream, parsed)
                status, headers, what = _refusal(problem)
                await answer_and_close(
                    stream,
                    status,
                    headers,
                    f"invalid websocket request: {what}\n".encode(),
                    within,
                    head=request_method(probe) == b"HEAD",
                    default_type=PLAIN_TEXT,
                )
                raise HandshakeError(f"invalid websocket request: {what}")
            if request is not None:
                return ServerRequest(stream, request, probe)


async def reject_stream(
    stream: trio.abc.Stream, status: int, body: bytes, within: float = DEFAULT_HANDSHAKE_TIMEOUT
) -> None:
    """Read the request on ``stream``, answer with ``status`` and a text ``body`` and close
    it (bounded by ``within``)."""
    try:
        with contextlib.suppress(HandshakeError):
            request = await read_request(stream, within=within)
            await request.reject(status, body, (), within)
    finally:
        await trio.aclose_forcefully(stream)


async def answer_and_close(
    stream: trio.abc.Stream,
    status: int,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    within: float,
    *,
    head: bool = False,
    default_type: str | None = None,
) -> None:
    """Write one whole HTTP response (``_answer.format_response``), then close ``stream``.

    The write is bounded by ``within`` and a peer gone away is no error; the close is
    lingering (:func:`close_lingering`), so that the client reads the answer even while
    it is still sending. A response ``format_response`` cannot write (a header with CR or
    LF...) raises its :exc:`ValueError` before anything is written; on that, as on
    cancellation, the caller closes the stream (as on every handshake failure).
    """
    data = format_response(status, headers, body, head=head, default_type=default_type)
    with trio.move_on_after(within):  # noqa: ASYNC912 - send_all checkpoints unless it fails at once
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(data)
    await close_lingering(stream)


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


async def close_lingering(stream: trio.abc.Stream) -> None:
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


def _plain_request(received: bytes) -> h11.Request | None:
    """The request in ``received`` if it is a whole HTTP request without ``Upgrade``."""
    connection = h11.Connection(h11.SERVER)
    try:
        connection.receive_data(received)
        event = connection.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request):
        return None
    if any(name == b"upgrade" for name, _ in event.headers):
        return None  # a websocket request gone wrong: answered as one
    return event


def _request_problem(request: wsproto.events.Request, probe: wsproto.WSConnection) -> str | None:
    # What wsproto accepts but RFC 6455 does not: a request in HTTP/1.0 (section 4.1
    # asks for 1.1 or later), a key that is not 16 bytes of base64 (section 4.2.1).
    version = request_http_version(probe)
    if version is not None and version < b"1.1":
        return f"a websocket upgrade needs HTTP/1.1 or later, not HTTP/{version.decode('ascii')}"
    key = next((v for k, v in request.extra_headers if k.lower() == b"sec-websocket-key"), b"")
    try:
        if len(base64.b64decode(key, validate=True)) == 16:
            return None
    except binascii.Error:
        pass
    return "invalid Sec-WebSocket-Key"


def _refusal(problem: str | wsproto.utilities.RemoteProtocolError) -> tuple[int, Headers, str]:
    """The status, headers and description of the answer to an invalid request."""
    if isinstance(problem, str):
        return 400, (), problem
    hint = problem.event_hint
    if not isinstance(hint, wsproto.events.RejectConnection):  # wsproto gives one, so far
        hint = wsproto.events.RejectConnection(status_code=400)
    headers = decode_headers(hint.headers)
    if hint.status_code == 426:
        # wsproto's message says the header is missing: it is there, with another version.
        return 426, headers, "unsupported Sec-WebSocket-Version (this server speaks 13)"
    return hint.status_code, headers, str(problem)


async def tls_handshake(stream: trio.abc.Stream) -> None:
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


@final
class HandshakeDeadline:
    """Bound the handshake step inside by ``timeout`` seconds; past it, :exc:`HandshakeTimeoutError`.

    A cancel scope with a deadline, and the translation of its expiry, without the two
    generator context managers of ``trio.fail_after`` wrapped in ``contextlib`` (the
    server enters one for every request it reads and every handshake it accepts).
    """

    __slots__ = ("_scope", "_timeout", "_what")

    def __init__(self, timeout: float, what: str) -> None:
        if not timeout >= 0:  # as trio.fail_after: NaN or negative
            raise ValueError(
                f"a handshake timeout must be a number of seconds >= 0, not {timeout!r}"
            )
        self._timeout = timeout
        self._what = what
        self._scope = trio.CancelScope(deadline=trio.current_time() + timeout)

    def __enter__(self) -> trio.CancelScope:
        return self._scope.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        scope = self._scope
        # True when the scope let nothing through: no exception, or its own cancellation.
        if scope.__exit__(exc_type, exc, traceback) and scope.cancelled_caught:
            # The deadline cut the step (never a cancellation from outside: that one
            # propagates, as from trio.fail_after).
            raise HandshakeTimeoutError(
                f"timed out after {self._timeout}s {self._what}; raise handshake_timeout if"
                " the peer is slow"
            ) from None


def decode_headers(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers)


def encode_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
