"""Codecs: how a connection turns WebSocket messages into values and back (sans-IO).

A codec is two plain functions, no trio and no network: ``encode(message)`` gives the
``str`` (a Text message) or ``bytes`` (a Binary message) to send, ``decode(frame)``
gives the value to deliver. :class:`RawCodec`, the default, passes text and bytes
through unchanged. :class:`JsonCodec` maps attrs message classes, tagged by a type
field, to JSON text and back with cattrs::

    codec = JsonCodec(Chat, Join, Leave, tags={Chat: "chat"})
    codec.encode(Chat("hi"))  # '{"type":"chat","text":"hi"}'
    codec.decode('{"type":"join","room":"a"}')  # Join(room='a')

Decoding never raises anything but a :class:`DecodeError`, and encoding anything but
an :class:`EncodeError`::

    TransportError
    ├── EncodeError                 the value cannot be sent with this codec
    └── DecodeError                 an inbound message is bad input (close code 1007)
        ├── UnsupportedFrameError   a frame type the codec does not accept (1003)
        ├── InvalidUtf8Error        a Binary message that is not UTF-8
        ├── InvalidJsonError        not JSON (or NaN, Infinity, nesting too deep)
        ├── MissingTagError         not a JSON object with the tag field
        ├── UnknownTagError         a tag no registered class has
        └── InvalidFieldsError      missing, extra or wrongly typed fields

Only ``EncodeError`` and ``DecodeError`` are exported: the kinds of decode failure are
told apart by ``reason`` (and by these private classes, for the package's tests).
"""

from __future__ import annotations

import collections.abc
import enum
import json
import re
import typing
from collections.abc import Callable, Mapping
from typing import ClassVar, Protocol, TypeVar, final

import attrs
import cattrs
import cattrs.cols

from ._close_codes import CloseCode
from ._exceptions import TransportError

T = TypeVar("T")

#: How much of an undecodable message a :class:`DecodeError` keeps (characters or bytes).
PAYLOAD_EXCERPT = 256


class EncodeError(TransportError):
    """A value cannot be encoded by the connection's codec; nothing was sent."""


class DecodeError(TransportError):
    """An inbound message could not be decoded; it is bad input, not a broken connection.

    ``reason`` says what is wrong; ``payload`` is the start of the message as received
    (at most 256 characters or bytes, so a huge or hostile message
    is not copied into logs and dead letters); ``payload_size`` is its full length.
    ``close_code`` is the code the connection closes with under the ``CLOSE`` policy.
    """

    close_code: ClassVar[int] = CloseCode.INVALID_PAYLOAD

    def __init__(self, reason: str, payload: str | bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.payload = payload[:PAYLOAD_EXCERPT]
        self.payload_size = len(payload)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, payload={self.payload!r})"


class UnsupportedFrameError(DecodeError):
    """The message is of a frame type (Text or Binary) the codec does not accept."""

    close_code: ClassVar[int] = CloseCode.UNSUPPORTED_DATA


class InvalidUtf8Error(DecodeError):
    """A Binary message given to a text codec is not valid UTF-8."""


class InvalidJsonError(DecodeError):
    """The message is not strict JSON."""


class MissingTagError(DecodeError):
    """The message is not a JSON object carrying the codec's tag field."""


class UnknownTagError(DecodeError):
    """The message's tag names no class registered with the codec."""


class InvalidFieldsError(DecodeError):
    """The message's fields do not fit its class: missing, extra or of the wrong type."""


class Codec(Protocol):
    """What a connection needs of a codec: two plain functions, called without awaiting.

    ``encode`` returns ``str`` for a Text message or ``bytes`` for a Binary one and
    raises :exc:`EncodeError` for a value it cannot encode. ``decode`` receives ``str``
    for a Text message and ``bytes`` for a Binary one and raises :exc:`DecodeError`
    for bad input. Both run in the connection's tasks, so they must be quick.
    """

    def encode(self, message: object, /) -> str | bytes:
        """The message to send for ``message``; :exc:`EncodeError` if it cannot be encoded."""
        ...

    def decode(self, frame: str | bytes, /) -> object:
        """The value ``frame`` holds; :exc:`DecodeError` if it is bad input."""
        ...


@final
@attrs.frozen
class RawCodec:
    """The default codec: text is sent and delivered as ``str``, binary as ``bytes``."""

    def encode(self, message: object, /) -> str | bytes:
        """``message`` itself if it is ``str`` or ``bytes`` (``bytearray`` and ``memoryview`` are copied)."""
        if isinstance(message, str | bytes):
            return message
        if isinstance(message, bytearray | memoryview):
            return bytes(message)
        raise EncodeError(
            f"the raw codec sends str or bytes, not {type(message).__qualname__}; "
            "encode it first or give the connection a codec that knows it (JsonCodec)"
        )

    def decode(self, frame: str | bytes, /) -> str | bytes:
        """``frame`` unchanged."""
        return frame


