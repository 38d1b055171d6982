"""permessage-deflate (RFC 7692): its negotiation and a bounded inflater.

wsproto carries the extension (``wsproto.extensions.PerMessageDeflate``); what it lacks is
supplied here by :class:`DeflateExtension`, a subclass the frame guard (``_guard``) hands
to wsproto:

- Inflation is bounded. wsproto inflates each piece of a frame whole; a few hundred
  kilobytes of deflate can inflate to hundreds of megabytes. Here every piece is inflated
  with ``max_length`` set to what is left of ``max_message_size`` (plus one byte), so a
  message that inflates past the limit is refused with 1009 while it inflates, holding
  at most the limit.
- Negotiation is checked. A client refuses a response that names parameters it did not
  offer, repeats one, or carries a value out of range (:exc:`NegotiationError`, and the
  connection is failed with 1002); a server declines an offer it cannot honour (the
  connection then opens without compression) and accepts the first one it can.
- Compression uses the settings' level and memory level (wsproto's are fixed), and a
  Ping between the frames of a compressed message does not lose the message's state.

Everything here is sans-IO: no trio, no network.
"""

from __future__ import annotations

import zlib
from typing import final

import attrs
import wsproto.extensions
import wsproto.frame_protocol as fp

from .._close_codes import CloseCode
from .._compression import (
    MAX_WINDOW_BITS as _MAX_BITS,
    MIN_WINDOW_BITS as _OWN_MIN_BITS,
    Compression,
)
from ._limits import Violation

_NAME = "permessage-deflate"
_FLAGS = ("server_no_context_takeover", "client_no_context_takeover")
_BITS = ("server_max_window_bits", "client_max_window_bits")
# RFC 7692 allows 8 from a peer; zlib cannot deflate with a window of 256 bytes (ours: 9).
_PEER_MIN_BITS = 8
# The end of a flushed deflate block, stripped from every message (RFC 7692 section 7.2.1).
_TAIL = b"\x00\x00\xff\xff"


class NegotiationError(ValueError):
    """A server's permessage-deflate answer that the client must refuse (internal)."""


