"""actors.tune_gc: the collector settings for a process full of long-lived objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import actors


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Whatever a test does to the collector is undone after it."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_freezes_what_is_alive_and_raises_the_first_threshold() -> None:
    gc.unfreeze()
    second = gc.get_threshold()[1]
    alive: list[object] = []
    assert any(o is alive for o in gc.get_objects())
    actors.tune_gc(12_345, 67)
    assert gc.get_threshold() == (12_345, second, 67)
    assert gc.get_freeze_count() > 0
    # What was alive is frozen: out of every generation the collector walks.
    assert not any(o is alive for o in gc.get_objects())
    # Objects made afterwards are collected as usual.
    later: list[object] = []
    assert gc.is_tracked(later)
    assert any(o is later for o in gc.get_objects())


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_defaults_to_the_documented_thresholds() -> None:
    second = gc.get_threshold()[1]
    actors.tune_gc()
    assert gc.get_threshold() == (20_000, second, 100)


@pytest.mark.usefixtures("restored_gc")
@pytest.mark.parametrize(("young", "old"), [(0, 100), (-1, 100), (20_000, 0)])
def test_tune_gc_refuses_a_threshold_below_one(young: int, old: int) -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with pytest.raises(ValueError, match="tune_gc needs thresholds of at least 1"):
        actors.tune_gc(young, old)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen
