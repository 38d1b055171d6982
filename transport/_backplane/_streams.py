"""Durable streams on Redis Streams: consumer groups, acknowledgements, takeover.

The stream ``name`` is the key ``<namespace>:stream:<name>``; each entry holds one
field, ``m``, the encoded message. Every ``add`` trims the stream to about ``maxlen``
entries (``XADD ... MAXLEN ~ maxlen``: Redis trims whole internal nodes, so the
length may exceed ``maxlen`` by up to one node, about 100 entries). Trimming does not
wait for consumer groups: size ``maxlen`` for the longest backlog you accept.

A consumer reads with ``XREADGROUP``, asks its actor, and ``XACK``\\ s once the handler
returned. Every ``min_idle / 2`` seconds it also runs ``XAUTOCLAIM`` for entries
pending longer than ``min_idle`` in the group (their consumer died, or its handler
failed) and delivers them again: at least once, never silently lost.
"""

from __future__ import annotations

import contextlib
import logging
import random
from typing import TYPE_CHECKING, Any, TypeVar, final

import coredis.exceptions
import trio
from coredis.response.types import StreamEntry, StreamPending
from coredis.tokens import PureToken

import actors

from .._codec import DecodeError
from ._failures import is_connection_failure
from ._interface import DEFAULT_MIN_IDLE, DurableStream, StreamMessage, check_consumer
from ._wire import decode_payload, encode_payload

if TYPE_CHECKING:
    from ._redis import RedisBackplane

logger = logging.getLogger("transport.backplane")

T = TypeVar("T")

#: Longest single blocking read, in seconds (a consumer checks for idle entries between reads).
_MAX_BLOCK = 1.0


@final
class RedisStream(DurableStream[T]):
    """A :class:`DurableStream` on Redis Streams; see :meth:`Backplane.stream`."""

    def __init__(self, backplane: RedisBackplane, name: str, maxlen: int) -> None:
        value: object = maxlen
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"a stream's maxlen must be an int of at least 1, not {maxlen!r}")
        self._backplane = backplane
        self.name = name
        self.maxlen = maxlen
        self.key = backplane.channel("stream", name)
        self._consumers = 0

    def __repr__(self) -> str:
        return f"<DurableStream {self.name!r} at {self.key!r}>"

    async def add(self, message: T) -> str:
        backplane = self._backplane
        data = encode_payload(backplane.codec, message, backplane.max_message_size)
        with backplane.translate_errors(f"add to stream {self.name!r}"):
            entry_id = await backplane.client.xadd(
                self.key,
                {"m": data},
                trim_strategy=PureToken.MAXLEN,
                threshold=self.maxlen,
                trim_operator=PureToken.APPROXIMATELY,
            )
        assert entry_id is not None
        return entry_id.decode()

    async def pending(self, group: str) -> int:
        await trio.lowlevel.checkpoint()
        backplane = self._backplane
        with backplane.translate_errors(f"read the pending entries of stream {self.name!r}"):
            try:
                summary = await backplane.client.xpending(self.key, group)
            except coredis.exceptions.StreamConsumerGroupError:  # NOGROUP
                return 0
        assert isinstance(summary, StreamPending)
        return summary.pending

    async def _ensure_group(self, group: str) -> None:
        await trio.lowlevel.checkpoint()
        with contextlib.suppress(coredis.exceptions.StreamDuplicateConsumerGroupError):
            await self._backplane.client.xgroup_create(self.key, group, "0", mkstream=True)

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
        backplane = self._backplane
        if consumer is None:
            self._consumers += 1
            consumer = f"{backplane.node}-{self._consumers}"
        with backplane.translate_errors(f"create group {group!r} of stream {self.name!r}"):
            await self._ensure_group(group)
        task_status.started()
        claim_every = min_idle / 2
        next_claim = trio.current_time()
        attempt = 0
        while ref.is_alive:
            try:
                if trio.current_time() >= next_claim:
                    entries = await self._claim(group, consumer, min_idle, batch)
                    if len(entries) < batch:
                        next_claim = trio.current_time() + claim_every
                else:
                    block = min(_MAX_BLOCK, next_claim - trio.current_time())
                    entries = await self._read(group, consumer, batch, block)
                attempt = 0
            except coredis.exceptions.StreamConsumerGroupError:
                # NOGROUP: the server restarted without its data; start the group again.
                await self._ensure_group(group)
                continue
            except Exception as exc:
                if not is_connection_failure(exc):
                    raise
                attempt += 1
                await trio.sleep(backplane.reconnect.delay(attempt - 1, random.random()))
                continue
            for entry in entries:
                if not await self._deliver(ref, group, consumer, entry, handler_timeout):
                    return

    async def _claim(
        self, group: str, consumer: str, min_idle: float, batch: int
    ) -> tuple[StreamEntry, ...]:
        claimed = await self._backplane.client.xautoclaim(
            self.key, group, consumer, int(min_idle * 1000), "0-0", count=batch
        )
        entries = claimed[1]
        return tuple(entry for entry in entries if isinstance(entry, StreamEntry))

    async def _read(
        self, group: str, consumer: str, batch: int, block: float
    ) -> tuple[StreamEntry, ...]:
        found = await self._backplane.client.xreadgroup(
            group, consumer, {self.key: ">"}, count=batch, block=max(1, int(block * 1000))
        )
        if not found:
            return ()
        return next(iter(found.values()), ())

    async def _deliver(
        self,
        ref: actors.ActorRef[StreamMessage[T]],
        group: str,
        consumer: str,
        entry: StreamEntry,
        handler_timeout: float | None,
    ) -> bool:
        """Ask the actor, then acknowledge; False once the actor has stopped."""
        await trio.lowlevel.checkpoint()
        backplane = self._backplane
        entry_id = entry.identifier
        text_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        data = entry.field_values.get(b"m")
        try:
            if not isinstance(data, bytes):
                raise DecodeError(f"stream entry {text_id} has no field 'm'", repr(entry))
            message = decode_payload(backplane.codec, data, backplane.max_message_size)
        except DecodeError as exc:
            backplane.dead_letter(data, f"backplane stream {self.name!r}", exc)
            await self._ack(group, entry_id)
            return True
        try:
            await ref.ask(
                StreamMessage(self.name, group, text_id, message), timeout=handler_timeout
            )
        except actors.ActorStoppedError:
            return False
        except Exception as exc:  # noqa: BLE001 - left pending: delivered again after min_idle
            logger.info(
                "backplane: %s of stream %r failed in %s (%r); it will be delivered again",
                text_id,
                self.name,
                consumer,
                exc,
            )
            return True
        await self._ack(group, entry_id)
        return True

    async def _ack(self, group: str, entry_id: Any) -> None:
        await trio.lowlevel.checkpoint()
        try:
            await self._backplane.client.xack(self.key, group, [entry_id])
        except Exception as exc:  # noqa: BLE001 - unacknowledged: delivered again
            logger.debug("backplane: ack of %r in stream %r failed: %r", entry_id, self.name, exc)
