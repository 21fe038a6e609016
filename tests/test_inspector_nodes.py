"""The server's inspector over a store shared by several nodes (Redis): each node's page lists
the sessions of every node, with the node holding each, and follows them as they move (P6, P8,
P12). A real redis-server and two real nodes on loopback."""

from __future__ import annotations

from functools import partial

import trio

from fsm_session.inspector import Board, ServerObserver
from fsm_session.server import serve
from tests.redis_server import RedisServer
from tests.test_inspector_server import _until
from tests.test_server import SECRET, connect, info, token


async def test_p6_p8_p12_a_node_shows_the_sessions_of_every_node(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    store = redis_server.url()
    board = Board()
    url_a = await nursery.start(
        partial(
            serve, "127.0.0.1", 0, secret=SECRET, store=store, observer=ServerObserver(board, "A")
        )
    )
    url_b = await nursery.start(partial(serve, "127.0.0.1", 0, secret=SECRET, store=store))

    # Opened on node B: node A's page lists it, held by B.
    async with connect(url_b, token("bob")) as bob:
        pid = (await bob.opened(info("Bob")))["id"]
        await _until(board, lambda: pid in board.sessions)
        view = board.sessions[pid]
        assert view.node.startswith("node ") and view.node != "A"
        assert (view.state, view.name, view.external_id, view.connected) == (
            "OPEN",
            "Bob",
            "bob",
            True,
        )
        assert [(t.trigger, t.rule, t.source, t.dest) for t in view.transitions] == [
            ("open", "P6", "CLOSED", "OPEN")
        ]
        # The same participant logs in on node A: the session moves to A (P12).
        async with connect(url_a, token("bob")) as again:
            assert (await again.opened(info("Bob")))["id"] == pid
            await _until(board, lambda: board.sessions[pid].node == "A")
            assert board.sessions[pid].connected
            # Closed on A: gone from the page at once.
            assert (await again.close_session())["type"] == "closed"
            assert pid not in board.sessions

    # Opened and closed on node B: node A's page follows both.
    async with connect(url_b, token("cleo")) as cleo:
        other = (await cleo.opened(info("Cleo")))["id"]
        await _until(board, lambda: other in board.sessions)
        watched = board.sessions[other]
        assert (await cleo.close_session())["type"] == "closed"
        await _until(board, lambda: other not in board.sessions)
    assert [(t.trigger, t.rule, t.dest) for t in watched.transitions][-1] == (
        "close",
        "P8",
        "CLOSED",
    )
