"""Client proxies: which proxy a connection uses, and the tunnel through it.

A client reaches its server through an HTTP proxy (``CONNECT``, with Basic
credentials from the proxy URL) or a SOCKS5 proxy (with a user name and
password from the proxy URL; through python-socks, the ``socks`` extra). The
proxy comes from ``ConnectionOptions.proxy`` or, when that is ``None``, from the
environment as most HTTP clients read it: ``HTTPS_PROXY`` for ``wss``,
``HTTP_PROXY`` for ``ws``, ``ALL_PROXY`` for both, ``NO_PROXY`` for the hosts
reached directly (lower-case names win over upper-case ones). The choice and the
``CONNECT`` exchange are pure functions; :func:`open_tunnel` does the I/O. TLS to
the server runs over the tunnel, verified against the server's name, not the
proxy's.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Mapping
from typing import Literal

import attrs
import trio

from .._exceptions import ProxyError
from .._redact import redact_url
from ._url import Target, basic_credentials, bracketed, url_credentials

#: The proxy schemes a client speaks (``socks5h`` resolves the server's name at the proxy).
PROXY_SCHEMES = frozenset({"http", "socks5", "socks5h"})

#: ``ConnectionOptions.proxy``: a proxy URL, ``None`` (from the environment) or ``False`` (none).
ProxySetting = str | Literal[False] | None

#: The most a proxy's reply to ``CONNECT`` may hold before its blank line.
MAX_REPLY_HEAD = 16 * 1024

#: SOCKS5 reply codes after which a later attempt may succeed (RFC 1928 section 6).
TRANSIENT_SOCKS_REPLIES = frozenset({1, 3, 4, 5, 6})

SOCKS_EXTRA_HINT = "socks proxies need python-socks: pip install 'trio-actors[socks]'"


@attrs.frozen
class Proxy:
    """A parsed proxy URL; the credentials never show in a repr."""

    scheme: str
    host: str
    port: int
    credentials: tuple[str, str] | None = attrs.field(default=None, repr=False)

    @property
    def shown(self) -> str:
        """The proxy as error messages name it: ``http://host:port``, no credentials."""
        return f"{self.scheme}://{bracketed(self.host)}:{self.port}"


def parse_proxy(url: str) -> Proxy:
    """Parse a proxy URL (``http://``, ``socks5://`` or ``socks5h://``, credentials allowed)."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        raise ValueError(
            f"proxy url {redact_url(url)!r} has an unsupported scheme; "
            "use http://, socks5:// or socks5h://"
        )
    if not parts.hostname:
        raise ValueError(f"proxy url {redact_url(url)!r} has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"proxy url {redact_url(url)!r} has an invalid port") from None
    default_port = 8080 if scheme == "http" else 1080
    return Proxy(scheme, parts.hostname, port or default_port, url_credentials(parts))


def check_proxy_setting(setting: ProxySetting) -> None:
    """Raise :exc:`ValueError` if ``setting`` is not ``None``, ``False`` or a valid proxy URL."""
    if setting is None or setting is False:
        return
    if not isinstance(setting, str):
        raise TypeError(f"proxy is a url, None (from the environment) or False, not {setting!r}")
    parse_proxy(setting)


def choose_proxy(setting: ProxySetting, target: Target, environ: Mapping[str, str]) -> Proxy | None:
    """The proxy a connection to ``target`` goes through, or ``None`` to connect directly."""
    if setting is False:
        return None
    if setting is not None:
        return parse_proxy(setting)
    url = environment_proxy(environ, target)
    if url is None:
        return None
    try:
        return parse_proxy(url)
    except ValueError as exc:
        variable = "HTTPS_PROXY" if target.secure else "HTTP_PROXY"
        raise ValueError(f"{exc} (from {variable} or ALL_PROXY in the environment)") from None


def _variable(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name.lower()) or environ.get(name.upper())
    return value.strip() if value and value.strip() else None


def environment_proxy(environ: Mapping[str, str], target: Target) -> str | None:
    """The proxy URL the environment names for ``target``, or ``None``.

    ``wss`` reads ``https_proxy``, ``ws`` reads ``http_proxy``, both fall back
    to ``all_proxy``; a target that ``no_proxy`` matches gets none.
    """
    no_proxy = _variable(environ, "no_proxy")
    if no_proxy is not None and bypasses_proxy(no_proxy, target.host, target.port):
        return None
    scheme_variable = "https_proxy" if target.secure else "http_proxy"
    return _variable(environ, scheme_variable) or _variable(environ, "all_proxy")


def bypasses_proxy(no_proxy: str, host: str, port: int) -> bool:
    """Whether ``no_proxy`` (a comma-separated list) sends ``host:port`` around the proxy.

    Entries are ``*`` (every host), a host or domain (``example.com`` and
    ``.example.com`` match it and its subdomains), either with ``:port``, an
    IP address, or an IP network (``10.0.0.0/8``). Names compare without case.
    """
    name = host.lower().rstrip(".")
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry_host, entry_port = _split_entry(entry)
        if entry_port is not None and entry_port != port:
            continue
        if _host_matches(entry_host, name):
            return True
    return False


def _split_entry(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1] or [::1]:8080
        address, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return address, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        address, _, port = entry.partition(":")
        return address, int(port) if port.isdigit() else None
    return entry, None


def _host_matches(entry: str, name: str) -> bool:
    if "/" in entry:
        try:
            network = ipaddress.ip_network(entry, strict=False)
            return ipaddress.ip_address(name) in network
        except ValueError:
            return False
    entry = entry.lstrip(".").rstrip(".")
    return bool(entry) and (name == entry or name.endswith("." + entry))


# -- HTTP CONNECT (sans-IO) --------------------------------------------------------------


def connect_request(proxy: Proxy, target: Target) -> bytes:
    """The ``CONNECT`` request that asks ``proxy`` for a tunnel to ``target``."""
    host = target.host.encode("idna").decode("ascii") if not target.host.isascii() else target.host
    authority = f"{bracketed(host)}:{target.port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.credentials is not None:
        lines.append(f"Proxy-Authorization: {basic_credentials(*proxy.credentials)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def reply_status(head: bytes, proxy: Proxy) -> int:
    """The status code of a proxy's reply head (the bytes before its blank line)."""
    status_line = head.split(b"\r\n", 1)[0]
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProxyError(
            f"the proxy {proxy.shown} answered CONNECT with {status_line[:80]!r}, "
            "which is not an HTTP/1 status line; check that it is an HTTP proxy",
            transient=False,
        )
    return int(parts[1])


