"""The smallest server: every connection is an actor, and it echoes what it receives.

::

    python -m examples.echo_server --port 8765
    python -m examples.echo_server --port 8443 --certfile cert.pem --keyfile key.pem
    python -m examples.echo_server --port 9001 --max-message-size 16777216 --compression

It prints ``listening on ws://127.0.0.1:8765/`` (``wss://`` with a certificate) once it
accepts connections; ``--port 0`` picks a free port, and the line shows which.

``serve_websocket`` runs the accept loop. Each accepted connection becomes an actor, a child
of the server's host actor, which owns the socket, reads it in one task and writes it in
another. ``echo`` below runs inside that actor: it reads the connection's bounded inbound
queue and queues replies through the actor's mailbox. When it returns the connection closes
with 1000; if it raised, with 1011, and the server would go on serving everyone else.
"""

from __future__ import annotations

import argparse
import functools
import ssl
from collections.abc import Sequence

import trio

import actors
import transport
from examples.chat_server import wait_for_signal


async def echo(connection: transport.WebSocketConnection) -> None:
    async for message in connection:  # str for text messages, bytes for binary ones
        await connection.send(message)


async def main(arguments: argparse.Namespace) -> None:
    context = None
    if arguments.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(arguments.certfile, arguments.keyfile)
    async with actors.open_system("echo") as system:
        async with trio.open_nursery() as nursery:
            server: transport.WebSocketServer = await nursery.start(
                functools.partial(
                    transport.serve_websocket,
                    system,
                    echo,
                    arguments.host,
                    arguments.port,
                    ssl_context=context,
                    options=transport.ConnectionOptions(
                        max_message_size=arguments.max_message_size,
                        compression=arguments.compression,
                    ),
                )
            )
            scheme = "ws" if context is None else "wss"
            print(f"listening on {scheme}://{arguments.host}:{server.port}/", flush=True)
            await wait_for_signal()
            nursery.cancel_scope.cancel()  # closes every connection with 1001, then stops


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.echo_server", description="A WebSocket echo server."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0: any free port")
    parser.add_argument("--certfile", help="PEM certificate chain: serve wss:// (else ws://)")
    parser.add_argument("--keyfile", help="PEM private key of --certfile")
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=transport.ConnectionOptions().max_message_size,
        help="the largest inbound message in bytes (default 1 MiB; a conformance run needs 16 MiB)",
    )
    parser.add_argument(
        "--compression",
        action="store_true",
        help="accept permessage-deflate when a client offers it (off by default)",
    )
    arguments = parser.parse_args(argv)
    if bool(arguments.certfile) != bool(arguments.keyfile):
        parser.error("--certfile and --keyfile go together")
    return arguments


if __name__ == "__main__":
    trio.run(main, parse_arguments())
