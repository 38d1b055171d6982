"""An echo server set up the way the deployment guide describes (docs/guide_deployment.rst).

::

    python -m examples.deployed_server --port 8765 --trusted-proxy 127.0.0.1 \\
        --allow-origin https://chat.example.com
    python -m examples.deployed_server --port 8443 --certfile cert.pem --keyfile key.pem

What it adds to the plain echo server (``examples/echo_server.py``):

- behind a reverse proxy, the client's address comes from ``X-Forwarded-For``, but only
  when the peer is a proxy named with ``--trusted-proxy``;
- browsers are admitted only from the ``--allow-origin`` origins (the others get 403);
- TLS from certificate files, checked before the server listens;
- the open-file limit is raised to its hard limit and checked against ``--max-connections``
  before the server listens;
- the garbage collector tuned once start-up is done (`actors.tune_gc`, ``--gc-threshold``);
- SIGTERM (or Ctrl-C) drains: the server stops accepting and closes every connection with
  1012 (service restart), which tells reconnecting clients to come back, then exits 0.

Each connection is greeted with ``hello <client address>``, then its messages are echoed.
It prints ``listening on ws://HOST:PORT/`` once it accepts connections, and
``drained: N connections closed with 1012`` when it stops.
"""

from __future__ import annotations

import argparse
import functools
import resource
import ssl
import sys
from collections.abc import Iterable, Sequence

import trio

import actors
import transport
from transport.apps.chat_server import wait_for_signal

#: Descriptors the process needs besides one per connection: the listeners, the standard
#: streams, Trio's own, log files, a Redis link. Generous on purpose.
SPARE_DESCRIPTORS = 64


def client_address(
    remote: str, headers: Iterable[tuple[str, str]], trusted_proxies: frozenset[str]
) -> str:
    """The client's address: the peer's own, or, when the peer is a trusted proxy, the last
    address in ``X-Forwarded-For`` that is not a trusted proxy.

    ``remote`` is ``"host:port"`` (`transport.ConnectionInfo.remote`). Entries to the left
    of the ones the trusted proxies added are whatever the client claimed: never trust them.
    """
    host = remote.rsplit(":", 1)[0]
    if host not in trusted_proxies:
        return host
    hops = [
        hop.strip()
        for name, value in headers
        if name.lower() == "x-forwarded-for"
        for hop in value.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if hop not in trusted_proxies:
            return hop
    return hops[0] if hops else host


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server TLS context from PEM files; raises ``OSError`` or ``ssl.SSLError`` when a
    file is missing or the key does not match the certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


def raise_descriptor_limit(max_connections: int) -> int:
    """Raise the soft open-file limit to the hard one; return it.

    Raises ``SystemExit`` with what to do when it cannot hold ``max_connections``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < max_connections + SPARE_DESCRIPTORS:
        raise SystemExit(
            f"the open-file limit is {soft}, too low for --max-connections {max_connections} "
            f"(one descriptor each, plus {SPARE_DESCRIPTORS}); raise it (ulimit -n, or "
            "LimitNOFILE= in the systemd unit) or lower --max-connections"
        )
    return soft


async def greet_and_echo(
    trusted_proxies: frozenset[str], connection: transport.WebSocketConnection
) -> None:
    info = connection.info
    await connection.send(f"hello {client_address(info.remote, info.headers, trusted_proxies)}")
    async for message in connection:
        await connection.send(message)


async def main(arguments: argparse.Namespace, context: ssl.SSLContext | None) -> None:
    origins = set(arguments.allow_origin) if arguments.allow_origin else None
    policy = transport.HandshakePolicy(allowed_origins=origins)
    handler = functools.partial(greet_and_echo, frozenset(arguments.trusted_proxy))
    async with actors.open_system("deployed") as system:
        async with trio.open_nursery() as nursery:
            server: transport.WebSocketServer = await nursery.start(
                functools.partial(
                    transport.serve_websocket,
                    system,
                    handler,
                    arguments.host,
                    arguments.port,
                    ssl_context=context,
                    policy=policy,
                    max_connections=arguments.max_connections,
                    shutdown_timeout=arguments.drain_seconds,
                )
            )
            # Start-up is done: what exists now lives as long as the process. Frozen
            # objects are never scanned by the cyclic collector again, and the young
            # generation is collected less often (see the scaling guide).
            actors.tune_gc(arguments.gc_threshold)
            scheme = "ws" if context is None else "wss"
            print(f"listening on {scheme}://{arguments.host}:{server.port}/", flush=True)
            await wait_for_signal()
            open_before = (await server.statistics()).active
            await server.aclose(transport.CloseCode.SERVICE_RESTART)
            print(f"drained: {open_before} connections closed with 1012", flush=True)
            nursery.cancel_scope.cancel()


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.deployed_server",
        description="A WebSocket echo server set up for production.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0: any free port")
    parser.add_argument("--certfile", help="PEM certificate chain: serve wss:// (else ws://)")
    parser.add_argument("--keyfile", help="PEM private key of --certfile")
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="IP",
        help="a reverse proxy whose X-Forwarded-For is believed (repeatable)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="admit browsers from this origin, e.g. https://chat.example.com (repeatable)",
    )
    parser.add_argument("--max-connections", type=int, default=1000)
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=10.0,
        help="how long SIGTERM waits for connections to close",
    )
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=20_000,
        help="allocations between two young collections once started (Python's default: 700)",
    )
    arguments = parser.parse_args(argv)
    if bool(arguments.certfile) != bool(arguments.keyfile):
        parser.error("--certfile and --keyfile go together")
    if arguments.max_connections < 1:
        parser.error("--max-connections must be at least 1")
    if arguments.gc_threshold < 1:
        parser.error("--gc-threshold must be at least 1")
    return arguments


def run(argv: Sequence[str] | None = None) -> None:
    """Check what can be checked before listening, then serve until SIGTERM or Ctrl-C."""
    arguments = parse_arguments(argv)
    context = None
    if arguments.certfile:
        try:
            context = tls_context(arguments.certfile, arguments.keyfile)
        except (OSError, ssl.SSLError) as exc:
            sys.exit(f"cannot load --certfile/--keyfile: {exc}")
    raise_descriptor_limit(arguments.max_connections)
    trio.run(main, arguments, context)


if __name__ == "__main__":
    run()
