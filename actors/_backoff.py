"""Restart backoff schedules (sans-IO: pure arithmetic, no clock, no randomness of its own)."""

from __future__ import annotations

from typing import final

import attrs


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"Backoff.{attribute.name} must be positive, not {value!r}")


@final
@attrs.frozen
class Backoff:
    """Exponential backoff with jitter between restarts.

    The n-th consecutive restart (n = 0, 1, ...) waits
    ``min(maximum, minimum * factor**n)``, spread by ``jitter`` (a fraction:
    0.2 means up to 20% shorter or longer). A child that ran for
    ``reset_after`` seconds without failing starts again from ``minimum``.
    """

    minimum: float = attrs.field(default=0.1, validator=_positive)
    maximum: float = attrs.field(default=30.0, validator=_positive)
    factor: float = attrs.field(default=2.0, validator=_positive)
    jitter: float = 0.2
    reset_after: float = attrs.field(default=60.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.maximum < self.minimum:
            raise ValueError(
                f"Backoff.maximum ({self.maximum}) must not be below minimum ({self.minimum})"
            )
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"Backoff.jitter is a fraction in [0, 1], not {self.jitter!r}")

    def delay(self, attempt: int, unit_random: float) -> float:
        """Seconds before restart number ``attempt`` (0-based).

        ``unit_random`` is a number in [0, 1) supplied by the caller, so the
        schedule itself is deterministic and testable.
        """
        base = min(self.maximum, self.minimum * self.factor ** min(attempt, 64))
        spread = base * self.jitter * (2 * unit_random - 1)
        return max(0.0, min(self.maximum, base + spread))
