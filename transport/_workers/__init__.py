"""Worker processes on one port: the parent (``_parent``) and the worker's side (``_worker``)."""
