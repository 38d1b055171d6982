"""The public surface of ``transport``: exactly these names, each documented, none twice."""

from __future__ import annotations

import ast
import inspect
import pathlib

import transport

# Every name transport exports. A new one must earn its place (and the reference page).
SURFACE = {
    # connections, servers, clients
    "connect_websocket",
    "open_websocket_client",
    "serve_websocket",
    "insecure_ssl_context",
    "WebSocketConnection",
    "WebSocketServer",
    "ConnectionOptions",
    "ConnectionInfo",
    "ConnectionStatistics",
    "ServerStatistics",
    "InboundLimits",
    "Overflow",
    "HandshakePolicy",
    "HandshakeRequest",
    "Accept",
    "Reject",
    # messages to and from a connection actor
    "ConnectionMessage",
    "SubscriberMessage",
    "SendText",
    "SendBytes",
    "SendMessage",
    "Close",
    "GetStatistics",
    "Received",
    "Undecodable",
    # close codes
    "CloseCode",
    "ConnectionClosed",
    "is_transient",
    # codecs
    "Codec",
    "RawCodec",
    "JsonCodec",
    "DecodePolicy",
    "EncodeError",
    "DecodeError",
    # reconnecting clients and acknowledged delivery
    "connect_reconnecting_client",
    "open_reconnecting_client",
    "ReconnectingClient",
    "ReconnectingConnection",
    "ReconnectingMessage",
    "ReconnectStatistics",
    "GetReconnectStatistics",
    "ClientState",
    "ClientEvent",
    "Connected",
    "Disconnected",
    "GaveUp",
    "Send",
    "BufferFullError",
    "AckedSessions",
    "AckedConnection",
    "SessionStatistics",
    "AckProtocolError",
    "UnconfirmedError",
    # pools
    "connect_connection_pool",
    "open_connection_pool",
    "ConnectionPool",
    "PoolMessage",
    "PoolStatistics",
    "GetPoolStatistics",
    "Routing",
    # the backplane
    "open_local_backplane",
    "open_redis_backplane",
    "Backplane",
    "BackplaneState",
    "BackplaneStatistics",
    "BackplaneGap",
    "DistributedTopic",
    "DurableStream",
    "StreamMessage",
    "RemoteRef",
    "BackplaneError",
    "BackplaneUnavailableError",
    "RemoteActorUnavailableError",
    "RemoteError",
    "OversizedMessageError",
    # errors
    "TransportError",
    "HandshakeError",
    "HandshakeRejected",
    "HandshakeTimeoutError",
    "TLSError",
}
PACKAGE = pathlib.Path(transport.__file__).parent
REFERENCE = PACKAGE.parent / "docs" / "reference.rst"


def test_all_is_exactly_the_surface_and_small() -> None:
    assert set(transport.__all__) == SURFACE
    assert len(transport.__all__) == len(SURFACE) <= 80
    public = {name for name in dir(transport) if not name.startswith("_")} - {"annotations"}
    assert public == SURFACE


def test_every_name_is_documented_and_on_the_reference_page() -> None:
    reference = REFERENCE.read_text()
    for name in SURFACE:
        obj = getattr(transport, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"transport.{name} has no docstring"
            assert obj.__module__.startswith("transport."), name
        assert f":: {name}\n" in reference, f"transport.{name} is missing from reference.rst"


def module_level_names(path: pathlib.Path) -> set[str]:
    """Classes, functions, constants and aliases a module defines at its top level."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")} - {"T", "R", "M", "logger"}


def test_no_two_modules_define_the_same_name() -> None:
    # One concept, one name: no two classes, aliases or constants that modules share
    # within the package have the same name (module-private ones, type variables and
    # loggers aside).
    where: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("_*.py")):
        if path.name == "__init__.py":
            continue
        for name in module_level_names(path):
            where.setdefault(name, []).append(str(path.relative_to(PACKAGE)))
    twice = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert twice == {}
