"""Runnable examples: ``python -m examples.demo`` and the tutorial steps."""
