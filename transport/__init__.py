"""WebSocket connections as actors: each connection owns its stream; everything else talks to
it through its mailbox and its bounded inbound queue.

Client::

    async with actors.open_system() as system:
        async with transport.open_websocket_client(system, "wss://example.com/feed") as ws:
            await ws.send("subscribe")
            print(await ws.receive())

Server: :func:`serve_websocket` runs an accept loop whose connections are actors,
children of one host actor.
"""

from __future__ import annotations

from ._adapter._limits import InboundLimits as InboundLimits
from ._backplane._interface import (
    Backplane as Backplane,
    BackplaneError as BackplaneError,
    BackplaneGap as BackplaneGap,
    BackplaneState as BackplaneState,
    BackplaneStatistics as BackplaneStatistics,
    BackplaneUnavailableError as BackplaneUnavailableError,
    DistributedTopic as DistributedTopic,
    DurableStream as DurableStream,
    RemoteActorUnavailableError as RemoteActorUnavailableError,
    RemoteError as RemoteError,
    RemoteRef as RemoteRef,
    StreamMessage as StreamMessage,
)
from ._backplane._local import (
    open_local_backplane as open_local_backplane,
)
from ._backplane._redis_open import open_redis_backplane as open_redis_backplane
from ._backplane._wire import OversizedMessageError as OversizedMessageError
from ._client._connect import (
    connect_websocket as connect_websocket,
    insecure_ssl_context as insecure_ssl_context,
    open_websocket_client as open_websocket_client,
)
from ._close_codes import (
    CloseCode as CloseCode,
    ConnectionClosed as ConnectionClosed,
    is_transient as is_transient,
)
from ._codec import (
    Codec as Codec,
    DecodeError as DecodeError,
    DecodePolicy as DecodePolicy,
    EncodeError as EncodeError,
    JsonCodec as JsonCodec,
    RawCodec as RawCodec,
)
from ._connection._handle import (
    WebSocketConnection as WebSocketConnection,
)
from ._connection._messages import (
    Close as Close,
    ConnectionInfo as ConnectionInfo,
    ConnectionMessage as ConnectionMessage,
    ConnectionOptions as ConnectionOptions,
    ConnectionStatistics as ConnectionStatistics,
    GetStatistics as GetStatistics,
    Received as Received,
    SendBytes as SendBytes,
    SendMessage as SendMessage,
    SendText as SendText,
    SubscriberMessage as SubscriberMessage,
    Undecodable as Undecodable,
)
from ._exceptions import (
    HandshakeError as HandshakeError,
    HandshakeRejected as HandshakeRejected,
    HandshakeTimeoutError as HandshakeTimeoutError,
    TLSError as TLSError,
    TransportError as TransportError,
)
from ._overflow import Overflow as Overflow
from ._pool._router import (
    ConnectionPool as ConnectionPool,
    GetPoolStatistics as GetPoolStatistics,
    PoolMessage as PoolMessage,
    PoolStatistics as PoolStatistics,
    connect_connection_pool as connect_connection_pool,
    open_connection_pool as open_connection_pool,
)
from ._pool._routing import Routing as Routing
from ._reconnect._acked._server import (
    AckedConnection as AckedConnection,
    AckedSessions as AckedSessions,
    SessionStatistics as SessionStatistics,
)
from ._reconnect._acked._wire import AckProtocolError as AckProtocolError
from ._reconnect._client import (
    ReconnectingClient as ReconnectingClient,
)
from ._reconnect._handle import (
    ReconnectingConnection as ReconnectingConnection,
    connect_reconnecting_client as connect_reconnecting_client,
    open_reconnecting_client as open_reconnecting_client,
)
from ._reconnect._policy import (
    BufferFullError as BufferFullError,
    ClientState as ClientState,
)
from ._reconnect._types import (
    ClientEvent as ClientEvent,
    Connected as Connected,
    Disconnected as Disconnected,
    GaveUp as GaveUp,
    GetReconnectStatistics as GetReconnectStatistics,
    ReconnectingMessage as ReconnectingMessage,
    ReconnectStatistics as ReconnectStatistics,
    Send as Send,
    UnconfirmedError as UnconfirmedError,
)
from ._server._handshake import (
    Accept as Accept,
    HandshakePolicy as HandshakePolicy,
    HandshakeRequest as HandshakeRequest,
    Reject as Reject,
)
from ._server._host import (
    ServerStatistics as ServerStatistics,
    WebSocketServer as WebSocketServer,
    serve_websocket as serve_websocket,
)

__all__ = [
    "Accept",
    "AckProtocolError",
    "AckedConnection",
    "AckedSessions",
    "Backplane",
    "BackplaneError",
    "BackplaneGap",
    "BackplaneState",
    "BackplaneStatistics",
    "BackplaneUnavailableError",
    "BufferFullError",
    "ClientEvent",
    "ClientState",
    "Close",
    "CloseCode",
    "Codec",
    "Connected",
    "ConnectionClosed",
    "ConnectionInfo",
    "ConnectionMessage",
    "ConnectionOptions",
    "ConnectionPool",
    "ConnectionStatistics",
    "DecodeError",
    "DecodePolicy",
    "Disconnected",
    "DistributedTopic",
    "DurableStream",
    "EncodeError",
    "GaveUp",
    "GetPoolStatistics",
    "GetReconnectStatistics",
    "GetStatistics",
    "HandshakeError",
    "HandshakePolicy",
    "HandshakeRejected",
    "HandshakeRequest",
    "HandshakeTimeoutError",
    "InboundLimits",
    "JsonCodec",
    "Overflow",
    "OversizedMessageError",
    "PoolMessage",
    "PoolStatistics",
    "RawCodec",
    "Received",
    "ReconnectStatistics",
    "ReconnectingClient",
    "ReconnectingConnection",
    "ReconnectingMessage",
    "Reject",
    "RemoteActorUnavailableError",
    "RemoteError",
    "RemoteRef",
    "Routing",
    "Send",
    "SendBytes",
    "SendMessage",
    "SendText",
    "ServerStatistics",
    "SessionStatistics",
    "StreamMessage",
    "SubscriberMessage",
    "TLSError",
    "TransportError",
    "UnconfirmedError",
    "Undecodable",
    "WebSocketConnection",
    "WebSocketServer",
    "connect_connection_pool",
    "connect_reconnecting_client",
    "connect_websocket",
    "insecure_ssl_context",
    "is_transient",
    "open_connection_pool",
    "open_local_backplane",
    "open_reconnecting_client",
    "open_redis_backplane",
    "open_websocket_client",
    "serve_websocket",
]
