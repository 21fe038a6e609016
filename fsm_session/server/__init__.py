"""The reference backend server of ``specs/protocol.md``.

``await nursery.start(partial(serve, secret=secret_from_env()))`` binds a free port on the
loopback interface and returns the ``ws://`` URL it serves. The server keeps its participants and
sessions in memory for as long as ``serve()`` runs, or in Redis with ``store="redis://..."``
(:mod:`fsm_session.server.store`), and stops when cancelled.

It imports only the sans-I/O core of the package (models, errors, tokens, protocol), never the
client's service or transport.
"""

from fsm_session.server.app import serve, serve_streams
from fsm_session.server.config import (
    MIN_SECRET_BYTES,
    SECRET_ENV,
    ConfigurationError,
    ServerConfig,
    secret_from_env,
)

__all__ = [
    "MIN_SECRET_BYTES",
    "SECRET_ENV",
    "ConfigurationError",
    "ServerConfig",
    "secret_from_env",
    "serve",
    "serve_streams",
]
