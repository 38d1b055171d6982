"""The server: the accept loop and host actor (``_host``) and the handshake decision (``_handshake``)."""
