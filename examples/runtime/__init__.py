"""Small runnable programs, one per runtime feature: ``python -m examples.runtime.supervision``.

Each runs on a virtual clock (``trio.testing.MockClock``), so it finishes at once and prints the
same transcript on every run.
"""