class DecodePolicy(enum.Enum):
    """What a connection does with an inbound message its codec cannot decode.

    Either way the owner (handler or subscriber) receives an :class:`Undecodable`
    notice in the message's place, and the notice is published as a dead letter.
    """

    #: Skip the message and keep the connection open.
    SKIP = "skip"
    #: Close the connection: 1007 for bad data, 1003 for an unsupported frame type.
    CLOSE = "close"


@final
class JsonCodec:
    """JSON text for attrs message classes, tagged by a type field; cattrs does the mapping.

    ``JsonCodec(Chat, Join, tag_field="type", tags={Chat: "chat"})`` encodes
    ``Chat(text="hi")`` as ``{"type":"chat","text":"hi"}``. A class's tag is taken
    from ``tags``, else its name in snake case (``ChatMessage`` -> ``"chat_message"``).
    Fields may be ``str``, ``int``, ``float``, ``bool``, enums, nested attrs
    classes, lists, homogeneous tuples, dicts with ``str`` keys and optional
    (``X | None``) versions of these.

    Decoding is strict: field types are checked, not coerced (``"5"`` is not an
    ``int``); fields the class does not have are refused unless
    ``forbid_extra_fields`` is false, in which case they are ignored. Binary
    messages are refused (close code 1003) unless ``accept_binary`` is true, in
    which case they must hold UTF-8 JSON. Encoding sends Text messages.
    """

    __slots__ = ("_classes", "_converter", "_tag_field", "_tags", "accept_binary")

    def __init__(
        self,
        *classes: type,
        tag_field: str = "type",
        tags: Mapping[type, str] | None = None,
        forbid_extra_fields: bool = True,
        accept_binary: bool = False,
    ) -> None:
        tags = dict(tags or {})
        if not classes:
            raise ValueError("a JsonCodec needs at least one message class: JsonCodec(Chat, ...)")
        unknown = [cls.__qualname__ for cls in tags if cls not in classes]
        if unknown:
            raise ValueError(
                f"tags were given for {', '.join(unknown)}, which are not message classes "
                "of this JsonCodec; pass them as positional arguments too"
            )
        self._tag_field = tag_field
        #: Whether Binary messages are decoded as UTF-8 JSON (else refused with 1003).
        self.accept_binary = accept_binary
        self._converter = _strict_converter(forbid_extra_fields)
        self._tags: dict[type, str] = {}
        self._classes: dict[str, type] = {}
        for cls in classes:
            self._register(cls, tags.get(cls, snake_case(cls.__name__)))

    def _register(self, cls: type, tag: str) -> None:
        if not attrs.has(cls):
            raise TypeError(
                f"JsonCodec maps attrs classes, and {cls.__qualname__} is not one; "
                "decorate it with @attrs.frozen"
            )
        if any(field.name == self._tag_field for field in attrs.fields(cls)):
            raise ValueError(
                f"{cls.__qualname__} has a field named {self._tag_field!r}, the codec's tag "
                "field; rename the field or choose another tag_field"
            )
        if tag in self._classes:
            raise ValueError(
                f"{cls.__qualname__} and {self._classes[tag].__qualname__} share the tag "
                f"{tag!r}; give one of them another tag with tags={{...}}"
            )
        if cls in self._tags:
            raise ValueError(f"{cls.__qualname__} is registered twice; list it once")
        self._converter.get_structure_hook(cls)  # unsupported field types fail here, not later
        self._tags[cls] = tag
        self._classes[tag] = cls

    def __repr__(self) -> str:
        names = ", ".join(cls.__qualname__ for cls in self._tags)
        return f"JsonCodec({names}, tag_field={self._tag_field!r})"

    @property
    def tags(self) -> Mapping[type, str]:
        """Each registered class and its tag."""
        return dict(self._tags)

    def encode(self, message: object, /) -> str:
        """``message`` as one line of JSON text, its tag first."""
        tag = self._tags.get(type(message))
        if tag is None:
            raise EncodeError(
                f"{type(message).__qualname__} is not a message class of {self!r}; "
                "register it: JsonCodec(..., YourClass)"
            )
        try:
            fields = self._converter.unstructure(message)
            return json.dumps(
                {self._tag_field: tag, **fields},
                ensure_ascii=False,
                allow_nan=False,
                separators=(",", ":"),
            )
        except (TypeError, ValueError, RecursionError) as exc:
            raise EncodeError(f"{message!r} cannot be encoded as JSON: {exc}") from exc

    def decode(self, frame: str | bytes, /) -> object:
        """The message object ``frame`` holds; :exc:`DecodeError` for anything else."""
        text = self._text_of(frame) if isinstance(frame, bytes) else frame
        try:
            value = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise InvalidJsonError(f"the message is not valid json: {exc}", frame) from None
        if not isinstance(value, dict):
            raise MissingTagError(
                f"the message is a json {_json_kind(value)}, not an object with a "
                f"{self._tag_field!r} field",
                frame,
            )
        tag = value.pop(self._tag_field, None)
        if tag is None:
            raise MissingTagError(
                f"the message has no {self._tag_field!r} field (or it is null)", frame
            )
        cls = self._classes.get(tag) if isinstance(tag, str) else None
        if cls is None:
            shown = repr(tag[:64]) if isinstance(tag, str) else f"a json {_json_kind(tag)}"
            known = ", ".join(repr(t) for t in self._classes)
            raise UnknownTagError(
                f"unknown message type {shown} in field {self._tag_field!r}; "
                f"this codec knows {known}",
                frame,
            )
        try:
            return self._converter.structure(value, cls)
        except Exception as exc:  # a validator of the user's class may raise anything
            details = "; ".join(cattrs.transform_error(exc, path=cls.__qualname__))
            raise InvalidFieldsError(
                f"the fields do not fit {cls.__qualname__}: {details[:512]}", frame
            ) from exc

    def _text_of(self, frame: bytes) -> str:
        if not self.accept_binary:
            raise UnsupportedFrameError(
                "a binary message reached a json codec that accepts text only; send text, "
                "or construct the codec with accept_binary=True",
                frame,
            )
        try:
            return frame.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidUtf8Error(f"the binary message is not utf-8: {exc}", frame) from None


