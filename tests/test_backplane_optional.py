"""coredis is optional: ``transport`` imports without it, the Redis backplane says what to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Runs in a fresh interpreter in which every import of coredis fails, as if it were not
# installed (a finder placed first on sys.meta_path refuses it).
HIDDEN_COREDIS = textwrap.dedent(
    """
    import importlib.abc
    import sys

    class NoCoredis(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "coredis" or name.startswith("coredis."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoCoredis())

    import trio

    import actors
    import transport

    assert not [m for m in sys.modules if m.partition(".")[0] == "coredis"], "coredis was imported"
    print("imported", len(transport.__all__))

    async def main():
        async with actors.open_system("no-coredis") as system:
            try:
                async with transport.backplane.open_redis_backplane(system):
                    print("opened")
            except ModuleNotFoundError as exc:
                print("refused:", exc, "| name:", exc.name)

    trio.run(main)
    """
)


def test_transport_imports_without_coredis_and_the_redis_backplane_says_what_to_install() -> None:
    done = subprocess.run(
        [sys.executable, "-c", HIDDEN_COREDIS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("imported ")
    assert lines[1].startswith("refused: the redis backplane needs coredis")
    assert "pip install 'trio-actors[redis]'" in lines[1]
    assert lines[1].endswith("| name: coredis")
    assert "opened" not in done.stdout


def test_the_redis_backplane_module_is_imported_on_first_use_only() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, transport; "
            "print(sorted(m for m in sys.modules if m.startswith(('coredis', 'transport._backplane._redis'))))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['transport._backplane._redis_open']"
