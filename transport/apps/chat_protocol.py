"""The chat's wire format: one JSON object per WebSocket text message (pure functions, no I/O).

From a client to the server::

    {"type": "join", "room": "lobby", "name": "alice"}
    {"type": "say", "room": "lobby", "text": "hi"}
    {"type": "who", "room": "lobby"}
    {"type": "leave", "room": "lobby"}

From the server to a client::

    {"type": "joined", "room": "lobby", "name": "alice"}
    {"type": "left", "room": "lobby", "name": "alice", "reason": "closed the page"}
    {"type": "message", "room": "lobby", "name": "alice", "text": "hi"}
    {"type": "members", "room": "lobby", "names": ["alice", "greeter"]}
    {"type": "error", "text": "..."}

The browser page (``transport/apps/static/chat.html``) and the bots speak exactly this.
"""

from __future__ import annotations

import json

import attrs

MAX_NAME = 32
MAX_TEXT = 2000


# -- client to server --------------------------------------------------------------------------


@attrs.frozen
class JoinRoom:
    room: str
    name: str


@attrs.frozen
class SayInRoom:
    room: str
    text: str


@attrs.frozen
class AskWho:
    room: str


@attrs.frozen
class LeaveRoom:
    room: str


ClientMessage = JoinRoom | SayInRoom | AskWho | LeaveRoom


# -- server to client (also what a room publishes on its topic) -------------------------------


@attrs.frozen
class Joined:
    room: str
    name: str


@attrs.frozen
class Left:
    room: str
    name: str
    reason: str


@attrs.frozen
class Posted:
    room: str
    name: str
    text: str


@attrs.frozen
class Members:
    room: str
    names: tuple[str, ...]


@attrs.frozen
class Problem:
    text: str


RoomEvent = Joined | Left | Posted
ServerMessage = Joined | Left | Posted | Members | Problem


class ProtocolError(ValueError):
    """A message that is not valid JSON or not one of the messages above."""


def _field(data: dict[str, object], key: str, limit: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ProtocolError(f"{data.get('type')!r} needs a non-empty string {key!r}")
    if len(value) > limit:
        raise ProtocolError(f"{key!r} is longer than {limit} characters")
    return value.strip()


def _object(text: str | bytes) -> dict[str, object]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("a chat message is a JSON object")
    return data


def decode_client(text: str | bytes) -> ClientMessage:
    """Parse what a client sent; raises :exc:`ProtocolError` for anything else."""
    data = _object(text)
    kind = data.get("type")
    if kind == "join":
        return JoinRoom(_field(data, "room", MAX_NAME), _field(data, "name", MAX_NAME))
    if kind == "say":
        return SayInRoom(_field(data, "room", MAX_NAME), _field(data, "text", MAX_TEXT))
    if kind == "who":
        return AskWho(_field(data, "room", MAX_NAME))
    if kind == "leave":
        return LeaveRoom(_field(data, "room", MAX_NAME))
    raise ProtocolError(f"unknown message type {kind!r}; use join, say, who or leave")


def encode_client(message: ClientMessage) -> str:
    if isinstance(message, JoinRoom):
        data: dict[str, object] = {"type": "join", "room": message.room, "name": message.name}
    elif isinstance(message, SayInRoom):
        data = {"type": "say", "room": message.room, "text": message.text}
    elif isinstance(message, AskWho):
        data = {"type": "who", "room": message.room}
    else:
        data = {"type": "leave", "room": message.room}
    return json.dumps(data)


def encode_server(message: ServerMessage) -> str:
    if isinstance(message, Joined):
        data: dict[str, object] = {"type": "joined", "room": message.room, "name": message.name}
    elif isinstance(message, Left):
        data = {
            "type": "left",
            "room": message.room,
            "name": message.name,
            "reason": message.reason,
        }
    elif isinstance(message, Posted):
        data = {"type": "message", "room": message.room, "name": message.name, "text": message.text}
    elif isinstance(message, Members):
        data = {"type": "members", "room": message.room, "names": list(message.names)}
    else:
        data = {"type": "error", "text": message.text}
    return json.dumps(data)


def decode_server(text: str | bytes) -> ServerMessage:
    """Parse what the server sent (used by the bots and the tests)."""
    data = _object(text)
    kind = data.get("type")
    room = str(data.get("room", ""))
    if kind == "joined":
        return Joined(room, str(data["name"]))
    if kind == "left":
        return Left(room, str(data["name"]), str(data.get("reason", "")))
    if kind == "message":
        return Posted(room, str(data["name"]), str(data["text"]))
    if kind == "members":
        names = data.get("names")
        return Members(room, tuple(str(n) for n in names) if isinstance(names, list) else ())
    if kind == "error":
        return Problem(str(data.get("text", "")))
    raise ProtocolError(f"unknown message type {kind!r}")
