"""The frame guard: wsproto's connection, plus a Close frame on protocol errors and the limits.

The library is handed a :class:`GuardedConnection` instead of wsproto's own
``WSConnection``. It applies the inbound limits of :class:`~transport.InboundLimits`
(through the sans-IO :class:`~._limits.InboundGuard`) to wsproto's events, frame by
frame, and turns a protocol error wsproto detects on receive into a close the library
answers with a Close frame. It also carries permessage-deflate (``_deflate``) when the
connection's limits ask for it: it adds the extension to the client's request and to the
server's 101, and fails a client handshake whose answer is invalid.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Callable, Generator

import trio
import wsproto
import wsproto.connection
import wsproto.events
import wsproto.utilities

from .._close_codes import CloseCode
from ._deflate import DeflateExtension, NegotiationError
from ._hooks import (
    apply_mask,
    close_frame,
    fast_unmasking,
    light_event_queue,
    open_connection,
    payload_announced,
    take_handshake,
)
from ._limits import DEFAULT_LIMITS, BackendLimits, InboundGuard, Violation


class GuardedConnection(wsproto.WSConnection):
    """wsproto's connection, plus a Close frame on protocol errors and the inbound limits.

    When wsproto detects a protocol error it yields a close event but leaves
    its state OPEN, and the library then drops TCP without a Close frame. So
    do the limits of :class:`InboundGuard` when they are broken. In both cases
    this connection records the :class:`Violation`. Everything the peer sends
    after that is ignored. Then either:

    - the connection's owner takes it (``report`` returns true; see
      :func:`~._library.route_inbound`): nothing is yielded, the state stays
      OPEN so that the replies to the messages before the error can still be
      written, and the owner sends the Close frame itself later
      (:meth:`~._library.Backend.fail`): strict close order. A violation found
      once open but before the owner could be told is held until it is
      (:meth:`report_pending`), if ``hold_violations`` says an owner will come;
    - or (no owner, or it declines) this connection reports its state as
      REMOTE_CLOSING and yields a close event: the library answers it with a
      Close frame carrying the code (built here, as wsproto would), marks the
      connection closed and closes the stream.

    A server's request is parsed once, by this connection: the adapter reads it
    before the library exists (``_request``), sets the connection's limits
    (:meth:`set_limits`) and hands the same connection and the request event to the
    library (``_hooks.library_request``) before its reader starts.
    """

    def __init__(
        self,
        connection_type: wsproto.ConnectionType,
        limits: BackendLimits = DEFAULT_LIMITS,
        hold_violations: bool = False,
    ) -> None:
        super().__init__(connection_type)
        self.set_limits(limits)
        self.violation: Violation | None = None
        #: Told of a violation; true if it takes the close on itself (see the class docstring).
        self.report: Callable[[Violation], bool] | None = None
        self._reported = False
        # A violation found before the connection's owner could be told (frames that
        # came with the handshake): held until report_pending().
        self._pending = False
        # Whether an owner will route this connection (and so may be told later).
        self._hold = hold_violations
        self._close_sent = False
        # Once open, the finished HTTP/1.1 handshake (an h11 parser and its buffers) is
        # dropped; the events it still held are kept here until they are read.
        self._handshake_events: list[wsproto.events.Event] | None = None
        #: Why a client refused the server's 101 response, if it did.
        self.handshake_failure: str | None = None
        #: True if that was for its extension answer (then it failed the connection with 1002).
        self.extension_failure = False

    @property
    def compression(self) -> str | None:
        """The permessage-deflate parameters agreed on, or ``None`` (not negotiated)."""
        deflate = self._deflate
        if deflate is None or deflate.agreement is None:
            return None
        return deflate.agreement.header()

    @property
    def state(self) -> wsproto.connection.ConnectionState:
        if self.violation is None:
            return super().state
        if self._close_sent:
            return wsproto.connection.ConnectionState.CLOSED
        if self._reported or self._pending:
            return super().state
        return wsproto.connection.ConnectionState.REMOTE_CLOSING

    @property
    def is_open(self) -> bool:
        """True once the opening handshake succeeded (whatever happened since)."""
        return self._handshake_events is not None

    def send(self, event: wsproto.events.Event) -> bytes:
        if self._deflate is not None and isinstance(
            event, wsproto.events.Request | wsproto.events.AcceptConnection
        ):
            event = dataclasses.replace(event, extensions=[self._deflate])
        if self.handshake_failure is not None:
            if not isinstance(event, wsproto.events.CloseConnection) or self._close_sent:
                raise wsproto.utilities.LocalProtocolError("the handshake failed")
            self._close_sent = True
            return close_frame(self, event.code, event.reason)
        if self.violation is None:
            data = super().send(event)
            if self._handshake_events is None:
                self._drop_handshake()
            return data
        if (
            (self._reported or self._pending)
            and not self._close_sent
            and not isinstance(event, wsproto.events.CloseConnection)
        ):
            return super().send(event)  # a reply to a message that came before the error
        if isinstance(event, wsproto.events.CloseConnection) and not self._close_sent:
            self._close_sent = True
            return close_frame(self, event.code, event.reason)
        raise wsproto.utilities.LocalProtocolError(
            f"Event {event} cannot be sent in state {self.state}."
        )

    def encode_message(self, message: str | bytes) -> bytes:
        """One whole message as its data frame: what :meth:`send` returns for a message event.

        Framed here, without wsproto's per-frame objects, while the connection is open
        with no extension and no violation (the common case); through :meth:`send`
        otherwise, so every state check and error is wsproto's. Raises
        :exc:`wsproto.utilities.LocalProtocolError` when no message may be sent.
        """
        frames = self.connection
        if (
            self._deflate is not None
            or self.violation is not None
            or frames is None
            or frames.state is not _OPEN
            or self._handshake_events is None
            or (self.client and apply_mask is None)
        ):
            event: wsproto.events.Event = (
                wsproto.events.TextMessage(data=message)
                if isinstance(message, str)
                else wsproto.events.BytesMessage(data=message)
            )
            return self.send(event)
        if isinstance(message, str):
            payload = message.encode("utf-8")
            first = 0x81  # FIN, text
        else:
            payload = message
            first = 0x82  # FIN, binary
        size = len(payload)
        if not self.client:
            if size < 126:
                return bytes((first, size)) + payload
            if size < 65536:
                return _HEADER_16.pack(first, 126, size) + payload
            return _HEADER_64.pack(first, 127, size) + payload
        assert apply_mask is not None
        key = os.urandom(4)  # a fresh masking key per frame, as wsproto picks it
        if size < 126:
            header = bytes((first, 0x80 | size))
        elif size < 65536:
            header = _HEADER_16.pack(first, 0x80 | 126, size)
        else:
            header = _HEADER_64.pack(first, 0x80 | 127, size)
        return header + key + apply_mask(payload, key)

    def receive_data(self, data: bytes | None) -> None:
        if self.violation is not None or self.handshake_failure is not None:
            return
        connecting = self.connection is None
        try:
            super().receive_data(data)
        except (NegotiationError, wsproto.utilities.RemoteProtocolError) as exc:
            if not (self.client and connecting):
                raise
            # The library would answer a client's handshake error with the hint, an HTTP
            # rejection a client cannot send: the failure is recorded for the handshake's
            # caller instead, and the library closes the stream.
            close = None
            if _about_extensions(exc):
                # RFC 6455 section 4.1, RFC 7692 section 5: fail the connection, with a
                # Close frame saying why (see send).
                self.extension_failure = True
                close = wsproto.events.CloseConnection(
                    CloseCode.PROTOCOL_ERROR, "invalid extension answer"
                )
            self.handshake_failure = str(exc)
            raise wsproto.utilities.RemoteProtocolError(str(exc), event_hint=close) from exc
        if self._handshake_events is None:
            self._drop_handshake()

    def _drop_handshake(self) -> None:
        if self._handshake_events is None:
            self._handshake_events = take_handshake(self)
            if self._handshake_events is not None:
                frames = open_connection(self)
                light_event_queue(frames)
                fast_unmasking(frames)

    def set_limits(self, limits: BackendLimits, *, hold_violations: bool | None = None) -> None:
        """Apply ``limits`` to the frames from here on (before the connection opens);
        ``hold_violations``, if given, as in the constructor."""
        self._guard = InboundGuard(limits.inbound, limits.max_message_size, trio.current_time)
        compression = limits.compression
        self._deflate = (
            None if compression is None else DeflateExtension(compression, limits.max_message_size)
        )
        if hold_violations is not None:
            self._hold = hold_violations

    def _library_events(self) -> Generator[wsproto.events.Event, None, None]:
        pending = self._handshake_events
        if pending is None:
            yield from super().events()
            return
        while pending:
            yield pending.pop(0)
        yield from open_connection(self).events()

    def events(self) -> Generator[wsproto.events.Event, None, None]:
        if self.violation is not None:
            return
        pending = self._handshake_events
        # Once open and the handshake's events taken, straight from the frame layer.
        source = (
            open_connection(self).events()
            if pending is not None and not pending
            else self._library_events()
        )
        for event in source:
            violation = self._check(event)
            if violation is not None:
                close = self._fail(violation)
                if close is not None:
                    yield close
                return
            yield event
        remaining = payload_announced(self)
        if remaining is not None:
            violation = self._guard.on_frame_header(remaining)
            if violation is not None:
                close = self._fail(violation)
                if close is not None:
                    yield close

    def _check(self, event: wsproto.events.Event) -> Violation | None:
        guard = self._guard
        # wsproto makes its message events of these exact types: no isinstance walk.
        if type(event) is wsproto.events.BytesMessage:
            return guard.on_data(len(event.data), event.frame_finished, event.message_finished)
        if type(event) is wsproto.events.TextMessage:
            data = event.data
            size = len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
            return guard.on_data(size, event.frame_finished, event.message_finished)
        if isinstance(event, wsproto.events.Ping | wsproto.events.Pong):
            return guard.on_control()
        if (
            isinstance(event, wsproto.events.CloseConnection)
            and super().state is wsproto.connection.ConnectionState.OPEN
        ):
            # wsproto's ParseFailed: a close event it did not receive from the peer.
            refusal = None if self._deflate is None else self._deflate.refusal
            return refusal or Violation(event.code, event.reason or "")
        return None

    def _fail(self, violation: Violation) -> wsproto.events.CloseConnection | None:
        self.violation = violation
        report = self.report
        if report is None and self._hold and self._handshake_events is not None:
            self._pending = True  # open, not routed yet: the owner is told on routing
            return None
        if report is not None and report(violation):
            self._reported = True
            return None
        return wsproto.events.CloseConnection(code=violation.code, reason=violation.reason)

    def report_pending(self) -> None:
        """Tell ``report`` of a violation found before it was set (see ``_fail``)."""
        if not self._pending:
            return
        self._pending = False
        assert self.report is not None
        assert self.violation is not None
        self._reported = self.report(self.violation)


_OPEN = wsproto.connection.ConnectionState.OPEN
# A data frame's first two bytes and its 16-bit or 64-bit payload length.
_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def _about_extensions(exc: Exception) -> bool:
    # wsproto names an extension the client did not offer "unrecognized extension".
    return isinstance(exc, NegotiationError) or "extension" in str(exc)
