"""The inspector of the reference server: ``fsm-session serve --inspect``.

:class:`ServerObserver` is the server's observer (see
:class:`~fsm_session.server.registry.Observer`): each change of a session on the server becomes
a move on the board, named by the protocol rule it follows (``specs/protocol.md``). The server
holds no OPENING or CLOSING, so its sessions move between CLOSED, OPEN and GHOST; a session whose
connection ended without ``close`` stays OPEN or GHOST, *in grace*, until it is resumed or its
grace passes.
"""

from __future__ import annotations

from fsm_session.inspector.board import Board
from fsm_session.server.registry import SessionRecord

__all__ = ["ServerObserver"]

# change -> (trigger, rule): what the page's transition list says.
_MOVES = {
    "opened": ("open", "P6"),
    "updated": ("update", "P7"),
    "closed": ("close", "P8"),
    "dropped": ("dropped", "P9"),
    "resumed": ("resume", "P9"),
    "expired": ("expired", "P9"),
    "switched": ("switched", "P12"),
}


class ServerObserver:
    """Shows a server's sessions on ``board``; ``node`` names the server on the page."""

    def __init__(self, board: Board, node: str) -> None:
        self.board = board
        self.node = node

    def session_changed(self, change: str, record: SessionRecord) -> None:
        trigger, rule = _MOVES.get(change, (change, ""))
        participant = record.participant
        key = participant.id
        view = self.board.sessions.get(key)
        old = "CLOSED" if view is None else view.state
        ended = change in ("closed", "expired")
        new = "CLOSED" if ended else "GHOST" if participant.is_ghost else "OPEN"
        self.board.update(
            key,
            self.node,
            participant=participant.id,
            external_id=record.external_id,
            name=participant.info.name,
            ghost=participant.is_ghost,
            connected=record.holder is not None and change != "switched",
            grace=change == "dropped",
        )
        self.board.transition(key, trigger, rule, old, new)
        if ended:
            self.board.remove(key)
