"""The tutorial, one runnable step per file: ``python -m examples.tutorial.step1_first_actor``."""
