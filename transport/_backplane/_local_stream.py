"""The in-process durable stream: an in-memory log with consumer groups and redelivery."""

from __future__ import annotations

import collections
import math
from typing import TYPE_CHECKING, TypeVar, final

import trio

import actors

from ._interface import DEFAULT_MIN_IDLE, DurableStream, StreamMessage, check_consumer

if TYPE_CHECKING:
    from ._local import LocalBackplane

T = TypeVar("T")


class _Group:
    __slots__ = ("next_seq", "pending")

    def __init__(self, next_seq: int) -> None:
        self.next_seq = next_seq
        # entry seq -> trio time it was (last) delivered or failed
        self.pending: dict[int, float] = {}


@final
class LocalStream(DurableStream[T]):
    """An in-memory :class:`DurableStream`: exact trimming at ``maxlen``, groups, redelivery."""

    def __init__(self, backplane: LocalBackplane, name: str, maxlen: int) -> None:
        value: object = maxlen
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"a stream's maxlen must be an int of at least 1, not {maxlen!r}")
        self._backplane = backplane
        self.name = name
        self.maxlen = maxlen
        self._entries: collections.deque[tuple[int, T]] = collections.deque()
        self._next_seq = 1
        self._groups: dict[str, _Group] = {}
        self._changed = trio.lowlevel.ParkingLot()
        self._consumers = 0

    def __repr__(self) -> str:
        return f"<DurableStream {self.name!r} (local), {len(self._entries)} entries>"

    async def add(self, message: T) -> str:
        await trio.lowlevel.checkpoint()
        seq = self._next_seq
        self._next_seq += 1
        self._entries.append((seq, message))
        while len(self._entries) > self.maxlen:
            self._entries.popleft()
        self._changed.unpark_all()
        return f"{seq}-0"

    async def pending(self, group: str) -> int:
        await trio.lowlevel.checkpoint()
        found = self._groups.get(group)
        return 0 if found is None else len(found.pending)

    def _entry(self, seq: int) -> T | None:
        if not self._entries or seq < self._entries[0][0]:
            return None
        index = seq - self._entries[0][0]
        return self._entries[index][1] if index < len(self._entries) else None

    async def serve_consumer(
        self,
        ref: actors.ActorRef[StreamMessage[T]],
        *,
        group: str,
        consumer: str | None = None,
        min_idle: float = DEFAULT_MIN_IDLE,
        handler_timeout: float | None = None,
        batch: int = 16,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        check_consumer(group, min_idle)
        state = self._groups.get(group)
        if state is None:
            first = self._entries[0][0] if self._entries else self._next_seq
            state = self._groups[group] = _Group(first)
        await trio.lowlevel.checkpoint()
        task_status.started()
        while ref.is_alive:
            seq, wait = self._next_for(state, min_idle)
            if seq is None:
                with trio.move_on_after(wait):
                    await self._changed.park()
                continue
            message = self._entry(seq)
            if message is None:  # trimmed before it was acknowledged
                state.pending.pop(seq, None)
                continue
            state.pending[seq] = trio.current_time()
            try:
                await ref.ask(
                    StreamMessage(self.name, group, f"{seq}-0", message), timeout=handler_timeout
                )
            except actors.ActorStoppedError:
                return
            except Exception:  # noqa: BLE001 - the handler failed or was too slow: delivered again later
                state.pending[seq] = trio.current_time()
                self._changed.unpark_all()
            else:
                state.pending.pop(seq, None)

    def _next_for(self, state: _Group, min_idle: float) -> tuple[int | None, float]:
        """The entry to deliver next (claimed first, then new), or how long to wait."""
        now = trio.current_time()
        wait = math.inf
        for seq, since in state.pending.items():
            idle = now - since
            if idle >= min_idle:
                state.pending[seq] = now  # claimed: nobody else takes it meanwhile
                return seq, 0.0
            wait = min(wait, min_idle - idle)
        if self._entries:
            state.next_seq = max(state.next_seq, self._entries[0][0])
        if state.next_seq < self._next_seq:
            seq = state.next_seq
            state.next_seq += 1
            return seq, 0.0
        return None, wait
