"""Every private hook of trio-websocket and wsproto that the adapter uses, in one place.

Each function here is one hook, with why the public API does not serve; nothing else in
the package touches a private name of either library (nor needs a ``type: ignore`` for
one). ``tests/test_ws_hooks.py`` pins each hook against the installed versions
(trio-websocket 0.12, wsproto 1.2 and 1.3, the ranges ``pyproject.toml`` declares), so an
upgrade that moves one fails there, by name, before anything else does.

trio-websocket's own ``wrap_*_stream``, ``connect_websocket`` and ``ping`` use the same
hooks; the adapter calls them itself because it owns what those functions would choose
for it: the nursery and cancel scope of the reader, the TLS handshake, the deadline, and
where inbound messages go.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Protocol

import trio
import trio_websocket as tw
import wsproto
import wsproto.events
import wsproto.frame_protocol

#: websockets' C masking (its optional ``speedups``), or ``None``.
apply_mask: Callable[[bytes | bytearray, bytes], bytes] | None
try:  # C unmasking, from the optional ``speedups`` extra (see fast_unmasking)
    from websockets.speedups import apply_mask as apply_mask
except ImportError:  # pragma: no cover - websockets is installed with the tests
    apply_mask = None


class PongListener(Protocol):
    """Told when the Pong of a Ping arrives (or a Pong to a later Ping: the peer may skip)."""

    def set(self) -> None: ...


class MessageSink(Protocol):
    """What may stand in for the library's message channel (see :func:`install_sink`)."""

    async def send(self, message: str | bytes) -> None: ...

    async def receive(self) -> str | bytes: ...

    async def aclose(self) -> None: ...


# -- trio-websocket -------------------------------------------------------------------------


def run_reader(ws: tw.WebSocketConnection) -> Coroutine[object, None, None]:
    """The library's reader loop (``_reader_task``), to await.

    Its public ``wrap_*_stream`` start it in a nursery of their own; the adapter runs it
    in the owning actor's nursery, inside a cancel scope the actor can shield while it
    closes (``Backend.shield_reader``). Not a coroutine function itself: awaiting the
    loop's own coroutine keeps one frame fewer alive on every idle connection.
    """
    return ws._reader_task()


async def wait_open(ws: tw.WebSocketConnection) -> None:
    """Wait until the client's opening handshake has ended, either way (``_open_handshake``).

    ``connect_websocket`` waits on the same event; the adapter does the TCP and TLS
    parts itself (TLS errors at once, one deadline), so it waits here.
    """
    await ws._open_handshake.wait()


def library_request(
    ws: tw.WebSocketConnection, event: wsproto.events.Request
) -> tw.WebSocketRequest:
    """The library's request object for the request event the adapter parsed, made
    before the library's reader starts; the library's own wait for a request
    (``_connection_proposal``) is dropped.

    ``wrap_server_stream`` has the reader find the request and hand it over through that
    future; the adapter has already read, parsed and decided on the request, so it makes
    the request object itself (what the reader would have made) and the reader never
    sees the request. Its loop keeps the last event it handled, and the last bytes it
    read, for as long as the connection stays idle (about a kilobyte per connection),
    and the hand-over would cost a task switch per connection.
    """
    ws._connection_proposal = None
    return tw.WebSocketRequest(ws, event)


def mark_accepted(ws: tw.WebSocketConnection, path: str, subprotocol: str | None) -> None:
    """Record a 101 the adapter wrote itself, as the library's ``_accept`` does after its
    write (``_subprotocol``, ``_path``, ``_open_handshake``).

    ``WebSocketRequest.accept`` writes the 101 through the library's ``_send``, which
    waits for the stream lock (a checkpoint) before its write (another); the server's
    connection writes it holding the lock it takes without a wait (nothing else has
    written yet), one checkpoint for every accepted connection.
    """
    ws._subprotocol = subprotocol
    ws._path = path
    ws._open_handshake.set()


def expect_pong(ws: tw.WebSocketConnection, payload: bytes, listener: PongListener) -> None:
    """Have the reader call ``listener.set()`` when the Pong for ``payload`` arrives (``_pings``).

    The public ``ping`` waits for the Pong; the connection actor writes the Ping under a
    shielded, bounded scope and checks for the Pong later, without a task waiting.
    """
    ws._pings[payload] = listener  # type: ignore[assignment]  # the reader only calls set()


