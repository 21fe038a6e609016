"""The error hierarchy.

Every error says which written rule was broken (an ID of ``specs/session.md`` or
``specs/protocol.md``), which trigger was refused and which state the session was in, both as
attributes and in its message, so a log line alone tells what happened. An error raised for a
refused call means the state is unchanged and nothing was sent (rule R13).

Messages never contain an access token (rule R16).
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "ArgumentTypeError",
    "BackendError",
    "ConnectionFailed",
    "ConnectionLost",
    "ExternalIdMismatch",
    "InvalidParticipantInfo",
    "InvalidToken",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "RequestAborted",
    "SessionAlreadyOpen",
    "SessionConnectionError",
    "SessionError",
    "SessionNotOpen",
    "SessionSwitched",
    "TokenError",
    "TokenExpired",
    "TransitionNotAllowed",
]


class SessionError(Exception):
    """Root of every error this library raises on purpose.

    Attributes:
        reason: what went wrong, in words.
        rule: the ID of the written rule that was broken (``"R2"``), or ``None``.
        trigger: the trigger (public call or input) that was refused, or ``None``.
        state: the state the session (or socket) was in when it was refused, or ``None``.
        code: a machine-readable code, shared with the wire protocol's error replies.
    """

    code = "session_error"
    default_rule: str | None = None

    def __init__(
        self,
        reason: str,
        *,
        rule: str | None = None,
        trigger: str | None = None,
        state: Enum | None = None,
        code: str | None = None,
    ) -> None:
        self.reason = reason
        self.rule = rule if rule is not None else self.default_rule
        self.trigger = trigger
        self.state = state
        if code is not None:
            self.code = code
        super().__init__(self._format())

    def locate(self, trigger: str, state: Enum) -> SessionError:
        """Name the call and the state this error reached, where it did not say (returns self).

        Errors from the transport know nothing of the session; the service fills them in.
        """
        if self.trigger is None:
            self.trigger = trigger
        if self.state is None:
            self.state = state
        self.args = (self._format(),)
        return self

    def _format(self) -> str:
        where = []
        if self.rule is not None:
            where.append(f"rule {self.rule}")
        if self.trigger is not None:
            where.append(f"trigger {self.trigger!r}")
        if self.state is not None:
            where.append(f"state {self.state.name}")
        return f"{self.reason} ({', '.join(where)})" if where else self.reason

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments do not survive the default pickling of exceptions.
        return (
            _rebuild,
            (type(self), self.reason, self.rule, self.trigger, self.state, self.code),
        )


def _rebuild(
    cls: type[SessionError],
    reason: str,
    rule: str | None,
    trigger: str | None,
    state: Enum | None,
    code: str,
) -> SessionError:
    return cls(reason, rule=rule, trigger=trigger, state=state, code=code)


class InvalidParticipantInfo(SessionError, ValueError):
    """A participant info, name or avatar URL breaks rule R2."""

    code = "invalid_participant_info"
    default_rule = "R2"


class ExternalIdMismatch(SessionError):
    """The participant's external ID differs from the access token's (rule R3)."""

    code = "external_id_mismatch"
    default_rule = "R3"


class TransitionNotAllowed(SessionError):
    """The trigger is not allowed in the current state."""

    code = "transition_not_allowed"


class SessionNotOpen(TransitionNotAllowed):
    """The call needs an open session (OPEN or GHOST) and there is none (rule R10)."""

    code = "session_not_open"
    default_rule = "R10"


class SessionAlreadyOpen(TransitionNotAllowed):
    """A session is opening or open with another identity (rule R5)."""

    code = "session_already_open"
    default_rule = "R5"


class TokenError(SessionError):
    """The access token cannot be used."""

    code = "invalid_token"


class InvalidToken(TokenError):
    """The access token is malformed, unsigned, wrongly signed or refused by the backend."""

    code = "invalid_token"


class TokenExpired(TokenError):
    """The access token has expired and no fresh one could be had."""

    code = "token_expired"


class SessionConnectionError(SessionError):
    """The connection to the backend could not be made or was lost."""

    code = "connection_error"


class ConnectionFailed(SessionConnectionError):
    """Connecting to the backend failed (refused, timed out, handshake rejected)."""

    code = "connection_failed"


class ConnectionLost(SessionConnectionError):
    """The connection dropped while a request was waiting for its reply."""

    code = "connection_lost"


class SessionSwitched(SessionError):
    """The same external ID opened a session on another connection, which took it over (R17)."""

    code = "switched"
    default_rule = "R17"


class RequestAborted(SessionError):
    """A request in flight was abandoned because the session closed (rule R11)."""

    code = "request_aborted"
    default_rule = "R11"


class ProtocolError(SessionError):
    """A peer broke the wire protocol of ``specs/protocol.md``.

    ``request_id`` names the request the broken frame belonged to, when it could be read.
    """

    code = "protocol_error"
    request_id: int | None = None


class LocalProtocolError(ProtocolError):
    """We were about to break the protocol (a bug on our side, or bad input to the codec)."""

    code = "local_protocol_error"


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol: a frame that does not decode, validate or correlate."""

    code = "remote_protocol_error"


class BackendError(SessionError):
    """The backend refused a request with an error code the client has no finer class for."""

    code = "backend_error"


class ArgumentTypeError(SessionError, TypeError):
    """A public call got an argument of the wrong type (for example rule R9)."""

    code = "argument_type_error"
