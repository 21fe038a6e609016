"""The inspector of the reference server: ``fsm-session serve --inspect``.

:class:`ServerObserver` is the server's observer (see
:class:`~fsm_session.server.observe.Observer`): each change of a session on the server becomes
a move on the board, named by the protocol rule it follows (``specs/protocol.md``). The store's
list of sessions, read every second, adds what this node cannot see happen: a grace that runs
out and, with a store shared by several nodes (Redis), the sessions of every node, each with
the node holding it. The server
holds no OPENING or CLOSING, so its sessions move between CLOSED, OPEN and GHOST; a session whose
connection ended without ``close`` stays OPEN or GHOST, *in grace*, until it is resumed or its
grace passes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from fsm_session.inspector.board import Board
from fsm_session.server.registry import SessionRecord
from fsm_session.server.store import SessionView

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

    def sessions_seen(self, views: Sequence[SessionView], skip: Collection[str]) -> None:
        """Bring the board in line with the store's list (``skip``: changed meanwhile)."""
        board = self.board
        seen = set()
        for view in views:
            participant = view.participant
            key = participant.id
            seen.add(key)
            if key in skip:
                continue
            node = self.node if view.node is None else f"node {view.node}"
            state = "GHOST" if participant.is_ghost else "OPEN"
            fields = {
                "participant": key,
                "external_id": participant.info.external_id,
                "name": participant.info.name,
                "ghost": participant.is_ghost,
                "connected": view.held,
                "grace": not view.held,
            }
            shown = board.sessions.get(key)
            if shown is None:  # opened where this node could not see it
                board.update(key, node, **fields)
                board.transition(key, "open", "P6", "CLOSED", state)
            elif shown.node != node:  # taken over by another node (P12) or resumed there (P9)
                shown.node = node
                board.update(key, node, **fields)
                board.transition(key, "switched", "P12", shown.state, state)
            elif any(getattr(shown, name) != value for name, value in fields.items()):
                board.update(key, node, **fields)
        for key in [key for key in board.sessions if key not in seen and key not in skip]:
            shown = board.sessions[key]
            trigger, rule = ("expired", "P9") if shown.grace else ("close", "P8")
            board.transition(key, trigger, rule, shown.state, "CLOSED")
            board.remove(key)
