"""Topic messages leave this process in batches: one Redis command for many publishes.

Each ``PUBLISH`` through coredis costs far more in the client (pool, retry policy,
telemetry hooks, a request object) than in Redis. Publishers therefore queue their
frames in one bounded outbox, and one task sends what has gathered there while the
previous command was in flight: alone, as a ``PUBLISH``; several, as one script that
publishes them in queue order (so each task's messages keep their order). A publisher
returns when Redis has accepted the command carrying its message, and gets the
command's error otherwise, exactly as if it had sent the message itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import trio

if TYPE_CHECKING:
    import coredis

#: Publishes queued at most in the outbox; more wait in ``publish`` (back pressure).
OUTBOX_SIZE = 1024
#: Most messages carried by one command.
MAX_BATCH = 256
#: Most payload bytes carried by one command (one larger message is still sent alone).
MAX_BATCH_BYTES = 1 << 20

# ARGV holds channel, payload, channel, payload, ...
_PUBLISH_ALL = """
for i = 1, #ARGV, 2 do
    redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
"""


@final
class _Outgoing:
    __slots__ = ("channel", "data", "done", "error")

    def __init__(self, channel: bytes, data: bytes) -> None:
        self.channel = channel
        self.data = data
        self.done = trio.Event()
        self.error: BaseException | None = None


@final
class TopicPublisher:
    """The outbox of topic messages and the task that sends it (see the module docstring)."""

    def __init__(self, client: coredis.Redis[bytes]) -> None:
        self._client = client
        self._send, self._receive = trio.open_memory_channel[_Outgoing](OUTBOX_SIZE)
        self._held: _Outgoing | None = None  # the first of the next batch

    async def publish(self, channel: bytes, data: bytes) -> None:
        """Send ``data`` to ``channel``; raise the sending command's error, if any.

        Cancelled after the message was queued, it may still be sent (at most once).
        Raises :exc:`trio.ClosedResourceError` once the publisher has stopped.
        """
        outgoing = _Outgoing(channel, data)
        try:
            await self._send.send(outgoing)
        except trio.BrokenResourceError:
            raise trio.ClosedResourceError("the backplane's topic publisher has stopped") from None
        await outgoing.done.wait()
        if outgoing.error is not None:
            raise outgoing.error

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send the outbox until cancelled; then fail whatever it still holds."""
        batch: list[_Outgoing] = []
        try:
            task_status.started()
            while True:
                batch = await self._next_batch()
                try:
                    await self._send_batch(batch)
                except Exception as exc:  # noqa: BLE001 - each publisher raises it (translated)
                    for outgoing in batch:
                        outgoing.error = exc
                for outgoing in batch:
                    outgoing.done.set()
                batch = []
        finally:
            closed = trio.ClosedResourceError("the backplane closed before redis took the message")
            left = [*batch, *([self._held] if self._held is not None else [])]
            while True:
                try:
                    left.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            self._receive.close()  # publishers still waiting for room get ClosedResourceError
            for outgoing in left:
                if not outgoing.done.is_set():
                    outgoing.error = closed
                    outgoing.done.set()

    async def _next_batch(self) -> list[_Outgoing]:
        first = self._held
        self._held = None
        if first is None:
            first = await self._receive.receive()
        else:
            await trio.lowlevel.checkpoint()
        batch = [first]
        size = len(first.data)
        while len(batch) < MAX_BATCH:
            try:
                outgoing = self._receive.receive_nowait()
            except trio.WouldBlock:
                break
            size += len(outgoing.data)
            if size > MAX_BATCH_BYTES:
                self._held = outgoing
                break
            batch.append(outgoing)
        return batch

    async def _send_batch(self, batch: list[_Outgoing]) -> None:
        if len(batch) == 1:
            await self._client.publish(batch[0].channel, batch[0].data)
            return
        args: list[bytes] = []
        for outgoing in batch:
            args.append(outgoing.channel)
            args.append(outgoing.data)
        await self._client.eval(_PUBLISH_ALL, keys=[], args=args)
