"""The charts of the performance and reliability pages, and the data they are drawn from.

``benchmarks/charts.py`` (``scripts/charts``) draws them from ``docs/_data/*.jsonl``, the
benchmark lines the pages quote. These tests draw them afresh, and check that the data files
hold the figures the pages print, so that a page and its chart cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import charts
from benchmarks.reliability_report import rst

DOCS = Path(__file__).resolve().parent.parent / "docs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_both_charts_are_drawn_from_the_data(tmp_path: Path) -> None:
    paths = charts.draw(out=tmp_path)
    assert [path.name for path in paths] == ["performance.png", "reliability.png"]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 20_000  # a drawn chart, not an empty canvas


def test_the_committed_charts_exist_and_the_pages_show_them() -> None:
    for page, image in (("performance", "performance.png"), ("reliability", "reliability.png")):
        assert (DOCS / "charts" / image).read_bytes().startswith(PNG_SIGNATURE)
        assert f"charts/{image}" in (DOCS / f"{page}.rst").read_text(encoding="utf-8")


def _on_page(value: float, unit: str) -> str:
    return f"{round(value / 1e-3):,}" if unit else f"{value:.3f}"


def test_every_charted_figure_is_the_one_on_the_performance_page() -> None:
    page = (DOCS / "performance.rst").read_text(encoding="utf-8")
    lines = charts.read_lines(DOCS / "_data" / "performance.jsonl")
    for target in charts.TARGETS:
        for value in charts.runs_of(lines, target):
            assert _on_page(value, target.unit) in page, (target.key, value)


def test_the_reliability_data_is_the_table_on_the_page() -> None:
    page = (DOCS / "reliability.rst").read_text(encoding="utf-8")
    rows = charts.read_lines(DOCS / "_data" / "reliability.jsonl")
    assert len(rows) == 38
    assert rst(rows) in page  # the very table reliability_report.py --rst prints


def test_a_measure_missing_from_the_data_is_an_error() -> None:
    lines = charts.read_lines(DOCS / "_data" / "performance.jsonl")
    without = [line for line in lines if line.get("bench") != "backplane"]
    with pytest.raises(ValueError, match="no backplane run in the data has topic_ratio"):
        charts.performance_chart(without, DOCS / "_build")


def test_an_outcome_without_a_colour_is_an_error() -> None:
    with pytest.raises(ValueError, match="outcome 'close 4000' has no colour"):
        charts.outcome_style("close 4000")
