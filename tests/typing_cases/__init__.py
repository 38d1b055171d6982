"""Files that mypy checks one at a time from ``tests/test_typing.py`` (not in the main run)."""
