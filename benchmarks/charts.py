"""Draw the charts of docs/performance.rst and docs/reliability.rst from the measured JSON lines.

The benchmarks print one JSON line per run (``bench_actors.py``, ``bench_transport.py``,
``bench_backplane.py``) and ``reliability_report.py`` one per hostile case. The lines the
pages quote are kept in ``docs/_data/performance.jsonl`` and ``docs/_data/reliability.jsonl``;
this script reads them and writes two PNG images into ``docs/charts/``:

``performance.png``
    Each measure that has a target, one row each: every run as a dot, the target as a line,
    the side of the line that meets it shaded green, the other red.
``reliability.png``
    Every hostile case: how long the server took to answer (log scale) and the peak growth
    of Python allocations, coloured by what the server answered.

    python benchmarks/charts.py                      # or scripts/charts
    python benchmarks/charts.py --data DIR --out DIR

To chart a new run, append the benchmark's line to the data file (with ``"bench"`` and
``"run"`` keys; the benchmark's own keys are kept as printed) and run it again.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import attrs
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

ROOT: Final = Path(__file__).resolve().parent.parent
DATA: Final = ROOT / "docs" / "_data"
OUT: Final = ROOT / "docs" / "charts"

MET: Final = "#d8f0d8"
MISSED: Final = "#f6d5d5"
TARGET: Final = "#333333"
RUN: Final = "#1f4e8c"
# Pixels per inch: with figures about 8 inches wide, the images are about 1,100 pixels wide,
# and their text stays readable when the page shows them at its own width.
DPI: Final = 130
# Fixed metadata, so that the same data and matplotlib give the same bytes.
PNG_METADATA: Final = {"Software": None}


@attrs.frozen
class Target:
    """A measure the performance page sets a target for."""

    bench: str
    key: str
    label: str
    bound: float
    at_least: bool  # True: the result must be >= bound; False: <= bound
    unit: str = ""  # "kB": bytes shown in kilobytes; "": a ratio
    scale: float = 1.0


#: The targets of docs/performance.rst, in the order of its summary table.
TARGETS: Final = (
    Target("actors", "tell_ratio", "actor tell ÷ raw channel", 0.85, True),
    Target("actors", "ask_ratio", "actor ask ÷ raw request/reply", 0.90, True),
    Target("actors", "idle_actor_bytes", "memory per idle actor", 8.0, False, "kB", 1e-3),
    Target("actors", "spawn_ratio", "spawns/s ÷ the thin spawn", 0.7, True),
    Target("transport", "echo_ratio", "WebSocket echo ÷ raw", 0.85, True),
    Target("transport", "echo_server_cpu_ratio", "server CPU per echo ÷ raw", 1.35, False),
    Target("transport", "oneway_ratio", "one-way into an actor ÷ raw", 0.70, True),
    Target("transport", "large_throughput_ratio", "64 KiB throughput ÷ raw", 2.0, True),
    Target(
        "transport", "idle_conn_bytes_ws", "memory per idle ws:// conn.", 28.0, False, "kB", 1e-3
    ),
    Target(
        "transport", "idle_conn_bytes_wss", "memory per idle wss:// conn.", 48.0, False, "kB", 1e-3
    ),
    Target("transport", "accept_cpu_ratio_ws", "CPU per accept ÷ raw, ws://", 1.5, False),
    Target("transport", "accept_cpu_ratio_wss", "CPU per accept ÷ raw, wss://", 1.5, False),
    Target("backplane", "topic_ratio", "distributed topic ÷ raw coredis", 0.8, True),
)

SECTIONS: Final = {
    "actors": "actor runtime",
    "transport": "WebSocket transport",
    "backplane": "Redis backplane",
}

#: What the server answered, in legend order: (prefix of the outcome, label, colour).
OUTCOMES: Final = (
    ("HTTP", "HTTP 4xx, closed", "#7b68b5"),
    ("disconnect at the handshake deadline", "disconnected at the handshake deadline", "#999999"),
    ("close 1002", "close 1002 (protocol error)", "#d9822b"),
    ("close 1007", "close 1007 (bad payload)", "#c9a227"),
    ("close 1008", "close 1008 (rate limit)", "#b33c3c"),
    ("close 1009", "close 1009 (too big)", "#2d7fb8"),
    ("2000 pongs", "answered, stays open", "#3a9a4a"),
)


def read_lines(path: Path) -> list[dict[str, object]]:
    """The JSON objects of a JSON-lines file, in order."""
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def runs_of(lines: Sequence[dict[str, object]], target: Target) -> list[float]:
    """Every run's value of ``target``'s measure, scaled to its unit."""
    values = []
    for line in lines:
        value = line.get(target.key)
        if line.get("bench") == target.bench and isinstance(value, int | float):
            values.append(value * target.scale)
    if not values:
        raise ValueError(f"no {target.bench} run in the data has {target.key}; add one")
    return values


def _number(value: float, unit: str) -> str:
    return f"{value:g} {unit}" if unit else f"{value:.3f}".rstrip("0").rstrip(".")


def _met(values: Sequence[float], target: Target) -> int:
    return sum(v >= target.bound if target.at_least else v <= target.bound for v in values)


def draw_target(axes: Axes, target: Target, values: Sequence[float]) -> None:
    """One row: the met and missed regions, the target line and each run as a dot."""
    top = max(*values, target.bound) * 1.25
    axes.axvspan(target.bound, top, color=MET if target.at_least else MISSED, lw=0)
    axes.axvspan(0, target.bound, color=MISSED if target.at_least else MET, lw=0)
    axes.axvline(target.bound, color=TARGET, lw=1.5)
    # Runs one above the other, so that two close values stay two dots.
    heights = [0.35 * (index - (len(values) - 1) / 2) for index in range(len(values))]
    axes.plot(values, heights, "o", color=RUN, ms=6, mec="white", mew=0.8, zorder=3)
    axes.set_xlim(0, top)
    axes.set_ylim(-1, 1)
    axes.set_yticks([])
    axes.tick_params(axis="x", labelsize=8, length=2, pad=1)
    axes.xaxis.set_major_locator(MaxNLocator(6))
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    sign = "≥" if target.at_least else "≤"
    axes.text(
        target.bound,
        0.72,
        f" target {sign} {_number(target.bound, target.unit)}",
        fontsize=8,
        va="center",
        ha="left" if target.bound < top * 0.7 else "right",
        color=TARGET,
    )
    met = _met(values, target)
    if met == len(values):
        verdict = "met"
    else:
        verdict = "missed" if met == 0 else f"met in {met} of {len(values)} runs"
    runs = ", ".join(f"{v:.1f}" if target.unit else _number(v, "") for v in values)
    runs += f" {target.unit}" if target.unit else ""
    axes.set_ylabel(target.label, rotation=0, ha="right", va="center", fontsize=9, labelpad=8)
    axes.text(1.02, 0.5, f"{runs}\n{verdict}", transform=axes.transAxes, fontsize=8, va="center")


def performance_chart(lines: Sequence[dict[str, object]], out: Path) -> Path:
    """Draw every target of :data:`TARGETS` against the runs in ``lines``."""
    figure = Figure(figsize=(8.2, 0.6 * len(TARGETS) + 1.0), layout="constrained")
    rows = figure.subplots(len(TARGETS), 1, squeeze=False)[:, 0]
    section = ""
    for axes, target in zip(rows, TARGETS, strict=True):
        draw_target(axes, target, runs_of(lines, target))
        if target.bench != section:
            section = target.bench
            axes.set_title(SECTIONS[section], loc="left", fontsize=10, fontweight="bold", pad=4)
    figure.suptitle(
        "Each measure against its target (dots: the runs on the page; green: target met)",
        fontsize=10,
    )
    path = out / "performance.png"
    figure.savefig(path, dpi=DPI, metadata=PNG_METADATA)
    return path


def outcome_style(outcome: str) -> tuple[str, str]:
    """The legend label and colour for what the server answered."""
    for prefix, label, colour in OUTCOMES:
        if outcome.startswith(prefix):
            return label, colour
    raise ValueError(f"outcome {outcome!r} has no colour in OUTCOMES; add it there")


def _positions(cases: Sequence[str]) -> tuple[list[float], list[tuple[float, str]]]:
    """A row per case, and a heading row before each group (the part before the colon)."""
    positions: list[float] = []
    headings: list[tuple[float, str]] = []
    row = 0.0
    group = None
    for case in cases:
        name = case.split(":")[0]
        if name != group:
            group = name
            headings.append((row, name))
            row += 1
        positions.append(row)
        row += 1
    return positions, headings


def reliability_chart(rows: Sequence[dict[str, object]], out: Path) -> Path:
    """Time to answer and peak memory of every hostile case, coloured by the answer."""
    cases = [str(row["case"]) for row in rows]
    seconds = [float(str(row["seconds"])) for row in rows]
    peaks = [float(str(row["peak_kib"])) for row in rows]
    styles = [outcome_style(str(row["outcome"])) for row in rows]
    colours = [colour for _, colour in styles]
    positions, headings = _positions(cases)
    figure = Figure(
        figsize=(8.6, 0.21 * (len(positions) + len(headings)) + 1.9), layout="constrained"
    )
    left, right = figure.subplots(1, 2, sharey=True, width_ratios=(3, 2), squeeze=False)[0]
    left.barh(positions, seconds, color=colours, height=0.72)
    left.set_xscale("log")
    left.set_xlim(0.001, 3)
    left.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    left.axvline(0.5, color="#555555", lw=0.8, ls="--")
    left.text(0.5, -0.6, "handshake deadline 0.5 s ", fontsize=7, ha="right", color="#555555")
    left.set_xlabel("seconds from the first hostile byte to the server's answer (log)", fontsize=9)
    right.barh(positions, peaks, color=colours, height=0.72)
    right.set_xlim(0, max(peaks) * 1.15)
    right.set_xlabel("peak growth of Python allocations (KiB)", fontsize=9)
    ticks = [(p, case.split(": ", 1)[1]) for p, case in zip(positions, cases, strict=True)]
    ticks += [(p, name) for p, name in headings]
    ticks.sort()
    left.set_yticks([p for p, _ in ticks], [label for _, label in ticks], fontsize=8)
    for label in left.get_yticklabels():
        if label.get_text() in {name for _, name in headings}:
            label.set_fontweight("bold")
            label.set_fontsize(9)
    left.set_ylim(max(positions) + 0.7, -1.0)
    for axes in (left, right):
        axes.tick_params(axis="x", labelsize=8)
        axes.tick_params(axis="y", length=0)
        axes.grid(axis="x", color="#e4e4e4", lw=0.6)
        axes.set_axisbelow(True)
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
    for position, value in zip(positions, seconds, strict=True):
        left.text(value * 1.1, position, f"{value:g}", fontsize=7, va="center", color="#444444")
    seen: dict[str, str] = {}
    for label_text, colour in styles:
        seen.setdefault(label_text, colour)
    handles = [Patch(color=colour, label=label_text) for label_text, colour in seen.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    figure.suptitle(
        f"{len(rows)} hostile clients, one at a time: what the server answered, how fast, "
        "at what memory cost\n(after each, a well-behaved client is served)",
        fontsize=10,
    )
    path = out / "reliability.png"
    figure.savefig(path, dpi=DPI, metadata=PNG_METADATA)
    return path


def draw(data: Path = DATA, out: Path = OUT) -> list[Path]:
    """Write both charts from the data files in ``data`` into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    return [
        performance_chart(read_lines(data / "performance.jsonl"), out),
        reliability_chart(read_lines(data / "reliability.jsonl"), out),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="directory of the .jsonl files")
    parser.add_argument("--out", type=Path, default=OUT, help="directory for the .png files")
    arguments = parser.parse_args()
    for path in draw(arguments.data, arguments.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
