"""What the runtime examples share: time stamps and the runtime's log records in the transcript."""

from __future__ import annotations

import logging
import sys

import trio

import actors


def stamp() -> str:
    """The trio clock (virtual in the examples), as ``[ 1.5s]``."""
    return f"[{trio.current_time():4.1f}s]"


class TranscriptFormatter(logging.Formatter):
    """One line per record, without the traceback; stamped with the trio clock or indented."""

    def __init__(self, fmt: str, *, stamped: bool) -> None:
        super().__init__(fmt)
        self.stamped = stamped

    def format(self, record: logging.LogRecord) -> str:
        return f"{stamp() if self.stamped else '  '} {super().format(record)}"

    def formatException(self, ei: object) -> str:
        return ""


def log_runtime_to_stdout(*, stamped: bool = True) -> None:
    """Print the ``actors`` loggers' records (restarts, failures) into the transcript."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(actors.ActorPathFilter())  # gives every record an actor_path
    line = "log %(levelname)s [%(actor_path)s] %(message)s"
    handler.setFormatter(TranscriptFormatter(line, stamped=stamped))
    runtime = logging.getLogger("actors")
    runtime.addHandler(handler)
    runtime.propagate = False
