"""Command-line arguments the programs share, checked before anything starts.

A bad argument raises :class:`BadArgument` with one line that names the argument, what is
wrong with it and what to do instead; ``trio-actors`` prints it and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import ssl
from pathlib import Path

_SIZE = re.compile(r"(\d+)\s*(|k|kib|m|mib)", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "kib": 1024, "m": 1024 * 1024, "mib": 1024 * 1024}


class BadArgument(Exception):
    """An argument that cannot work; its message is the one line shown to the user."""


def port(text: str) -> int:
    """An ``argparse`` type: a TCP port, 0 meaning any free one."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(
            f"port {text!r} is not a number from 0 to 65535 (0: any free port)"
        )
    return int(text)


def message_size(text: str) -> int:
    """An ``argparse`` type: a size in bytes, or with ``KiB``/``MiB`` (``16MiB``)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"size {text!r} is not a positive number of bytes (e.g. 1048576 or 16MiB)"
        )
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def server_tls(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    """The TLS context of a server from PEM files, or ``None`` for plain ``ws://``.

    Both files or neither; each must exist, and the key must be the certificate's.
    """
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise BadArgument("--certfile and --keyfile go together: give both to serve wss://")
    for option, name in (("--certfile", certfile), ("--keyfile", keyfile)):
        if not Path(name).is_file():
            raise BadArgument(f"{option} {name}: no such file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise BadArgument(
                f"--keyfile {keyfile} is not the key of --certfile {certfile}: "
                "give the private key the certificate was issued for"
            ) from exc
        raise BadArgument(
            f"cannot load --certfile {certfile} with --keyfile {keyfile}: they must be a PEM "
            "certificate chain and its PEM private key"
        ) from exc
    return context


def require_extra(module: str, extra: str, needed_for: str) -> None:
    """Raise :class:`BadArgument` unless ``module`` is installed (it comes with ``extra``)."""
    if importlib.util.find_spec(module) is None:
        raise BadArgument(
            f"{needed_for} needs {module}, which is not installed: "
            f"pip install 'trio-actors[{extra}]'"
        )
