"""One connection's protocol state on the reference server, without I/O.

The driver in :mod:`fsm_session.server.app` feeds each frame the client sent to
:meth:`ConnectionState.receive`, sends the reply it returns, and closes the connection when
:attr:`ConnectionState.ending` says so. Everything the rules of ``specs/protocol.md`` (P-IDs) and
``specs/session.md`` (R-IDs) decide on the server is decided here, in the order P2, P3, P14, then
the request's own rules; each request type has one handler method, ``on_<type>``.

Clocks are passed in (``clock`` monotonic, ``wall_clock`` epoch seconds for token expiry), so this
module reads none itself. Tokens never appear in a log line, a reply or a repr (R16).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fsm_session.errors import InvalidToken, RemoteProtocolError, TokenExpired
from fsm_session.models import (
    ParticipantInfo,
    avatar_url_problem,
    external_id_problem,
    info_problem,
    name_problem,
)
from fsm_session.protocol import (
    Close,
    CloseCode,
    Closed,
    ErrorCode,
    ErrorReply,
    Message,
    Open,
    Opened,
    RefreshToken,
    Request,
    Resume,
    Resumed,
    SessionEnded,
    TokenAccepted,
    Update,
    Updated,
    decode_request,
)
from fsm_session.server.config import ServerConfig
from fsm_session.server.limits import Bucket
from fsm_session.server.registry import SessionRecord
from fsm_session.server.store import SessionStore, StoreUnavailable
from fsm_session.server.tokencache import VerifiedTokens
from fsm_session.tokens import TokenClaims

__all__ = ["ConnectionState", "Ending"]

logger = logging.getLogger("fsm_session.server")


@dataclass(frozen=True, slots=True)
class Ending:
    """The connection must end: send ``frames``, then close with ``code`` and ``reason``."""

    code: int
    reason: str
    frames: tuple[Message, ...] = ()


_NO_STORE = "the session store is unavailable; the request may have been carried out, retry"
_FAILED = "the server failed to carry out the request"


def _nothing() -> None:
    pass


def _error(rid: int | None, code: str, message: str, rule: str | None) -> ErrorReply:
    return ErrorReply(id=rid, code=code, message=message, rule=rule)


class ConnectionState:
    """The server's side of one accepted connection: its token, its session, its request IDs.

    Implements :class:`~fsm_session.server.registry.Holder`: when another connection opens the
    same participant, :meth:`session_ended` takes the session away and sets :attr:`ending`,
    then calls ``wake`` so that the driver notices while it waits for the next frame.

    Log lines about one connection's ordinary life (opened, closed, resumed) are DEBUG, so that
    an INFO log costs nothing per request; what ends a connection against the client's will
    (switched, expired, a broken frame) stays INFO.
    """

    # One per connection: slots keep it small and its attribute reads fast.
    __slots__ = (
        "_clock",
        "_requests",
        "_tokens",
        "_wall_clock",
        "claims",
        "config",
        "ending",
        "last_id",
        "name",
        "session",
        "store",
        "wake",
    )

    def __init__(
        self,
        *,
        store: SessionStore,
        secret: str,
        claims: TokenClaims,
        config: ServerConfig,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        name: str = "connection",
        tokens: VerifiedTokens | None = None,
    ) -> None:
        # ``tokens`` verifies ``token`` requests; the server shares one cache among all its
        # connections. Without one, tokens are verified with ``secret`` and nothing is cached.
        self.store = store
        self._tokens = VerifiedTokens(secret, maxsize=0) if tokens is None else tokens
        # What the connection's current access token says (P1, P10).
        self.claims = claims
        self.config = config
        self._clock = clock
        self._wall_clock = wall_clock
        # How log lines name this connection (its peer's address).
        self.name = name
        # The session this connection holds, if any.
        self.session: SessionRecord | None = None
        # The highest request ID read so far (P3).
        self.last_id = 0
        # Set when the connection must close; no further frame is read.
        self.ending: Ending | None = None
        # Called when ``ending`` is set from outside (another connection's open).
        self.wake: Callable[[], None] = _nothing
        # A token bucket: max_requests_per_second frames a second, bursts as large (P14).
        rate = config.max_requests_per_second
        self._requests = Bucket(rate, rate, clock())

    def __repr__(self) -> str:
        session = None if self.session is None else self.session.participant.id
        return f"<ConnectionState {self.name} session={session} last_id={self.last_id}>"

    # ----------------------------------------------------------------------------------------
    # Inputs from the driver.
    # ----------------------------------------------------------------------------------------

    async def receive(self, frame: str | bytes) -> Message | None:
        """Take one frame from the client; return the reply to send, or ``None``.

        ``None`` means the frame ended the connection: :attr:`ending` says how (1003 for a binary
        frame, 1009 for one over the size limit; P2).
        """
        if self.ending is not None:
            return None
        if not isinstance(frame, str):
            self._end(CloseCode.UNSUPPORTED_DATA, "frames must be JSON text, not binary")
            return None
        limit = self.config.max_frame_bytes
        # A character takes one to four UTF-8 bytes: encode only when the count could matter.
        if len(frame) > limit or (
            4 * len(frame) > limit and len(frame.encode("utf-8", "surrogatepass")) > limit
        ):
            self._end(CloseCode.TOO_BIG, f"frames are limited to {limit} bytes")
            return None
        allowed = self._requests.take(self._clock())
        try:
            request = decode_request(frame)
        except RemoteProtocolError as exc:
            rid = exc.request_id
            if rid is not None and rid > self.last_id:
                self.last_id = rid  # A readable ID is used up even by a refused frame (P3).
            # The rate unit was taken before decoding (P4); a refused frame used it up too.
            logger.debug("%s: refused a frame: %s", self.name, exc.code)
            return _error(rid, exc.code, exc.reason, exc.rule)
        if request.id <= self.last_id:
            return _error(
                request.id,
                ErrorCode.BAD_REQUEST_ID,
                f"request IDs must increase; {request.id} follows {self.last_id}",
                "P3",
            )
        self.last_id = request.id
        if not allowed:
            return self._rate_limited(request.id)
        return await self.handle(request)

    async def handle(self, request: Request) -> Message:
        """Carry out a decoded request and return its reply.

        A store that cannot be reached changed nothing: the request is answered
        ``store_unavailable`` (P17). Any other exception inside a handler is a bug of the server:
        it is logged with its traceback and answered with ``internal_error`` (P5). Either way the
        connection goes on.
        """
        handler: Callable[[Request], Awaitable[Message]] = getattr(self, f"on_{request.TYPE}")
        try:
            return await handler(request)
        except StoreUnavailable as exc:
            logger.warning(
                "%s: the %r request found no store: %s", self.name, request.TYPE, f"{exc}"
            )
            code, rule, why = ErrorCode.STORE_UNAVAILABLE, "P17", _NO_STORE
        except Exception:
            logger.exception("%s: the %r request %d failed", self.name, request.TYPE, request.id)
            code, rule, why = ErrorCode.INTERNAL_ERROR, "P5", _FAILED
        return _error(request.id, code, why, rule)

    def session_ended(self, reason: str) -> None:
        """Another connection took the session (R17): tell the client, then close with 4001."""
        self.session = None
        if self.ending is None:
            logger.info("%s: session ended: %s", self.name, reason)
            self.ending = Ending(
                CloseCode.SWITCHED,
                "the participant opened a session on another connection",
                (SessionEnded(reason=reason),),
            )
        self.wake()

    def expires_at(self) -> float | None:
        """When the connection's access token expires (epoch seconds), if it says."""
        return self.claims.expires_at

    async def check_token(self) -> None:
        """End the connection with ``ended`` and 4002 when its token has expired (P11)."""
        expires_at = self.claims.expires_at
        if self.ending is not None or expires_at is None or self._wall_clock() < expires_at:
            return
        try:
            if self.session is not None:
                await self.store.end(self.session)
                self.session = None
        except StoreUnavailable as exc:  # Kept: connection_closed releases it, or its node.
            logger.warning("%s: could not end the session: %s", self.name, f"{exc}")
        logger.info("%s: the access token expired", self.name)
        self.ending = Ending(
            CloseCode.TOKEN_EXPIRED,
            "the access token expired",
            (SessionEnded(reason="token_expired"),),
        )

    def idle(self) -> None:
        """The client sent nothing for ``idle_timeout`` seconds: close with 4003 (P13)."""
        self._end(CloseCode.IDLE, "the connection was idle too long")

    async def connection_closed(self) -> None:
        """The connection is gone. A session still held stays resumable for a while (P9)."""
        session, self.session = self.session, None
        if session is not None:
            try:
                await self.store.drop(session)  # Its node tries again if this fails.
            except StoreUnavailable as exc:
                logger.warning("%s: could not release the session: %s", self.name, f"{exc}")
            logger.debug("%s: connection ended; %s resumable", self.name, session.participant.id)

    # ----------------------------------------------------------------------------------------
    # Requests. Each returns its reply; refusals change nothing.
    # ----------------------------------------------------------------------------------------

    async def on_open(self, request: Open) -> Message:
        """P6: open a session as ``info``, or a ghost; idempotent for the same info (R5)."""
        info = request.info
        token_external_id = self.claims.external_id
        wanted: ParticipantInfo | None = None
        if info is not None:
            problem = info_problem(info)
            if problem is not None:
                return _error(request.id, ErrorCode.INVALID_PARTICIPANT_INFO, problem, "R2")
            if info.external_id is not None and info.external_id != token_external_id:
                reason = (
                    "the participant has an external ID but the access token carries none"
                    if token_external_id is None
                    else "the participant's external ID differs from the access token's"
                )
                return _error(request.id, ErrorCode.EXTERNAL_ID_MISMATCH, reason, "R3")
            external_id = info.external_id if info.external_id is not None else token_external_id
            if external_id is not None:
                problem = external_id_problem(external_id)
                if problem is not None:
                    problem = f"the access token's external ID is unusable: {problem}"
                    return _error(request.id, ErrorCode.INVALID_PARTICIPANT_INFO, problem, "R2")
            wanted = ParticipantInfo(
                name=info.name, external_id=external_id, avatar_url=info.avatar_url
            )
        if self.session is not None:
            current = self.session.participant
            if (wanted is None and current.is_ghost) or wanted == current.info:
                return Opened(request.id, current)
            reason = (
                "a ghost session is open on this connection; name it with update or close it"
                if current.is_ghost
                else "a session is already open on this connection with another participant info"
            )
            return _error(request.id, ErrorCode.SESSION_ALREADY_OPEN, reason, "R5")
        self.session = await self.store.open(self, info, token_external_id)
        logger.debug("%s: opened %s", self.name, self.session.participant.id)
        return Opened(request.id, self.session.participant)

    async def on_update(self, request: Update) -> Message:
        """P7: change the name and/or avatar URL of the open session (R10, R7)."""
        if self.session is None:
            return _error(
                request.id,
                ErrorCode.SESSION_NOT_OPEN,
                "update needs an open session on this connection",
                "R10",
            )
        problem = None if request.name is None else name_problem(request.name)
        if problem is None and request.avatar_url is not None:
            problem = avatar_url_problem(request.avatar_url)
        if problem is not None:
            return _error(request.id, ErrorCode.INVALID_PARTICIPANT_INFO, problem, "R10")
        session = self.session
        if not await self.store.update(session, request.name, request.avatar_url):
            # Taken by another connection meanwhile: its ``ended`` is on the way (P12).
            if self.session is session:
                self.session = None
            return _error(
                request.id,
                ErrorCode.SESSION_NOT_OPEN,
                "the session was taken over by another connection",
                "R10",
            )
        return Updated(request.id, session.participant)

    async def on_close(self, request: Close) -> Message:
        """P8: end the session for good (it is not resumable); ``closed`` even without one."""
        if self.session is not None:
            logger.debug("%s: closed %s", self.name, self.session.participant.id)
            await self.store.end(self.session)
            self.session = None
        return Closed(request.id)

    async def on_resume(self, request: Resume) -> Message:
        """P9: take up a dropped session held under a token for the same external ID (R14)."""
        if self.session is not None:
            if self.session.participant.id == request.participant_id:
                return Resumed(request.id, self.session.participant)
            return _error(
                request.id,
                ErrorCode.SESSION_ALREADY_OPEN,
                "a session is already open on this connection; close it first",
                "R5",
            )
        record = await self.store.resume(self, request.participant_id, self.claims.external_id)
        if record is None:
            return _error(
                request.id,
                ErrorCode.UNKNOWN_PARTICIPANT,
                "no session of this participant can be resumed with this access token",
                "R14",
            )
        self.session = record
        logger.debug("%s: resumed %s", self.name, record.participant.id)
        return Resumed(request.id, record.participant)

    async def on_token(self, request: RefreshToken) -> Message:
        """P10: replace the connection's access token (R16; R3 for a session's external ID)."""
        try:
            claims = self._tokens.verify(request.token, now=self._wall_clock())
        except TokenExpired as exc:
            return _error(request.id, ErrorCode.TOKEN_EXPIRED, exc.reason, "R16")
        except InvalidToken as exc:
            return _error(request.id, ErrorCode.INVALID_TOKEN, exc.reason, "R16")
        session = self.session
        if (
            session is not None
            and session.external_id is not None
            and claims.external_id != session.external_id
        ):
            return _error(
                request.id,
                ErrorCode.EXTERNAL_ID_MISMATCH,
                "the new access token is for another external ID than the open session's",
                "R3",
            )
        if session is not None:
            await self.store.retoken(session, claims.external_id)
        self.claims = claims
        logger.debug("%s: access token replaced", self.name)
        return TokenAccepted(request.id, claims.external_id, claims.expires_at)

    # ----------------------------------------------------------------------------------------

    def _end(self, code: int, reason: str) -> None:
        if self.ending is None:
            logger.info("%s: closing with %d: %s", self.name, code, reason)
            self.ending = Ending(code, reason)

    def _rate_limited(self, rid: int | None) -> ErrorReply:
        return _error(
            rid,
            ErrorCode.RATE_LIMITED,
            f"at most {self.config.max_requests_per_second:g} requests a second; slow down",
            "P14",
        )


_HANDLED: tuple[type[Request], ...] = (Open, Update, Close, Resume, RefreshToken)
assert all(callable(getattr(ConnectionState, f"on_{cls.TYPE}", None)) for cls in _HANDLED)
