"""permessage-deflate settings (RFC 7692): values only; the adapter does the compressing.

Internal: users set ``ConnectionOptions.compression`` and its ``compression_*`` fields,
which :func:`settings_of` turns into a :class:`Compression`.
"""

from __future__ import annotations

from typing import final

import attrs

#: The smallest window zlib can compress with (RFC 7692 allows 8; zlib refuses it).
MIN_WINDOW_BITS = 9
MAX_WINDOW_BITS = 15


@final
@attrs.frozen(kw_only=True)
class Compression:
    """permessage-deflate settings (RFC 7692) of one connection, client or server.

    ``server_*`` parameters are about what the server compresses, ``client_*``
    about what the client compresses, on both sides; a client requests them in
    its offer, a server imposes them in its answer.

    - ``server_no_context_takeover`` / ``client_no_context_takeover``: that side
      starts every message with an empty window, so neither side keeps a
      compressor nor an inflater between messages (no memory when idle, less
      compression on messages that repeat each other).
    - ``server_max_window_bits`` / ``client_max_window_bits`` (9 to 15): the
      window of that side's compressor, ``2**bits`` bytes (the inflater on the
      other side needs as much). A peer that does not support limiting the
      client's window keeps 15.
    - ``level`` (0 to 9) and ``memory_level`` (1 to 9): zlib's settings for what
      this side compresses; the compressor holds about
      ``2**(window_bits + 2) + 2**(memory_level + 9)`` bytes.

    The default matches ``websockets``: windows of 4 KiB (12 bits), memory level 5,
    context takeover on.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 12
    client_max_window_bits: int = 12
    level: int = 6
    memory_level: int = 5

    def __attrs_post_init__(self) -> None:
        for name in ("server_max_window_bits", "client_max_window_bits"):
            bits = getattr(self, name)
            if not MIN_WINDOW_BITS <= bits <= MAX_WINDOW_BITS:
                raise ValueError(f"{name} must be between 9 and 15, not {bits!r}")
        if not 0 <= self.level <= 9:
            raise ValueError(f"level must be between 0 and 9, not {self.level!r}")
        if not 1 <= self.memory_level <= 9:
            raise ValueError(f"memory_level must be between 1 and 9, not {self.memory_level!r}")


def settings_of(
    enabled: bool, window_bits: int, context_takeover: bool, memory_level: int
) -> Compression | None:
    """The settings both directions share, or ``None`` when compression is off."""
    if not enabled:
        return None
    return Compression(
        server_no_context_takeover=not context_takeover,
        client_no_context_takeover=not context_takeover,
        server_max_window_bits=window_bits,
        client_max_window_bits=window_bits,
        memory_level=memory_level,
    )


#: The defaults of ``ConnectionOptions`` with compression on (websockets' too).
DEFAULT_COMPRESSION = Compression()
