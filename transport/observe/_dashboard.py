"""The live dashboard: its page, and the WebSocket application that feeds it.

Each browser tab is one WebSocket connection, so one connection actor of the
observer's server. Its application subscribes to the system's event stream and
sends the page a JSON *state* (the actor tree, the connections, the latest dead
letters and events) every ``interval`` seconds, and at once after each event,
preceded by the event itself (as the tally's event counter recorded it): a restart shows up as it happens.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Iterator

import trio

import actors

from .._census import SourceKind
from .._connection._handle import WebSocketConnection
from .._connection._messages import ConnectionStatistics
from ._tally import Tally, connection_side

#: The path of the dashboard's WebSocket.
LIVE_PATH = "/live"
#: Children of one actor and connections listed at most in one state message.
MAX_LISTED = 200
#: Dead letters listed in one state message.
DEAD_LETTERS_LISTED = 20
# Events sent at once, if they come faster (the rest wait for the next state).
_EVENT_BURST = 20
_EXCERPT = 160


def dashboard_page() -> bytes:
    """The dashboard's HTML (one self-contained page, no external resources)."""
    return (importlib.resources.files(__package__) / "dashboard.html").read_bytes()


def state_message(tally: Tally) -> dict[str, object]:
    """Everything the page shows, as plain JSON-ready data."""
    snapshot = tally.system.snapshot()
    letters = tally.system.dead_letters.recent()[-DEAD_LETTERS_LISTED:]
    return {
        "type": "state",
        "system": snapshot.system,
        "taken_at": snapshot.taken_at,
        "actors": [_actor(actor) for actor in snapshot.actors[:MAX_LISTED]],
        "actor_count": sum(1 for _ in snapshot.walk()),
        "connections": list(_connections(tally)),
        "dead_letters": [
            {
                "recipient": letter.recipient,
                "reason": letter.reason.value,
                "message": _excerpt(repr(letter.message)),
                "error": None if letter.error is None else _excerpt(repr(letter.error)),
            }
            for letter in reversed(letters)
        ],
        "dead_letter_count": snapshot.dead_letters,
        "events": [record.as_dict() for record in reversed(tally.recent)],
        "restarts": tally.restarts,
        "failures": tally.failures,
    }


def _actor(actor: actors.ActorSnapshot) -> dict[str, object]:
    return {
        "path": actor.path,
        "name": actor.name,
        "class": actor.actor_class.rsplit(".", 1)[-1],
        "state": actor.state,
        "depth": actor.mailbox_depth,
        "capacity": actor.mailbox_capacity,
        "high_water": actor.mailbox_high_water,
        "processed": actor.processed,
        "restarts": actor.restarts,
        "last_failure": None if actor.last_failure is None else _excerpt(actor.last_failure),
        "children": [_actor(child) for child in actor.children[:MAX_LISTED]],
        "more_children": max(len(actor.children) - MAX_LISTED, 0),
    }


def _connections(tally: Tally) -> Iterator[dict[str, object]]:
    kinds = (SourceKind.CLIENT_CONNECTION, SourceKind.SERVER_CONNECTION)
    for index, (source, statistics) in enumerate(tally.live(ConnectionStatistics, *kinds)):
        if index == MAX_LISTED:
            return
        yield {
            "path": source.name,
            "side": connection_side(source.kind),
            "received": statistics.messages_received,
            "sent": statistics.messages_sent,
            "bytes_received": statistics.bytes_received,
            "bytes_sent": statistics.bytes_sent,
            "inbound": statistics.inbound_depth,
            "outbound": statistics.outbound_depth,
            "dropped": statistics.inbound_dropped,
            "latency": statistics.latency,
        }


def _excerpt(text: str) -> str:
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


async def feed_dashboard(tally: Tally, interval: float, connection: WebSocketConnection) -> None:
    """The application of one dashboard connection: states and events until it closes."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_until_closed, connection, nursery.cancel_scope)
        with tally.watch() as events:
            await _send(connection, state_message(tally))
            while True:
                with trio.move_on_after(interval):
                    record = await events.receive()
                    await _send(connection, {"type": "event", **record.as_dict()})
                    for _ in range(_EVENT_BURST):
                        try:
                            record = events.receive_nowait()
                        except trio.WouldBlock:
                            break
                        await _send(connection, {"type": "event", **record.as_dict()})
                await _send(connection, state_message(tally))


async def _until_closed(connection: WebSocketConnection, scope: trio.CancelScope) -> None:
    # The page sends nothing that matters; reading tells when it has gone.
    async for _ in connection:
        pass
    scope.cancel()


async def _send(connection: WebSocketConnection, message: dict[str, object]) -> None:
    await connection.send(json.dumps(message, default=repr))
