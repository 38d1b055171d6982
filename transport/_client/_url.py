"""WebSocket URLs: what a client connects to, its credentials, and where a redirect leads (pure)."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Sequence

import attrs

from .._redact import redact_target, redact_url

#: The HTTP statuses a client follows to another URL (the ones websockets follows too).
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: The default ``max_redirects`` (websockets' limit too).
DEFAULT_MAX_REDIRECTS = 10


@attrs.frozen
class Target:
    """Where a client connects: scheme, host, port, resource, and the URL's credentials.

    ``credentials`` (percent-decoded user and password) never show in a repr,
    nor do query values; :attr:`url` is the URL without credentials.
    """

    secure: bool
    host: str
    port: int
    resource: str = attrs.field(repr=redact_target)  # query values may be tokens
    credentials: tuple[str, str] | None = attrs.field(default=None, repr=False)

    @property
    def authority(self) -> str:
        """``host:port`` (an IPv6 host in brackets)."""
        return f"{bracketed(self.host)}:{self.port}"

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the port only when it is not the scheme's default."""
        default = 443 if self.secure else 80
        return bracketed(self.host) if self.port == default else self.authority

    @property
    def url(self) -> str:
        """The URL of this target, without credentials."""
        return f"{'wss' if self.secure else 'ws'}://{self.host_header}{self.resource}"

    def authorization(self) -> tuple[str, str] | None:
        """The HTTP Basic ``Authorization`` header made of the URL's credentials, if any."""
        if self.credentials is None:
            return None
        return ("Authorization", basic_credentials(*self.credentials))


class RedirectRefused(Exception):
    """A redirect the client does not follow (the connect path raises
    :exc:`HandshakeRejected` with the redirect's status and this message)."""


def bracketed(host: str) -> str:
    """``host`` as it appears in a URL or a ``Host`` header: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


def basic_credentials(user: str, password: str) -> str:
    """The value of an HTTP Basic ``Authorization`` (or ``Proxy-Authorization``) header."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def url_credentials(parts: urllib.parse.SplitResult) -> tuple[str, str] | None:
    """The percent-decoded ``user:password`` of a split URL, or ``None`` without any."""
    if parts.username is None:
        return None
    password = parts.password or ""
    return (urllib.parse.unquote(parts.username), urllib.parse.unquote(password))


def parse_url(url: str) -> Target:
    """Split a ``ws://`` or ``wss://`` URL into what the connection needs.

    Error messages show the URL with its credentials and query values hidden.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"websocket urls start with ws:// or wss://, not {redact_url(url)!r}")
    if not parts.hostname:
        raise ValueError(f"websocket url {redact_url(url)!r} has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"websocket url {redact_url(url)!r} has an invalid port") from None
    secure = parts.scheme == "wss"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(
        secure, parts.hostname, port or (443 if secure else 80), resource, url_credentials(parts)
    )


def redirect_location(status: int, headers: Sequence[tuple[str, str]]) -> str | None:
    """The ``Location`` of a redirect the client follows, or ``None`` if this is no such answer."""
    if status not in REDIRECT_STATUSES:
        return None
    return next((value for name, value in headers if name.lower() == "location"), None)


def follow_redirect(current: Target, location: str) -> Target:
    """Where a redirect from ``current`` to ``location`` leads.

    ``location`` may be absolute (``ws``, ``wss``, ``http`` or ``https``) or
    relative. A redirect from ``wss`` to ``ws`` (or to ``http``) is refused:
    it would send the request in clear text. The URL's credentials are kept
    only on the same scheme, host and port, unless the new URL has its own.
    """
    base = f"{'https' if current.secure else 'http'}://{current.host_header}{current.resource}"
    absolute = urllib.parse.urljoin(base, location.strip())
    scheme, sep, rest = absolute.partition("://")
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if not sep or scheme.lower() not in schemes:
        raise RedirectRefused(
            f"the server at {current.url} redirected to {redact_url(absolute)!r}, "
            "which is not a ws, wss, http or https url"
        )
    try:
        target = parse_url(f"{schemes[scheme.lower()]}://{rest}")
    except ValueError as exc:
        raise RedirectRefused(
            f"the server at {current.url} redirected to a bad url: {exc}"
        ) from None
    if current.secure and not target.secure:
        raise RedirectRefused(
            f"the server at {current.url} redirected to the clear-text url {target.url}; "
            "a wss connection never follows a redirect to ws"
        )
    same_origin = (target.secure, target.host, target.port) == (
        current.secure,
        current.host,
        current.port,
    )
    if target.credentials is None and same_origin:
        target = attrs.evolve(target, credentials=current.credentials)
    return target
