"""The kit's one raw WebSocket client: a handshake written by hand and frames as built.

A client library refuses to send most of what the probes need (no subprotocol, no token, an
unmasked frame, a binary or oversized message, JSON that is not the protocol's), and hides what
they need to see (the handshake's status and body, the close code, whether the close frame came
before the TCP close). So the probes speak RFC 6455 themselves over a trio stream, TLS included.
Every text message the backend sends is handed to ``on_text``, where the kit holds it against the
written protocol.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn
from urllib.parse import urlsplit

import trio

from fsm_session.protocol import MAX_FRAME_BYTES, SUBPROTOCOL
from fsm_session.testing.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    build_frame,
    parse_frame,
)

__all__ = [
    "BackendOverrun",
    "Handshake",
    "HandshakeRefused",
    "RawClient",
    "Target",
    "handshake",
    "raw_client",
]

_HEAD_LIMIT: Final = 16384
"""The most the kit reads of a handshake's head, and of the body of a refusal."""
_MESSAGE_LIMIT: Final = 65536
"""The most the kit reassembles of one message from fragments (the protocol's size limit)."""


@dataclass(frozen=True, slots=True)
class Target:
    """The backend under test: its URL, whom to trust for ``wss://``, and how slow it may be."""

    url: str
    ssl_context: ssl.SSLContext | None = None
    timeout: float = 1.0
    """A factor on every wait of the kit (2.0: a backend twice as far away as loopback)."""

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "wss" else 80)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"

    @property
    def tls(self) -> ssl.SSLContext | None:
        if urlsplit(self.url).scheme != "wss":
            return None
        return self.ssl_context if self.ssl_context is not None else ssl.create_default_context()

    def seconds(self, base: float) -> float:
        return base * self.timeout


@dataclass(slots=True)
class Handshake:
    """The backend's answer to an upgrade request."""

    status: int
    headers: dict[str, str]
    """Header names in lower case; a repeated header keeps its last value."""
    body: bytes = b""


class BackendOverrun(Exception):
    """The backend sent a frame or a message over the protocol's size limit (P2)."""


class HandshakeRefused(Exception):
    """The upgrade was answered with another status than 101."""

    def __init__(self, answer: Handshake) -> None:
        super().__init__(f"the upgrade was answered {answer.status}")
        self.answer = answer


async def _open(target: Target) -> trio.abc.Stream:
    tcp = await trio.open_tcp_stream(target.host, target.port)
    context = target.tls
    if context is None:
        return tcp
    stream = trio.SSLStream(tcp, context, server_hostname=target.host, https_compatible=True)
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return stream


async def handshake(
    target: Target,
    *,
    token: str | None,
    subprotocols: tuple[str, ...] = (SUBPROTOCOL,),
    extra: tuple[tuple[str, str], ...] = (),
) -> tuple[Handshake, trio.abc.Stream]:
    """Send an upgrade request; the answer and the stream (closed by the caller)."""
    stream = await _open(target)
    try:
        lines = [
            f"GET {target.path} HTTP/1.1",
            f"Host: {target.host}:{target.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        if subprotocols:
            lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}")
        if token is not None:
            lines.append(f"Authorization: Bearer {token}")
        lines += [f"{name}: {value}" for name, value in extra]
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = bytearray()
        while b"\r\n\r\n" not in head:
            # One byte at a time, so that no frame behind the response is taken with it.
            chunk = await stream.receive_some(1)
            if not chunk or len(head) > _HEAD_LIMIT:
                raise trio.BrokenResourceError("the backend hung up during the handshake")
            head += chunk
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        answer = Handshake(status, headers)
        if status != 101:
            answer.body = await _body(stream, headers, target)
        return answer, stream
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


async def _body(stream: trio.abc.Stream, headers: dict[str, str], target: Target) -> bytes:
    """The refusal's body, at most :data:`_HEAD_LIMIT` bytes whatever its Content-Length."""
    length = headers.get("content-length", "")
    want = min(int(length), _HEAD_LIMIT) if length.isdigit() else _HEAD_LIMIT
    body = bytearray()
    with trio.move_on_after(target.seconds(1.0)):
        while len(body) < want:
            try:
                chunk = await stream.receive_some(want - len(body))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            if not chunk:
                break
            body += chunk
    return bytes(body)


