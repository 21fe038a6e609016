"""One connection through the proxy: the client's stream, the backend's, and a cancel scope."""

from __future__ import annotations

import socket
import ssl
import struct
from contextlib import suppress

import trio
import trio.lowlevel

from fsm_session.testing.proxy.messages import TO_SERVER, Direction

__all__ = ["Link", "socket_of"]


def socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The OS socket under a plain or TLS stream."""
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        return stream.socket
    return None


class Link:
    """A proxied connection. The backend is connected to when the first bytes go its way, so
    a client that leaves before sending anything never reaches it."""

    def __init__(
        self,
        number: int,
        client: trio.SocketStream,
        upstream: tuple[str, int],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.number = number
        """Which connection through the proxy (0, 1, ...)."""
        self.client = client
        self.upstream = upstream
        """The backend's (host, port); ``tls``: speak TLS to it."""
        self.tls = tls
        self.server: trio.abc.Stream | None = None
        self.server_ready = trio.Event()
        self.scope = trio.CancelScope()
        self.reset = False
        self.frames: dict[Direction, int] = {"client": 0, "server": 0}
        """Frames seen so far each way (the handshake not counted)."""
        self.framing: dict[Direction, bool] = {"client": False, "server": False}
        """Whether that way is past the HTTP head and read as WebSocket frames."""
        self._locks: dict[Direction, trio.Lock] = {"client": trio.Lock(), "server": trio.Lock()}

    def destination(self, sender: Direction) -> trio.abc.Stream:
        stream = self.server if sender == TO_SERVER else self.client
        if stream is None:  # pragma: no cover - send() connects first
            raise trio.ClosedResourceError("the backend is not connected")
        return stream

    async def connect(self) -> None:
        """Connect to the backend unless connected already."""
        if self.server is not None:
            return
        host, port = self.upstream
        tls = self.tls
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
            if tls is not None:
                stream = trio.SSLStream(stream, tls, server_hostname=host, https_compatible=True)
                self.server = stream
                await stream.do_handshake()
            self.server = stream
        except (OSError, trio.BrokenResourceError):
            self.cut()  # the backend is not there: the client sees its connection closed
            await trio.lowlevel.checkpoint()
        self.server_ready.set()

    async def send(self, sender: Direction, data: bytes) -> None:
        """Send ``data`` on from ``sender`` to the other side."""
        if not data:
            return
        if sender == TO_SERVER:
            await self.connect()
        async with self._locks[sender]:
            await self.destination(sender).send_all(data)

    async def send_eof(self, sender: Direction) -> None:
        """Pass on ``sender``'s end of stream: a half-close where the other side's stream has
        one, else the end of both."""
        destination = self.server if sender == TO_SERVER else self.client
        if not isinstance(destination, trio.SocketStream):
            self.cut()
            return
        async with self._locks[sender]:
            await destination.send_eof()

    def cut(self, reset: bool = False) -> None:
        """End the connection; ``reset``: with a TCP reset rather than a FIN."""
        self.reset = self.reset or reset
        self.scope.cancel()

    async def aclose(self) -> None:
        """Close both streams (shielded: a cancelled proxy still closes both)."""
        with trio.CancelScope(shield=True):
            for stream in (self.client, self.server):
                if stream is None:
                    continue
                if self.reset:
                    _linger_zero(stream)
                await trio.aclose_forcefully(stream)

    def close_sockets(self) -> None:
        """Close both OS sockets at once, without awaiting."""
        for stream in (self.client, self.server):
            sock = None if stream is None else socket_of(stream)
            if sock is not None:
                sock.close()


def _linger_zero(stream: trio.abc.Stream) -> None:
    """Make the coming close send a TCP reset instead of a FIN."""
    sock = socket_of(stream)
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
