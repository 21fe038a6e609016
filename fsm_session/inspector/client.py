"""The inspector of a client process: its own session services, live in a browser.

::

    async with open_inspector() as inspector:
        print("inspector:", inspector.url)
        async with open_session_service(url, access_token=token, inspector=inspector) as session:
            await session.open(ParticipantInfo(name="Ada"))

A service started elsewhere joins with ``inspector.follow(service)``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from fsm_session.events import Event, SessionStateChangeEvent, SocketStateChangeEvent
from fsm_session.inspector import render
from fsm_session.inspector.board import Board
from fsm_session.inspector.web import InspectorServer
from fsm_session.machine import WebSocketState
from fsm_session.service import SessionService

__all__ = ["Inspector", "open_inspector"]

_numbers = itertools.count(1)


class Inspector:
    """A running inspector: its page at :attr:`url`, showing the services it follows."""

    def __init__(self, board: Board, server: InspectorServer, node: str) -> None:
        self.board = board
        self.node = node
        """What the page's *node* column says of this process's sessions."""
        self._server = server
        self._keys: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"<Inspector {self.url} sessions={len(self.board.sessions)}>"

    @property
    def url(self) -> str:
        """The page's address, ``http://HOST:PORT/`` (without the token, if there is one)."""
        return self._server.url

    def follow(self, service: SessionService) -> None:
        """Show ``service`` on the page from now on, until it ends."""
        if not isinstance(service, SessionService):
            raise TypeError(f"follow() takes a SessionService, not {type(service).__name__}")
        if id(service) in self._keys:
            return
        self._keys[id(service)] = f"{self.node}/{next(_numbers)}"
        self._show(service)
        service.watch(self)

    def _show(self, service: SessionService) -> None:
        participant = service.participant
        self.board.update(
            self._keys[id(service)],
            self.node,
            state=service.state.name,
            participant=None if participant is None else participant.id,
            external_id=None if participant is None else participant.info.external_id,
            name=None if participant is None else participant.info.name,
            ghost=participant is not None and participant.is_ghost,
            connected=service.socket_state is WebSocketState.CONNECTED,
        )

    def service_event(self, service: SessionService, event: Event) -> None:
        key = self._keys.get(id(service))
        if key is None:
            return
        if isinstance(event, SessionStateChangeEvent):
            rule = render.row_rule(service.last_transition)
            self.board.transition(key, event.trigger, rule, event.old.name, event.new.name)
        if isinstance(event, SessionStateChangeEvent | SocketStateChangeEvent):
            self._show(service)

    def service_ended(self, service: SessionService) -> None:
        key = self._keys.pop(id(service), None)
        if key is not None:
            self.board.remove(key)


@asynccontextmanager
async def open_inspector(
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    *,
    node: str | None = None,
) -> AsyncIterator[Inspector]:
    """Serve the inspector's page on ``host``:``port`` (0: any free port) while the block runs.

    Loopback by default; any other host needs ``token`` (at least 16 characters), which every
    request must then carry (``?token=...``). Raises
    :class:`~fsm_session.inspector.InspectorSetupError` otherwise, before listening.
    """
    board = Board(rows=render.session_rows())
    server = InspectorServer(board, host=host, port=port, token=token)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield Inspector(board, server, node or f"client {os.getpid()}")
        finally:
            nursery.cancel_scope.cancel()
