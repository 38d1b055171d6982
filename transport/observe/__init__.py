"""Observe a running system: Prometheus metrics and a live dashboard, on one port.

::

    async with actors.open_system() as system:
        async with transport.observe.open_observer(system, "127.0.0.1", 9464) as observer:
            print("dashboard:", observer.url, "metrics:", observer.url + "metrics")
            ...  # start servers, clients and actors: they are counted from now on

``GET /metrics`` answers the Prometheus text format (``prometheus-client``, the
``metrics`` extra); ``GET /`` is a page that shows the actor tree, the
connections, the latest dead letters and events, live, over a WebSocket served
by this framework. Every figure is read on the system's trio thread.
"""

from __future__ import annotations

from ._serve import (
    DEFAULT_INTERVAL as DEFAULT_INTERVAL,
    Observer as Observer,
    open_observer as open_observer,
    serve_observer as serve_observer,
)

__all__ = ["DEFAULT_INTERVAL", "Observer", "open_observer", "serve_observer"]