@final
@attrs.frozen
class Agreement:
    """What both sides agreed on: each side's window and whether it keeps its context."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = _MAX_BITS
    client_max_window_bits: int = _MAX_BITS

    def header(self) -> str:
        """The parameters as they appear in ``Sec-WebSocket-Extensions``."""
        parts = [_NAME]
        parts += [flag for flag in _FLAGS if getattr(self, flag)]
        parts += [f"{name}={getattr(self, name)}" for name in _BITS if getattr(self, name) < 15]
        return "; ".join(parts)


def parse_parameters(element: str) -> dict[str, str | None]:
    """``"permessage-deflate; a; b=1"`` as ``{"a": None, "b": "1"}``.

    Raises :exc:`NegotiationError` on another extension name, an unknown or a
    repeated parameter, a value on a flag, a window size out of range, or a
    ``server_max_window_bits`` without a value.
    """
    name, *pairs = (part.strip() for part in element.split(";"))
    if name.lower() != _NAME:
        raise NegotiationError(f"unexpected extension {name!r}")
    parameters: dict[str, str | None] = {}
    for pair in pairs:
        key, sep, raw = (part.strip() for part in pair.partition("="))
        key = key.lower()
        value = raw.strip('"') if sep else None
        if key in parameters:
            raise NegotiationError(f"repeated parameter {key}")
        if key in _FLAGS and value is not None:
            raise NegotiationError(f"{key} takes no value")
        if key in _BITS:
            if value is None and key == "server_max_window_bits":
                raise NegotiationError(f"{key} needs a value")
            if value is not None and not (
                value.isdigit() and _PEER_MIN_BITS <= int(value) <= _MAX_BITS
            ):
                raise NegotiationError(f"{key}={value} is not a window size from 8 to 15")
        elif key not in _FLAGS:
            raise NegotiationError(f"unknown parameter {key!r}")
        parameters[key] = value
    return parameters


def client_offer(settings: Compression) -> str:
    """The client's offer: its settings, and room for the server to limit the client's window."""
    parts = [flag for flag in _FLAGS if getattr(settings, flag)]
    bits = settings.client_max_window_bits
    parts.append(
        "client_max_window_bits" if bits == _MAX_BITS else f"client_max_window_bits={bits}"
    )
    if settings.server_max_window_bits < _MAX_BITS:
        parts.append(f"server_max_window_bits={settings.server_max_window_bits}")
    return "; ".join(parts)


def client_agreement(settings: Compression, answer: str) -> Agreement:
    """Check a server's answer to :func:`client_offer` (raises :exc:`NegotiationError`)."""
    parameters = parse_parameters(answer)
    if "client_max_window_bits" in parameters and parameters["client_max_window_bits"] is None:
        raise NegotiationError("client_max_window_bits needs a value in an answer")
    if settings.server_no_context_takeover and "server_no_context_takeover" not in parameters:
        raise NegotiationError("the answer drops server_no_context_takeover, which was requested")
    offered_server = settings.server_max_window_bits
    server_bits = _bits(parameters, "server_max_window_bits", _MAX_BITS)
    if server_bits > offered_server:
        raise NegotiationError(
            f"server_max_window_bits={server_bits} exceeds the offered {offered_server}"
        )
    client_bits = _bits(parameters, "client_max_window_bits", settings.client_max_window_bits)
    if client_bits < _OWN_MIN_BITS:
        raise NegotiationError(f"client_max_window_bits={client_bits} is below zlib's minimum of 9")
    return Agreement(
        server_no_context_takeover="server_no_context_takeover" in parameters,
        client_no_context_takeover=(
            settings.client_no_context_takeover or "client_no_context_takeover" in parameters
        ),
        server_max_window_bits=server_bits,
        client_max_window_bits=min(client_bits, settings.client_max_window_bits),
    )


def server_agreement(settings: Compression, offer: str) -> Agreement | None:
    """The server's answer to one offer, or ``None`` to decline it (it cannot be honoured)."""
    try:
        parameters = parse_parameters(offer)
    except NegotiationError:
        return None
    requested_server = _bits(parameters, "server_max_window_bits", _MAX_BITS)
    server_bits = min(requested_server, settings.server_max_window_bits)
    if server_bits < _OWN_MIN_BITS:
        return None  # zlib cannot compress with a window of 256 bytes
    client_bits = _MAX_BITS  # unless the client said it can be limited
    if "client_max_window_bits" in parameters:
        offered = _bits(parameters, "client_max_window_bits", _MAX_BITS)
        client_bits = min(offered, settings.client_max_window_bits)
    return Agreement(
        server_no_context_takeover=(
            settings.server_no_context_takeover or "server_no_context_takeover" in parameters
        ),
        client_no_context_takeover=(
            settings.client_no_context_takeover or "client_no_context_takeover" in parameters
        ),
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )


def _bits(parameters: dict[str, str | None], name: str, default: int) -> int:
    value = parameters.get(name)
    return default if value is None else int(value)


