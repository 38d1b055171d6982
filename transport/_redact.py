"""What may be shown of a handshake in logs, reprs and error messages (pure functions).

Tokens travel in headers (``Authorization``, ``Cookie``, custom ``X-Api-Key``) and in
query strings (``/feed?token=...``). Reprs and log lines show header names, the
values of a short allow-list of headers known to carry no secret, query parameter
names, and never a value that might be a credential.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Headers whose values are shown; every other value is hidden.
SHOWN_HEADERS = frozenset(
    {
        "host",
        "origin",
        "user-agent",
        "upgrade",
        "connection",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "content-type",
        "content-length",
        "server",
        "date",
    }
)

HIDDEN = "..."


def redact_target(target: str) -> str:
    """``target`` (a path, or a URL) with every query value hidden: ``/feed?token=...``."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    parts = [part.partition("=") for part in query.split("&") if part]
    return path + "?" + "&".join(f"{name}={HIDDEN}" if eq else HIDDEN for name, eq, _ in parts)


def redact_headers(headers: Sequence[tuple[str, str]]) -> str:
    """``headers`` as ``name: value`` pairs, values hidden unless in :data:`SHOWN_HEADERS`."""
    shown = (
        f"{name}: {value if name.lower() in SHOWN_HEADERS else HIDDEN}" for name, value in headers
    )
    return "(" + ", ".join(shown) + ")"


def redact_url(url: str) -> str:
    """``url`` with its user information and query values hidden: ``wss://...@host/feed?k=...``.

    Both parts of ``user:password@`` are hidden: a user name is often a token too.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return redact_target(url)
    end = next((i for i, char in enumerate(rest) if char in "/?#"), len(rest))
    authority, tail = rest[:end], rest[end:]
    at = authority.rfind("@")
    if at >= 0:
        authority = HIDDEN + authority[at:]
    return scheme + sep + authority + redact_target(tail)
