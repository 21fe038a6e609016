"""The baselines of ``wire.py``: a bare trio-websocket client and a bare JSON server.

Both do the JSON work the protocol needs and nothing else: no state machine, no request table,
no tasks or timeouts of their own, no checks beyond reading the reply's type and ID.

* The **bare client** builds each request as a dict and ``json.dumps`` it with the separators
  and ``ensure_ascii`` of ``fsm_session.protocol.encode``, sends it with trio-websocket's
  ``send_message``, ``json.loads`` the reply and checks that its ``type`` and ``id`` are the ones
  expected. It connects with ``trio_websocket.open_websocket``, offering our subprotocol and
  the same ``Authorization`` header as our client.
* The **bare JSON server** (``serve_bare``, run in its own process) accepts any upgrade that
  offers our subprotocol, ``json.loads`` each request and answers with the frame the reference
  server would send: ``opened`` with a participant (a fresh random ID, the info as given),
  ``updated`` with the participant changed, ``closed``. ``wire.py`` checks, before timing
  anything, that its replies equal the reference server's key for key (participant ID aside).

Loopback only.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from typing import Any

import trio
import trio_websocket
from harness import HOST, SECRET, raise_nofile

from fsm_session.models import ParticipantInfo
from fsm_session.protocol import SUBPROTOCOL

Json = dict[str, Any]


def dumps(frame: Json) -> str:
    """The text of a frame, encoded as ``fsm_session.protocol.encode`` encodes it."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def info_json(info: ParticipantInfo) -> Json:
    return {"name": info.name, "external_id": info.external_id, "avatar_url": info.avatar_url}


# --------------------------------------------------------------------------- the bare client


class BareProtocolError(Exception):
    """The bare client got a reply it did not expect (a benchmark bug, never a figure)."""


class BareConnection:
    """One open trio-websocket connection with a request counter: the bare client's state."""

    __slots__ = ("next_id", "participant", "ws")

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.next_id = 1
        self.participant: Json | None = None

    async def request(self, kind: str, expect: str, fields: Json) -> Json:
        """Send a ``kind`` request with the next ID; return its reply, which must be ``expect``."""
        rid = self.next_id
        self.next_id = rid + 1
        await self.ws.send_message(dumps({"type": kind, "id": rid, **fields}))
        reply: Json = json.loads(await self.ws.get_message())
        if reply.get("type") != expect or reply.get("id") != rid:
            raise BareProtocolError(f"expected {expect!r} for request {rid}, got {reply!r}")
        return reply

    async def open(self, info: ParticipantInfo) -> Json:
        reply = await self.request("open", "opened", {"info": info_json(info)})
        self.participant = reply["participant"]
        return reply

    async def update(self, name: str | None = None, avatar_url: str | None = None) -> Json:
        reply = await self.request("update", "updated", {"name": name, "avatar_url": avatar_url})
        self.participant = reply["participant"]
        return reply

    async def close(self) -> Json:
        reply = await self.request("close", "closed", {})
        self.participant = None
        return reply


def connect(port: int, headers: list[tuple[bytes, bytes]]) -> Any:
    """``async with connect(...) as ws``: the bare client's connection (TCP + upgrade)."""
    return trio_websocket.open_websocket(
        HOST, port, "/", use_ssl=False, subprotocols=[SUBPROTOCOL], extra_headers=headers
    )


async def bare_cycle(port: int, headers: list[tuple[bytes, bytes]], info: ParticipantInfo) -> None:
    """What ``open(info)`` then ``close()`` does on the wire, written by hand."""
    async with connect(port, headers) as ws:
        conn = BareConnection(ws)
        await conn.open(info)
        await conn.close()


# --------------------------------------------------------------------------- the servers


class _PortReporter:
    """Passes ``serve_websocket``'s ``started`` value on as the URL of its port."""

    def __init__(self, task_status: Any) -> None:
        self._task_status = task_status

    def started(self, value: Any) -> None:
        self._task_status.started(f"ws://{HOST}:{value.port}/")


def bare_reply(frame: Json, participant: Json | None) -> tuple[Json, Json | None]:
    """The reply the reference server sends to ``frame``, and the connection's participant."""
    kind, rid = frame.get("type"), frame.get("id")
    if kind == "open":
        participant = {"id": secrets.token_hex(16), "info": dict(frame["info"])}
        return {"type": "opened", "id": rid, "participant": participant}, participant
    if kind == "update" and participant is not None:
        info = participant["info"]
        if frame["name"] is not None:
            info["name"] = frame["name"]
        if frame["avatar_url"] is not None:
            info["avatar_url"] = frame["avatar_url"]
        return {"type": "updated", "id": rid, "participant": participant}, participant
    if kind == "close":
        return {"type": "closed", "id": rid}, None
    error = {"type": "error", "id": rid, "code": "bad_request", "message": "not in the benchmark"}
    return error, participant


async def serve_bare(task_status: Any) -> None:
    """The bare JSON server: one handler task per connection, one reply per frame."""

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        if SUBPROTOCOL not in request.proposed_subprotocols:
            await request.reject(400)
            return
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        participant: Json | None = None
        try:
            while True:
                frame = json.loads(await ws.get_message())
                reply, participant = bare_reply(frame, participant)
                await ws.send_message(dumps(reply))
        except trio_websocket.ConnectionClosed:
            pass
        except Exception as exc:  # a benchmark bug: say so, keep serving the others
            print(f"bare server: {exc!r}", file=sys.stderr)

    await trio_websocket.serve_websocket(
        handler, HOST, 0, ssl_context=None, task_status=_PortReporter(task_status)
    )


async def serve_reference(max_connections: int, task_status: Any) -> None:
    """The reference server, as the CLI runs it but with room for the benchmark's sessions."""
    from fsm_session.server import ServerConfig, serve

    # The connection limits fit the scale figure, whose sessions all come from 127.0.0.1, many
    # handshakes at once (the per-address and pending caps are meant for hostile floods); the
    # rate and byte budgets (P14) are off, as no real client sends thousands of updates a
    # second on one connection.
    config = ServerConfig(
        max_connections=max_connections,
        max_connections_per_peer=max_connections,
        max_pending=max_connections,
        max_pending_per_peer=max_connections,
        max_requests_per_second=float("inf"),
        max_bytes_per_second=float("inf"),
    )
    await serve(HOST, 0, secret=SECRET, config=config, task_status=task_status)


def run_server(kind: str, max_connections: int, profile: str | None, cpu: bool = False) -> int:
    """Serve until terminated (SIGTERM) or interrupted (SIGINT, which writes the profile)."""
    import cProfile
    import logging

    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    raise_nofile()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            if kind == "bare":
                url = await nursery.start(serve_bare)
            else:
                url = await nursery.start(serve_reference, max_connections)
            print(url, flush=True)

    profiler = None
    if profile:
        profiler = cProfile.Profile(time.process_time) if cpu else cProfile.Profile()
        profiler.enable()
    try:
        trio.run(main)
    except KeyboardInterrupt:  # how profile_cycle.py stops a profiled server
        pass
    finally:
        if profiler is not None and profile:
            profiler.disable()
            profiler.dump_stats(profile)
    return 0
