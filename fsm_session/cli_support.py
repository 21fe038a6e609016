"""What the commands of ``fsm-session`` share: the one-line error, and the secret."""

from __future__ import annotations

__all__ = ["CommandError", "read_secret"]


class CommandError(Exception):
    """An expected failure of a command (its setup, its input): printed as one line, exit 2."""


def read_secret() -> str:
    """``FSM_SESSION_SECRET``, checked; a :class:`CommandError` when it is missing or short."""
    from fsm_session.server import ConfigurationError, secret_from_env

    try:
        return secret_from_env()
    except ConfigurationError as error:
        raise CommandError(error) from None
