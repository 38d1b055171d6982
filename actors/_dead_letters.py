"""The dead-letter sink: where every undelivered or dropped message is recorded."""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import final

import attrs
import trio

from ._messages import DeadLetter, DeadLetterReason

logger = logging.getLogger("actors.dead_letters")


@final
@attrs.frozen
class DeadLetterStatistics:
    """Counts of dead letters since the system opened.

    ``subscriber_drops`` counts letters a subscriber missed because its own
    channel was full (a dead letter cannot itself be dead-lettered).
    """

    total: int
    by_reason: Mapping[DeadLetterReason, int]
    subscriber_drops: int


@final
class DeadLetters:
    """Observable sink of messages that were not delivered.

    Every letter is counted, logged at DEBUG on the ``actors.dead_letters``
    logger, kept in a bounded history of the most recent ones, and offered to
    every subscriber.
    """

    def __init__(
        self, history: int = 1000, on_publish: Callable[[DeadLetter], None] | None = None
    ) -> None:
        self._on_publish = on_publish
        self._recent: collections.deque[DeadLetter] = collections.deque(maxlen=history)
        self._by_reason: collections.Counter[DeadLetterReason] = collections.Counter()
        self._subscribers: list[trio.MemorySendChannel[DeadLetter]] = []
        self._subscriber_drops = 0
        self._closed = False

    @property
    def count(self) -> int:
        """How many letters were recorded in all."""
        return sum(self._by_reason.values())

    def recent(self) -> list[DeadLetter]:
        """The most recent letters, oldest first (bounded history)."""
        return list(self._recent)

    def statistics(self) -> DeadLetterStatistics:
        """Counts so far, by reason."""
        return DeadLetterStatistics(
            total=self.count,
            by_reason=dict(self._by_reason),
            subscriber_drops=self._subscriber_drops,
        )

    @contextlib.contextmanager
    def subscribe(self, buffer: int = 100) -> Iterator[trio.MemoryReceiveChannel[DeadLetter]]:
        """Receive every letter recorded while the ``with`` block is open.

        The channel holds up to ``buffer`` letters; when it is full, further
        letters skip this subscriber and are counted in ``subscriber_drops``.
        The channel ends (``EndOfChannel``) when the system has shut down.
        """
        send, receive = trio.open_memory_channel[DeadLetter](buffer)
        if self._closed:
            send.close()
        else:
            self._subscribers.append(send)
        try:
            yield receive
        finally:
            if send in self._subscribers:
                self._subscribers.remove(send)
            send.close()

    def close(self) -> None:
        """End every subscription (their channels then raise ``EndOfChannel`` once drained).

        The system calls this once every actor has stopped, so a subscriber
        reading with ``async for`` finishes after the last letter.
        """
        self._closed = True
        for send in self._subscribers:
            send.close()
        self._subscribers.clear()

    def publish(self, letter: DeadLetter) -> None:
        """Record one letter (called by the runtime and by transports)."""
        self._by_reason[letter.reason] += 1
        self._recent.append(letter)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "dead letter to %s (%s): %r",
                letter.recipient,
                letter.reason.value,
                letter.message,
                extra={"actor_path": letter.recipient},
            )
        for subscriber in self._subscribers:
            try:
                subscriber.send_nowait(letter)
            except trio.WouldBlock:
                self._subscriber_drops += 1
        if self._on_publish is not None:
            self._on_publish(letter)
