"""Typed handlers: mypy --strict accepts matching replies and rejects the others.

The files in ``tests/typing_cases/`` are left out of the main mypy run (see
``[tool.mypy] exclude``); this test checks each one on its own and compares
mypy's findings with what the file promises.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

CASES = Path(__file__).parent / "typing_cases"


def mypy_errors(path: Path) -> list[str]:
    out, err, status = api.run(["--no-incremental", "--no-error-summary", str(path)])
    assert err == ""
    lines = [line for line in out.splitlines() if ": error: " in line]
    assert (status == 0) == (not lines), out
    return lines


@pytest.mark.timeout(120)
def test_matching_replies_and_assert_type_cases_pass() -> None:
    assert mypy_errors(CASES / "handlers_good.py") == []


@pytest.mark.timeout(120)
def test_a_handler_returning_the_wrong_reply_type_is_rejected() -> None:
    errors = mypy_errors(CASES / "handlers_bad.py")
    expected_lines = [
        number
        for number, line in enumerate((CASES / "handlers_bad.py").read_text().splitlines(), 1)
        if "# error:" in line
    ]
    assert [int(error.split(":")[1]) for error in errors] == expected_lines
    assert 'has incompatible type "Callable[[Counter, GetTotal], str]"' in errors[0]
    assert 'expected "Callable[[Counter, GetTotal], Awaitable[int]]"' in errors[0]
    assert "Coroutine[Any, Any, int]]" in errors[1]
    assert 'expected "Callable[[Counter, GetName], Awaitable[str]]"' in errors[1]
    assert all("[arg-type]" in error for error in errors)