@dataclass(slots=True)
class RawClient:
    """A WebSocket connection the probe writes byte by byte; ``await client.receive()``."""

    stream: trio.abc.Stream
    target: Target
    on_text: Callable[[str], None] = lambda text: None
    handshake: Handshake | None = None
    next_id: int = 0
    close_code: int | None = None
    close_reason: str = ""
    hung_up: bool = False
    """The backend closed the TCP connection (after its close frame or not)."""
    close_before_hangup: bool = False
    pongs: int = 0
    stray: list[dict[str, Any]] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    _buffer: bytearray = field(default_factory=bytearray)
    _fragments: list[bytes] = field(default_factory=list)
    _answered_close: bool = False

    async def send_raw(self, data: bytes) -> None:
        """Bytes as they are; the backend may have hung up already."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.hung_up = True

    async def send_frame(
        self, payload: bytes | str, *, opcode: int = OP_TEXT, fin: bool = True
    ) -> None:
        await self.send_raw(build_frame(payload, opcode=opcode, fin=fin, mask_key=os.urandom(4)))

    async def send_text(self, text: str) -> None:
        self.sent.append(text)
        await self.send_frame(text)

    async def send_binary(self, data: bytes) -> None:
        self.sent.append(f"<binary, {len(data)} bytes>")
        await self.send_frame(data, opcode=OP_BINARY)

    async def request(self, kind: str, **members: object) -> int:
        """A request with the next ``id``; the ``id``."""
        self.next_id += 1
        await self.send_text(json.dumps({"type": kind, "id": self.next_id, **members}))
        return self.next_id

    async def receive(self, seconds: float = 1.0) -> dict[str, Any] | None:
        """The next text message as a JSON object (``{}`` when it is not one); ``None`` when
        nothing came within ``seconds`` (scaled by the target's factor) or the backend closed."""
        with trio.move_on_after(self.target.seconds(seconds)):
            while not self.hung_up:
                text = await self._next_text()
                if text is None:
                    return None
                try:
                    value = json.loads(text)
                except ValueError:
                    return {}
                return value if isinstance(value, dict) else {}
        return None

    async def reply(self, rid: object, seconds: float = 1.0) -> dict[str, Any] | None:
        """The next message whose ``id`` is ``rid``; messages with another ``id`` on the way
        (a duplicate, a reply to another request) are kept in ``stray``; events are skipped."""
        while True:
            message = await self.receive(seconds)
            if message is None or (message.get("id") == rid and "id" in message):
                return message
            if "id" in message or not message:
                self.stray.append(message)

    async def replies(self, count: int, seconds: float = 1.0) -> list[dict[str, Any]]:
        """Up to ``count`` messages that carry an ``id`` key (events are skipped)."""
        out: list[dict[str, Any]] = []
        while len(out) < count:
            message = await self.receive(seconds)
            if message is None:
                break
            if "id" in message:
                out.append(message)
        return out

    async def ping(self, seconds: float = 1.0) -> bool:
        """Send a ping; whether a pong came back within ``seconds`` (texts meanwhile are read)."""
        before = self.pongs
        await self.send_frame(b"kit", opcode=OP_PING)
        with trio.move_on_after(self.target.seconds(seconds)):
            while self.pongs == before and not self.hung_up and self.close_code is None:
                await self._next_text(stop_on_pong=True)
        return self.pongs > before

    async def until_closed(self, seconds: float = 2.0) -> int | None:
        """Read (and drop) until the backend closes; its close code, or ``None``."""
        with trio.move_on_after(self.target.seconds(seconds)):
            while not self.hung_up and self.close_code is None:
                if await self._next_text() is None:
                    break
        return self.close_code

    async def _next_text(self, *, stop_on_pong: bool = False) -> str | None:
        while True:
            try:
                frame = parse_frame(self._buffer, MAX_FRAME_BYTES)
            except ValueError:
                self._overrun(f"a frame announcing over {MAX_FRAME_BYTES} bytes")
            if frame is None:
                if not await self._fill():
                    return None
                continue
            del self._buffer[: len(frame.raw)]
            opcode, payload = frame.opcode, frame.payload
            if opcode == OP_PING:
                await self.send_frame(payload, opcode=OP_PONG)
            elif opcode == OP_PONG:
                self.pongs += 1
                if stop_on_pong:
                    return None
            elif opcode == OP_CLOSE:
                self.close_code = frame.close_code
                self.close_reason = payload[2:].decode("utf-8", "replace")
                self.close_before_hangup = True
                if not self._answered_close:
                    self._answered_close = True
                    await self.send_frame(payload[:2], opcode=OP_CLOSE)
                return None
            elif opcode in (OP_TEXT, OP_BINARY, 0):
                self._fragments.append(payload)
                size = sum(len(part) for part in self._fragments)
                if size > _MESSAGE_LIMIT:
                    self._overrun(f"a message of over {_MESSAGE_LIMIT} bytes (fragments joined)")
                if frame.fin:
                    message = b"".join(self._fragments)
                    self._fragments.clear()
                    text = message.decode("utf-8", "replace")
                    self.received.append(text)
                    self.on_text(text)
                    return text

    def _overrun(self, what: str) -> NoReturn:
        """Stop reading a backend over the size limit: nothing more of it is trusted."""
        self._buffer.clear()
        self._fragments.clear()
        self.hung_up = True
        raise BackendOverrun(f"the backend sent {what}, over the protocol's size limit (P2)")

    async def _fill(self) -> bool:
        try:
            chunk = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            chunk = b""
        if not chunk:
            self.hung_up = True
            return False
        self._buffer += chunk
        return True

    def transcript(self) -> list[str]:
        """What was sent and received, for a report."""
        return [f"-> {text[:200]}" for text in self.sent] + [
            f"<- {text[:200]}" for text in self.received
        ]


@asynccontextmanager
async def raw_client(
    target: Target,
    token: str,
    *,
    on_text: Callable[[str], None] = lambda text: None,
) -> AsyncIterator[RawClient]:
    """An upgraded connection; raises :class:`HandshakeRefused` when the backend refuses it.
    Closed with 1000 (and the stream closed) on the way out."""
    with trio.fail_after(target.seconds(5.0)):
        answer, stream = await handshake(target, token=token)
    try:
        if answer.status != 101:
            raise HandshakeRefused(answer)
        client = RawClient(stream, target, on_text, answer)
        try:
            yield client
        finally:
            if not client.hung_up and client.close_code is None:
                with trio.move_on_after(target.seconds(0.5)) as scope:
                    scope.shield = True
                    await client.send_frame((1000).to_bytes(2, "big"), opcode=OP_CLOSE)
                    await client.until_closed(0.5)
    finally:
        await trio.aclose_forcefully(stream)
