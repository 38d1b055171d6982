"""Settings of CPython's garbage collector for a process that holds many live objects."""

from __future__ import annotations

import gc


def tune_gc(young: int = 20_000, old: int = 100) -> None:
    """Freeze the objects alive now, and collect less often.

    CPython's cyclic collector collects its young generation each time the objects
    allocated since pass its first threshold (700 by default), and considers a full
    collection after every 10 collections of the middle generation; a full collection
    walks every container object alive. A process that fills up with long-lived actors
    and connections (a server's connection holds about 170 such objects) then spends a
    large share of its time collecting, and more the fuller it is: filling one process
    with 19,500 connections, half of the server's time (the scaling guide has the
    figures).

    Call this once, after start-up (imports and configuration done) and before serving:
    it runs a full collection, moves every object alive (``gc.freeze()``) out of the
    collector's sight for good, and sets the thresholds to ``(young, 10, old)``. It
    changes the whole process, as the :mod:`gc` module does; ``gc.unfreeze()`` and
    ``gc.set_threshold()`` undo it. Garbage that only a collection frees (reference
    cycles) is freed in bigger batches, and cycles that lived long enough to reach the
    oldest generation only by a full collection, one every ``young * 10 * old``
    allocations at most (20 million by default).
    """
    if young < 1 or old < 1:
        raise ValueError(
            f"tune_gc needs thresholds of at least 1, not young={young!r}, old={old!r}; "
            "use gc.disable() to turn the collector off"
        )
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, gc.get_threshold()[1], old)
