"""The programs the ``trio-actors`` command runs, built on ``actors`` and ``transport``.

::

    trio-actors demo    # a chat with bots, a TLS feed and threads; its web page
    trio-actors echo    # a WebSocket echo server
    trio-actors chat    # the chat server and its web page (--redis URL to share the rooms)

Each module is also an example to read and copy: it uses only the public API of the two
packages and its neighbours here (``cli`` parses the command line, ``arguments`` checks it).
Nothing here is part of the library's API; the modules may change between releases.
"""
