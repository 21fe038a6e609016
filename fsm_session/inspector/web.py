"""The inspector's HTTP server, on h11: the page, the diagram, a JSON snapshot, and server-sent
events carrying every change of the board.

Safe by default:

- read-only: only ``GET``; anything else is ``405``;
- on a loopback address a request must name a loopback host (``Host:``), so a web page elsewhere
  cannot reach it by DNS rebinding; on any other address an access token is required, and every
  request must carry it (``?token=``, then the HttpOnly cookie that answer sets, or
  ``Authorization: Bearer``), compared in constant time;
- nothing served holds a token or a secret: the board holds none;
- each browser's feed is a bounded :class:`~fsm_session.inspector.board.Watcher`; a browser that
  does not read only stalls its own connection, and is dropped after ``send_timeout``;
- one request per connection, ``request_timeout`` (3 s) to send its head, a bounded number of
  connections and a smaller bound on those not yet admitted (beyond either a new one is closed
  unread), so that idle or unauthenticated connections cannot take the feeds' places;
- a snapshot is bounded (see :meth:`~fsm_session.inspector.board.Board.snapshot`) and encoded
  once per version of the board, however many browsers ask for it.
"""

from __future__ import annotations

import hmac
import http
import importlib.resources
import ipaddress
import json
import logging
import re
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio

from fsm_session.diagrams import GraphvizMissing
from fsm_session.inspector import render
from fsm_session.inspector.board import Board

__all__ = ["InspectorServer", "InspectorSetupError", "is_loopback"]

log = logging.getLogger("fsm_session.inspector")

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("Connection", "close"),
]
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,}")
"""An access token: 16 or more URL-safe characters, carried unchanged in a query and a cookie."""


class InspectorSetupError(ValueError):
    """The inspector was asked to run in a way that is not safe (or not possible)."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _static(name: str) -> bytes:
    return importlib.resources.files("fsm_session.inspector").joinpath("static", name).read_bytes()


class _Wakeup:
    """A reusable wake-up for one feed: ``set()`` from the board, ``wait()`` in the feed's task."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


