"""Faults a :class:`~fsm_session.testing.LoopbackProxy` applies to the frames it forwards.

A fault is armed for a direction and a frame label (``proxy.arm(Drop(), TO_CLIENT, "opened")``):
the JSON ``type`` of a text frame, ``HANDSHAKE`` for the upgrade request or response,
``"<close>"``, ``"<continuation>"`` and the like for other frames. It then decides what becomes
of the matched frame: dropped with the connection, delayed, held, truncated, corrupted, or
joined by an extra one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio
import trio.lowlevel

from fsm_session.testing.proxy.messages import TO_CLIENT, TO_SERVER, Direction
from fsm_session.testing.wsframes import OP_BINARY, OP_TEXT, WireFrame, build_frame

if TYPE_CHECKING:
    from fsm_session.testing.proxy.links import Link
    from fsm_session.testing.proxy.loopback import LoopbackProxy

__all__ = [
    "GARBAGE_JSON",
    "INVALID_UTF8",
    "Armed",
    "Capture",
    "Corrupt",
    "Delay",
    "Drop",
    "Fault",
    "Hit",
    "Inject",
    "Stall",
    "Truncate",
]

GARBAGE_JSON = b'{"type": "opened", "id": 1, "participant": {oops'
"""A payload that does not parse as JSON."""
INVALID_UTF8 = b'{"type": "\xff\xfe\xc0\x80"}'
"""A payload a text frame may not hold."""


@dataclass(slots=True)
class Hit:
    """A fault's view of the frame it matched, and of the connection it is on."""

    proxy: LoopbackProxy
    link: Link
    direction: Direction
    frame: WireFrame

    async def forward(self, data: bytes) -> None:
        await self.link.send(self.direction, data)

    async def cut(self, reset: bool = False) -> None:
        """Close both TCP sides now; never returns (the connection's tasks are cancelled)."""
        self.link.cut(reset)
        await trio.lowlevel.checkpoint()
        raise AssertionError("unreachable: a cut connection is cancelled")  # pragma: no cover


class Fault:
    """What happens to a matched frame. ``apply`` returns the bytes still to forward."""

    async def apply(self, hit: Hit, data: bytes) -> bytes | None:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class Drop(Fault):
    """Close both TCP sides abruptly, before (default) or after forwarding the matched frame.

    ``reset=True`` closes with SO_LINGER 0, so the peers see a reset rather than an EOF (and
    bytes not yet delivered may be lost).
    """

    after: bool = False
    reset: bool = False

    async def apply(self, hit: Hit, data: bytes) -> bytes | None:
        if self.after:
            await hit.forward(data)
        await hit.cut(self.reset)
        return None  # pragma: no cover


@dataclass(frozen=True)
class Delay(Fault):
    """Hold the matched frame (and everything behind it in that direction) for ``seconds``."""

    seconds: float

    async def apply(self, hit: Hit, data: bytes) -> bytes | None:
        await trio.sleep(self.seconds)
        return data


@dataclass(frozen=True)
class Stall(Fault):
    """Hold that direction, as ``proxy.hold(direction)`` does, until ``proxy.release()``; the
    matched frame waits (``after=True``: it goes first, and what follows waits)."""

    after: bool = False

    async def apply(self, hit: Hit, data: bytes) -> bytes | None:
        if self.after:
            await hit.forward(data)
        hit.proxy.hold(hit.direction)
        await hit.proxy.wait_released(hit.direction)
        return None if self.after else data


@dataclass(frozen=True)
class Truncate(Fault):
    """Forward only the first ``keep`` bytes of the frame as it is on the wire (default: its
    header and half its payload), then close both TCP sides."""

    keep: int | None = None
    reset: bool = False

    async def apply(self, hit: Hit, data: bytes) -> bytes | None:
        frame = hit.frame
        keep = self.keep
        if keep is None and frame.is_handshake:
            keep = len(data) // 2
        elif keep is None:
            keep = frame.header_len + (len(data) - frame.header_len) // 2
        await hit.forward(data[:keep])
        await hit.cut(self.reset)
        return None  # pragma: no cover


@dataclass(frozen=True)
class Corrupt(Fault):
    """Replace the matched frame's payload (default: :data:`GARBAGE_JSON`; :data:`INVALID_UTF8`
    for bytes a text frame may not hold), re-framed correctly and masked when it goes to the
    server, so the peer reads a well-formed frame with a bad payload. ``opcode`` changes the
    frame's kind (``OP_BINARY``...). On the handshake, ``payload`` replaces the whole HTTP head.
    """

    payload: bytes = GARBAGE_JSON
    opcode: int | None = None

    async def apply(self, hit: Hit, data: bytes) -> bytes | None:
        frame = hit.frame
        if frame.opcode is None:
            return self.payload
        key = None
        if hit.direction == TO_SERVER:
            key = frame.mask_key if frame.mask_key is not None else os.urandom(4)
        opcode = frame.opcode if self.opcode is None else self.opcode
        return build_frame(self.payload, opcode=opcode, fin=frame.fin, mask_key=key)


@dataclass(frozen=True)
class Inject(Fault):
    """Send an extra frame holding ``message`` in direction ``to`` (default: to the client),
    after the matched frame (default) or before it. ``opcode`` defaults to text for ``str``,
    binary for ``bytes``; ``replace=True`` sends the injected frame instead of the matched one."""

    message: str | bytes
    to: Direction = TO_CLIENT
    after: bool = True
    opcode: int | None = None
    replace: bool = False

    def frame_bytes(self) -> bytes:
        opcode = self.opcode
        if opcode is None:
            opcode = OP_TEXT if isinstance(self.message, str) else OP_BINARY
        key = os.urandom(4) if self.to == TO_SERVER else None  # RFC 6455: clients mask
        return build_frame(self.message, opcode=opcode, mask_key=key)

    async def apply(self, hit: Hit, data: bytes) -> bytes | None:
        extra = self.frame_bytes()
        if self.replace:
            await hit.link.send(self.to, extra)
            return None
        if self.after:
            await hit.forward(data)
            await hit.link.send(self.to, extra)
            return None
        await hit.link.send(self.to, extra)
        return data


@dataclass(eq=False)
class Capture(Fault):
    """No fault: keep each matched frame in ``frames`` and forward it unchanged (arm it with
    ``times=None`` to see every match)."""

    frames: list[WireFrame] = field(default_factory=list)

    async def apply(self, hit: Hit, data: bytes) -> bytes | None:
        self.frames.append(hit.frame)
        return data


@dataclass(eq=False)
class Armed:
    """A fault waiting for its match. ``fired`` is set at the first match; ``hits`` counts."""

    fault: Fault
    direction: Direction
    type: str | None = None
    nth: int | None = None
    connection: int | None = None
    times: int | None = 1
    hits: int = 0
    fired: trio.Event = field(default_factory=trio.Event)

    def matches(self, connection: int, direction: Direction, frame: WireFrame, index: int) -> bool:
        """Whether ``frame``, the ``index``-th frame (from 1) going ``direction`` on
        ``connection``, is this fault's."""
        if direction != self.direction:
            return False
        if self.connection is not None and connection != self.connection:
            return False
        if self.nth is not None and (frame.is_handshake or index != self.nth):
            return False
        if self.type is None:
            return not frame.is_handshake
        return frame.label == self.type
