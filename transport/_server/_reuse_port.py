"""Listening sockets with ``SO_REUSEPORT``: several processes share one port, the kernel balances.

``trio.open_tcp_listeners`` takes no socket options, so these sockets are built here the way
it builds its own (``SO_REUSEADDR``, ``IPV6_V6ONLY``, one socket per address of the host),
plus ``SO_REUSEPORT``. What Linux does with it:

* every socket bound to the port must set ``SO_REUSEPORT`` before ``bind``, and all must
  belong to the same effective user id; a socket of another user is refused;
* a port already held by a socket *without* ``SO_REUSEPORT`` (a stranger's ordinary server)
  is refused with ``EADDRINUSE``: the sharing is opt-in on both sides;
* a stranger of the same user that also sets ``SO_REUSEPORT`` can join the group: keep the
  servers of one port under one user;
* new connections are spread over the *listening* sockets of the group by a hash of the
  connection's addresses; a socket that is bound but not listening holds the port and gets
  none of them.
"""

from __future__ import annotations

import errno
import socket
import sys

import trio

#: The accept queue asked for (the kernel caps it at ``net.core.somaxconn``).
BACKLOG = 0xFFFF


def reuse_port_supported() -> bool:
    """Whether this platform has ``SO_REUSEPORT`` (Linux, the BSDs, macOS; not Windows)."""
    return hasattr(socket, "SO_REUSEPORT") and sys.platform != "win32"


async def bind_reuse_port(host: str | None, port: int) -> list[trio.socket.SocketType]:
    """Sockets bound (not listening) to every address of ``host`` on ``port``, with
    ``SO_REUSEPORT``; port 0 picks one free port, shared by all the addresses."""
    if not reuse_port_supported():
        raise OSError(errno.ENOPROTOOPT, "reuse_port needs SO_REUSEPORT, which this platform lacks")
    addresses = await trio.socket.getaddrinfo(
        host, port, type=trio.socket.SOCK_STREAM, flags=trio.socket.AI_PASSIVE
    )
    sockets: list[trio.socket.SocketType] = []
    try:
        for family, kind, proto, _, address in addresses:
            sock = trio.socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                # The first socket chose the port: the other addresses take the same one.
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            await sock.bind(address)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def open_reuse_port_listeners(host: str | None, port: int) -> list[trio.SocketListener]:
    """Listeners on every address of ``host`` on ``port``, sharing it through ``SO_REUSEPORT``."""
    sockets = await bind_reuse_port(host, port)
    try:
        for sock in sockets:
            sock.listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return [trio.SocketListener(sock) for sock in sockets]
