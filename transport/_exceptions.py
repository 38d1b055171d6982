"""The exceptions of the transport package.

Every error derives from :class:`TransportError` and, where trio has a word for the
situation, from that trio exception too::

    TransportError
    ├── HandshakeError                                   the connection never opened
    │   ├── HandshakeRejected                            the server answered with an HTTP status
    │   ├── ExtensionError                               the server's extension answer is invalid
    │   ├── HandshakeTimeoutError  (trio.TooSlowError)   no handshake within the deadline
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
    """The WebSocket connection could not be opened."""


class HandshakeRejected(HandshakeError):
    """The server refused the WebSocket handshake with an HTTP status.

    ``status`` is the HTTP status code, ``headers`` the response headers as
    ``(name, value)`` strings, ``body`` the response body (possibly empty).
    Rejections are not transient unless the status is 5xx.
    """

    def __init__(
        self, status: int, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        super().__init__(f"the server rejected the websocket handshake with HTTP {status}")
        self.status = status
        self.headers = tuple(headers)
        self.body = body


class ExtensionError(HandshakeError):
    """The server answered the client's extension offer with something it must refuse.

    An extension the client did not offer, a parameter it did not offer or with
    a value out of range: the client fails the connection (RFC 6455 section 4.1,
    RFC 7692 section 5), writing a Close frame with ``code`` (1002) first. A
    misconfigured server, not a transient failure: it is not retried.
    """

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class HandshakeTimeoutError(HandshakeError, trio.TooSlowError):
    """The opening handshake (TCP, TLS and HTTP upgrade) did not finish within its deadline."""


class TLSError(HandshakeError, trio.BrokenResourceError):
    """The TLS handshake failed, for example because the certificate did not verify.

    This is a configuration or trust problem, not a transient network
    failure: retrying will not help. The underlying :mod:`ssl` error is the
    ``__cause__``.
    """
