"""The error hierarchy: every error names its rule, trigger and state (specs/session.md)."""

from __future__ import annotations

import pickle

import pytest

import fsm_session as fs
from fsm_session.machine import SessionState


def test_message_and_attributes_name_rule_trigger_state() -> None:
    error = fs.SessionAlreadyOpen("already open", trigger="open", state=SessionState.OPEN)
    assert (error.reason, error.rule, error.trigger, error.state) == (
        "already open",
        "R5",
        "open",
        SessionState.OPEN,
    )
    assert str(error) == "already open (rule R5, trigger 'open', state OPEN)"
    assert error.code == "session_already_open"


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (fs.InvalidParticipantInfo, (fs.SessionError, ValueError)),
        (fs.ArgumentTypeError, (fs.SessionError, TypeError)),
        (fs.SessionNotOpen, (fs.TransitionNotAllowed,)),
        (fs.SessionAlreadyOpen, (fs.TransitionNotAllowed,)),
        (fs.TokenExpired, (fs.TokenError,)),
        (fs.InvalidToken, (fs.TokenError,)),
        (fs.ConnectionFailed, (fs.SessionConnectionError,)),
        (fs.ConnectionLost, (fs.SessionConnectionError,)),
        (fs.LocalProtocolError, (fs.ProtocolError,)),
        (fs.RemoteProtocolError, (fs.ProtocolError,)),
        (fs.RequestAborted, (fs.SessionError,)),
        (fs.BackendError, (fs.SessionError,)),
        (fs.ExternalIdMismatch, (fs.SessionError,)),
    ],
)
def test_hierarchy(cls: type[fs.SessionError], bases: tuple[type, ...]) -> None:
    assert issubclass(cls, fs.SessionError)
    for base in bases:
        assert issubclass(cls, base)


def test_errors_pickle_with_their_attributes() -> None:
    error = fs.ExternalIdMismatch("differs", trigger="open", state=SessionState.CLOSED)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is fs.ExternalIdMismatch
    assert (copy.reason, copy.rule, copy.trigger, copy.state, str(copy)) == (
        error.reason,
        "R3",
        "open",
        SessionState.CLOSED,
        str(error),
    )


def test_locate_fills_in_only_what_is_missing() -> None:
    """An error from the transport is told the call and state it reached; set ones stay."""
    error = fs.ConnectionFailed("no route", rule="P1")
    assert error.locate("open", SessionState.OPENING) is error
    assert str(error) == "no route (rule P1, trigger 'open', state OPENING)"
    named = fs.SessionNotOpen("closed", trigger="update", state=SessionState.CLOSED)
    named.locate("open", SessionState.OPENING)
    assert (named.trigger, named.state) == ("update", SessionState.CLOSED)
