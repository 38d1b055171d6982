"""The exceptions of the transport package.

Every error derives from :class:`TransportError` and, where trio has a word for the
situation, from that trio exception too::

    TransportError
    ├── HandshakeError                                   the connection never opened
    │   ├── HandshakeRejected                            the server answered with an HTTP status
    │   ├── HandshakeTimeoutError  (trio.TooSlowError)   no handshake within the deadline
    │   ├── ProxyError                                   the proxy refused or failed the tunnel
    │   └── TLSError               (trio.BrokenResourceError)  certificate or TLS failure
    ├── codecs (``_codec``): EncodeError, DecodeError
    ├── reconnecting clients: BufferFullError, UnconfirmedError, AckProtocolError
    └── the backplane: BackplaneError and its subclasses

A connection that closes is not an exception: its actor stops with a
:class:`ConnectionClosed` reason, and sending on it raises
:exc:`actors.ActorStoppedError` (trio's ``BrokenResourceError``).

None of them carries a stream or a library connection object: only codes, statuses,
headers and text.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio


class TransportError(Exception):
    """Base class of every error raised by the transport package."""


class HandshakeError(TransportError):
    """The WebSocket connection could not be opened.

    ``code`` is the close code this side failed the connection with after the
    server's 101 response, or ``None``: 1002 when the server answered the
    extension offer with an extension or parameters that were not offered
    (RFC 6455 section 4.1, RFC 7692 section 5). Such a server is misconfigured:
    a handshake error with a code is not transient, and is not retried.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class HandshakeRejected(HandshakeError):
    """The server refused the WebSocket handshake with an HTTP status.

    ``status`` is the HTTP status code, ``headers`` the response headers as
    ``(name, value)`` strings, ``body`` the response body (possibly empty).
    Rejections are not transient unless the status is 5xx. A redirect (3xx)
    the client did not follow is one too: past ``max_redirects``, from
    ``wss`` to ``ws``, or to a URL that is not ``ws``, ``wss``, ``http`` or
    ``https``; ``message`` then says which.
    """

    def __init__(
        self,
        status: int,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        message: str | None = None,
    ) -> None:
        super().__init__(
            message or f"the server rejected the websocket handshake with HTTP {status}"
        )
        self.status = status
        self.headers = tuple(headers)
        self.body = body


class ProxyError(HandshakeError):
    """The proxy did not open a tunnel to the server.

    ``status`` is the proxy's answer: the HTTP status of an HTTP proxy's reply to
    ``CONNECT`` (403 refused, 407 credentials missing or wrong, 502 the server
    unreachable...), the SOCKS5 reply code, or ``None`` when the proxy closed or
    broke the exchange. ``transient`` says whether trying again later can help
    (the server or the proxy unreachable for now); a refusal or a credentials
    failure is not transient. The message never shows the proxy's credentials.
    """

    def __init__(self, message: str, *, status: int | None = None, transient: bool) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


class HandshakeTimeoutError(HandshakeError, trio.TooSlowError):
    """The opening handshake (TCP, TLS and HTTP upgrade) did not finish within its deadline."""


class TLSError(HandshakeError, trio.BrokenResourceError):
    """The TLS handshake failed, for example because the certificate did not verify.

    This is a configuration or trust problem, not a transient network
    failure: retrying will not help. The underlying :mod:`ssl` error is the
    ``__cause__``.
    """
