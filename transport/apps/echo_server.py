"""The smallest server: every connection is an actor, and it echoes what it receives.

::

    trio-actors echo --port 8765
    trio-actors echo --port 8443 --certfile cert.pem --keyfile key.pem
    trio-actors echo --port 9001 --max-message-size 16MiB --compression

It prints ``listening on ws://127.0.0.1:8765/`` (``wss://`` with a certificate) once it
accepts connections; ``--port 0`` picks a free port, and the line shows which.

``serve_websocket`` runs the accept loop. Each accepted connection becomes an actor, a child
of the server's host actor, which owns the socket, reads it in one task and writes it from
its own message loop. ``echo`` below runs inside that actor: it reads the connection's
bounded inbound queue and tells its replies to the actor's mailbox, which is bounded in
messages and bytes and is the one door into the writer. When it
returns the connection closes with 1000; if it raised, with 1011, and the server would go on
serving everyone else.
"""

from __future__ import annotations

import argparse
import functools

import trio

import actors
import transport
from transport.apps.arguments import message_size, port, server_tls
from transport.apps.chat_server import wait_for_signal


async def echo(connection: transport.WebSocketConnection) -> None:
    """The handler of every connection: send back each message as it came (text or bytes)."""
    async for message in connection:  # str for text messages, bytes for binary ones
        await connection.send(message)


async def main(arguments: argparse.Namespace) -> None:
    """Serve until Ctrl-C or SIGTERM, then close every connection with 1001."""
    context = server_tls(arguments.certfile, arguments.keyfile)
    options = transport.ConnectionOptions(
        max_message_size=arguments.max_message_size, compression=arguments.compression
    )
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
                    options=options,
                )
            )
            scheme = "ws" if context is None else "wss"
            print(f"listening on {scheme}://{arguments.host}:{server.port}/", flush=True)
            await wait_for_signal()
            nursery.cancel_scope.cancel()  # closes every connection with 1001, then stops


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``trio-actors echo``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=port, default=8765, help="0: any free port")
    parser.add_argument("--certfile", help="PEM certificate chain: serve wss:// (else ws://)")
    parser.add_argument("--keyfile", help="PEM private key of --certfile")
    parser.add_argument(
        "--max-message-size",
        type=message_size,
        default=transport.ConnectionOptions().max_message_size,
        metavar="BYTES",
        help="largest message accepted, in bytes or with KiB/MiB (default: 1MiB); "
        "a larger one closes the connection with 1009",
    )
    parser.add_argument(
        "--compression",
        action="store_true",
        help="accept permessage-deflate when a client offers it (off by default)",
    )


def check_arguments(arguments: argparse.Namespace) -> None:
    """Load the certificate once before anything starts: a bad file is a one-line error."""
    server_tls(arguments.certfile, arguments.keyfile)
