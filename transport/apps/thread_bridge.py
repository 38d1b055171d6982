"""Blocking code in plain OS threads, feeding a WebSocket connection safely.

::

    python -m transport.apps.thread_bridge --url ws://127.0.0.1:8765/ --room lobby

Two threads that know nothing of trio:

- a *sensor loop* that polls a (simulated) thermometer with a blocking call, and
- a *legacy SDK* that runs its own thread and invokes a callback on it for each door event,

both hand their data to the ``relay`` actor with ``ref.tell_from_thread(...)``. The relay posts
each one through its child :class:`~transport.apps.chat_bots.ChatBot`, whose reconnecting client owns
the one connection to the chat.

Why not let the threads write to the connection themselves? That is the bug this project
exists for. A Boost.Beast client called ``read()`` on a TLS WebSocket stream in one thread and
``write()`` on the same stream in another; both ended up inside OpenSSL on the same ``SSL``
object at once, and the process died with SIGSEGV in ``bio_write``. Neither the WebSocket
layer nor TLS tolerates two concurrent users of one stream: a write also touches read state
(a ping must be answered by a pong, a close by a close, TLS renegotiation and key updates
cross directions), so "one reader thread plus one writer thread" is already two users.
Python does not save you: ``ssl.SSLSocket`` releases the GIL inside ``SSL_read`` and
``SSL_write``, so two threads can be in OpenSSL on the same object together; and trio objects
(a memory channel, a ``WebSocketConnection``) are not thread-safe at all: called from another
thread they raise, or corrupt the scheduler's state (see the guide on threads).

Here the stream belongs to one connection actor and only its own tasks touch it. A thread
gets in through ``tell_from_thread``, which runs an ordinary ``await ref.tell(message)`` on the
trio thread through the system's trio token, and blocks the thread while the relay's mailbox is
full: backpressure reaches the sensor loop instead of an unbounded queue.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import threading
from collections.abc import Callable, Sequence

import attrs
import trio

import actors
from transport.apps.chat_bots import ChatBot, Say
from transport.apps.chat_server import wait_for_signal

logger = logging.getLogger("transport.apps.thread_bridge")


@attrs.frozen
class Reading:
    sensor: str
    celsius: float


@attrs.frozen
class DoorEvent:
    door: str
    state: str


@attrs.define(eq=False)
class Relay(actors.Actor[Reading | DoorEvent]):
    """Takes what the threads report and posts it in the chat, through a ChatBot child."""

    url: str
    room: str = "lobby"
    name: str = "sensors"
    chat: actors.ActorRef[Say] | None = None

    async def on_start(self) -> None:
        self.chat = await self.ctx.spawn(ChatBot(self.url, self.room, self.name), name="chat")

    @actors.handler
    async def reading(self, message: Reading) -> None:
        await self._post(f"{message.sensor}: {message.celsius:.1f} C")

    @actors.handler
    async def door(self, message: DoorEvent) -> None:
        await self._post(f"door {message.door} {message.state}")

    async def _post(self, text: str) -> None:
        assert self.chat is not None
        await self.chat.tell(Say(text))


# -- the threads --------------------------------------------------------------------------------


class SensorLoop:
    """A plain thread polling a thermometer with a blocking call every ``interval`` seconds."""

    def __init__(
        self, relay: actors.ActorRef[Reading], interval: float, rng: random.Random
    ) -> None:
        self._relay = relay
        self._interval = interval
        self._rng = rng
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sensor-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop and wait for it (blocking: call it through to_thread)."""
        self._stopping.set()
        self._thread.join()

    def _read_thermometer(self) -> float:
        return 21.0 + self._rng.uniform(-0.5, 0.5)  # stands in for a blocking driver call

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self._relay.tell_from_thread(Reading("thermometer", self._read_thermometer()))
            except actors.ActorStoppedError:
                return  # the relay (or the whole system) has stopped: nothing to report to


class LegacyDoorSdk:
    """A vendor SDK: it starts its own thread and calls ``on_event`` from it. We can't change it."""

    def __init__(self, on_event: Callable[[str, str], None], interval: float) -> None:
        self._on_event = on_event
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="door-sdk", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        state = "closed"
        while not self._stopping.wait(self._interval):
            state = "open" if state == "closed" else "closed"
            self._on_event("front", state)


def door_callback(relay: actors.ActorRef[DoorEvent]) -> Callable[[str, str], None]:
    """The callback we register with the SDK: it runs on the SDK's thread."""

    def on_event(door: str, state: str) -> None:
        # If the relay has stopped, the SDK is being shut down too: nothing to report to.
        with contextlib.suppress(actors.ActorStoppedError):
            relay.tell_from_thread(DoorEvent(door, state))

    return on_event


@attrs.define
class Threads:
    """The two threads, started and stopped together."""

    sensor: SensorLoop
    sdk: LegacyDoorSdk

    @classmethod
    def start(
        cls, relay: actors.ActorRef[Reading | DoorEvent], interval: float, rng: random.Random
    ) -> Threads:
        threads = cls(
            SensorLoop(relay, interval, rng), LegacyDoorSdk(door_callback(relay), 2 * interval)
        )
        threads.sensor.start()
        threads.sdk.start()
        return threads

    async def stop(self) -> None:
        # Joining blocks, so it runs in a worker thread; the trio thread stays free to run the
        # tell_from_thread calls the threads may be blocked in.
        await trio.to_thread.run_sync(self.sensor.stop)
        await trio.to_thread.run_sync(self.sdk.stop)


async def main(arguments: argparse.Namespace) -> None:
    async with actors.open_system("bridge") as system:
        relay = await system.spawn(Relay(arguments.url, arguments.room), name="relay")
        threads = Threads.start(relay, arguments.interval, random.Random(arguments.seed))
        print(f"two threads are reporting to {arguments.room!r} at {arguments.url}")
        await wait_for_signal(arguments.seconds)
        await threads.stop()  # the threads first: they must not outlive what they report to
        await relay.stop()


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m transport.apps.thread_bridge", description=__doc__
    )
    parser.add_argument("--url", default="ws://127.0.0.1:8765/", help="the chat server")
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--seed", type=int, default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    trio.run(main, parse_arguments())
