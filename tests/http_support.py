"""A plain HTTP/1.1 client for tests: one request per connection, the whole response read."""

from __future__ import annotations

import ssl

import attrs
import trio


@attrs.frozen
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes


async def http_request(
    port: int,
    path: str = "/",
    *,
    method: str = "GET",
    headers: tuple[tuple[str, str], ...] = (),
    ssl_context: ssl.SSLContext | None = None,
) -> HttpReply:
    """Send one request to 127.0.0.1:``port`` and read the response until the server closes."""
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
    if ssl_context is not None:
        stream = trio.SSLStream(stream, ssl_context, server_hostname="127.0.0.1")
    async with stream:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers]
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = b""
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return HttpReply(int(status_line.split(" ")[1]), fields, body)
