"""WebSocket connection actors built on the actors runtime."""

__all__: list[str] = []
