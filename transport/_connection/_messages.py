"""Messages, options, statistics and handshake values of WebSocket connections."""

from __future__ import annotations

from typing import final

import attrs

import actors

from .._adapter._limits import DEFAULT_MAX_MESSAGE_SIZE
from .._adapter._request import DEFAULT_HANDSHAKE_TIMEOUT
from .._client._proxy import ProxySetting, check_proxy_setting
from .._client._url import DEFAULT_MAX_REDIRECTS
from .._close_codes import ConnectionClosed, check_sendable
from .._codec import Codec, DecodeError, DecodePolicy, RawCodec
from .._compression import (
    DEFAULT_COMPRESSION,
    MAX_WINDOW_BITS,
    MIN_WINDOW_BITS,
    Compression,
    settings_of,
)
from .._overflow import INBOUND_OVERFLOW, Overflow, check_overflow
from .._redact import redact_headers, redact_target, redact_url
from ._inbound import InboundQueue


@final
@attrs.frozen
class SendText:
    """Tell a connection to send ``text`` as one Text message."""

    text: str


@final
@attrs.frozen
class SendBytes:
    """Tell a connection to send ``data`` as one Binary message."""

    data: bytes


@final
@attrs.frozen
class SendMessage:
    """Tell a connection to encode ``message`` with its codec and send the result.

    A value the codec cannot encode is not sent: it goes to dead letters with the
    :exc:`EncodeError` (the connection stays open). To get that error raised at
    once instead, send with :meth:`WebSocketConnection.send_message`.
    """

    message: object


@final
@attrs.frozen
class Close(actors.ControlMessage):
    """Tell a connection to close: queued outbound messages go first, then a Close frame.

    A control message: it overtakes the frames queued in the connection's mailbox
    and is handled after at most the write under way. The frames already
    queued (or waiting for room) when it is handled are written, then the Close
    frame; frames sent after it go to dead letters. ``code`` must be sendable
    (1000-1003, 1007-1014, or 3000-4999).
    """

    code: int = 1000
    reason: str = ""

    def __attrs_post_init__(self) -> None:
        check_sendable(self.code)


@final
@attrs.frozen
class GetStatistics(actors.ControlMessage, actors.Request["ConnectionStatistics"]):
    """Ask a connection for its :class:`ConnectionStatistics`.

    A control message: answered after at most the write under way, however
    many frames are queued or senders wait.
    """


class KeptBySender(bytes):
    """Binary data whose sender keeps it and makes it again if this connection ends.

    The plug-in point of protocols layered on a connection (acknowledged delivery's
    envelopes subclass it): the connection never dead-letters such data when it ends
    before writing it, since that would report a loss that is not one.
    """

    __slots__ = ()


#: A message frame waiting to be written.
Frame = SendText | SendBytes


def frame_weight(message: object) -> int:
    """What a message weighs in a connection's outbound byte bound: a frame's payload
    bytes (text as UTF-8), nothing for the other messages."""
    if isinstance(message, SendText):
        return payload_size(message.text)
    if isinstance(message, SendBytes):
        return len(message.data)
    return 0


#: Every message a connection actor accepts.
ConnectionMessage = SendText | SendBytes | SendMessage | Close | GetStatistics


@final
@attrs.frozen
class Received:
    """One inbound WebSocket message, delivered to a subscriber actor.

    ``data`` is what the connection's codec decoded: with the default
    :class:`RawCodec` a ``str`` for a Text message and ``bytes`` for a Binary
    one; with a :class:`JsonCodec` an instance of one of its message classes;
    an :class:`Undecodable` notice in place of a message the codec refused.
    """

    data: object


@final
@attrs.frozen
class Undecodable:
    """In place of an inbound message the connection's codec could not decode.

    ``error`` says why and holds the start of the raw message. Under
    :attr:`DecodePolicy.SKIP` the connection stays open; under
    :attr:`DecodePolicy.CLOSE` it is closing with ``error.close_code``. The
    same notice is published as a dead letter.
    """

    error: DecodeError


#: Every message a subscriber actor receives from a connection: its inbound messages in
#: order, then exactly one :class:`ConnectionClosed` when the connection has ended.
SubscriberMessage = Received | ConnectionClosed


#: The default byte bound of each of a connection's two queues (inbound, outbound): with
#: a server's shared inbound budget (128 MiB by default), 1,000 busy connections hold at
#: most some 384 MiB of queued messages.
DEFAULT_QUEUE_BYTES = 256 * 1024


def _shown_proxy(proxy: ProxySetting) -> str:
    return repr(redact_url(proxy)) if isinstance(proxy, str) else repr(proxy)


