"""The ``trio-actors`` command: ``demo``, ``echo`` and ``chat``.

::

    trio-actors --version
    trio-actors demo [--seconds S] [--seed N] [--port P] [--http-port P] [--dashboard-port P]
                     [--no-dashboard] [--redis URL]
    trio-actors echo [--host H] [--port P] [--certfile F --keyfile F] [--max-message-size N]
    trio-actors chat [--host H] [--port P] [--http-port P] [--no-page] [--redis URL]
                     [--workers N]

Each program runs until Ctrl-C or SIGTERM, then stops in order (servers close their
connections with 1001) and the command exits with status 0. An argument that cannot work (an
unknown option, a port in use, a certificate file that is missing or does not match its key,
a Redis that cannot be reached) is one line on stderr and exit status 2, before anything runs
where it can be checked first. Workers that keep failing (``chat --workers N``) are one line
on stderr too, and exit status 1.
"""

from __future__ import annotations

import argparse
import errno
import importlib.metadata
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import NoReturn

import attrs
import trio

import transport
import transport.workers
from transport.apps import chat_workers, demo, echo_server
from transport.apps.arguments import BadArgument

PROG = "trio-actors"
USAGE_ERROR = 2
#: The exit status when the workers kept failing and their parent gave up.
WORKERS_FAILED = 1
# Errors of bind(): the address is taken, not ours to take, or not this host's.
_LISTEN_ERRORS = {errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL}


@attrs.frozen
class Command:
    """One subcommand: its options, their checks before start, and the program itself."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    check_arguments: Callable[[argparse.Namespace], None]
    main: Callable[[argparse.Namespace], Awaitable[None]]
    #: The options naming ports the program listens on (to say which one is taken).
    ports: tuple[str, ...]


COMMANDS = {
    "demo": Command(
        "a chat server and its web page, bots, a TLS feed and two threads, on loopback",
        demo.add_arguments,
        demo.check_arguments,
        demo.main,
        ("port", "http_port", "dashboard_port"),
    ),
    "echo": Command(
        "a WebSocket echo server (ws://, or wss:// with --certfile and --keyfile)",
        echo_server.add_arguments,
        echo_server.check_arguments,
        echo_server.main,
        ("port",),
    ),
    "chat": Command(
        "the chat server with rooms and its web page (--redis URL shares the rooms)",
        chat_workers.add_arguments,
        chat_workers.check_arguments,
        chat_workers.main,
        ("port", "http_port"),
    ),
}


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, naming where to find the options."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def version() -> str:
    """The installed distribution's version."""
    try:
        return importlib.metadata.version("trio-actors")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command line: ``--version`` and one subcommand per program (and their parsers)."""
    parser = _Parser(prog=PROG, description="Programs built on trio-actors.")
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers: dict[str, argparse.ArgumentParser] = {}
    for name, command in COMMANDS.items():
        parsers[name] = commands.add_parser(
            name, help=command.help, description=command.help.capitalize()
        )
        command.add_arguments(parsers[name])
    return parser, parsers


async def run(command: Command, arguments: argparse.Namespace) -> None:
    """Run the program until it returns; a signal it is not waiting for stops it at once.

    The programs take Ctrl-C and SIGTERM themselves while they run (and stop in order); this
    receiver gets the ones that come while they start or stop, and cancels them.
    """
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            nursery.start_soon(_main_then_stop, command, arguments, nursery.cancel_scope)
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()


async def _main_then_stop(
    command: Command, arguments: argparse.Namespace, scope: trio.CancelScope
) -> None:
    await command.main(arguments)
    scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (the process's arguments by default), run the command, return its status."""
    parser, parsers = build_parser()
    arguments, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand, whose --help lists what it takes
        parsers[arguments.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    command = COMMANDS[arguments.command]
    where = f"{PROG} {arguments.command}"
    try:
        command.check_arguments(arguments)
        trio.run(run, command, arguments)
    except KeyboardInterrupt:
        return 0  # Ctrl-C before the signal receiver was up: nothing had started yet
    except Exception as exc:  # an exception group too; re-raised unless it is one we explain
        problem = explain(exc, command, arguments)
        if problem is None:
            raise
        print(f"{where}: error: {problem}", file=sys.stderr)
        if any(isinstance(leaf, transport.workers.WorkersFailedError) for leaf in _leaves(exc)):
            return WORKERS_FAILED
        return USAGE_ERROR
    return 0


def explain(exc: BaseException, command: Command, arguments: argparse.Namespace) -> str | None:
    """The one line that says what to fix, or ``None`` for a failure that is a bug."""
    for leaf in _leaves(exc):
        if isinstance(
            leaf,
            BadArgument
            | transport.backplane.BackplaneUnavailableError
            | transport.workers.WorkersFailedError,
        ):
            return str(leaf)
        if isinstance(leaf, socket.gaierror):
            return f"--host {arguments.host}: cannot resolve it ({leaf.strerror})"
        if isinstance(leaf, OSError) and leaf.errno in _LISTEN_ERRORS:
            return _cannot_listen(leaf, command, arguments)
    return None


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
        return
    yield exc
    if exc.__cause__ is not None:
        yield from _leaves(exc.__cause__)


def _cannot_listen(error: OSError, command: Command, arguments: argparse.Namespace) -> str:
    host: str = getattr(arguments, "host", "127.0.0.1")
    reason = (error.strerror or str(error)).lower()
    options = [(option, getattr(arguments, option)) for option in command.ports]
    taken = [(option, number) for option, number in options if number and not _free(host, number)]
    if error.errno == errno.EADDRINUSE and taken:
        option, number = taken[0]
        flag = "--" + option.replace("_", "-")
        return (
            f"cannot listen on {host}:{number} ({flag}): {reason}; "
            f"choose another port, or {flag} 0 for any free one"
        )
    ports = ", ".join(str(number) for _, number in options)
    return f"cannot listen on {host} (ports {ports}): {reason}"


def _free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound now (as the server binds it: with SO_REUSEADDR)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError:
        return False
    return True
