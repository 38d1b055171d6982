"""Client connections: ``connect_websocket`` and ``open_websocket_client`` (``_connect``)."""