async def send_ping_frame(ws: tw.WebSocketConnection, payload: bytes) -> None:
    """Write one Ping frame (``_send``), without waiting for its Pong (see :func:`expect_pong`)."""
    await ws._send(wsproto.events.Ping(payload=payload))


def stream_lock(ws: tw.WebSocketConnection) -> trio.StrictFIFOLock:
    """The lock the library holds around every write to its stream (``_stream_lock``).

    The connection's writer encodes the frames of a busy spell itself and writes them
    in one go (``Backend.send_encoded``); it takes this lock so that its write never
    interleaves with the reader's own (a Pong, a Close).
    """
    return ws._stream_lock


async def abort_library(ws: tw.WebSocketConnection) -> None:
    """Mark the connection closed (1006) after its stream broke (``_abort_web_socket``).

    What the library's own send does when a write fails; the writer that wrote past the
    library does the same, so the reader and :meth:`~._library.Backend.closed_with`
    see the end as they would have.
    """
    await ws._abort_web_socket()


def install_sink(
    ws: tw.WebSocketConnection,
    make_sink: Callable[[trio.MemorySendChannel[str | bytes]], MessageSink],
) -> None:
    """Put a sink made from the library's send channel where the reader sends messages
    (``_send_channel``).

    The reader awaits ``_send_channel.send(message)`` for every message; the sink hands
    it to the connection actor without blocking (``_library.route_inbound``). Called
    before the reader starts.
    """
    ws._send_channel = make_sink(ws._send_channel)  # type: ignore[assignment]


def installed_sink(ws: tw.WebSocketConnection) -> object:
    """The sink :func:`install_sink` installed (``_send_channel``)."""
    sink: object = ws._send_channel
    return sink


def library_messages(ws: tw.WebSocketConnection) -> trio.MemoryReceiveChannel[str | bytes]:
    """The library's own bounded queue of messages received so far (``_recv_channel``)."""
    return ws._recv_channel


def route_receive_side(ws: tw.WebSocketConnection, sink: MessageSink) -> None:
    """Let the library's receive side be ``sink`` too (``_recv_channel``).

    The library closes its receive side on a close of its own (a size limit, a close
    handshake); once routed, the sink hears that, and the library's queue is dropped.
    """
    ws._recv_channel = sink  # type: ignore[assignment]


# -- wsproto --------------------------------------------------------------------------------


def take_handshake(connection: wsproto.WSConnection) -> list[wsproto.events.Event] | None:
    """Once open, drop the finished HTTP/1.1 handshake (``handshake``); the events it held.

    ``WSConnection`` keeps its h11 parser and buffers for the connection's whole life
    (kilobytes per idle connection); ``None`` while the handshake is still under way
    (``connection`` is unset until then). On a server, what the client sent after its
    request in the same read (frames it did not wait for the 101 to send) is still in
    the handshake's h11 parser (``_h11_connection.trailing_data``), which wsproto hands on
    to the frame layer for a client only; it is handed on here, so those frames are read
    first instead of being dropped with the parser.
    """
    frames = connection.connection
    if frames is None:
        return None
    handshake = connection.handshake
    events = list(handshake.events())
    if not connection.client:
        trailing, _ = handshake._h11_connection.trailing_data
        if trailing:
            frames.receive_data(bytes(trailing))
    del connection.handshake
    return events


def request_http_version(connection: wsproto.WSConnection) -> bytes | None:
    """The HTTP version of the request a server's handshake parsed (``b"1.1"``), else ``None``.

    Read from the handshake's h11 parser (``handshake._h11_connection``, its public
    ``their_http_version``): wsproto's request event leaves the version out, and wsproto
    accepts an HTTP/1.0 upgrade, which RFC 6455 section 4.1 does not (HTTP/1.1 or later).
    """
    version: bytes | None = connection.handshake._h11_connection.their_http_version
    return version


def request_method(connection: wsproto.WSConnection) -> bytes | None:
    """The method of the request a server's handshake parsed (``b"GET"``), else ``None``.

    Read from the handshake's h11 parser (``handshake._h11_connection._request_method``),
    which holds it from the moment the request line is parsed, also when wsproto then
    refuses the request: the answer to a HEAD request must leave the body out, and
    wsproto's refusal (its error) does not say what the method was.
    """
    method: bytes | None = connection.handshake._h11_connection._request_method
    return method


