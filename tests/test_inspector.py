"""The live inspector without a browser: its board, its HTTP server's rules (read-only,
loopback or token, no secrets shown, bounded memory per watcher) and a client following its
own services."""

from __future__ import annotations

import importlib.resources
import json
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from fsm_session import ParticipantInfo, open_session_service
from fsm_session.inspector import (
    Board,
    InspectorServer,
    InspectorSetupError,
    is_loopback,
    open_inspector,
    render,
)

needs_dot = pytest.mark.usefixtures("graphviz")


def _request(port: int, target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


async def _get(
    port: int,
    target: str = "/",
    *,
    method: str = "GET",
    host: str = "127.0.0.1",
    headers: str = "",
) -> tuple[int, dict[str, str], bytes]:
    """One whole HTTP request and response on a fresh connection."""
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            request = f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}\r\n"
            await stream.send_all(request.encode())
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body


async def _events(port: int, count: int) -> list[dict[str, object]]:
    """The first ``count`` server-sent events of the feed (the first one is the snapshot)."""
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(_request(port, "/events"))
            data = b""
            while data.count(b"\n\n") < count:  # each event ends with a blank line
                data += await stream.receive_some(65536)
    lines = [line[6:] for line in data.split(b"\n") if line.startswith(b"data: ")]
    return [json.loads(line) for line in lines[:count]]


# ---------------------------------------------------------------------------- the board


def test_the_ring_of_transitions_is_bounded() -> None:
    board = Board(ring=3)
    board.update("a", "n1", state="CLOSED")
    for number in range(5):
        board.transition("a", f"t{number}", "R1", "CLOSED", "OPENING")
    shown = board.session("a")
    assert shown is not None
    assert [move["trigger"] for move in shown["transitions"]] == ["t2", "t3", "t4"]
    assert board.sessions["a"].state == "OPENING"


def test_a_watcher_that_falls_behind_is_resynchronised_not_grown() -> None:
    woken: list[None] = []
    board = Board(watcher_limit=4)
    watcher = board.watch(lambda: woken.append(None))
    board.update("a", "n1")
    assert watcher.take() == [
        {"type": "session", "session": board.sessions["a"].to_json(), "transition": None}
    ]
    for number in range(1000):
        board.transition("a", "open", "R2", "CLOSED", f"S{number}")
        assert len(watcher.pending) <= 4
    assert len(woken) == 1001
    assert watcher.take() is None  # a snapshot replaces what it missed
    assert watcher.take() == []
    board.unwatch(watcher)
    assert board.watchers == []


def test_a_snapshot_is_bounded_and_leaves_the_transitions_out() -> None:
    board = Board(snapshot_limit=3)
    for number in range(5):
        board.update(f"s{number}", "n1")
        for _ in range(10):
            board.transition(f"s{number}", "update", "P7", "OPEN", "OPEN")
    snapshot = board.snapshot()
    assert [view["key"] for view in snapshot["sessions"]] == ["s0", "s1", "s2"]
    assert snapshot["total"] == 5
    assert all("transitions" not in view for view in snapshot["sessions"])
    shown = board.session("s4")  # one session's transitions, when the page shows it
    assert shown is not None and len(shown["transitions"]) == 10
    assert board.session("nobody") is None


def test_the_board_refuses_what_it_does_not_hold() -> None:
    board = Board()
    with pytest.raises(ValueError, match="no field 'token'"):
        board.update("a", "n1", token="secret")
    with pytest.raises(KeyError):
        board.transition("nobody", "open", "R2", "CLOSED", "OPENING")
    board.remove("nobody")  # nothing to forget: no error, no update
    with pytest.raises(ValueError):
        Board(ring=0)


def test_loopback_hosts() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.5.0.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.2", "example.com", ""]))


# ---------------------------------------------------------------------------- the server


