"""What keeps a session going between calls: reconnecting and resuming (R14) and refreshing
the token (R16), run as tasks of the service; the open's own I/O, run in its caller's task; the
waits on an outcome that callers share; and the rate limit on logging a backend's complaints.

Split from ``service.py`` to keep each module readable; all of it drives the same
:class:`~fsm_session.client_protocol.ClientProtocol` and transport.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import trio

from fsm_session import tokens
from fsm_session.client_protocol import Pending
from fsm_session.errors import (
    BackendError,
    ConnectionLost,
    InvalidToken,
    RemoteProtocolError,
    RequestAborted,
    SessionError,
    TokenError,
    TokenExpired,
    TransitionNotAllowed,
)
from fsm_session.machine import SessionState, WebSocketState
from fsm_session.models import Participant
from fsm_session.protocol import ErrorCode
from fsm_session.requests import Outcome

if TYPE_CHECKING:
    from fsm_session.service import SessionService

__all__ = ["Complaints", "carry_open", "keep_token_fresh", "reconnect", "settled", "wait"]

log = logging.getLogger("fsm_session.service")


async def wait(outcome: Outcome) -> Any:
    """The outcome's value, or its error raised; a cancelled caller cancels only this wait."""
    if outcome.done:
        await trio.lowlevel.checkpoint()
    else:
        if outcome.waker is None:
            outcome.waker = trio.Event()
        await cast(trio.Event, outcome.waker).wait()
    if outcome.error is not None:
        raise outcome.error
    return outcome.value


async def settled(outcome: Outcome) -> None:
    """Wait for the outcome without taking on its error."""
    if not outcome.done:
        if outcome.waker is None:
            outcome.waker = trio.Event()
        await cast(trio.Event, outcome.waker).wait()


async def carry_open(self: SessionService, request: Pending) -> Participant:
    """Connect if needed and send the open, in the caller's task; then wait for it."""
    proto, transport = self._proto, self._transport
    with trio.CancelScope() as scope:  # work tied to the session: close() cancels it
        self._work.append(scope)
        try:
            await transport.settle()
            serial = proto.connection
            if transport.state is WebSocketState.CLOSED:
                serial = await transport.connect(self._token)
            frame = proto.send(request, serial, now=trio.current_time())
            if frame is not None:
                await transport.send(serial, frame, request.deadline)
        except SessionError as error:
            proto.not_sent(request, error)
        except BaseException:
            proto.not_sent(
                request,
                RequestAborted(
                    "the open was cancelled before it was sent",
                    trigger="open",
                    state=SessionState.OPENING,
                ),
            )
            raise
        finally:
            self._work.remove(scope)
    try:
        return cast(Participant, await wait(request))
    except SessionError:
        await _release_socket(self)
        raise


async def _release_socket(self: SessionService) -> None:
    """After a failed open: close a socket that now serves no session (shielded)."""
    proto = self._proto
    if proto.session.state is SessionState.CLOSED and proto.open_request is None:
        await self._transport.close()


async def reconnect(self: SessionService, scope: trio.CancelScope, error: SessionError) -> None:
    """Get the connection back and resume the same participant, or give up (R14, R18).

    ``scope`` is work tied to the session: ``close()`` cancels it and so stops the loop.
    """
    proto, transport = self._proto, self._transport
    try:
        with scope:
            while True:
                now = trio.current_time()
                proto.expire(now=now)
                delay = proto.reconnect_delay(now=now)
                if delay is None:
                    break
                await trio.sleep(delay)
                attempt, final = await _resume_once(self)
                if attempt is None:
                    return
                error = attempt
                transport.abort(None, error)
                await transport.settle()  # the socket is CLOSED before we go on
                if proto.reconnect_failed(error, final=final, now=trio.current_time()):
                    self._after_loss(error)
                    return
            if proto.reconnecting:
                self._lose("reconnect_failed", error)
    finally:
        if scope in self._work:
            self._work.remove(scope)
        if self._reconnector is scope:
            self._reconnector = None


async def _resume_once(self: SessionService) -> tuple[SessionError | None, bool]:
    """One attempt: connect, resume, send again what waits. ``(None, _)`` when it is over
    (resumed, or nothing to resume); else the error, and whether it is final."""
    proto, transport = self._proto, self._transport
    timeout = self.config.reconnect.attempt_timeout
    with trio.move_on_after(timeout):
        try:
            await transport.settle()
            serial = proto.connection
            if transport.state is WebSocketState.CLOSED:
                serial = await transport.connect(self._token)
            request = proto.resume(now=trio.current_time())
            if request is None:
                return None, False
            await self._send(request)
            await wait(request)
            now = trio.current_time()
            for frame in proto.resend(serial, now=now):
                await transport.send(serial, frame, now + proto.request_timeout)
            return None, False
        except (TokenError, BackendError, TransitionNotAllowed) as refusal:
            # The token, an unknown participant, another one (R18) are final; a backend whose
            # session store is unavailable has decided nothing yet (P17): try again.
            return refusal, refusal.code != ErrorCode.STORE_UNAVAILABLE
        except SessionError as transient:
            return transient, False
    return ConnectionLost(f"no resume within {timeout} s", rule="R14"), False


async def keep_token_fresh(self: SessionService, refresh: Callable[[bool], Awaitable[str]]) -> None:
    """Ask for a fresh token at 1/2 and 3/4 of its life and at expiry (rule R16)."""
    while True:
        times = tokens.refresh_times(self._claims)
        if times is None:
            return
        renewed = False
        for when in times:
            await trio.sleep(max(0.0, when - self.config.wall_clock()))
            if await _try_refresh(self, refresh, expired=when == times[-1]):
                renewed = True
                break
        if not renewed:
            self._lose(
                "token_expired",
                TokenExpired("the access token expired", rule="R16", state=self.state),
            )
            return


async def _try_refresh(
    self: SessionService, refresh: Callable[[bool], Awaitable[str]], expired: bool
) -> bool:
    """Call the callback and adopt its token; ``False`` when that failed (never logged)."""
    try:
        token = await refresh(expired)
        if not isinstance(token, str) or not token:
            raise InvalidToken("the refresh callback returned no token", rule="R16")
        claims = tokens.read_claims(token)
        request = self._proto.refresh_token(token, now=trio.current_time())
        if request is not None:
            await self._send(request)
            await wait(request)
    except Exception as exc:  # The callback is the application's: contain its failure.
        log.warning("token refresh failed (%s); the current token stays", type(exc).__name__)
        return False
    self._token = token
    self._claims = claims
    self._proto.session.token_external_id = claims.external_id
    return True


class Complaints:
    """Logs a backend's protocol errors at most a few a second, counting the rest, so that a
    chatty backend cannot flood the logs."""

    __slots__ = ("_log", "logged", "per_second", "start", "suppressed")

    def __init__(self, logger: logging.Logger, per_second: int = 3) -> None:
        self._log = logger
        self.per_second = per_second
        self.start: float | None = None
        self.logged = 0
        self.suppressed = 0

    def add(self, error: RemoteProtocolError, now: float) -> None:
        if self.start is None or now - self.start >= 1.0:
            if self.suppressed:
                self._log.warning(
                    "%d more protocol errors from the backend were not logged", self.suppressed
                )
            self.start, self.logged, self.suppressed = now, 0, 0
        if self.logged < self.per_second:
            self.logged += 1
            self._log.warning("%s", error)
        else:
            self.suppressed += 1