@final
@attrs.frozen(kw_only=True)
class ConnectionOptions:
    """Limits, queues and timers of one connection (seconds for every duration).

    - ``max_message_size``: the largest inbound message (bytes; UTF-8 bytes
      for text, not characters); a larger one closes the connection with 1009.
    - ``inbound_queue_size``, ``inbound_max_bytes`` and ``overflow``: the
      bounded queue between the network reader and the application (in
      messages and in payload bytes, text counted as UTF-8), and what happens
      when it is full. By default (:attr:`Overflow.PAUSE`) the reader stops
      reading the peer until the application has taken enough (TCP
      backpressure: nothing is dropped, the queue's bytes pass the bound by
      less than one message); the other policies keep reading and drop or
      close (:class:`Overflow`), with every drop reported. The queue grows only
      while messages wait, an idle connection holds none. Under the drop and
      close policies one message larger than ``inbound_max_bytes`` (up to
      ``max_message_size``) still gets in when the queue is empty. A server
      adds one byte budget shared by all its connections (``serve_websocket``'s
      ``max_inbound_bytes``).
    - ``outbound_queue_size`` and ``outbound_max_bytes``: frames waiting in the
      connection's mailbox to be written, in messages and in payload bytes;
      beyond either a sender's ``send`` or ``tell`` waits (backpressure), and
      waiting senders are served in arrival order. One frame larger than
      ``outbound_max_bytes`` still goes through when nothing else waits.
    - ``handshake_timeout``: TCP connect, TLS and HTTP upgrade together.
    - ``write_timeout``: one frame write; a write that has not finished
      within it is cut, at most a quarter of ``write_timeout`` later, and
      aborts the connection (nothing follows the half-written frame).
    - ``close_timeout``: the close handshake; after it the stream is closed
      regardless. A close that first has to wait for a frame being written
      can take up to ``write_timeout + close_timeout`` in all.
    - ``ping_interval`` / ``pong_timeout``: keepalive (``None`` disables it); a
      ping unanswered in time aborts the connection (code 1006).
    - ``idle_timeout``: close with 1001 after this long without an inbound
      message (``None``: never).
    - ``codec``: turns inbound messages into values and values into outbound
      messages (:class:`RawCodec`, the default, passes text and bytes
      through; :class:`JsonCodec` maps attrs message classes).
    - ``on_decode_error``: what an inbound message the codec refuses does to
      the connection (:class:`DecodePolicy`; it is always reported to the
      owner as :class:`Undecodable` and as a dead letter).
    - ``proxy`` (clients): the proxy URL (``http://``, ``socks5://`` or
      ``socks5h://``, credentials as ``user:password@``), ``None`` for the
      proxy the environment names (``HTTPS_PROXY`` for wss, ``HTTP_PROXY`` for
      ws, ``ALL_PROXY``, ``NO_PROXY``), or ``False`` to connect directly
      whatever the environment says. Its repr hides the credentials.
    - ``max_redirects`` (clients): how many HTTP redirects (301, 302, 303, 307,
      308) the opening handshake follows; ``0`` follows none.
    - ``compression``: offer (client) or accept (server) permessage-deflate
      (RFC 7692); off by default, for memory: about 50 kB more per connection
      that has carried a message each way. A compressed message that inflates
      past ``max_message_size`` is refused with 1009 while it inflates.
      ``compression_window_bits`` (9 to 15): the window of each side's
      compressor; ``compression_context_takeover``: false makes both sides
      start every message afresh, so no zlib state is kept between messages
      (less memory, less compression of small messages);
      ``compression_memory_level`` (1 to 9): zlib's memory for this side's
      compressor.
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    inbound_queue_size: int = 1024
    inbound_max_bytes: int = DEFAULT_QUEUE_BYTES
    overflow: Overflow = Overflow.PAUSE
    outbound_queue_size: int = 64
    outbound_max_bytes: int = DEFAULT_QUEUE_BYTES
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    write_timeout: float = 10.0
    close_timeout: float = 5.0
    ping_interval: float | None = 20.0
    pong_timeout: float = 20.0
    idle_timeout: float | None = None
    receive_buffer_size: int | None = None
    codec: Codec = attrs.field(factory=RawCodec)
    on_decode_error: DecodePolicy = DecodePolicy.SKIP
    proxy: ProxySetting = attrs.field(default=None, repr=_shown_proxy)
    max_redirects: int = DEFAULT_MAX_REDIRECTS

    compression: bool = False
    compression_window_bits: int = DEFAULT_COMPRESSION.server_max_window_bits
    compression_context_takeover: bool = True
    compression_memory_level: int = DEFAULT_COMPRESSION.memory_level

    def __attrs_post_init__(self) -> None:
        check_overflow(self.overflow, INBOUND_OVERFLOW, "overflow")
        check_proxy_setting(self.proxy)
        if self.max_redirects < 0:
            raise ValueError(f"max_redirects must be at least 0, not {self.max_redirects!r}")
        bits = self.compression_window_bits
        if not MIN_WINDOW_BITS <= bits <= MAX_WINDOW_BITS:
            raise ValueError(f"compression_window_bits must be between 9 and 15, not {bits!r}")
        if not 1 <= self.compression_memory_level <= 9:
            level = self.compression_memory_level
            raise ValueError(f"compression_memory_level must be between 1 and 9, not {level!r}")
        for name in (
            "max_message_size",
            "inbound_queue_size",
            "inbound_max_bytes",
            "outbound_queue_size",
            "outbound_max_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        for name in ("handshake_timeout", "write_timeout", "close_timeout", "pong_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)!r}")
        for name in ("ping_interval", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, not {value!r}")


def compression_settings(options: ConnectionOptions) -> Compression | None:
    """The permessage-deflate settings of ``options``, or ``None`` when it is off."""
    return settings_of(
        options.compression,
        options.compression_window_bits,
        options.compression_context_takeover,
        options.compression_memory_level,
    )


#: The options used when none are given.
DEFAULT_OPTIONS = ConnectionOptions()


@final
@attrs.frozen
class ConnectionInfo:
    """What is known about an open connection: no stream, only values.

    ``headers`` are the request headers on a server connection and the
    response headers on a client connection; ``remote`` is ``"host:port"``
    when the peer is a socket, else ``""``. ``url`` is the URL a client
    connection ended at, after any redirects, without credentials (``""`` on
    a server connection); its repr hides query values.
    ``compression`` holds the
    permessage-deflate parameters agreed on (as in ``Sec-WebSocket-Extensions``),
    ``None`` when the connection is not compressed.
    """

    is_client: bool
    path: str = attrs.field(repr=redact_target)  # query values may be tokens
    subprotocol: str | None
    headers: tuple[tuple[str, str], ...] = attrs.field(repr=redact_headers)
    remote: str
    url: str = attrs.field(default="", repr=redact_url)
    compression: str | None = None


@final
@attrs.frozen
class ConnectionStatistics:
    """A snapshot of one connection's counters.

    ``inbound_dropped`` counts messages the overflow policy dropped (each is
    also a dead letter); ``inbound_pauses`` how many times the reader stopped
    reading the peer to wait for room (:attr:`Overflow.PAUSE`); ``undecodable`` counts inbound messages the codec
    refused (each also a dead letter); ``bytes_received`` and ``bytes_sent`` count
    message payloads (text as its UTF-8 bytes); ``latency`` is the round trip of the last keepalive
    ping, ``None`` until one was answered; ``closed`` is set once the
    connection has ended. ``inbound_bytes`` and ``outbound_bytes`` are the payload
    bytes queued each way now; the ``*_bytes_high_water`` figures the most each
    queue has held (they stay within the byte bounds, but for one message larger
    than the bound that got in alone).
    """

    messages_received: int
    messages_sent: int
    inbound_depth: int
    inbound_capacity: int
    inbound_dropped: int
    outbound_depth: int
    outbound_capacity: int
    pings_sent: int
    latency: float | None
    closed: ConnectionClosed | None
    undecodable: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    inbound_bytes: int = 0
    inbound_bytes_high_water: int = 0
    outbound_bytes: int = 0
    outbound_bytes_high_water: int = 0
    inbound_pauses: int = 0


def payload_size(message: str | bytes) -> int:
    """The size of a message's payload in bytes (text counted as its UTF-8 bytes)."""
    if isinstance(message, bytes) or message.isascii():
        return len(message)
    return len(message.encode("utf-8", "surrogatepass"))


