"""The bytes of every HTTP answer a server gives instead of a 101 (sans-IO).

Refusals of a websocket request (400, 426, a hook's or the policy's status, the 503 of
a full server) and answers to plain HTTP requests are all one complete HTTP/1.1 response
made by :func:`format_response`: a status line with the standard reason phrase, the
caller's headers, ``Content-Length``, ``Date``, ``Connection: close`` and the body.
The server closes the connection after each one, and says so.

The caller's headers are checked (:func:`check_response`) rather than trusted: a name
that is not an HTTP token, or a value with CR, LF or another control character, would
let a header's value end the header and start another; they raise :exc:`ValueError`,
and so does a header the server writes itself (:data:`SERVER_HEADERS`).
"""

from __future__ import annotations

import email.utils
import http
import re
from collections.abc import Sequence

#: Headers the server writes itself: giving one of them is a :exc:`ValueError`.
SERVER_HEADERS = frozenset({"connection", "content-length", "date", "transfer-encoding"})

#: The type of the short texts a server refuses with.
PLAIN_TEXT = "text/plain; charset=utf-8"

# RFC 9110 section 5.1 (token) and 5.5 (field-value, as h11 checks it): no control
# characters but the tab, nothing outside latin-1, no whitespace at either end.
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?")
# Statuses whose response carries neither a body nor a Content-Length (RFC 9110 8.6).
_NO_CONTENT = frozenset({204, 304})


def check_response(status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
    """Raise :exc:`ValueError` (or :exc:`TypeError`) unless :func:`format_response` can
    write this response whole and well-formed.

    ``status`` is a final status, 200 to 599 (a 204 or 304 without a body); header
    names are HTTP tokens; values are one line of latin-1 without control characters
    (tabs aside) or whitespace at either end; none of :data:`SERVER_HEADERS`.
    """
    if not _is_final_status(status):
        raise ValueError(f"an HTTP answer's status is a final status, 200 to 599, not {status!r}")
    if not isinstance(body, bytes):
        raise TypeError(f"an HTTP answer's body is bytes, not {type(body).__name__}; encode it")
    if body and status in _NO_CONTENT:
        raise ValueError(f"an HTTP {status} answer has no body; leave the body empty")
    for name, value in headers:
        if not _is_token(name):
            raise ValueError(
                f"header name {name!r} is not an HTTP token: use letters, digits and"
                " !#$%&'*+-.^_`|~ only"
            )
        if name.lower() in SERVER_HEADERS:
            raise ValueError(
                f"header {name!r} is written by the server itself"
                f" ({', '.join(sorted(SERVER_HEADERS))}); leave it out"
            )
        if not isinstance(value, str):
            raise TypeError(f"the value of header {name!r} is a str, not {type(value).__name__}")
        if "\r" in value or "\n" in value:
            # The value is not quoted: it may be a credential, and it is what an attacker
            # would try to smuggle a header through.
            raise ValueError(
                f"the value of header {name!r} contains CR or LF: a header value is one line"
            )
        if not _FIELD_VALUE.fullmatch(value):
            raise ValueError(
                f"the value of header {name!r} is not a valid HTTP field value: use latin-1"
                " characters without control characters, and no whitespace at either end"
            )


def format_response(
    status: int,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    head: bool = False,
    default_type: str | None = None,
) -> bytes:
    """A complete HTTP/1.1 response after which the server closes the connection.

    The status line carries the standard reason phrase (none for a status the
    standard does not name), then come ``headers`` in their order, then
    ``Content-Type: default_type`` if ``default_type`` is given, ``body`` is not empty
    and ``headers`` have no ``Content-Type``, then ``Content-Length`` (not for 204 and
    304), ``Date`` and ``Connection: close``. ``head``: the answer to a HEAD request,
    whose ``Content-Length`` is the body's but which leaves the body out. Raises what
    :func:`check_response` raises.
    """
    check_response(status, headers, body)
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    lines = [f"HTTP/1.1 {int(status)} {phrase}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if default_type and body and not any(name.lower() == "content-type" for name, _ in headers):
        lines.append(f"content-type: {default_type}")
    if status not in _NO_CONTENT:
        lines.append(f"content-length: {len(body)}")
    lines.append(f"date: {email.utils.formatdate(usegmt=True)}")
    lines.append("connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data if head else data + body


# Of ``object``: the checks are for values from user code, whatever their annotations say.
def _is_final_status(status: object) -> bool:
    return isinstance(status, int) and not isinstance(status, bool) and 200 <= status <= 599


def _is_token(name: object) -> bool:
    return isinstance(name, str) and _TOKEN.fullmatch(name) is not None
