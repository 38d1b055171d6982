"""Settings of CPython's garbage collector for a process that holds many live objects."""

from __future__ import annotations

import gc

#: The first threshold :func:`tune_gc` sets unless told otherwise (CPython's default is 700).
DEFAULT_GC_THRESHOLD = 20_000


def tune_gc(threshold: int = DEFAULT_GC_THRESHOLD) -> None:
    """Freeze the objects alive now and collect the young generation less often.

    CPython's cyclic collector runs when the objects allocated since its last run pass
    the first threshold (700 by default), and each full collection walks every container
    object alive. A process that fills up with long-lived actors and connections (a
    server's connection holds about 170 such objects) then spends a large share of its
    time collecting, and more of it the fuller it is: the scaling guide has the figures.

    Call this once, after start-up (imports and configuration done) and before serving:
    it runs a full collection, moves every object alive (``gc.freeze()``) out of the
    collector's sight for good, and sets the first threshold to ``threshold`` (the other
    two are kept). It changes the whole process, as the :mod:`gc` module does;
    ``gc.unfreeze()`` and ``gc.set_threshold()`` undo it. Memory that only a collection
    frees (reference cycles) is freed later, in bigger batches.
    """
    if threshold < 1:
        raise ValueError(
            f"tune_gc needs a threshold of at least 1 allocation, not {threshold!r}; "
            "use gc.disable() to turn the collector off"
        )
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, *gc.get_threshold()[1:])
