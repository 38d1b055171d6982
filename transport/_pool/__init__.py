"""A pool of dedicated connections to one endpoint behind a router actor (``_router``),
with its routing decided without I/O (``_routing``).
"""
