"""The connection core: one actor owns one WebSocket stream.

- ``_actor``: :class:`ConnectionActor`, its reader, writer and timers, and how it is spawned.
- ``_handle``: :class:`WebSocketConnection`, what application code holds of a connection.
- ``_messages``: the messages, options, statistics and handshake values of a connection.
- ``_inbound``: the bounded inbound queue between the reader and the application (the
  outbound queue is the actor's own mailbox: one door into the writer).
"""