def test_a_host_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(InspectorSetupError, match="not loopback: give it an access token"):
        InspectorServer(Board(), host="0.0.0.0")
    with pytest.raises(InspectorSetupError, match="at least 16 characters"):
        InspectorServer(Board(), host="0.0.0.0", token="short")
    # A token travels unchanged in a query and a cookie: URL-safe characters only.
    for unsafe in ("a+" * 8, "a;" * 8, "a " * 8, "\u00e9" * 16, "a%" * 8):
        with pytest.raises(InspectorSetupError, match=r"a letter, a digit or one of \. _ ~ -"):
            InspectorServer(Board(), host="0.0.0.0", token=unsafe)
    assert InspectorServer(Board(), host="0.0.0.0", token="aZ09._~-" * 2)
    server = InspectorServer(Board(), host="0.0.0.0", token="x" * 16)
    assert "x" * 16 not in repr(server)


async def test_the_page_and_its_files_are_served_read_only(nursery: trio.Nursery) -> None:
    server = InspectorServer(Board())
    await nursery.start(server.serve)
    status, headers, body = await _get(server.port, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<script src="app.js"' in body and b"//" not in body.split(b"<body>")[0]
    assert headers["content-security-policy"].startswith("default-src 'self'")
    for path in ("/app.js", "/app.css", "/favicon.svg"):
        status, _, body = await _get(server.port, path)
        assert status == 200 and body
    assert (await _get(server.port, "/nothing"))[0] == 404
    for method in ("POST", "PUT", "DELETE", "HEAD"):
        status, headers, _ = await _get(server.port, "/", method=method)
        assert (status, headers.get("allow")) == (405, "GET")
    # DNS rebinding: a loopback inspector answers only requests naming a loopback host.
    assert (await _get(server.port, "/", host="attacker.example"))[0] == 403
    assert (await _get(server.port, "/", host="localhost"))[0] == 200
    assert (await _get(server.port, "/", host="[::1]"))[0] == 200


async def test_with_a_token_every_request_must_carry_it(nursery: trio.Nursery) -> None:
    token = secrets.token_urlsafe(24)
    server = InspectorServer(Board(), token=token)
    url = await nursery.start(server.serve)
    assert token not in url
    for target in ("/", "/app.js", "/snapshot.json", "/events", "/diagram.svg"):
        assert (await _get(server.port, target))[0] == 401
        assert (await _get(server.port, target + "?token=" + token[:-1]))[0] == 401
    status, headers, _ = await _get(server.port, "/?token=" + token)
    assert status == 200
    name = f"fsm_inspector_{server.port}"
    assert headers["set-cookie"] == f"{name}={token}; Path=/; HttpOnly; SameSite=Strict"
    assert (await _get(server.port, "/app.js", headers=f"Cookie: {name}={token}\r\n"))[0] == 200
    assert (await _get(server.port, "/", headers=f"Cookie: {name}=x{token}\r\n"))[0] == 401
    assert (await _get(server.port, "/", headers="Cookie: \x7f;;==\r\n"))[0] == 401
    status, _, _ = await _get(server.port, "/", headers=f"Authorization: Bearer {token}\r\n")
    assert status == 200
    status, _, body = await _get(server.port, "/snapshot.json?token=" + token)
    assert status == 200 and token.encode() not in body


def test_the_page_needs_nothing_from_the_internet() -> None:
    static = importlib.resources.files("fsm_session.inspector").joinpath("static")
    names = sorted(item.name for item in static.iterdir())
    assert names == ["app.css", "app.js", "favicon.svg", "index.html"]
    for name in names:
        text = static.joinpath(name).read_text(encoding="utf-8")
        text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(https?:)?//[\w.-]+\.\w", text), f"{name} reaches out"


async def test_connections_beyond_the_cap_are_closed_unread(nursery: trio.Nursery) -> None:
    board = Board()
    server = InspectorServer(board, max_connections=1)
    await nursery.start(server.serve)
    async with await trio.open_tcp_stream("127.0.0.1", server.port) as feed:
        await feed.send_all(_request(server.port, "/events"))
        await trio.testing.wait_all_tasks_blocked()
        assert len(board.watchers) == 1
        with trio.fail_after(10):
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as extra:
                assert await extra.receive_some(100) == b""
    await trio.testing.wait_all_tasks_blocked()
    assert board.watchers == []  # the feed ended with its connection
    assert (await _get(server.port, "/app.css"))[0] == 200  # the slot is free again


async def test_a_garbled_request_gets_a_400(nursery: trio.Nursery) -> None:
    server = InspectorServer(Board())
    await nursery.start(server.serve)
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
            data = b""
            while chunk := await stream.receive_some(4096):
                data += chunk
    assert data.startswith(b"HTTP/1.1 400 ")


async def test_a_browser_that_never_reads_cannot_grow_the_server_or_hold_it(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    board = Board(watcher_limit=16)
    server = InspectorServer(board, send_timeout=30.0)
    await nursery.start(server.serve)
    stalled = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stalled.send_all(_request(server.port, "/events"))
    await trio.testing.wait_all_tasks_blocked()
    (watcher,) = board.watchers
    big = "x" * 65536
    resynced = False
    for number in range(400):  # 26 MB of updates: far more than the socket buffers hold
        board.update("a", "n1", name=f"{number}{big}")
        assert len(watcher.pending) <= 16
        resynced = resynced or watcher.resync
        await trio.testing.wait_all_tasks_blocked()
    assert resynced, "the stalled feed never fell behind"
    # The server still answers others at once while that feed is stalled.
    status, _, body = await _get(server.port, "/snapshot.json")
    assert status == 200 and json.loads(body)["sessions"][0]["key"] == "a"
    # After send_timeout without progress, the stalled browser is dropped.
    mock_clock.jump(31)
    await trio.testing.wait_all_tasks_blocked()
    assert board.watchers == []
    await stalled.aclose()


async def test_the_first_feed_sends_no_transition_twice(nursery: trio.Nursery) -> None:
    board = Board()
    board.update("a", "n1")
    server = InspectorServer(board)
    await nursery.start(server.serve)
    watch = board.watch
    watching = trio.Event()

    def watch_then_move(wake: Callable[[], None]) -> object:
        # The session moves while the feed's head is on its way: after the watcher is
        # registered, before the snapshot is taken.
        watcher = watch(wake)
        board.transition("a", "open", "R2", "CLOSED", "OPENING")
        watching.set()
        return watcher

    board.watch = watch_then_move  # type: ignore[assignment,method-assign]
    events: list[list[dict[str, object]]] = []

    async def read() -> None:
        events.append(await _events(server.port, 2))

    with trio.fail_after(10):
        async with trio.open_nursery() as reading:
            reading.start_soon(read)
            await watching.wait()
            await trio.testing.wait_all_tasks_blocked()
            board.transition("a", "opened", "R4", "OPENING", "OPEN")
    snapshot, update = events[0]
    assert snapshot["type"] == "snapshot"
    assert snapshot["sessions"] == [{**board.sessions["a"].to_json(), "state": "OPENING"}]
    assert update["transition"] == {
        "seq": 2,
        "trigger": "opened",
        "rule": "R4",
        "source": "OPENING",
        "dest": "OPEN",
    }


async def test_a_session_s_transitions_are_asked_for_one_session(nursery: trio.Nursery) -> None:
    board = Board()
    server = InspectorServer(board)
    await nursery.start(server.serve)
    board.update("a b", "n1")  # a key made safe in the query by the page
    board.transition("a b", "open", "R2", "CLOSED", "OPENING")
    status, headers, body = await _get(server.port, "/session.json?key=a+b")
    assert (status, headers["content-type"]) == (200, "application/json")
    assert json.loads(body) == board.session("a b")
    assert (await _get(server.port, "/session.json?key=nobody"))[0] == 404
    assert (await _get(server.port, "/session.json"))[0] == 404


async def test_one_snapshot_is_encoded_per_version_of_the_board(nursery: trio.Nursery) -> None:
    board = Board()
    server = InspectorServer(board)
    board.update("a", "n1")
    first = server._snapshot()
    assert server._snapshot() is first  # the board did not change: the same bytes
    board.transition("a", "open", "R2", "CLOSED", "OPENING")
    second = server._snapshot()
    assert second is not first and json.loads(second)["sessions"][0]["state"] == "OPENING"
    await nursery.start(server.serve)
    assert (await _get(server.port, "/snapshot.json"))[2] == second


async def test_connections_not_yet_admitted_have_their_own_small_cap(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    board = Board()
    server = InspectorServer(board, max_connections=8, max_unadmitted=2, request_timeout=3.0)
    await nursery.start(server.serve)
    async with await trio.open_tcp_stream("127.0.0.1", server.port) as feed:
        await feed.send_all(_request(server.port, "/events"))
        await trio.testing.wait_all_tasks_blocked()
        assert len(board.watchers) == 1  # an admitted feed does not count against the cap
        silent = [await trio.open_tcp_stream("127.0.0.1", server.port) for _ in range(2)]
        await trio.testing.wait_all_tasks_blocked()
        assert server._unadmitted == 2
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as extra:
            await trio.testing.wait_all_tasks_blocked()
            assert server._live == 3  # the feed and the two silent ones: not the extra
            assert await extra.receive_some(100) == b""  # closed unread
        # A request head gets request_timeout to arrive, then its connection is closed.
        mock_clock.jump(3.0)
        await trio.testing.wait_all_tasks_blocked()
        assert (server._unadmitted, server._live) == (0, 1)
        for stream in silent:
            assert await stream.receive_some(100) == b""
            await stream.aclose()
        assert (await _get(server.port, "/app.css"))[0] == 200  # the places are free again


async def test_without_graphviz_the_diagram_is_a_503_with_the_install_hint(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = InspectorServer(Board())
    await nursery.start(server.serve)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` to be found
    render.session_svg.cache_clear()
    try:
        status, headers, body = await _get(server.port, "/diagram.svg")
    finally:
        render.session_svg.cache_clear()
    assert (status, headers["content-type"]) == (503, "text/plain; charset=utf-8")
    assert body.decode().startswith("the diagram is not available: Graphviz's `dot`")
    assert b"apt-get install graphviz" in body and body.count(b"\n") == 1


# ---------------------------------------------------------------------------- a client's services


@needs_dot
async def test_a_client_sees_its_own_services_and_no_secret(
    server_url: str, secret: str, mint: Callable[..., str]
) -> None:
    token = mint("ada")
    async with open_inspector() as inspector:
        assert inspector.url.startswith("http://127.0.0.1:")
        port = int(inspector.url.rsplit(":", 1)[1].rstrip("/"))
        async with open_session_service(
            server_url, access_token=token, inspector=inspector
        ) as session:
            (view,) = inspector.board.sessions.values()
            assert (view.state, view.participant, view.connected) == ("CLOSED", None, False)
            participant = await session.open(ParticipantInfo(name="Ada", external_id="ada"))
            assert (view.state, view.participant, view.name, view.external_id) == (
                "OPEN",
                participant.id,
                "Ada",
                "ada",
            )
            assert (view.ghost, view.connected, view.node) == (False, True, inspector.node)
            seen = []
            for target in ("/", "/app.js", "/snapshot.json", "/diagram.svg"):
                status, _, body = await _get(port, target)
                assert status == 200
                seen.append(body)
            feed = await _events(port, 1)
            assert feed[0]["type"] == "snapshot"
            seen.append(json.dumps(feed).encode())
            for body in seen:
                assert token.encode() not in body and secret.encode() not in body
            await session.close()
            moves = [(t.source, t.dest, t.trigger, t.rule) for t in view.transitions]
            assert moves == [
                ("CLOSED", "OPENING", "open", "R2 R3 R4"),
                ("OPENING", "OPEN", "opened", "R4"),
                ("OPEN", "CLOSING", "close", "R11"),
                ("CLOSING", "CLOSED", "closed", "R11"),
            ]
            inspector.follow(session)  # following twice changes nothing
            assert len(inspector.board.sessions) == 1
        assert inspector.board.sessions == {}  # the service ended
        with pytest.raises(TypeError, match="takes a SessionService"):
            inspector.follow("not a service")  # type: ignore[arg-type]


async def test_open_inspector_refuses_an_unsafe_setup() -> None:
    with pytest.raises(InspectorSetupError, match="not loopback: give it an access token"):
        async with open_inspector(host="0.0.0.0"):
            pass  # pragma: no cover - never entered
    with pytest.raises(InspectorSetupError, match="at least 16 characters"):
        async with open_inspector(token="a;b" * 8):
            pass  # pragma: no cover - never entered
