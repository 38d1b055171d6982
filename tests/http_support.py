"""A plain HTTP/1.1 client for tests: one request per connection, the whole response read.

Responses are parsed by h11 as a client (:func:`parse_response`), so a response that is
not well-formed HTTP/1.1, or bytes after it, fail the test that reads it.
"""

from __future__ import annotations

import ssl

import attrs
import h11
import trio


@attrs.frozen
class HttpReply:
    """A response: ``headers`` by lowercase name (the last of a repeated one)."""

    status: int
    headers: dict[str, str]
    body: bytes
    reason: str = ""


def parse_response(data: bytes, *, method: str = "GET") -> HttpReply:
    """The response in ``data``, everything a server sent until it closed, as h11 reads it
    for a client that sent a ``method`` request.

    Fails unless ``data`` is exactly one well-formed response (h11 raises
    ``RemoteProtocolError``; bytes after its end fail the last assertion).
    """
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("host", "127.0.0.1")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    client.receive_data(b"")  # the server closed
    response = client.next_event()
    assert isinstance(response, h11.Response), response
    body = bytearray()
    while isinstance(event := client.next_event(), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage), event
    assert isinstance(client.next_event(), h11.ConnectionClosed), "bytes after the response"
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in response.headers}
    return HttpReply(response.status_code, headers, bytes(body), response.reason.decode("latin-1"))


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
    return parse_response(response, method=method)
