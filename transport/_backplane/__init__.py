"""The backplane: topics, durable streams, named actors and groups that span processes.

- ``_interface``: the one interface and its values; ``_local`` with ``_local_stream``: the
  in-process backplane.
- ``_redis`` with ``_remote``, ``_remote_watch``, ``_presence``, ``_streams`` (with
  ``_stream_delivery``), ``_publisher`` and ``_failures``: the Redis one; ``_redis_open``
  opens it.
- ``_groups``: what both do for cluster-wide groups; ``_wire``: how backplane messages
  travel through Redis (sans-IO).
"""
