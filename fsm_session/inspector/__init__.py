"""The live inspector: a page in the browser showing the session machine's diagram, the live
sessions, and each session's transitions as they happen (trigger, rule, from, to).

A client process follows its own services (:func:`open_inspector`, then
``open_session_service(..., inspector=inspector)`` or :meth:`Inspector.follow`);
``fsm-session serve --inspect`` shows the reference server's sessions. The page is served by a
small h11 server (:mod:`fsm_session.inspector.web`), from files in this package: no CDN, no
build step. Safe by default: loopback only unless given an access token, read-only, bounded
memory per browser.
"""

from fsm_session.inspector.backend import ServerObserver
from fsm_session.inspector.board import Board, SessionView, Transition, Watcher
from fsm_session.inspector.client import Inspector, open_inspector
from fsm_session.inspector.web import InspectorServer, InspectorSetupError, is_loopback

__all__ = [
    "Board",
    "Inspector",
    "InspectorServer",
    "InspectorSetupError",
    "ServerObserver",
    "SessionView",
    "Transition",
    "Watcher",
    "is_loopback",
    "open_inspector",
]