def refusal(status: int, proxy: Proxy, target: Target) -> ProxyError:
    """The error for a proxy that answered ``CONNECT`` with a status other than 2xx."""
    where = f"the proxy {proxy.shown} answered CONNECT {target.authority} with HTTP {status}"
    if status in (401, 407):  # 407 is the standard; some proxies (tinyproxy) answer 401
        if proxy.credentials is None:
            advice = "it requires credentials: give them in the proxy url (http://user:pass@host)"
        else:
            advice = "it refused the credentials of the proxy url; check them"
        return ProxyError(f"{where}: {advice}", status=status, transient=False)
    if 500 <= status < 600:
        return ProxyError(
            f"{where}: it could not reach the server for now", status=status, transient=True
        )
    return ProxyError(
        f"{where}: it refused to open a tunnel there; check the proxy's rules (allowed "
        "hosts and ports)",
        status=status,
        transient=False,
    )


# -- the tunnel (I/O) ---------------------------------------------------------------------


async def open_tunnel(proxy: Proxy, target: Target) -> trio.abc.Stream:
    """A byte stream to ``target`` through ``proxy`` (TLS to the server is the caller's).

    Raises :exc:`ProxyError` when the proxy cannot be reached, refuses, or
    breaks the exchange; the caller bounds the time.
    """
    if proxy.scheme == "http":
        return await _http_tunnel(proxy, target)
    return await _socks_tunnel(proxy, target)


async def _http_tunnel(proxy: Proxy, target: Target) -> trio.abc.Stream:
    try:
        stream = await trio.open_tcp_stream(proxy.host, proxy.port)
    except OSError as exc:
        raise ProxyError(
            f"could not connect to the proxy {proxy.shown}: {exc}", transient=True
        ) from exc
    try:
        await stream.send_all(connect_request(proxy, target))
        head = await _read_reply_head(stream, proxy)
        status = reply_status(head, proxy)
        if not 200 <= status < 300:
            raise refusal(status, proxy, target)
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)
        raise
    return stream


async def _read_reply_head(stream: trio.SocketStream, proxy: Proxy) -> bytes:
    """Read the proxy's reply up to its blank line.

    A WebSocket server speaks only after the client's request, so after a 2xx
    nothing of the tunnel may follow the head: bytes there are an error.
    """
    buffer = bytearray()
    while True:
        try:
            chunk = await stream.receive_some(4096)
        except trio.BrokenResourceError as exc:
            raise ProxyError(
                f"the proxy {proxy.shown} broke the connection during the CONNECT handshake",
                transient=True,
            ) from exc
        if not chunk:
            raise ProxyError(
                f"the proxy {proxy.shown} closed the connection during the CONNECT handshake",
                transient=True,
            )
        buffer += chunk
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            if end + 4 < len(buffer) and 200 <= reply_status(bytes(buffer), proxy) < 300:
                raise ProxyError(
                    f"the proxy {proxy.shown} sent data after its reply to CONNECT, "
                    "before the server could speak",
                    transient=False,
                )
            return bytes(buffer[:end])
        if len(buffer) > MAX_REPLY_HEAD:
            raise ProxyError(
                f"the proxy {proxy.shown} answered CONNECT with more than "
                f"{MAX_REPLY_HEAD} bytes of headers",
                transient=False,
            )


async def _socks_tunnel(proxy: Proxy, target: Target) -> trio.abc.Stream:
    try:
        from python_socks import ProxyType, _errors as socks_errors
        from python_socks.async_.trio.v2 import Proxy as SocksProxy
    except ImportError:
        raise ProxyError(
            f"cannot use the proxy {proxy.shown}: {SOCKS_EXTRA_HINT}", transient=False
        ) from None
    user, password = proxy.credentials or (None, None)
    socks = SocksProxy(
        ProxyType.SOCKS5,
        proxy.host,
        proxy.port,
        username=user,
        password=password,
        rdns=proxy.scheme == "socks5h",
    )
    where = f"the socks5 proxy {proxy.shown}"
    try:
        connected = await socks.connect(target.host, target.port, timeout=float("inf"))
    except socks_errors.ProxyConnectionError as exc:
        raise ProxyError(f"could not connect to {where}: {exc}", transient=True) from exc
    except socks_errors.ProxyError as exc:
        code = exc.error_code
        if isinstance(exc.__cause__, socks_errors.IncompleteReadError):
            message = f"{where} closed the connection during the socks handshake"
            raise ProxyError(message, transient=True) from exc
        transient = code in TRANSIENT_SOCKS_REPLIES
        reply = f" (reply {code})" if code is not None else ""
        raise ProxyError(
            f"{where} did not open a tunnel to {target.authority}{reply}: {exc}",
            status=code,
            transient=transient,
        ) from exc
    return connected.trio_stream
