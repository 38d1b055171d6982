"""The backplane: topics, durable streams and named actors that span processes.

- ``_interface``: the one interface and its values; ``_local``: the in-process backplane.
- ``_redis`` with ``_remote``, ``_streams``, ``_publisher`` and ``_failures``: the Redis one.
- ``_wire``: how backplane messages travel through Redis (sans-IO).
"""