class InspectorServer:
    """Serves ``board`` over HTTP. Start it with ``await nursery.start(server.serve)``."""

    def __init__(
        self,
        board: Board,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        max_connections: int = 64,
        max_unadmitted: int = 8,
        request_timeout: float = 3.0,
        send_timeout: float = 30.0,
    ) -> None:
        if token is not None and (not isinstance(token, str) or not _TOKEN.fullmatch(token)):
            raise InspectorSetupError(
                "the inspector's access token must be at least 16 characters, each a letter,"
                " a digit or one of . _ ~ - (it travels in a URL and a cookie unchanged)"
            )
        if token is None and not is_loopback(host):
            raise InspectorSetupError(
                f"the inspector binds {host!r}, which is not loopback: give it an access token"
            )
        self.board = board
        self.host = host
        self.port = port
        self._token = None if token is None else token.encode()
        self._max_connections = max_connections
        self._max_unadmitted = max_unadmitted
        self._request_timeout = request_timeout
        self._send_timeout = send_timeout
        self._live = 0
        self._unadmitted = 0
        self._encoded: tuple[int, bytes] = (-1, b"")
        self.url = ""

    def __repr__(self) -> str:  # never the token
        return f"<InspectorServer {self.url or 'not started'} token={self._token is not None}>"

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report the page's URL through ``task_status``, serve until cancelled."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        sockname = listeners[0].socket.getsockname()
        self.port = sockname[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}/"
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.url)

    # ------------------------------------------------------------------ one connection

    async def _handle(self, stream: trio.SocketStream) -> None:
        if self._live >= self._max_connections or self._unadmitted >= self._max_unadmitted:
            # Hang up unread: a flood of connections costs nothing but the accept.
            await trio.aclose_forcefully(stream)
            return
        self._live += 1
        try:
            async with stream:
                conn = h11.Connection(h11.SERVER)
                self._unadmitted += 1
                try:
                    admitted = await self._admit(stream, conn)
                finally:
                    self._unadmitted -= 1
                if admitted is not None:
                    await self._answer(stream, conn, *admitted)
        # A feed runs in a nursery, whose errors come out grouped: hence except*.
        except* (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass  # the browser went away, or would not read
        except* Exception:  # one bad connection never takes the inspector down
            log.exception("inspector connection failed")
        finally:
            self._live -= 1

    async def _admit(
        self, stream: trio.SocketStream, conn: h11.Connection
    ) -> tuple[h11.Request, list[tuple[str, str]]] | None:
        """Read the request's head and check it: the request and the headers to answer with,
        or ``None`` when it was refused (and answered) or never came whole in time."""
        request = None
        with trio.move_on_after(self._request_timeout):
            try:
                request = await _read_request(stream, conn)
            except h11.RemoteProtocolError as error:
                await self._send(stream, conn, error.error_status_hint, b"bad request\n")
                return None
        if request is None:
            return None
        status, body, extra = self._check(request)
        if status != 200:
            await self._send(stream, conn, status, body, extra=extra)
            return None
        return request, extra

    async def _answer(
        self,
        stream: trio.SocketStream,
        conn: h11.Connection,
        request: h11.Request,
        extra: list[tuple[str, str]],
    ) -> None:
        target = urlsplit(request.target.decode("ascii", "replace"))
        path = target.path
        if path == "/events":
            await self._feed(stream, conn, extra)
        elif path in _STATIC:
            name, content_type = _STATIC[path]
            await self._send(stream, conn, 200, _static(name), content_type, extra)
        elif path == "/diagram.svg":
            try:
                svg = await trio.to_thread.run_sync(render.session_svg)
            except GraphvizMissing as error:
                hint = f"the diagram is not available: {error}\n".encode()
                await self._send(stream, conn, 503, hint, extra=extra)
                return
            await self._send(stream, conn, 200, svg.encode(), "image/svg+xml", extra)
        elif path == "/snapshot.json":
            await self._send(stream, conn, 200, self._snapshot(), "application/json", extra)
        elif path == "/session.json":
            key = parse_qs(target.query).get("key", [""])[0]
            view = self.board.session(key)
            if view is None:
                await self._send(stream, conn, 404, b"no such session\n", extra=extra)
                return
            await self._send(stream, conn, 200, _json(view), "application/json", extra)
        else:
            await self._send(stream, conn, 404, b"not found\n")

    def _snapshot(self) -> bytes:
        """The board's snapshot, encoded once per version of the board."""
        version, data = self._encoded
        if version != self.board.version:
            data = _json(self.board.snapshot())
            self._encoded = (self.board.version, data)
        return data

    def _snapshot_event(self) -> bytes:
        return b"data: " + self._snapshot() + b"\n\n"

    def _check(self, request: h11.Request) -> tuple[int, bytes, list[tuple[str, str]]]:
        """Method, host and token: ``(200, b"", headers)`` when the request may be served.

        The token comes as ``Authorization: Bearer``, as ``?token=`` (then the answer sets it
        as an HttpOnly, same-site cookie, so that the page's own script, style and feed carry
        it), or as that cookie.
        """
        if request.method != b"GET":
            return 405, b"the inspector is read-only: GET only\n", [("Allow", "GET")]
        headers = dict(request.headers)
        if is_loopback(self.host):
            host = headers.get(b"host", b"").decode("ascii", "replace")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if not is_loopback(name):
                return 403, b"this inspector answers only requests for a loopback host\n", []
        if self._token is not None:
            cookie = f"fsm_inspector_{self.port}"
            given, in_query = _token_of(request.target, headers, cookie)
            if not hmac.compare_digest(given, self._token):
                return 401, b"an access token is required: add ?token=... to the address\n", []
            if in_query:
                value = f"{cookie}={given.decode()}; Path=/; HttpOnly; SameSite=Strict"
                return 200, b"", [("Set-Cookie", value)]
        return 200, b"", []

    async def _send(
        self,
        stream: trio.SocketStream,
        conn: h11.Connection,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            *_HEADERS,
            *(extra or []),
        ]
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):  # IDLE: a garbled request
            return
        with trio.fail_after(self._send_timeout):
            response = h11.Response(status_code=status, headers=headers, reason=_reason(status))
            await stream.send_all(conn.send(response))
            await stream.send_all(conn.send(h11.Data(data=body)))
            await stream.send_all(conn.send(h11.EndOfMessage()))

    async def _feed(
        self, stream: trio.SocketStream, conn: h11.Connection, extra: list[tuple[str, str]]
    ) -> None:
        """Server-sent events: a snapshot, then every update, until the browser leaves."""
        headers = [("Content-Type", "text/event-stream"), *_HEADERS, *extra]
        wakeup = _Wakeup()
        watcher = self.board.watch(wakeup.set)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_closed, stream, nursery.cancel_scope)
                with trio.fail_after(self._send_timeout):
                    response = h11.Response(status_code=200, headers=headers, reason=b"OK")
                    await stream.send_all(conn.send(response))
                    # What the watcher gathered while the head went out is in the snapshot:
                    # drop it in the same step, so that no update is sent twice.
                    watcher.take()
                    await stream.send_all(conn.send(h11.Data(data=self._snapshot_event())))
                while True:
                    await wakeup.wait()
                    updates = watcher.take()
                    if updates is None:
                        data = self._snapshot_event()
                    else:
                        data = b"".join(_event(update) for update in updates)
                    if data:
                        with trio.fail_after(self._send_timeout):
                            await stream.send_all(conn.send(h11.Data(data=data)))
        finally:
            self.board.unwatch(watcher)


async def _read_request(stream: trio.SocketStream, conn: h11.Connection) -> h11.Request | None:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(8192)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            return event
        return None  # the peer closed before a whole request


async def _until_closed(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
    """Read and ignore what the browser sends; when it hangs up, end its feed."""
    try:
        while await stream.receive_some(4096):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


def _token_of(target: bytes, headers: dict[bytes, bytes], cookie: str) -> tuple[bytes, bool]:
    """The token a request carries, and whether it came in the query."""
    authorization = headers.get(b"authorization", b"")
    if authorization.lower().startswith(b"bearer "):
        return authorization[7:].strip(), False
    query = urlsplit(target.decode("ascii", "replace")).query
    values = parse_qs(query).get("token", [])
    if values:
        return values[0].encode("utf-8", "replace"), True
    jar = SimpleCookie()
    try:
        jar.load(headers.get(b"cookie", b"").decode("latin-1"))
    except CookieError:
        return b"", False
    morsel = jar.get(cookie)
    return (b"", False) if morsel is None else (morsel.value.encode("utf-8", "replace"), False)


def _reason(status: int) -> bytes:
    return http.HTTPStatus(status).phrase.encode()


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _event(update: Any) -> bytes:
    return b"data: " + _json(update) + b"\n\n"
