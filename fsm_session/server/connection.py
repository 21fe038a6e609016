"""The driver of one accepted connection: moves frames between its WebSocket and its
:class:`~fsm_session.server.handlers.ConnectionState`, and keeps its deadlines.

Split from :mod:`fsm_session.server.app` (which accepts connections) because the handlers await
the session store: the driver is where a store call meets cancellation (a stopping server still
releases its sessions, shielded under a short deadline).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import trio

from fsm_session.protocol import CloseCode, Message, encode
from fsm_session.server.handlers import ConnectionState
from fsm_session.server.websocket import ServerWebSocket, WebSocketClosed
from fsm_session.tokens import TokenClaims

if TYPE_CHECKING:
    from fsm_session.server.app import _Server

__all__ = ["RELEASE_TIMEOUT", "Connection"]

logger = logging.getLogger("fsm_session.server")

RELEASE_TIMEOUT = 2.0
"""How long a connection that ends (even cancelled) may wait for the store to release its
session; past it the store's node retries the release on its own."""


class Connection:
    """Moves frames between one accepted WebSocket and its :class:`ConnectionState`.

    Only this task sends on the WebSocket. Another connection that takes this one's session
    (R17) only marks the state and cancels the wait for the next frame; this task then sends
    ``ended`` and closes, so no two tasks ever write to one socket.

    One cancel scope serves many frames: its deadline is the earlier of the idle deadline (P13)
    and the token's expiry (P11), set when the scope is entered, lowered when a new token
    expires sooner, and otherwise left alone. The idle deadline is checked lazily: when the
    scope's deadline fires, the driver looks at when the peer last sent a byte, and when that
    was recent it enters a new scope with the later deadline. So a busy connection enters a
    scope once per ``idle_timeout``, not once per frame. Waiting for a frame is cancel-safe and
    every send is shielded inside the WebSocket layer; a wake-up from another connection
    cancels the scope only while the driver waits for a frame.
    """

    __slots__ = ("_scope", "config", "peer", "state", "ws")

    def __init__(
        self, server: _Server, ws: ServerWebSocket, claims: TokenClaims, peer: str
    ) -> None:
        self.ws = ws
        self.config = server.config
        self.peer = peer
        self.state = ConnectionState(
            store=server.store,
            secret=server.secret,
            claims=claims,
            config=server.config,
            clock=trio.current_time,
            wall_clock=time.time,
            name=peer,
            tokens=server.tokens,
        )
        self.state.wake = self._wake
        # The scope of the frame being waited for; None while the driver does anything else.
        self._scope: trio.CancelScope | None = None

    def _wake(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    def _deadline(self) -> float:
        """The earlier of the idle deadline and the token's expiry, on trio's clock."""
        deadline = self.ws.last_received + self.config.idle_timeout
        expires_at = self.state.expires_at()
        if expires_at is not None:
            # Token expiry is wall-clock time; trio's clock is monotonic.
            deadline = min(deadline, trio.current_time() + (expires_at - time.time()))
        return deadline

    async def run(self) -> None:
        state = self.state
        ws = self.ws
        config = self.config
        try:
            while state.ending is None:
                await self._serve_frames()
            ending = state.ending
            # Release the session now, not after the close handshake, so that a client that
            # reconnects at once can already resume it.
            await self._release()
            for message in ending.frames:
                await self._send(message)
            await ws.close(ending.code, ending.reason, config.close_timeout)
        except WebSocketClosed as exc:
            logger.debug("%s: connection closed (%d %s)", self.peer, exc.code, exc.reason)
            # After a protocol error the close frame is out: linger so that it arrives.
            await ws.close(exc.code, exc.reason, config.close_timeout)
        except trio.Cancelled:
            # The server is stopping: every client is told so (1001), within the drain time.
            await self._release()
            await ws.close(
                CloseCode.GOING_AWAY, "the server is shutting down", config.drain_timeout
            )
            raise
        except Exception:
            # A bug of the server outside any one request (those are answered internal_error).
            logger.exception("%s: closing after an unexpected error", self.peer)
            await ws.close(CloseCode.INTERNAL_ERROR, "internal error", config.close_timeout)
        finally:
            self._scope = None
            await self._release()

    async def _serve_frames(self) -> None:
        """Read and answer frames until the connection must end or the deadline fires."""
        state = self.state
        ws = self.ws
        claims = state.claims
        with trio.CancelScope(deadline=self._deadline()) as scope:
            while state.ending is None:
                self._scope = scope
                try:
                    frame = await ws.receive()  # Cancel-safe: no frame is lost.
                finally:
                    self._scope = None
                # Shielded: a request the store has begun is carried out and answered; a
                # deadline passing now is delivered at the next receive.
                with trio.CancelScope(shield=True):
                    reply = await state.receive(frame)
                if reply is not None:
                    # Shielded inside: a deadline passing now is delivered at the next receive.
                    await self._send(reply)
                if state.claims is not claims:
                    claims = state.claims  # A new token (P10) may expire sooner.
                    scope.deadline = min(scope.deadline, self._deadline())
        if scope.cancelled_caught:
            await state.check_token()
            if (
                state.ending is None
                and trio.current_time() >= ws.last_received + self.config.idle_timeout
            ):
                state.idle()

    async def _release(self) -> None:
        """Give the session back to the store (resumable, P9), even while cancelled."""
        if self.state.session is None:
            return
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + RELEASE_TIMEOUT
            await self.state.connection_closed()

    async def _send(self, message: Message) -> None:
        await self.ws.send_text(encode(message))
