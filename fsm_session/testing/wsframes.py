"""WebSocket frames as bytes on the wire (RFC 6455, section 5.2): parse and build them.

Proxies that watch or alter a conversation need each frame's exact bytes and boundaries, which a
WebSocket library hides behind its events; this is the one place that reads and writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "HANDSHAKE",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "WireFrame",
    "build_frame",
    "mask",
    "parse_frame",
]

HANDSHAKE: Final = "handshake"
"""The label of the HTTP upgrade request or response that precedes the frames."""

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
_OPCODE_LABELS = {
    OP_CONTINUATION: "<continuation>",
    OP_TEXT: "<text>",
    OP_BINARY: "<binary>",
    OP_CLOSE: "<close>",
    OP_PING: "<ping>",
    OP_PONG: "<pong>",
}


def mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``key`` (masking and unmasking are the same)."""
    if not data:
        return b""
    repeated = (key * (len(data) // 4 + 1))[: len(data)]
    value = int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(data), "big")


@dataclass(frozen=True, slots=True)
class WireFrame:
    """One WebSocket frame exactly as it crossed the proxy (``raw``), or the HTTP head."""

    raw: bytes
    header_len: int
    opcode: int | None = None  # None for the HTTP head of the handshake
    fin: bool = True
    mask_key: bytes | None = None

    @property
    def is_handshake(self) -> bool:
        return self.opcode is None

    @property
    def payload(self) -> bytes:
        """The payload, unmasked."""
        body = self.raw[self.header_len :]
        return mask(body, self.mask_key) if self.mask_key is not None else body

    @property
    def json(self) -> Any:
        """The decoded JSON of a complete text frame, or None when it is not one."""
        if self.opcode != OP_TEXT or not self.fin:
            return None
        try:
            return json.loads(self.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None

    @property
    def close_code(self) -> int | None:
        """The status code of a close frame (None for other frames or an empty close)."""
        payload = self.payload
        if self.opcode != OP_CLOSE or len(payload) < 2:
            return None
        return int.from_bytes(payload[:2], "big")

    @property
    def label(self) -> str:
        """``HANDSHAKE``, the JSON ``type`` of a text frame, or ``"<text>"``, ``"<close>"``..."""
        if self.opcode is None:
            return HANDSHAKE
        decoded = self.json
        if isinstance(decoded, dict) and isinstance(decoded.get("type"), str):
            return str(decoded["type"])
        return _OPCODE_LABELS.get(self.opcode, f"<opcode {self.opcode}>")


def parse_frame(buffer: bytes | bytearray, max_frame_bytes: int = 1 << 24) -> WireFrame | None:
    """The first whole frame in ``buffer``, or None when more bytes are needed.

    Raises ``ValueError`` when the header announces a payload over ``max_frame_bytes``.
    """
    if len(buffer) < 2:
        return None
    first, second = buffer[0], buffer[1]
    length, position = second & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        length, position = int.from_bytes(buffer[2:4], "big"), 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        length, position = int.from_bytes(buffer[2:10], "big"), 10
    if length > max_frame_bytes:
        raise ValueError(f"a frame of {length} bytes is over the proxy's limit")
    key = None
    if second & 0x80:
        if len(buffer) < position + 4:
            return None
        key = bytes(buffer[position : position + 4])
        position += 4
    if len(buffer) < position + length:
        return None
    return WireFrame(
        raw=bytes(buffer[: position + length]),
        header_len=position,
        opcode=first & 0x0F,
        fin=bool(first & 0x80),
        mask_key=key,
    )


def build_frame(
    payload: bytes | str,
    *,
    opcode: int = OP_TEXT,
    fin: bool = True,
    mask_key: bytes | None = None,
) -> bytes:
    """A frame carrying ``payload``; masked with ``mask_key`` when one is given (client frames)."""
    body = payload.encode("utf-8") if isinstance(payload, str) else payload
    head = bytearray([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if mask_key is not None else 0
    if len(body) < 126:
        head.append(mask_bit | len(body))
    elif len(body) < 1 << 16:
        head.append(mask_bit | 126)
        head += len(body).to_bytes(2, "big")
    else:
        head.append(mask_bit | 127)
        head += len(body).to_bytes(8, "big")
    if mask_key is not None:
        head += mask_key
        body = mask(body, mask_key)
    return bytes(head) + body
