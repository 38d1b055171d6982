"""A simulated market-data feed over ``wss://``: subscribe, heartbeat, ticks, and drops.

::

    python -m transport.apps.ticker_feed --port 8766 --certfile feed.pem --keyfile feed.key

prints ``listening on wss://127.0.0.1:8766/`` (``ws://`` without a certificate). The protocol,
one JSON object per text message:

- the client subscribes first, within 10 seconds: ``{"op": "subscribe", "symbols": ["ACME"]}``;
  the feed confirms with ``{"op": "subscribed", "symbols": [...]}``;
- the feed then sends ``{"op": "tick", "symbol": "ACME", "price": 101.25, "seq": 7}`` every
  ``--interval`` seconds per symbol;
- the client sends ``{"op": "heartbeat"}`` at least every ``--heartbeat-timeout`` seconds,
  or the feed closes the connection with 1008 (policy violation);
- after ``--drop-after`` seconds the feed drops the connection with 1012 (service restart),
  as real feeds do at maintenance windows: clients must reconnect and subscribe again.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

import actors
import transport
from transport.apps.chat_server import wait_for_signal

SYMBOLS = ("ACME", "BOLT", "CRUX")
SUBSCRIBE_TIMEOUT = 10.0


@attrs.define
class Market:
    """Random-walk prices, one per symbol, shared by every connection of the feed."""

    rng: random.Random
    prices: dict[str, float] = attrs.Factory(dict)
    seq: int = 0

    def tick(self, symbol: str) -> dict[str, object]:
        price = self.prices.get(symbol, 100.0 + 50 * self.rng.random())
        price = max(1.0, price * (1 + self.rng.gauss(0, 0.002)))
        self.prices[symbol] = price
        self.seq += 1
        return {"op": "tick", "symbol": symbol, "price": round(price, 2), "seq": self.seq}


@attrs.frozen
class FeedConfig:
    market: Market
    interval: float = 0.2
    heartbeat_timeout: float = 5.0
    drop_after: float | None = None


def parse_subscribe(data: str | bytes) -> list[str] | None:
    """The symbols of a subscribe message, or ``None`` if it is not one."""
    try:
        message = json.loads(data)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("op") != "subscribe":
        return None
    symbols = message.get("symbols")
    if not isinstance(symbols, list) or not symbols:
        return None
    return [s for s in symbols if isinstance(s, str) and s in SYMBOLS] or None


def feed_handler(
    config: FeedConfig,
) -> Callable[[transport.WebSocketConnection], Awaitable[None]]:
    async def serve_subscriber(connection: transport.WebSocketConnection) -> None:
        symbols = None
        with trio.move_on_after(SUBSCRIBE_TIMEOUT):
            symbols = parse_subscribe(await connection.receive())
        if symbols is None:
            await close(connection, transport.CloseCode.POLICY_VIOLATION, "subscribe first")
            return
        await connection.send(json.dumps({"op": "subscribed", "symbols": symbols}))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_heartbeats, connection, config, nursery.cancel_scope)
            with trio.move_on_after(config.drop_after or math.inf) as maintenance:
                try:
                    while True:
                        for symbol in symbols:
                            await connection.send(json.dumps(config.market.tick(symbol)))
                        await trio.sleep(config.interval)
                except actors.ActorStoppedError:
                    pass  # the subscriber is gone: its connection actor has stopped
            if maintenance.cancelled_caught:
                await close(connection, transport.CloseCode.SERVICE_RESTART, "feed restarting")
            nursery.cancel_scope.cancel()

    return serve_subscriber


async def watch_heartbeats(
    connection: transport.WebSocketConnection, config: FeedConfig, scope: trio.CancelScope
) -> None:
    """The only reader of the connection: heartbeats in, acknowledgements out."""
    while True:
        with trio.move_on_after(config.heartbeat_timeout) as waiting:
            try:
                data = await connection.receive()
            except trio.EndOfChannel:
                scope.cancel()  # the subscriber went away
                return
        if waiting.cancelled_caught:
            await close(connection, transport.CloseCode.POLICY_VIOLATION, "no heartbeat")
            scope.cancel()
            return
        if '"heartbeat"' in str(data):
            with contextlib.suppress(actors.ActorStoppedError):
                await connection.send(json.dumps({"op": "heartbeat"}))


async def close(connection: transport.WebSocketConnection, code: int, reason: str) -> None:
    """Ask the connection to close with ``code``; the handler returns right after.

    (``connection.close()`` would wait for the connection actor to stop, and the actor
    waits for this handler: tell it ``Close`` and return instead.)
    """
    with contextlib.suppress(actors.ActorStoppedError):
        await connection.ref.tell(transport.Close(code, reason))


@attrs.frozen
class FeedServer:
    url: str
    server: transport.WebSocketServer


async def serve_feed(
    system: actors.ActorSystem,
    host: str,
    port: int,
    config: FeedConfig,
    *,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[FeedServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the feed until cancelled; ``nursery.start`` returns where it listens."""
    async with trio.open_nursery() as nursery:
        server: transport.WebSocketServer = await nursery.start(
            functools.partial(
                transport.serve_websocket,
                system,
                feed_handler(config),
                host,
                port,
                ssl_context=ssl_context,
                name="ticker-feed",
            )
        )
        scheme = "ws" if ssl_context is None else "wss"
        task_status.started(FeedServer(f"{scheme}://{host}:{server.port}/", server))


async def main(arguments: argparse.Namespace) -> None:
    context = None
    if arguments.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(arguments.certfile, arguments.keyfile)
    config = FeedConfig(
        Market(random.Random(arguments.seed)),
        interval=arguments.interval,
        heartbeat_timeout=arguments.heartbeat_timeout,
        drop_after=arguments.drop_after,
    )
    async with actors.open_system("feed") as system:
        async with trio.open_nursery() as nursery:
            feed: FeedServer = await nursery.start(
                functools.partial(
                    serve_feed, system, arguments.host, arguments.port, config, ssl_context=context
                )
            )
            print(f"listening on {feed.url}", flush=True)
            await wait_for_signal()
            nursery.cancel_scope.cancel()


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m transport.apps.ticker_feed", description="A simulated ticker feed."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766, help="0: any free port")
    parser.add_argument("--certfile", help="PEM certificate chain: serve wss:// (else ws://)")
    parser.add_argument("--keyfile", help="PEM private key of --certfile")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between ticks")
    parser.add_argument("--heartbeat-timeout", type=float, default=5.0)
    parser.add_argument("--drop-after", type=float, default=None, help="drop clients after N s")
    parser.add_argument("--seed", type=int, default=None)
    arguments = parser.parse_args(argv)
    if bool(arguments.certfile) != bool(arguments.keyfile):
        parser.error("--certfile and --keyfile go together")
    return arguments


if __name__ == "__main__":
    trio.run(main, parse_arguments())
