"""One client connection's pieces beneath the transport: its record, and how it fails or ends.

What trio-websocket leaves to us (see the project's design notes): closing the stream ourselves
so a rejected handshake or a dropped peer leaves no descriptor behind, naming a TLS failure that
the library would report only as a timeout, and turning what its reader task raises into our
errors.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from trio_websocket import ConnectionRejected, HandshakeError, WebSocketConnection

from fsm_session.errors import (
    ConnectionFailed,
    ConnectionLost,
    InvalidToken,
    SessionError,
    TokenExpired,
)

__all__ = ["Connection", "close_now", "connect_failure", "rejection", "tls_handshake"]

log = logging.getLogger("fsm_session.transport")


def rejection(exc: ConnectionRejected) -> SessionError:
    """Turn an HTTP refusal of the upgrade into our error; a 401 is about the token."""
    status = exc.status_code
    if status == 401:
        expired = bool(exc.body) and b"token_expired" in (exc.body or b"")
        cls = TokenExpired if expired else InvalidToken
        return cls(f"the backend refused the access token (HTTP {status})", rule="P1")
    return ConnectionFailed(f"the backend refused the upgrade (HTTP {status})", rule="P1")


def first(group: BaseException, kind: type[BaseException]) -> BaseException | None:
    if isinstance(group, kind):
        return group
    if isinstance(group, BaseExceptionGroup):
        for inner in group.exceptions:
            found = first(inner, kind)
            if found is not None:
                return found
    return None


def close_now(stream: trio.abc.Stream) -> None:
    """Close a stream without waiting: its socket, or the halves of an in-memory stream."""
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        stream.socket.close()
    elif isinstance(stream, trio.StapledStream):
        close_now(stream.send_stream)
        close_now(stream.receive_stream)
    else:
        close = getattr(stream, "close", None)
        if callable(close):
            close()
        else:
            log.warning("cannot close a %s at once; it is left to the collector", type(stream))


class Connection:
    """One connection: its serial, its socket, and how it ends."""

    __slots__ = (
        "_nursery", "by_us", "down", "failure", "reported", "scope", "serial", "stream", "timer",
        "ws",
    )  # fmt: skip

    def __init__(self, serial: int, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.serial = serial
        self.ws: WebSocketConnection | None = None
        self.stream: trio.abc.Stream | None = None
        self.scope = trio.CancelScope()
        """Cancels the handshake while connecting, then the reader."""
        self.timer: trio.CancelScope | None = None
        """The reader's wait, whose deadline is the next ping or request deadline."""
        self.down = False
        """Its socket is closed."""
        self.by_us = False
        self.reported = False
        """Its end was reported to the listener (once, by the reader or by an abort)."""
        self.failure: SessionError | None = None
        """Why it ended, when we ended it (an abort) or the library's reader failed."""

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any, **_: Any) -> None:
        """Stands in for a nursery to trio-websocket: its reader runs guarded by us."""
        self._nursery.start_soon(self._guarded, fn, args)

    async def _guarded(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            await fn(*args)
        except Exception as exc:  # The library's reader: a rejection, or its own failure.
            if isinstance(exc, ConnectionRejected):
                self.failure = rejection(exc)
            else:
                log.warning("the WebSocket reader failed: %r", exc)
                self.failure = ConnectionLost(f"the WebSocket reader failed: {exc!r}", rule="R14")
            self.scope.cancel()
            return
        if self.ws is None and self.failure is None:
            # The peer hung up before the handshake was over (ws:// against a TLS port, say):
            # the library would wait for its handshake until our deadline.
            self.failure = ConnectionFailed(
                "the backend closed the connection during the WebSocket handshake", rule="P1"
            )
            self.scope.cancel()


async def tls_handshake(
    stream: trio.abc.Stream, context: ssl.SSLContext, host: str, port: int
) -> trio.SSLStream[trio.abc.Stream]:
    """TLS over ``stream``, done here so that a failure names its cause (an untrusted CA, a
    name not in the certificate) at once rather than as the WebSocket handshake's timeout."""
    tls = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__ or exc
        parts = (getattr(cause, "reason", None), getattr(cause, "verify_message", None))
        what = " ".join(str(part) for part in parts if part)
        raise ConnectionFailed(
            f"the TLS handshake with {host}:{port} failed: {what or repr(cause)}", rule="P1"
        ) from None
    return tls


def connect_failure(exc: BaseException, url: str, timeout: float) -> BaseException:
    """The error a failed connect raises; cancellation stays cancellation."""
    if first(exc, trio.Cancelled) is not None:
        return exc
    ours = first(exc, SessionError)
    if ours is not None:
        return ours
    rejected = first(exc, ConnectionRejected)
    if isinstance(rejected, ConnectionRejected):
        return rejection(rejected)
    if first(exc, trio.TooSlowError) is not None:
        return ConnectionFailed(f"no WebSocket handshake within {timeout} s", rule="P1")
    cause = first(exc, OSError) or first(exc, HandshakeError) or exc
    return ConnectionFailed(f"cannot connect to {url}: {cause!r}", rule="P1")
