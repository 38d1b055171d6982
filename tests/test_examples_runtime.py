"""The runtime examples run as users run them and print, line for line, what the guides show.

Each example in ``examples/runtime/`` runs on a virtual clock and prints a deterministic
transcript; the guides include the ``.txt`` file next to it, and this test compares the two
exactly, so the documentation cannot drift from the code. The key lines are asserted
separately too, so that a failure says which promise broke.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "examples" / "runtime"
# Generous: each run takes well under a second; the bound only turns a hang into a failure.
TIMEOUT = 60


def run_module(module: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


EXAMPLES = {
    "supervision": [
        # The failing message is a dead letter; the worker restarts after the backoff.
        "log WARNING [/shop/worker] actor /shop/worker stopped "
        "(Failed(error=RuntimeError('bad input'))); restarting in 0.5s",
        "event: dead letter to /shop/worker (failed): Crash(why='bad input')",
        # Senders keep working while the child restarts; queued messages survive.
        "[ 0.3s] main: /shop/worker is restarting; Job(2) is accepted meanwhile",
        "[ 0.5s] /shop/worker: incarnation 2 started",
        "[ 0.5s] /shop/worker: incarnation 2 did job 1",
        "[ 0.5s] /shop/worker: incarnation 2 did job 2",
        "[ 0.5s] main: the supervisor's child is still the same ref: True",
        # Backoff doubles: 0.5 s, 1 s, 2 s.
        "restarting in 1s",
        "[ 1.5s] /shop/worker: incarnation 3 started",
        "restarting in 2s",
        "[ 3.5s] /shop/worker: incarnation 4 started",
        # The fourth restart within 10 s is one too many: the supervisor fails and escalates.
        "[ 3.5s] log ERROR [/shop] actor /shop failed",
        "event: /shop/worker failed for good: RuntimeError('crash #4')",
        "[ 3.5s] open_system raised RestartIntensityError: supervisor /shop gave up: "
        "more than 3 restarts within 10s",
        "[ 3.5s] its __cause__: RuntimeError('crash #4')",
    ],
    "watch_registry": [
        "   feed: /pool/worker-3 joined 'workers'",
        "   /pool/worker-3: 6² = 36",
        "   the new incarnation answers: 7² = 49",
        "   lookup('worker-2') is the same ref: True",
        "   monitor watches ['/pool/worker-1', '/pool/worker-2', '/pool/worker-3'] (no Terminated)",
        "   monitor: Terminated(/pool/worker-3, Normal())",
        "   lookup('worker-3') -> None",
        "   feed: /pool/worker-3 left 'workers' (Normal())",
        "   found /pool/worker-4: 8² = 64",
        "   Terminated(/pool/worker-4, Normal())",
        "   group 'workers': []",
    ],
    "routers": [
        # One user, one worker: consistent hashing keeps a user's state on its worker.
        "[ 0.0s] ada -> routee-2 (visit 2)",
        # A crashed routee is restarted in place (fresh state, same ref, same keys).
        "[ 0.0s] after a crash: bob -> routee-3 (visit 1)",
        # Growing the pool moves only what the newcomer takes over.
        "[ 0.0s] grown to 4 routees: ['fay'] moved, to ['routee-4']",
        # Stashed asks wait for the connection, then are answered in order.
        "[ 2.0s] database: connected, unstashing 3",
        "[ 2.0s] client: rows for 'select 1'",
        "[ 2.0s] client: rows for 'select 3'",
    ],
    "timers": [
        "[ 0.7s] search box: searching for 'trio'",
        "[ 1.7s] search box: escape, pending search cancelled",
        "[ 3.0s] search box: searching for 'trio actors'",
        " fixed rate, 1s interval, 0.3s handler: beats handled at 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0",
        "fixed delay, 1s interval, 0.3s handler: beats handled at 1.0, 2.3, 3.6, 4.9, 6.2",
        " fixed rate, 1s interval, 2.5s handler: beats handled at 1.0, 3.5, 6.0",
    ],
}


@pytest.mark.parametrize(("example", "expected"), EXAMPLES.items(), ids=list(EXAMPLES))
def test_runtime_example_prints_its_transcript(example: str, expected: list[str]) -> None:
    result = run_module(f"examples.runtime.{example}")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the runtime's log records are part of the transcript
    for line in expected:
        assert line in result.stdout
    transcript = (RUNTIME / f"{example}.txt").read_text(encoding="utf-8")
    assert result.stdout == transcript


def test_timers_example_never_searches_for_what_was_typed_over_or_cancelled() -> None:
    searches = [
        line
        for line in run_module("examples.runtime.timers").stdout.splitlines()
        if "searching for" in line
    ]
    assert searches == [
        "[ 0.7s] search box: searching for 'trio'",
        "[ 3.0s] search box: searching for 'trio actors'",
    ]


def test_every_runtime_example_is_tested() -> None:
    programs = {
        path.stem
        for path in RUNTIME.glob("*.py")
        if path.stem not in {"__init__", "transcript"}  # transcript: helpers, not a program
    }
    assert programs == set(EXAMPLES)
    assert {path.stem for path in RUNTIME.glob("*.txt")} == set(EXAMPLES)
