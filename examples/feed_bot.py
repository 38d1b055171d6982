"""A bot that keeps a ``wss://`` subscription to a ticker feed and posts a digest in the chat.

::

    python -m examples.feed_bot --feed wss://127.0.0.1:8766/ --cafile ca.pem \\
        --chat ws://127.0.0.1:8765/ --room lobby

The bot is one actor with two children: ``feed``, a ``transport.ReconnectingClient`` over
TLS (verified against ``--cafile``) that subscribes again after every connect, while the bot
sends a heartbeat every second as the ticks stream in; and ``chat``, a
:class:`~examples.chat_bots.ChatBot` that is the bot's voice in the room (as ``ticker``).
When the feed drops the connection, the client reconnects and resubscribes; the bot notes
the gap in its next digest.

Every ``--digest-every`` seconds the bot posts one line: the last price of each symbol, its
change over the period, and how many ticks arrived.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import ssl
from collections.abc import Sequence

import attrs
import trio

import actors
import transport
from examples.chat_bots import ChatBot, Say
from examples.chat_server import wait_for_signal
from examples.ticker_feed import SYMBOLS

HEARTBEAT = json.dumps({"op": "heartbeat"})

logger = logging.getLogger("examples.feed_bot")


@attrs.frozen
class PostDigest:
    """The bot's own clock: time to post."""


@attrs.define
class Period:
    """What the feed said since the last digest."""

    first: dict[str, float] = attrs.Factory(dict)
    last: dict[str, float] = attrs.Factory(dict)
    ticks: int = 0
    drops: list[str] = attrs.Factory(list)

    def add(self, symbol: str, price: float) -> None:
        self.first.setdefault(symbol, price)
        self.last[symbol] = price
        self.ticks += 1

    def line(self, previous: dict[str, float]) -> str | None:
        """The digest: ``ACME 101.25 (+0.31%)`` per symbol, ticks, and any reconnects."""
        if not self.ticks and not self.drops:
            return None
        parts = []
        for symbol, price in sorted(self.last.items()):
            base = previous.get(symbol, self.first[symbol])
            parts.append(f"{symbol} {price:.2f} ({(price - base) / base:+.2%})")
        text = " · ".join(parts) or "no ticks"
        text += f" [{self.ticks} ticks]"
        if self.drops:
            text += f" (feed reconnected after: {'; '.join(self.drops)})"
        return text


@attrs.define(eq=False)
class FeedBot(actors.Actor[transport.ClientEvent | PostDigest]):
    """Subscribes to the feed through a reconnecting client; posts through a ChatBot child."""

    feed_url: str
    chat_url: str
    room: str = "lobby"
    name: str = "ticker"
    symbols: Sequence[str] = SYMBOLS
    ssl_context: ssl.SSLContext | None = None
    digest_every: float = 2.0
    heartbeat_every: float = 1.0
    chat: actors.ActorRef[Say] | None = None
    feed: transport.ReconnectingConnection | None = None
    period: Period = attrs.Factory(Period)
    closing: dict[str, float] = attrs.Factory(dict)

    async def on_start(self) -> None:
        subscribe = json.dumps({"op": "subscribe", "symbols": list(self.symbols)})

        async def resubscribe(connection: transport.WebSocketConnection) -> None:
            # Every new connection starts unsubscribed: subscribe before anything else.
            await connection.send(subscribe)

        self.chat = await self.ctx.spawn(ChatBot(self.chat_url, self.room, self.name), name="chat")
        self.feed = await transport.connect_reconnecting_client(
            self.ctx,
            transport.ReconnectingClient(
                url=self.feed_url,
                ssl_context=self.ssl_context,
                on_connected=resubscribe,
                subscriber=self.ctx.ref,
            ),
            name="feed",
        )
        self.ctx.start_soon(self._heartbeat, self.feed)
        self.ctx.start_soon(self._clock)

    async def _heartbeat(self, feed: transport.ReconnectingConnection) -> None:
        # Writes while the client's pump reads: both go through the connection actor, which
        # alone touches the TLS stream. A beat is skipped while there is no connection.
        while True:
            await trio.sleep(self.heartbeat_every)
            if feed.state is transport.ClientState.CONNECTED:
                with contextlib.suppress(trio.WouldBlock):
                    feed.send_nowait(HEARTBEAT)

    async def _clock(self) -> None:
        while True:
            await trio.sleep(self.digest_every)
            await self.ctx.ref.tell(PostDigest())

    @actors.handler
    def received(self, message: transport.Received) -> None:
        data = message.data
        assert isinstance(data, str | bytes)  # the default codec passes text through
        try:
            tick = json.loads(data)
        except ValueError:
            logger.warning("the feed sent something that is not JSON")
            return
        if isinstance(tick, dict) and tick.get("op") == "tick":
            self.period.add(str(tick["symbol"]), float(tick["price"]))

    @actors.handler
    def connected(self, message: transport.Connected) -> None:
        logger.info("connected to %s (connect #%d)", self.feed_url, message.connects)

    @actors.handler
    def disconnected(self, message: transport.Disconnected) -> None:
        closed = message.closed
        why = f"closed with {closed.code}" + (f" ({closed.reason})" if closed.reason else "")
        logger.info("lost %s: %s", self.feed_url, why)
        self.period.drops.append(why)

    @actors.handler
    def gave_up(self, message: transport.GaveUp) -> None:
        logger.error("gave up on %s: %s", self.feed_url, message.reason)
        self.ctx.stop(message)

    @actors.handler
    async def post_digest(self, message: PostDigest) -> None:
        line = self.period.line(self.closing)
        self.closing.update(self.period.last)
        self.period = Period()
        if line is not None and self.chat is not None:
            await self.chat.tell(Say(line))


async def main(arguments: argparse.Namespace) -> None:
    context = None
    if arguments.feed.startswith("wss://"):
        context = ssl.create_default_context(cafile=arguments.cafile)
    async with actors.open_system("feed-bot") as system:
        bot = await system.spawn(
            FeedBot(
                arguments.feed,
                arguments.chat,
                arguments.room,
                ssl_context=context,
                digest_every=arguments.digest_every,
            ),
            name="ticker",
        )
        print(f"posting a digest of {arguments.feed} to {arguments.room!r} at {arguments.chat}")
        await wait_for_signal()
        await bot.stop()


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.feed_bot", description=__doc__)
    parser.add_argument("--feed", default="wss://127.0.0.1:8766/", help="the ticker feed")
    parser.add_argument("--cafile", help="trust this CA for the feed (default: the system's)")
    parser.add_argument("--chat", default="ws://127.0.0.1:8765/", help="the chat server")
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--digest-every", type=float, default=2.0, metavar="SECONDS")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    trio.run(main, parse_arguments())