class _EventQueue(list[wsproto.events.Event]):
    """wsproto's queue of pending events with a list's footprint (see :func:`light_event_queue`)."""

    __slots__ = ()

    def popleft(self) -> wsproto.events.Event:
        return self.pop(0)


def light_event_queue(connection: wsproto.connection.Connection) -> None:
    """Replace the frame layer's queue of pending events (``_events``) with a list.

    wsproto keeps a ``deque`` there (760 bytes even when empty, on every connection) and
    queues an event in it only when the stream ends (a ``CloseConnection``); the list
    has the deque's ``append`` and ``popleft`` and weighs 56 bytes. Called once the
    connection is open.
    """
    connection._events = _EventQueue()  # type: ignore[assignment]  # append/popleft suffice


class _FastMasker:
    """wsproto's ``XorMaskerSimple`` with websockets' C ``apply_mask`` (see :func:`fast_unmasking`)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes | bytearray) -> None:
        self._key = bytes(key)

    def process(self, data: bytearray) -> bytes | bytearray:
        if not data:
            return data
        assert apply_mask is not None
        unmasked: bytes = apply_mask(data, self._key)
        # The key goes on where this part of the payload ended (a frame's payload may
        # come in several parts), as wsproto's masker does.
        turn = len(data) % 4
        if turn:
            self._key = self._key[turn:] + self._key[:turn]
        return unmasked


class _FastFrameDecoder(wsproto.frame_protocol.FrameDecoder):
    """wsproto's frame decoder whose maskers unmask in C (see :func:`fast_unmasking`)."""

    def parse_header(self) -> bool:
        parsed = super().parse_header()
        masker = self.masker
        if parsed and type(masker) is wsproto.frame_protocol.XorMaskerSimple:
            self.masker = _FastMasker(masker._masking_key)  # type: ignore[assignment]
        return parsed


def fast_unmasking(connection: wsproto.connection.Connection) -> bool:
    """Have the frame decoder (``_proto._frame_decoder``) unmask payloads in C; False if it cannot.

    A server unmasks every byte a client sends; wsproto does it in Python (four
    ``bytes.translate`` over strided slices, about 110 microseconds per 64 KiB
    here), websockets' C ``apply_mask`` in about 1.5. Used when ``websockets`` is installed (the
    ``speedups`` extra); the decoder's class is swapped for a subclass that only replaces
    the masker it makes for each frame, so nothing is added per connection.
    """
    if apply_mask is None:
        return False
    decoder = connection._proto._frame_decoder
    if type(decoder) is not wsproto.frame_protocol.FrameDecoder:
        return False
    decoder.__class__ = _FastFrameDecoder
    return True


def open_connection(connection: wsproto.WSConnection) -> wsproto.connection.Connection:
    """The open connection's frame layer (``connection``), after :func:`take_handshake`."""
    assert connection.connection is not None
    return connection.connection


def close_frame(connection: wsproto.WSConnection, code: int, reason: str | None) -> bytes:
    """A Close frame as wsproto would write it (``client`` and ``FrameProtocol``).

    Written when the frame guard closes for a violation, a state in which wsproto
    itself refuses to send a Close.
    """
    frames = wsproto.frame_protocol.FrameProtocol(connection.client, [])
    return bytes(frames.close(code, reason))


def payload_announced(connection: wsproto.WSConnection) -> int | None:
    """Payload bytes a data frame's header announced that have not arrived yet.

    Read (never written) from wsproto's frame decoder (``connection._proto._frame_decoder``,
    its ``header`` and ``payload_consumed``), so a frame announcing too much is refused
    when its header arrives, not after its payload; ``None`` between frames, for control
    frames, and while the handshake is under way.
    """
    decoder = getattr(getattr(connection.connection, "_proto", None), "_frame_decoder", None)
    header = getattr(decoder, "header", None)
    if header is None or header.opcode.iscontrol():
        return None
    consumed = getattr(decoder, "payload_consumed", 0)
    return int(header.payload_len) - int(consumed)
