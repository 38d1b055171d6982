"""The worker's side: who am I, where do I listen, tell the parent I serve, notice it is gone.

The parent passes four environment variables and one end of a socket pair to each worker.
The worker writes ``listening`` on that socket once it serves; the parent holds the other
end for as long as it lives, so the worker reads end-of-file there when the parent is gone.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import final

import attrs
import trio

#: ``"INDEX/COUNT"``: this process is worker INDEX (from 1) of COUNT.
ENV_WORKER = "TRIO_ACTORS_WORKER"
#: The address every worker listens on (empty: all the host's addresses) and its port.
ENV_HOST = "TRIO_ACTORS_WORKER_HOST"
ENV_PORT = "TRIO_ACTORS_WORKER_PORT"
#: The descriptor of the worker's end of its socket pair with the parent.
ENV_FD = "TRIO_ACTORS_WORKER_FD"

READY = b"listening\n"


@final
@attrs.frozen
class WorkerInfo:
    """This process as a worker of :func:`serve_workers`: its number, and where to listen.

    Listen on ``host`` and ``port`` with ``reuse_port=True`` (``port`` is never 0: the
    parent chose it), then call :meth:`report_listening`.
    """

    #: This worker's number, from 1 to ``count``; a restarted worker keeps its number.
    index: int
    #: How many workers the parent runs.
    count: int
    #: The address to listen on (``None``: every address of the host).
    host: str | None
    #: The port every worker shares.
    port: int
    _fd: int

    def environment(self) -> dict[str, str]:
        """The environment variables that make a process this worker (what the parent sets)."""
        return {
            ENV_WORKER: f"{self.index}/{self.count}",
            ENV_HOST: self.host or "",
            ENV_PORT: str(self.port),
            ENV_FD: str(self._fd),
        }

    async def report_listening(self) -> None:
        """Tell the parent this worker serves (it counts as started from then on)."""
        with _parent_socket(self._fd) as sock:
            await sock.send(READY)

    async def wait_parent_exit(self) -> None:
        """Return when the parent process is gone (a worker should then stop)."""
        with _parent_socket(self._fd) as sock:
            while await sock.recv(1024):
                pass


def _parent_socket(fd: int) -> trio.socket.SocketType:
    return trio.socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM)


def current_worker(environ: Mapping[str, str] | None = None) -> WorkerInfo | None:
    """This process as a worker of :func:`serve_workers`, or ``None`` if it is not one."""
    env = os.environ if environ is None else environ
    if ENV_WORKER not in env:
        return None
    try:
        index, count = (int(part) for part in env[ENV_WORKER].split("/"))
        return WorkerInfo(index, count, env[ENV_HOST] or None, int(env[ENV_PORT]), int(env[ENV_FD]))
    except (KeyError, ValueError) as exc:
        raise RuntimeError(
            f"{ENV_WORKER}={env[ENV_WORKER]!r} is set but the worker environment is incomplete: "
            f"a worker needs {ENV_WORKER}, {ENV_HOST}, {ENV_PORT} and {ENV_FD} from its parent"
        ) from exc