@attrs.define(eq=False)
class Counters:
    """Mutable counters shared by the actor and its handle (no stream in here)."""

    outbound_capacity: int
    messages_received: int = 0
    messages_sent: int = 0
    pings_sent: int = 0
    undecodable: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    latency: float | None = None
    closed: ConnectionClosed | None = None
    #: Set when the connection starts closing: frames sent from then on are not written.
    closing: bool = False

    def snapshot(
        self, inbound: InboundQueue[Received], outbound: actors.MailboxStatistics
    ) -> ConnectionStatistics:
        return ConnectionStatistics(
            messages_received=self.messages_received,
            messages_sent=self.messages_sent,
            inbound_depth=len(inbound),
            inbound_capacity=inbound.capacity,
            inbound_dropped=inbound.dropped,
            outbound_depth=outbound.depth,
            outbound_capacity=self.outbound_capacity,
            pings_sent=self.pings_sent,
            latency=self.latency,
            closed=self.closed,
            undecodable=self.undecodable,
            bytes_received=self.bytes_received,
            bytes_sent=self.bytes_sent,
            inbound_bytes=inbound.queued_bytes,
            inbound_bytes_high_water=inbound.bytes_high_water,
            outbound_bytes=outbound.queued_bytes,
            outbound_bytes_high_water=outbound.bytes_high_water,
            inbound_pauses=inbound.pauses,
        )
