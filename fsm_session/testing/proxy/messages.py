"""What the proxy reports and rewrites: directions, complete messages, and mutators.

The proxy reads WebSocket frames (:mod:`fsm_session.testing.wsframes`); this module joins a
direction's fragments into messages, which are what an observer (``on_frame``) and a
:class:`Mutator` see. Faults (:mod:`fsm_session.testing.proxy.faults`) see the frames themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from fsm_session.testing.wsframes import OP_CLOSE, OP_CONTINUATION, OP_TEXT, WireFrame

__all__ = ["TO_CLIENT", "TO_SERVER", "Direction", "Frame", "Mutator", "Reassembler"]

Direction = Literal["client", "server"]
"""Who sent a frame: the ``client`` (the service) or the ``server`` (the backend)."""

TO_SERVER: Final[Direction] = "client"
"""Frames on their way to the server, which the client sent."""
TO_CLIENT: Final[Direction] = "server"
"""Frames on their way to the client, which the server sent."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete WebSocket message seen by the proxy."""

    sender: Direction
    connection: int
    """Which TCP connection through the proxy (0, 1, ...)."""
    opcode: int
    text: str | None
    """The text of a text message; ``None`` for other kinds."""
    data: dict[str, Any] | None = field(default=None, compare=False)
    """The text decoded as a JSON object, when it is one."""

    @property
    def type(self) -> str | None:
        return None if self.data is None else _str(self.data.get("type"))

    @property
    def id(self) -> int | None:
        value = None if self.data is None else self.data.get("id")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @classmethod
    def of(cls, sender: Direction, connection: int, opcode: int, payload: bytes) -> Frame | None:
        """The message as reported, for a text or close message; ``None`` for other kinds."""
        if opcode not in (OP_TEXT, OP_CLOSE):
            return None
        text = payload.decode("utf-8", "replace") if opcode == OP_TEXT else None
        data: dict[str, Any] | None = None
        if text is not None:
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = None
            data = decoded if isinstance(decoded, dict) else None
        return cls(sender, connection, opcode, text, data)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


class Mutator(Protocol):
    """Rewrites what crosses a :class:`~fsm_session.testing.LoopbackProxy`: the mutation
    harness's broken backends are the real server behind a proxy with a mutator."""

    def head(self, sender: Direction, connection: int, head: bytes) -> bytes:
        """The HTTP upgrade request (``client``) or response (``server``), as it goes on."""
        ...

    def message(
        self, sender: Direction, connection: int, opcode: int, payload: bytes
    ) -> list[tuple[int, bytes]] | None:
        """A complete message (a control frame, or all of a message's fragments): ``None`` to
        forward it unchanged, else the ``(opcode, payload)`` messages to send in its place."""
        ...


class Reassembler:
    """Joins one direction's data frames into messages (RFC 6455 section 5.4); a control frame,
    never fragmented, is a message of its own."""

    def __init__(self) -> None:
        self._opcode = OP_TEXT
        self._parts: list[bytes] = []

    def add(self, frame: WireFrame) -> tuple[int, bytes] | None:
        """The ``(opcode, payload)`` of the message ``frame`` completes, else ``None``."""
        opcode = frame.opcode
        if opcode is None:
            return None
        if opcode >= OP_CLOSE:
            return opcode, frame.payload
        if opcode != OP_CONTINUATION:
            self._opcode = opcode
            self._parts = []
        self._parts.append(frame.payload)
        if not frame.fin:
            return None
        message = b"".join(self._parts)
        self._parts = []
        return self._opcode, message
