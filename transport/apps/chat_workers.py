"""``trio-actors chat --workers N --redis URL``: N chat servers on one port, one per core.

::

    trio-actors chat --port 8765 --workers 2 --redis redis://127.0.0.1:6379/0

This process becomes the parent (:func:`transport.workers.serve_workers`): it checks that
Redis answers, binds the port, serves the web page itself, and starts N workers, each
``trio-actors chat`` with its own actor system, all listening on the port
(``SO_REUSEPORT``). Their rooms meet on the Redis backplane exactly as separate chat
servers do (see :mod:`transport.apps.chat_server`). It prints ``listening on ws://HOST:PORT/``
once all of them listen; each worker's own lines come out after ``worker N:``, and every
client learns its worker from the ``Chat-Worker`` response header.

More than one worker without ``--redis`` is refused (exit status 2): each worker's rooms
would then be its own, and two clients of one room would not see each other. The parent
does not start a Redis of its own: a server that holds the rooms belongs to the deployment.
"""

from __future__ import annotations

import argparse
import functools
import sys

import trio

import actors
import transport.workers
from transport.apps import chat_server
from transport.apps.arguments import BadArgument
from transport.apps.static_page import chat_page_files, serve_static

#: Seconds a worker has to stop after SIGTERM: its server's own shutdown timeout (10 s to
#: close the connections) and the time to stop its rooms and leave Redis.
SHUTDOWN_TIMEOUT = 20.0


def workers_count(text: str) -> int:
    """An ``argparse`` type: a number of workers, at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"workers {text!r} is not a number of processes >= 1")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``trio-actors chat``: the chat server's, and ``--workers``."""
    chat_server.add_arguments(parser)
    parser.add_argument(
        "--workers",
        type=workers_count,
        default=1,
        metavar="N",
        help="run N chat server processes on the one port (needs --redis when N > 1)",
    )


def check_arguments(arguments: argparse.Namespace) -> None:
    """The chat server's checks; more than one worker needs ``--redis``."""
    chat_server.check_arguments(arguments)
    if arguments.workers > 1 and arguments.redis is None:
        raise BadArgument(
            f"--workers {arguments.workers} needs --redis URL: the workers share their rooms "
            "through Redis (or run one worker)"
        )


def worker_command(arguments: argparse.Namespace, page_port: int | None) -> list[str]:
    """The command line of one worker: this chat, without its page (the parent serves it)."""
    origins = list(arguments.allow_origin)
    if page_port is not None:
        origins += sorted(chat_server.page_origins(arguments.host, page_port))
    return [
        sys.executable,
        *(f"-W{option}" for option in sys.warnoptions),
        "-m",
        "transport.apps",
        "chat",
        "--host",
        arguments.host,
        "--no-page",
        "--redis",
        arguments.redis,
        *(f"--allow-origin={origin}" for origin in origins),
    ]


async def main(arguments: argparse.Namespace) -> None:
    """``trio-actors chat``: one server, or the parent of ``--workers N`` of them."""
    if arguments.workers == 1 or transport.workers.current_worker() is not None:
        await chat_server.main(arguments)
        return
    # A Redis that does not answer is one clear error here, not N workers failing in a loop.
    async with actors.open_system("chat-workers") as system:
        async with chat_server.open_rooms_backplane(system, arguments.redis) as backplane:
            assert backplane is not None
            where = backplane.statistics().url
    async with trio.open_nursery() as nursery:
        page_port = None
        if not arguments.no_page:
            page_port = await nursery.start(
                serve_static, chat_page_files(), arguments.host, arguments.http_port
            )
        workers: transport.workers.Workers = await nursery.start(
            functools.partial(
                transport.workers.serve_workers,
                worker_command(arguments, page_port),
                arguments.workers,
                arguments.host,
                arguments.port,
                shutdown_timeout=SHUTDOWN_TIMEOUT,
            )
        )
        url = f"ws://{arguments.host}:{workers.port}/"
        print(f"listening on {url}", flush=True)
        if page_port is not None:
            print(f"open http://{arguments.host}:{page_port}/?ws={url} in a browser", flush=True)
        print(f"{workers.count} workers share the rooms through {where}", flush=True)
        await chat_server.wait_for_signal()
        nursery.cancel_scope.cancel()