class DeflateExtension(wsproto.extensions.PerMessageDeflate):
    """wsproto's permessage-deflate, with checked negotiation and bounded inflation.

    ``refusal`` holds why the peer's data was refused (1009 past the limit, 1007
    for a broken deflate stream) once :meth:`frame_inbound_payload_data` refused
    it; ``agreement`` holds the negotiated parameters once enabled.
    """

    def __init__(self, settings: Compression, max_message_size: int) -> None:
        super().__init__()
        self._settings = settings
        self._max_message_size = max_message_size
        self._inflated = 0
        self.agreement: Agreement | None = None
        self.refusal: Violation | None = None

    # -- negotiation ---------------------------------------------------------------------

    def offer(self) -> str:
        return client_offer(self._settings)

    def finalize(self, offer: str) -> None:
        """Client side: ``offer`` is the server's answer (raises :exc:`NegotiationError`)."""
        if self.agreement is not None:
            raise NegotiationError("the answer names permessage-deflate twice")
        self._agree(client_agreement(self._settings, offer))

    def accept(self, offer: str) -> str | None:
        """Server side: the answer to the first offer that can be honoured, ``None`` to decline."""
        if self.agreement is not None:
            return None  # one permessage-deflate per connection: the first acceptable offer
        agreement = server_agreement(self._settings, offer)
        if agreement is None:
            return None
        self._agree(agreement)
        return agreement.header().removeprefix(_NAME).removeprefix("; ")

    def _agree(self, agreement: Agreement) -> None:
        self.agreement = agreement
        self.server_no_context_takeover = agreement.server_no_context_takeover
        self.client_no_context_takeover = agreement.client_no_context_takeover
        # The inflater never needs less than 9 bits (a peer limited to 8 fits in 9).
        self.server_max_window_bits = max(agreement.server_max_window_bits, _OWN_MIN_BITS)
        self.client_max_window_bits = max(agreement.client_max_window_bits, _OWN_MIN_BITS)
        self._enabled = True

    # -- inbound: bounded inflation ------------------------------------------------------

    def frame_inbound_header(
        self,
        proto: fp.FrameDecoder | fp.FrameProtocol,
        opcode: fp.Opcode,
        rsv: fp.RsvBits,
        payload_length: int,
    ) -> fp.CloseReason | fp.RsvBits:
        if opcode.iscontrol():  # never compressed; leaves the state of a message alone
            if rsv.rsv1:
                return fp.CloseReason.PROTOCOL_ERROR
            self._inbound_is_compressible = False
            return fp.RsvBits(False, False, False)
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_payload_data(
        self, proto: fp.FrameDecoder | fp.FrameProtocol, data: bytes
    ) -> bytes | fp.CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(data)

    def frame_inbound_complete(
        self, proto: fp.FrameDecoder | fp.FrameProtocol, fin: bool
    ) -> bytes | fp.CloseReason | None:
        if not fin or not self._inbound_is_compressible:
            return None  # a control frame between the frames of a message keeps its state
        if not self._inbound_compressed:
            self._inbound_compressed = None
            return None
        data = self._inflate(_TAIL)
        no_context_takeover = (
            self.server_no_context_takeover if proto.client else self.client_no_context_takeover
        )
        if no_context_takeover:
            self._decompressor = None
        self._inbound_compressed = None
        self._inflated = 0
        return data

    def _inflate(self, data: bytes) -> bytes | fp.CloseReason:
        inflater = self._decompressor
        assert inflater is not None
        room = self._max_message_size - self._inflated
        try:
            inflated = inflater.decompress(data, room + 1)
        except zlib.error:
            self.refusal = Violation(CloseCode.INVALID_PAYLOAD, "invalid compressed data")
            return fp.CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(inflated)
        if self._inflated > self._max_message_size or inflater.unconsumed_tail:
            self.refusal = Violation(
                CloseCode.MESSAGE_TOO_BIG,
                f"message inflates past the limit of {self._max_message_size} bytes",
            )
            return fp.CloseReason.MESSAGE_TOO_BIG
        return inflated

    # -- outbound: the settings' level and memory level ----------------------------------

    def frame_outbound(
        self,
        proto: fp.FrameDecoder | fp.FrameProtocol,
        opcode: fp.Opcode,
        rsv: fp.RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[fp.RsvBits, bytes]:
        if self._compressor is None and opcode in (fp.Opcode.TEXT, fp.Opcode.BINARY):
            bits = self.client_max_window_bits if proto.client else self.server_max_window_bits
            self._compressor = zlib.compressobj(
                self._settings.level, zlib.DEFLATED, -bits, self._settings.memory_level
            )
        return super().frame_outbound(proto, opcode, rsv, data, fin)