def as_decode_error(exc: Exception, frame: str | bytes) -> DecodeError:
    """``exc`` if it is a :exc:`DecodeError`, else one wrapping it (a custom codec that
    raised something else still only met bad input)."""
    if isinstance(exc, DecodeError):
        return exc
    error = DecodeError(f"the codec raised {exc!r}", frame)
    error.__cause__ = exc
    return error


def snake_case(name: str) -> str:
    """``ChatMessage`` -> ``chat_message``, ``HTTPRequest`` -> ``http_request``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not json (only python's json module accepts it)")


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


# -- a cattrs converter that checks JSON types instead of coercing them ---------------


def _strict_converter(forbid_extra_fields: bool) -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=forbid_extra_fields)
    converter.register_structure_hook(str, _exact(str))
    converter.register_structure_hook(bool, _exact(bool))
    converter.register_structure_hook(int, _exact(int))
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook_factory(
        _is_list, _json_array(cattrs.cols.list_structure_factory)
    )
    converter.register_structure_hook_factory(
        _is_homogeneous_tuple, _json_array(cattrs.cols.homogenous_tuple_structure_factory)
    )
    converter.register_structure_hook_factory(_is_dict, _json_object)
    return converter


def _exact(kind: type[T]) -> Callable[[object, type], T]:
    def structure(value: object, _: type) -> T:
        if type(value) is not kind:  # bool is an int to isinstance, not to JSON
            raise TypeError(f"expected a json {_JSON_NAMES[kind]}, got {_json_kind(value)}")
        return value

    return structure


_JSON_NAMES: dict[type, str] = {str: "string", bool: "boolean", int: "integer"}


def _structure_float(value: object, _: type) -> float:
    if type(value) is not float and type(value) is not int:
        raise TypeError(f"expected a json number, got {_json_kind(value)}")
    return float(value)


_LIST_ORIGINS = (list, collections.abc.Sequence, collections.abc.MutableSequence)


def _is_list(kind: object) -> bool:
    return kind is list or typing.get_origin(kind) in _LIST_ORIGINS


def _is_homogeneous_tuple(kind: object) -> bool:
    args = typing.get_args(kind)
    return typing.get_origin(kind) is tuple and len(args) == 2 and args[1] is Ellipsis


def _is_dict(kind: object) -> bool:
    return kind is dict or typing.get_origin(kind) in (dict, collections.abc.Mapping)


StructureHook = Callable[[object, type], object]


def _json_array(
    factory: Callable[[type, cattrs.BaseConverter], StructureHook],
) -> Callable[[type, cattrs.Converter], StructureHook]:
    def make(kind: type, converter: cattrs.Converter) -> StructureHook:
        inner = factory(kind, converter)

        def structure(value: object, kind: type) -> object:
            if not isinstance(value, list):  # a string is iterable, but not an array
                raise TypeError(f"expected a json array, got {_json_kind(value)}")
            return inner(value, kind)

        return structure

    return make


def _json_object(kind: type, converter: cattrs.Converter) -> StructureHook:
    args = typing.get_args(kind)
    key, item = args if len(args) == 2 else (str, object)
    if key is not str:
        raise TypeError(f"json object keys are strings; {kind!r} needs another key type")
    structure_item = converter.get_structure_hook(item) if item is not object else None

    def structure(value: object, _: type) -> object:
        if not isinstance(value, dict):
            raise TypeError(f"expected a json object, got {_json_kind(value)}")
        if structure_item is None:
            return dict(value)
        return {k: structure_item(v, item) for k, v in value.items()}

    return structure
