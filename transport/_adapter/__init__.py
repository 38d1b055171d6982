"""The adapter over trio-websocket and wsproto: every line that names either library lives here.

The connection actor sees only :class:`Backend` (send, receive, ping, close, abort) and
:class:`ServerHandshake`; nothing else in the package imports ``trio_websocket`` or
``wsproto``, so the library can be swapped (``websockets.trio`` is the likely alternative)
by rewriting this package alone. Its modules: ``_request`` reads and parses a server's
opening request before the library sees it, ``_answer`` makes every HTTP answer but
the 101 (sans-IO), ``_guard`` wraps wsproto's connection with the
frame guard and the inbound limits (``_limits``, sans-IO), ``_library`` drives
trio-websocket, and ``_hooks`` holds every private hook of either library.

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
- A protocol error detected on receive (``wsproto`` ``ParseFailed``: an unmasked client
  frame, reserved bits or opcodes, a fragmented control frame, invalid UTF-8) made the
  library drop TCP without a Close frame: wsproto reports it as a close event while its
  state stays OPEN, and the library only answers closes in state REMOTE_CLOSING. The
  wsproto connection handed to the library here (:class:`_GuardedConnection`) reports
  that event as a remote close, so the library answers with a Close frame carrying the
  event's code (1002, or 1007 for invalid UTF-8) before closing the stream.
- The limits of :class:`~transport.InboundLimits` (the same connection object enforces
  them on wsproto's events, and closes the same way): a frame header announcing more than
  ``max_message_size`` bytes is refused with 1009 when the header arrives, not after the
  peer streamed the bytes; the frames of one message are counted (a flood of empty
  continuation frames grew the library's list of parts without bound); an optional
  message rate (1008). The message size is counted in bytes, text included.
- The opening request is read and decided on before the library (or a connection actor)
  is involved (:func:`read_request`); a refused client never costs a task or an actor.
  A ``Sec-WebSocket-Key`` that is not 16 bytes of base64 is refused with 400, and so is
  an upgrade in HTTP/1.0 (RFC 6455 asks for HTTP/1.1 or later; wsproto takes either).
- Refusals were what wsproto writes: no reason phrase, a chunked body, no
  ``Connection: close``. Every answer but the 101 is now one whole HTTP/1.1 response
  (``_answer.format_response``), and its headers are checked (no CR or LF).

What it cannot close from above, and how the actor contains it instead:

- A Ping that arrives after a local close makes the library's reader raise
  ``LocalProtocolError`` (#184, fix unmerged). The reader runs in the connection actor's
  own nursery, so the error ends that connection only.
- wsproto keeps the request bytes a client pipelines behind its opening request and
  drops them at the 101 (clients must wait for it, RFC 6455 section 4.1).

Every private hook of trio-websocket and wsproto the adapter uses is one function of
``_hooks``, with why the public API does not serve; each is pinned by a test.
"""
