"""Worker processes on one port: all the cores of one host.

:func:`serve_workers` runs N copies of a program, each its own process with its own
actor system, all listening on one port with ``SO_REUSEPORT`` (the kernel spreads the
connections over them); the parent restarts a worker that dies, drains them all on
cancellation and labels their output. In a worker, :func:`current_worker` says which one
it is and where to listen. The workers share rooms, names and groups through a Redis
backplane (:mod:`transport.backplane`); :ref:`scaling-workers` explains how to run them.
"""

from __future__ import annotations

from ._workers._parent import (
    WorkerRestarts as WorkerRestarts,
    Workers as Workers,
    WorkersFailedError as WorkersFailedError,
    WorkersStatistics as WorkersStatistics,
    serve_workers as serve_workers,
)
from ._workers._worker import WorkerInfo as WorkerInfo, current_worker as current_worker

__all__ = [
    "WorkerInfo",
    "WorkerRestarts",
    "Workers",
    "WorkersFailedError",
    "WorkersStatistics",
    "current_worker",
    "serve_workers",
]
