"""The backplane: actors and topics across processes and hosts.

One interface (:class:`Backplane`) with two implementations: in-process
(:func:`open_local_backplane`, no server) and Redis (:func:`open_redis_backplane`,
the ``redis`` extra). Distributed topics (at-most-once), durable streams
(at-least-once), named remote refs, cluster-wide groups with presence, and remote
watch; :doc:`guide_backplane` explains when to use which.
"""

from __future__ import annotations

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

__all__ = [
    "Backplane",
    "BackplaneError",
    "BackplaneGap",
    "BackplaneState",
    "BackplaneStatistics",
    "BackplaneUnavailableError",
    "DistributedTopic",
    "DurableStream",
    "OversizedMessageError",
    "RemoteActorUnavailableError",
    "RemoteError",
    "RemoteRef",
    "StreamMessage",
    "open_local_backplane",
    "open_redis_backplane",
]
