"""The reconnecting client: one actor in front of a succession of connection actors.

- ``_client``: :class:`ReconnectingClient`, the actor and its run loop.
- ``_handle``: :class:`ReconnectingConnection` and the functions that open one.
- ``_types``: its messages, notices, statistics; ``_policy``: its sans-IO decisions.
- ``_inbox_reader``: one reader over an inbox that outlives connections (also the pool's).
- ``_acked``: acknowledged delivery, the wing that plugs into the client (and its server side).
"""
