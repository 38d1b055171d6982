"""A tiny static HTTP server for the chat page: GET only, a fixed set of files, one response
per connection (HTTP/1.0 style), every read and write under a deadline.

It exists so the example needs nothing but trio; in production put the page behind any web
server or CDN. The page then connects to the chat's WebSocket port, and the chat server's
handshake policy admits it by its ``Origin`` (see ``transport/apps/chat_server.py``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path

import attrs
import trio

STATIC = Path(__file__).resolve().parent / "static"
REQUEST_LIMIT = 8192
REQUEST_TIMEOUT = 10.0

logger = logging.getLogger("transport.apps.static_page")


@attrs.frozen
class StaticFile:
    body: bytes
    content_type: str


def chat_page_files() -> dict[str, StaticFile]:
    """The chat page, at ``/`` and ``/chat.html``."""
    page = StaticFile((STATIC / "chat.html").read_bytes(), "text/html; charset=utf-8")
    return {"/": page, "/chat.html": page}


def response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def answer(request: bytes, files: Mapping[str, StaticFile]) -> bytes:
    """The whole response to one request head (pure: easy to test, easy to read)."""
    request_line = request.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return response("400 Bad Request", b"bad request\n")
    method, target, _ = parts
    if method != "GET":
        return response("405 Method Not Allowed", b"only GET\n")
    found = files.get(target.split("?", 1)[0])
    if found is None:
        return response("404 Not Found", b"not found\n")
    return response("200 OK", found.body, found.content_type)


async def handle(files: Mapping[str, StaticFile], stream: trio.SocketStream) -> None:
    async with stream:
        request = b""
        with trio.move_on_after(REQUEST_TIMEOUT) as reading:
            while b"\r\n\r\n" not in request and len(request) < REQUEST_LIMIT:
                try:
                    chunk = await stream.receive_some(4096)
                except trio.BrokenResourceError:
                    return
                if not chunk:
                    return
                request += chunk
        if reading.cancelled_caught:
            return
        with trio.move_on_after(REQUEST_TIMEOUT):
            try:
                await stream.send_all(answer(request, files))
            except trio.BrokenResourceError:
                logger.debug("the browser went away before the page was sent")


async def serve_static(
    files: Mapping[str, StaticFile],
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``files`` until cancelled; use with ``nursery.start``, which returns the port."""
    async with trio.open_nursery() as nursery:
        listeners: list[trio.SocketListener] = await nursery.start(
            functools.partial(trio.serve_tcp, functools.partial(handle, files), port, host=host)
        )
        task_status.started(listeners[0].socket.getsockname()[1])
