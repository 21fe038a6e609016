"""Raw WebSocket bytes against the reference server: a handshake by hand, frames as built,
and everything the server sends until it hangs up, parsed frame by frame.

For tests that break the framing itself (which no WebSocket library will send), and that check
that the close frame arrived before the TCP connection closed.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from fsm_session.protocol import SUBPROTOCOL
from fsm_session.testing.wsframes import OP_CLOSE, WireFrame, build_frame, parse_frame

TIMEOUT = 5.0


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def open_stream(url: str, local: str = "127.0.0.1") -> trio.SocketStream:
    host, port = address(url)
    with trio.fail_after(TIMEOUT):
        return await trio.open_tcp_stream(host, port, local_address=local)


@asynccontextmanager
async def upgraded(
    url: str, access_token: str, local: str = "127.0.0.1"
) -> AsyncIterator[trio.SocketStream]:
    """A TCP stream on which the WebSocket handshake is done; nothing else is read."""
    host, port = address(url)
    stream = await open_stream(url, local)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        request = Request(
            host=f"{host}:{port}",
            target="/",
            subprotocols=[SUBPROTOCOL],
            extra_headers=[(b"authorization", f"Bearer {access_token}".encode())],
        )
        await stream.send_all(ws.send(request))
        with trio.fail_after(TIMEOUT):
            head = b""
            while b"\r\n\r\n" not in head:
                # One byte at a time, so no frame behind the response is taken too.
                chunk = await stream.receive_some(1)
                assert chunk, "the server hung up during the handshake"
                head += chunk
        ws.receive_data(head)
        assert any(isinstance(event, AcceptConnection) for event in ws.events()), head
        yield stream


def masked(payload: bytes | str, *, opcode: int, fin: bool = True, rsv: int = 0) -> bytes:
    """A client frame (masked), with the RSV bits ``rsv`` (0 to 7) set."""
    frame = bytearray(build_frame(payload, opcode=opcode, fin=fin, mask_key=os.urandom(4)))
    frame[0] |= (rsv & 7) << 4
    return bytes(frame)


def unmasked(payload: bytes | str, *, opcode: int, fin: bool = True) -> bytes:
    return build_frame(payload, opcode=opcode, fin=fin)


async def send_ignoring_hangup(stream: trio.SocketStream, data: bytes) -> None:
    """Send ``data``; the server may close before it has read it all."""
    try:
        with trio.fail_after(TIMEOUT):
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def frames_until_hangup(stream: trio.SocketStream) -> tuple[list[WireFrame], bool]:
    """Every frame the server sends until it closes the TCP connection, and whether it ended
    with an orderly close (``False``: reset, which can destroy frames in flight)."""
    received = bytearray()
    orderly = True
    answered = False
    with trio.fail_after(TIMEOUT):
        while True:
            try:
                chunk = await stream.receive_some()
            except trio.BrokenResourceError:
                orderly = False
                break
            if not chunk:
                break
            received += chunk
            # Answer the close as a client does, so the server need not wait for it.
            frames = parse_all(received)
            if not answered and frames and frames[-1].opcode == OP_CLOSE:
                answered = True
                code = frames[-1].close_code
                reply = b"" if code is None else code.to_bytes(2, "big")
                await send_ignoring_hangup(stream, masked(reply, opcode=OP_CLOSE))
    return parse_all(received), orderly


def parse_all(data: bytes | bytearray) -> list[WireFrame]:
    frames = []
    while data:
        frame = parse_frame(data)
        if frame is None:
            break
        frames.append(frame)
        data = data[len(frame.raw) :]
    return frames


async def close_code(stream: trio.SocketStream) -> int | None:
    """The code of the close frame the server sent last before hanging up, or ``None``."""
    frames, _ = await frames_until_hangup(stream)
    closes = [frame for frame in frames if frame.opcode == OP_CLOSE]
    return closes[-1].close_code if closes else None
