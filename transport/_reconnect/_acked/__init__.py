"""Acknowledged delivery: numbered envelopes, a window, and server sessions.

- ``_wire``: the frames on the wire and the client's window (sans-IO).
- ``_server``: :class:`AckedSessions` and :class:`AckedConnection`, the server side.
"""
