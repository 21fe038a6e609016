"""The reference server, end to end: a real server on loopback, real tokens, a raw WebSocket client.

Every frame these tests send or receive is checked against ``specs/protocol.schema.json``
(``tests/frames.py``); each test names the rule of ``specs/protocol.md`` (P...) or
``specs/session.md`` (R...) it checks.
"""

from __future__ import annotations

import ast
import base64
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
import trio_websocket
from jsonschema import ValidationError
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection

import fsm_session.server
from fsm_session import tokens
from fsm_session.errors import InvalidToken, SessionError, TokenExpired
from fsm_session.models import Participant, ParticipantInfo
from fsm_session.protocol import MAX_FRAME_BYTES, SUBPROTOCOL, CloseCode, ErrorCode
from fsm_session.server import (
    SECRET_ENV,
    ConfigurationError,
    ServerConfig,
    secret_from_env,
    serve,
)
from fsm_session.server.handlers import ConnectionState
from fsm_session.server.registry import Registry
from fsm_session.server.store import MemoryStore
from fsm_session.server.tokencache import VerifiedTokens
from fsm_session.testing.credentials import signed_token
from tests.frames import (
    validate_client_frame,
    validate_handshake_rejection,
    validate_server_frame,
)

# 64 bytes: long enough for HS512 too, which one test signs with to be refused.
SECRET = "reference-server-test-secret-0123456789-abcdefghijklmnopqrstuvwx"
TIMEOUT = 5.0  # Bounds every wait that could hang; a passing test takes far less.
AVATAR = "https://example.com/a.png"

# ---------------------------------------------------------------------------------------------
# Helpers: a server, tokens, and a raw client that checks every frame against the schema.
# ---------------------------------------------------------------------------------------------


def token(
    external_id: str | None = None,
    *,
    ttl: float = 3600.0,
    now: float | None = None,
    secret: str = SECRET,
) -> str:
    return tokens.mint(
        secret, external_id=external_id, ttl=ttl, now=time.time() if now is None else now
    )


def token_expiring_soon(external_id: str | None = None) -> tuple[str, float]:
    """A token whose (whole-second) ``exp`` is 0.3 to 1.3 seconds away, and that ``exp``."""
    now = time.time()
    exp = math.floor(now) + (1 if now % 1 < 0.7 else 2)
    return tokens.mint(SECRET, external_id=external_id, ttl=60, now=exp - 60), float(exp)


async def start(nursery: trio.Nursery, store: str | None = None, **config: Any) -> str:
    url: str = await nursery.start(
        partial(serve, "127.0.0.1", 0, secret=SECRET, config=ServerConfig(**config), store=store)
    )
    return url


@pytest.fixture(params=["memory", "redis"])
async def url(nursery: trio.Nursery, request: pytest.FixtureRequest) -> str:
    """A server on each store: the memory store, and Redis (a real redis-server)."""
    store = None
    if request.param == "redis":
        store = request.getfixturevalue("redis_server").url()
    return await start(nursery, store)


def info(
    name: str | None = "Alice", external_id: str | None = None, avatar_url: str | None = None
) -> dict[str, Any]:
    return {"name": name, "external_id": external_id, "avatar_url": avatar_url}


class Client:
    """A raw protocol client over one WebSocket; checks every frame against the schema."""

    def __init__(self, ws: WebSocketConnection, stream: trio.SocketStream) -> None:
        self.ws = ws
        self.stream = stream
        self.next_id = 1

    def take_id(self) -> int:
        rid = self.next_id
        self.next_id += 1
        return rid

    async def send(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame)
        validate_client_frame(text)
        await self.ws.send_message(text)

    async def send_raw(self, data: str | bytes) -> None:
        """Send a frame as is, unchecked (to break the protocol on purpose)."""
        await self.ws.send_message(data)

    async def receive(self) -> dict[str, Any]:
        with trio.fail_after(TIMEOUT):
            text = await self.ws.get_message()
        return validate_server_frame(text)

    async def request(self, kind: str, **members: Any) -> dict[str, Any]:
        rid = self.take_id()
        await self.send({"type": kind, "id": rid, **members})
        reply = await self.receive()
        assert reply.get("id") == rid, reply
        return reply

    async def open(self, info: dict[str, Any] | None) -> dict[str, Any]:
        return await self.request("open", info=info)

    async def opened(self, info: dict[str, Any] | None) -> dict[str, Any]:
        """Open and return the participant; fail unless the reply is ``opened``."""
        reply = await self.open(info)
        assert reply["type"] == "opened", reply
        participant: dict[str, Any] = reply["participant"]
        return participant

    async def update(
        self, name: str | None = None, avatar_url: str | None = None
    ) -> dict[str, Any]:
        return await self.request("update", name=name, avatar_url=avatar_url)

    async def close_session(self) -> dict[str, Any]:
        return await self.request("close")

    async def resume(self, participant_id: str) -> dict[str, Any]:
        return await self.request("resume", participant_id=participant_id)

    async def refresh(self, new_token: str) -> dict[str, Any]:
        return await self.request("token", token=new_token)

    async def closed_with(self) -> int:
        """Wait for the server to close the connection; return the close code."""
        with trio.fail_after(TIMEOUT):
            try:
                text = await self.ws.get_message()
            except ConnectionClosed as exc:
                assert exc.reason is not None
                return exc.reason.code
        raise AssertionError(f"expected the connection to close, got {text!r}")

    async def drop(self) -> None:
        """Lose the connection abruptly: no close frame, no ``close`` request."""
        await self.stream.aclose()


@asynccontextmanager
async def connect(
    url: str,
    access_token: str | None = None,
    *,
    subprotocols: Iterable[str] = (SUBPROTOCOL,),
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> AsyncIterator[Client]:
    """Connect a :class:`Client`; raise ``ConnectionRejected`` when the handshake is refused.

    The TCP stream is opened here and handed to ``trio_websocket.wrap_client_stream``, so that
    this helper owns it and closes it in every case: after a rejected handshake trio-websocket
    leaves the client socket open until garbage collection (``DESIGN.md``). The client
    transport has to do the same.
    """
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    extra = [] if access_token is None else [(b"authorization", f"Bearer {access_token}".encode())]
    extra.extend(headers)
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    try:
        async with trio.open_nursery() as nursery:
            # trio-websocket's connect_timeout misses a peer that never answers the upgrade.
            with trio.fail_after(TIMEOUT):
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    f"{parts.hostname}:{parts.port}",
                    parts.path or "/",
                    subprotocols=list(subprotocols),
                    extra_headers=extra,
                )
            try:
                yield Client(ws, stream)
            finally:
                with trio.move_on_after(TIMEOUT):
                    await ws.aclose()
    except BaseExceptionGroup as group:
        # A rejection is raised by trio-websocket's reader task, so it arrives in a group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        await stream.aclose()


async def rejection(url: str, access_token: str | None = None, **kw: Any) -> tuple[int, str]:
    """Connect expecting a rejected handshake; return its status and the body's ``code``."""
    with pytest.raises(ConnectionRejected) as caught:
        async with connect(url, access_token, **kw):
            pass
    body = validate_handshake_rejection(caught.value.body)
    assert body["message"]
    return caught.value.status_code, body["code"]


async def raw_upgrade(url: str, headers: dict[str, str]) -> bytes:
    """Send an upgrade request by hand and read the whole answer, until the server hangs up."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    lines = [
        "GET / HTTP/1.1",
        f"Host: {parts.hostname}:{parts.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    received = bytearray()
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        async with stream:
            await stream.send_all(request)
            while chunk := await stream.receive_some():
                received += chunk
    return bytes(received)


def unsigned_token(external_id: str) -> str:
    """A JWT with ``alg: none`` and no signature."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"external_id": external_id, "exp": int(time.time()) + 3600}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


async def resume_when_dropped(client: Client, participant_id: str) -> dict[str, Any]:
    """Resume, retrying while the server has not yet seen the old connection drop."""
    with trio.fail_after(TIMEOUT):
        while True:
            reply = await client.resume(participant_id)
            if reply["type"] != "error":
                return reply
            assert reply["code"] == ErrorCode.UNKNOWN_PARTICIPANT, reply
            await trio.sleep(0.01)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settle_fds(expected: int) -> int:
    """The number of open file descriptors, once it is down to ``expected`` (or after a while)."""
    # Polling: the count is the kernel's, and nothing signals when the server's side closes.
    with trio.move_on_after(TIMEOUT):
        for _ in range(int(TIMEOUT / 0.01)):
            if fd_count() <= expected:
                break
            await trio.sleep(0.01)
    return fd_count()


# ---------------------------------------------------------------------------------------------
# serve(), configuration.
# ---------------------------------------------------------------------------------------------


async def test_serve_reports_the_bound_url(url: str) -> None:
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.path) == ("ws", "127.0.0.1", "/")
    assert parts.port not in (None, 0)
    async with connect(url, token("alice")) as client:
        assert client.ws.subprotocol == SUBPROTOCOL


async def test_serve_stops_when_cancelled() -> None:
    """Cancelling serve() drops its connections and closes its listener."""
    async with trio.open_nursery() as nursery:
        url = await start(nursery)
        async with connect(url, token()) as client:
            nursery.cancel_scope.cancel()
            with trio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed):
                await client.ws.get_message()
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with pytest.raises(OSError):
        await trio.open_tcp_stream(parts.hostname, parts.port)


async def test_serve_refuses_a_missing_or_short_secret() -> None:
    with pytest.raises(ConfigurationError, match="secret"):
        await serve(secret="")
    with pytest.raises(ConfigurationError, match="32 bytes"):
        await serve(secret="too short")


def test_secret_from_env_refuses_a_missing_secret() -> None:
    with pytest.raises(ConfigurationError, match=f"{SECRET_ENV} is not set"):
        secret_from_env({})
    with pytest.raises(ConfigurationError, match=f"{SECRET_ENV} is not set"):
        secret_from_env({SECRET_ENV: "  "})
    with pytest.raises(ConfigurationError, match="at least 32 bytes") as caught:
        secret_from_env({SECRET_ENV: "short-secret"})
    assert "short-secret" not in str(caught.value)
    assert secret_from_env({SECRET_ENV: SECRET}) == SECRET


def test_secret_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert secret_from_env() == SECRET
    monkeypatch.delenv(SECRET_ENV)
    with pytest.raises(ConfigurationError):
        secret_from_env()


@pytest.mark.parametrize(
    "bad",
    [
        {"max_frame_bytes": 0},
        {"max_frame_bytes": MAX_FRAME_BYTES + 1},
        {"max_connections": 0},
        {"idle_timeout": 0},
        {"resume_grace": -1.0},
        {"handshake_timeout": math.nan},
        {"max_requests_per_second": 0},
        {"close_timeout": "1"},
    ],
)
def test_server_config_refuses_values_out_of_range(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ServerConfig(**bad)


def test_server_config_defaults() -> None:
    config = ServerConfig()
    assert config.max_frame_bytes == MAX_FRAME_BYTES
    assert config.idle_timeout == 120.0 and config.resume_grace == 60.0
    assert ServerConfig(max_requests_per_second=math.inf).max_requests_per_second == math.inf


# ---------------------------------------------------------------------------------------------
# P1: the handshake.
# ---------------------------------------------------------------------------------------------

EXPIRED = "expired"
NO_EXP = "no exp"
WRONG_SECRET = "wrong secret"
HS512 = "hs512"
UNSIGNED = "alg none"
GARBAGE = "garbage"


def bad_token(kind: str) -> str:
    if kind == EXPIRED:
        return token("alice", ttl=60, now=time.time() - 120)
    if kind == NO_EXP:
        return signed_token(SECRET, {"external_id": "alice"})
    if kind == WRONG_SECRET:
        return token("alice", secret="another-secret-of-32-bytes-or-more-0123456789")
    if kind == HS512:
        return signed_token(
            SECRET, {"external_id": "alice", "exp": time.time() + 60}, algorithm="HS512"
        )
    if kind == UNSIGNED:
        return unsigned_token("alice")
    assert kind == GARBAGE
    return "not.a.jwt"


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (GARBAGE, ErrorCode.INVALID_TOKEN),
        (UNSIGNED, ErrorCode.INVALID_TOKEN),
        (WRONG_SECRET, ErrorCode.INVALID_TOKEN),
        (HS512, ErrorCode.INVALID_TOKEN),
        (NO_EXP, ErrorCode.INVALID_TOKEN),
        (EXPIRED, ErrorCode.TOKEN_EXPIRED),
    ],
)
async def test_p1_rejects_a_bad_token_with_401_then_serves_the_next_client(
    url: str, kind: str, code: str
) -> None:
    assert await rejection(url, bad_token(kind)) == (401, code)
    async with connect(url, token("alice")) as client:
        await client.opened(info())


async def test_p1_rejects_a_missing_token_with_401(url: str) -> None:
    assert await rejection(url) == (401, ErrorCode.INVALID_TOKEN)
    assert await rejection(url, headers=[(b"authorization", b"Basic YWxpY2U6cHc=")]) == (
        401,
        ErrorCode.INVALID_TOKEN,
    )
    assert await rejection(url, headers=[(b"authorization", b"Bearer")]) == (
        401,
        ErrorCode.INVALID_TOKEN,
    )
    two = [(b"authorization", f"Bearer {token()}".encode())] * 2
    assert await rejection(url, headers=two) == (401, ErrorCode.INVALID_TOKEN)
    async with connect(url, token()) as client:
        await client.opened(None)


async def test_p1_rejects_a_client_without_the_subprotocol_with_400(url: str) -> None:
    assert await rejection(url, token(), subprotocols=()) == (400, ErrorCode.BAD_REQUEST)
    assert await rejection(url, token(), subprotocols=["fsm-session.v2"]) == (
        400,
        ErrorCode.BAD_REQUEST,
    )
    async with connect(url, token(), subprotocols=["fsm-session.v2", SUBPROTOCOL]) as client:
        assert client.ws.subprotocol == SUBPROTOCOL


async def test_p1_a_401_carries_json_and_www_authenticate(url: str) -> None:
    response = await raw_upgrade(url, {"Sec-WebSocket-Protocol": SUBPROTOCOL})
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401")
    assert b"content-type: application/json" in head.lower()
    assert b'www-authenticate: bearer error="invalid_token"' in head.lower()
    assert validate_handshake_rejection(body)["code"] == ErrorCode.INVALID_TOKEN


async def test_p1_the_server_hangs_up_after_a_rejection(url: str) -> None:
    """P1: the server closes the TCP connection itself, even if the client would keep it."""
    # raw_upgrade reads until EOF: it returns only because the server closed its side.
    response = await raw_upgrade(url, {"Sec-WebSocket-Protocol": SUBPROTOCOL})
    assert response.startswith(b"HTTP/1.1 401")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
async def test_p1_rejections_leave_no_file_descriptor_open(url: str) -> None:
    # Warm up whatever trio and the server create on first use.
    await rejection(url)
    async with connect(url, token("alice")) as client:
        await client.opened(info(external_id="alice"))
    await trio.sleep(0.1)  # Let the server finish closing the warm-up connections.
    before = fd_count()
    for _ in range(3):
        await rejection(url)
        await rejection(url, bad_token(GARBAGE))
        await rejection(url, bad_token(UNSIGNED))
        await rejection(url, bad_token(WRONG_SECRET))
        await rejection(url, bad_token(EXPIRED))
        await rejection(url, token(), subprotocols=())
    assert await settle_fds(before) == before
    async with connect(url, token("alice")) as client:
        await client.opened(info(external_id="alice"))
    assert await settle_fds(before) == before


async def test_p1_a_handshake_must_come_in_time(nursery: trio.Nursery) -> None:
    url = await start(nursery, handshake_timeout=0.2)
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        async with stream:
            assert await stream.receive_some() == b""  # The server hung up on us.
    async with connect(url, token()) as client:
        await client.opened(None)


async def test_p1_beyond_max_connections_the_handshake_gets_503(nursery: trio.Nursery) -> None:
    url = await start(nursery, max_connections=2)
    async with connect(url, token()), connect(url, token()):
        assert await rejection(url, token()) == (503, ErrorCode.RATE_LIMITED)
    async with connect(url, token()) as client:
        await client.opened(None)


async def test_p1_a_crash_in_the_handshake_is_contained(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(headers: object) -> tuple[str | None, str]:
        raise RuntimeError("handshake bug")

    monkeypatch.setattr("fsm_session.server.app._bearer_token", boom)
    response = await raw_upgrade(url, {"Sec-WebSocket-Protocol": SUBPROTOCOL})
    assert response == b""
    assert "handshake bug" in caplog.text
    monkeypatch.undo()
    async with connect(url, token()) as client:
        await client.opened(None)


# ---------------------------------------------------------------------------------------------
# P6 open: participant IDs, R2, R3, R5, R17.
# ---------------------------------------------------------------------------------------------


async def test_p6_r4_open_replies_with_the_participant(url: str) -> None:
    async with connect(url, token("alice")) as client:
        participant = await client.opened(info("Alice", "alice", AVATAR))
        assert participant["info"] == info("Alice", "alice", AVATAR)
        assert participant["id"]


async def test_p6_the_token_supplies_the_external_id(url: str) -> None:
    """P6: a participant's external ID is info.external_id, else the token's."""
    async with connect(url, token("alice")) as client:
        participant = await client.opened(info("Alice"))
        assert participant["info"]["external_id"] == "alice"


async def test_r4_the_same_external_id_gets_the_same_participant_id(url: str) -> None:
    async with connect(url, token("alice")) as first:
        one = await first.opened(info("Alice", "alice"))
        await first.close_session()
    async with connect(url, token("alice")) as second:
        two = await second.opened(info("Alice again"))
    async with connect(url, token("bob")) as third:
        other = await third.opened(info("Bob", "bob"))
    assert one["id"] == two["id"] != other["id"]


async def test_r6_ghosts_get_fresh_participant_ids(url: str) -> None:
    ids = set()
    async with connect(url, token("alice")) as first, connect(url, token("alice")) as second:
        for client in (first, second):
            ghost = await client.opened(None)
            assert ghost["info"] == info(None)
            ids.add(ghost["id"])
        await first.close_session()
        ids.add((await first.opened(None))["id"])
    assert len(ids) == 3


async def test_p6_anonymous_named_participants_get_fresh_ids(url: str) -> None:
    """P6: with no external ID in the info or the token, every open is a new participant."""
    async with connect(url, token()) as first, connect(url, token()) as second:
        one = await first.opened(info("Anon"))
        two = await second.opened(info("Anon"))
    assert one["id"] != two["id"]
    assert one["info"]["external_id"] is None


@pytest.mark.parametrize(
    "bad",
    [
        info(""),
        info("   "),
        info("x" * 257),
        info(None, "alice"),
        info("Alice", avatar_url="ftp://example.com/a.png"),
        info("Alice", avatar_url="not a url"),
        info("Alice", avatar_url="https://" + "a" * 2048),
        info("Alice", external_id=""),
    ],
)
async def test_r2_open_refuses_info_out_of_limits(url: str, bad: dict[str, Any]) -> None:
    async with connect(url, token("alice")) as client:
        reply = await client.open(bad)
        assert (reply["type"], reply["code"], reply["rule"]) == (
            "error",
            ErrorCode.INVALID_PARTICIPANT_INFO,
            "R2",
        )
        # Refused: nothing changed, the connection goes on.
        assert (await client.update("x"))["code"] == ErrorCode.SESSION_NOT_OPEN
        await client.opened(info("Alice", "alice"))


async def test_r2_a_token_external_id_out_of_limits_is_refused(url: str) -> None:
    async with connect(url, token("x" * 1025)) as client:
        reply = await client.open(info("Alice"))
        assert (reply["code"], reply["rule"]) == (ErrorCode.INVALID_PARTICIPANT_INFO, "R2")
        await client.opened(None)  # A ghost has no external ID.


async def test_r3_open_refuses_another_external_id(url: str) -> None:
    async with connect(url, token("alice")) as client:
        reply = await client.open(info("Bob", "bob"))
        assert (reply["type"], reply["code"], reply["rule"]) == (
            "error",
            ErrorCode.EXTERNAL_ID_MISMATCH,
            "R3",
        )
        await client.opened(info("Alice", "alice"))
    async with connect(url, token()) as client:
        reply = await client.open(info("Bob", "bob"))
        assert (reply["code"], reply["rule"]) == (ErrorCode.EXTERNAL_ID_MISMATCH, "R3")


async def test_r5_open_again_with_the_same_info_is_idempotent(url: str) -> None:
    async with connect(url, token("alice")) as client:
        first = await client.opened(info("Alice", "alice"))
        assert await client.opened(info("Alice", "alice")) == first
        assert await client.opened(info("Alice")) == first  # The token fills the external ID.
        reply = await client.open(info("Someone else"))
        assert (reply["code"], reply["rule"]) == (ErrorCode.SESSION_ALREADY_OPEN, "R5")
        reply = await client.open(None)
        assert (reply["code"], reply["rule"]) == (ErrorCode.SESSION_ALREADY_OPEN, "R5")


async def test_r5_a_ghost_session_is_named_with_update_not_open(url: str) -> None:
    async with connect(url, token("alice")) as client:
        ghost = await client.opened(None)
        assert await client.opened(None) == ghost
        reply = await client.open(info("Alice"))
        assert (reply["code"], reply["rule"]) == (ErrorCode.SESSION_ALREADY_OPEN, "R5")


async def test_p12_r17_the_same_external_id_elsewhere_switches_the_session(url: str) -> None:
    async with connect(url, token("alice")) as first, connect(url, token("alice")) as second:
        before = await first.opened(info("Alice", "alice"))
        after = await second.opened(info("Alice on the phone"))
        assert after["id"] == before["id"]
        assert await first.receive() == {"type": "ended", "reason": "switched"}
        assert await first.closed_with() == CloseCode.SWITCHED
        # The session lives on, on the second connection.
        updated = await second.update(avatar_url=AVATAR)
        assert updated["participant"]["info"] == info("Alice on the phone", "alice", AVATAR)


async def test_p12_a_ghost_is_never_switched(url: str) -> None:
    async with connect(url, token("alice")) as first, connect(url, token("alice")) as second:
        await first.opened(None)
        await second.opened(None)
        await second.close_session()
        assert (await first.update(avatar_url=AVATAR))["type"] == "updated"


# ---------------------------------------------------------------------------------------------
# P7 update: R10, R7.
# ---------------------------------------------------------------------------------------------


async def test_r10_update_needs_an_open_session(url: str) -> None:
    async with connect(url, token("alice")) as client:
        reply = await client.update("Alice")
        assert (reply["type"], reply["code"], reply["rule"]) == (
            "error",
            ErrorCode.SESSION_NOT_OPEN,
            "R10",
        )
        await client.opened(info("Alice"))
        await client.close_session()
        assert (await client.update("Alice"))["code"] == ErrorCode.SESSION_NOT_OPEN


@pytest.mark.parametrize(
    "values",
    [{"name": ""}, {"name": "x" * 257}, {"avatar_url": "javascript:alert(1)"}],
)
async def test_r10_update_refuses_values_out_of_limits(url: str, values: dict[str, str]) -> None:
    async with connect(url, token("alice")) as client:
        participant = await client.opened(info("Alice"))
        reply = await client.update(**values)
        assert (reply["code"], reply["rule"]) == (ErrorCode.INVALID_PARTICIPANT_INFO, "R10")
        assert (await client.update())["participant"] == participant  # Unchanged.


async def test_r10_update_changes_only_what_is_given(url: str) -> None:
    async with connect(url, token("alice")) as client:
        participant = await client.opened(info("Alice", avatar_url=AVATAR))
        renamed = (await client.update(name="Alice B."))["participant"]
        assert renamed == {"id": participant["id"], "info": info("Alice B.", "alice", AVATAR)}
        moved = (await client.update(avatar_url="https://example.org/b.png"))["participant"]
        assert moved["info"] == info("Alice B.", "alice", "https://example.org/b.png")
        assert (await client.update())["participant"] == moved


async def test_r10_the_external_id_never_changes(url: str) -> None:
    """R10 and P2: an update's unknown ``external_id`` member is ignored, never applied."""
    async with connect(url, token("alice")) as client:
        await client.opened(info("Alice"))
        frame = {"type": "update", "id": client.take_id(), "name": "Eve", "avatar_url": None}
        frame["external_id"] = "eve"
        with pytest.raises(ValidationError):
            validate_client_frame(json.dumps(frame))
        await client.send_raw(json.dumps(frame))
        reply = await client.receive()
        assert reply["participant"]["info"] == info("Eve", "alice")


async def test_r7_a_ghost_given_a_name_becomes_named(url: str) -> None:
    async with connect(url, token("alice")) as client:
        ghost = await client.opened(None)
        with_avatar = (await client.update(avatar_url=AVATAR))["participant"]
        assert with_avatar["info"] == info(None, None, AVATAR)  # Still a ghost.
        named = (await client.update(name="Alice"))["participant"]
        assert named == {"id": ghost["id"], "info": info("Alice", None, AVATAR)}
        # Named now: open(null) no longer matches the session.
        assert (await client.open(None))["code"] == ErrorCode.SESSION_ALREADY_OPEN


# ---------------------------------------------------------------------------------------------
# P8 close, P15 a typical session.
# ---------------------------------------------------------------------------------------------


async def test_p8_close_ends_the_session_for_good(url: str) -> None:
    async with connect(url, token("alice")) as client:
        assert (await client.close_session())["type"] == "closed"  # Even without a session.
        participant = await client.opened(info("Alice"))
        assert await client.close_session() == {"type": "closed", "id": client.next_id - 1}
        assert (await client.update("x"))["code"] == ErrorCode.SESSION_NOT_OPEN
    async with connect(url, token("alice")) as other:
        reply = await other.resume(participant["id"])
        assert (reply["code"], reply["rule"]) == (ErrorCode.UNKNOWN_PARTICIPANT, "R14")


async def test_p15_a_typical_session(url: str) -> None:
    """P15: connect, open, update, close, then the client closes the socket with 1000."""
    async with connect(url, token("alice")) as client:
        participant = await client.opened(info("Alice", "alice"))
        updated = await client.update(name="Alice B.")
        assert updated == {
            "type": "updated",
            "id": 2,
            "participant": {"id": participant["id"], "info": info("Alice B.", "alice")},
        }
        assert await client.close_session() == {"type": "closed", "id": 3}
        with trio.fail_after(TIMEOUT):
            await client.ws.aclose(CloseCode.NORMAL)
        assert client.ws.closed is not None and client.ws.closed.code == CloseCode.NORMAL


async def test_p4_pipelined_requests_are_answered_in_order(url: str) -> None:
    async with connect(url, token("alice")) as client:
        await client.send({"type": "open", "id": 10, "info": info("Alice")})
        await client.send({"type": "update", "id": 11, "name": "B", "avatar_url": None})
        await client.send({"type": "close", "id": 12})
        replies = [await client.receive() for _ in range(3)]
        assert [(r["type"], r["id"]) for r in replies] == [
            ("opened", 10),
            ("updated", 11),
            ("closed", 12),
        ]


# ---------------------------------------------------------------------------------------------
# P9 resume (R14).
# ---------------------------------------------------------------------------------------------


async def test_p9_r14_a_dropped_session_is_resumed(url: str) -> None:
    async with connect(url, token("alice")) as first:
        await first.opened(info("Alice"))
        participant = (await first.update(avatar_url=AVATAR))["participant"]
        await first.drop()
    async with connect(url, token("alice")) as second:
        reply = await resume_when_dropped(second, participant["id"])
        assert reply == {"type": "resumed", "id": reply["id"], "participant": participant}
        assert (await second.update(name="Back"))["participant"]["id"] == participant["id"]
        # Resuming again on the same connection answers the same.
        assert (await second.resume(participant["id"]))["type"] == "resumed"
        reply = await second.resume("someone-else")
        assert (reply["code"], reply["rule"]) == (ErrorCode.SESSION_ALREADY_OPEN, "R5")


async def test_p9_a_token_for_another_external_id_cannot_resume(url: str) -> None:
    async with connect(url, token("alice")) as first:
        participant = await first.opened(info("Alice"))
        await first.drop()
    async with connect(url, token("alice")) as alice:
        await resume_when_dropped(alice, participant["id"])
        await alice.drop()
    for other in (token("bob"), token()):
        async with connect(url, other) as client:
            reply = await client.resume(participant["id"])
            assert (reply["code"], reply["rule"]) == (ErrorCode.UNKNOWN_PARTICIPANT, "R14")
    async with connect(url, token("alice")) as alice:
        assert (await resume_when_dropped(alice, participant["id"]))["type"] == "resumed"


async def test_p9_a_ghost_is_resumed_by_its_id(url: str) -> None:
    async with connect(url, token()) as first:
        ghost = await first.opened(None)
        await first.drop()
    async with connect(url, token()) as second:
        assert (await resume_when_dropped(second, ghost["id"]))["participant"] == ghost


async def test_p9_a_session_still_held_cannot_be_resumed(url: str) -> None:
    async with connect(url, token("alice")) as first, connect(url, token("alice")) as second:
        participant = await first.opened(info("Alice"))
        reply = await second.resume(participant["id"])
        assert (reply["code"], reply["rule"]) == (ErrorCode.UNKNOWN_PARTICIPANT, "R14")
        assert (await first.update(name="Still here"))["type"] == "updated"


async def test_p9_a_dropped_session_expires_after_the_grace(nursery: trio.Nursery) -> None:
    url = await start(nursery, resume_grace=0.2)
    async with connect(url, token("alice")) as first:
        participant = await first.opened(info("Alice"))
        await first.drop()
    await trio.sleep(0.5)
    async with connect(url, token("alice")) as second:
        reply = await second.resume(participant["id"])
        assert reply["code"] == ErrorCode.UNKNOWN_PARTICIPANT
        # The participant ID itself is kept for the external ID (R4).
        assert (await second.opened(info("Alice")))["id"] == participant["id"]


async def test_p9_opening_again_takes_over_a_dropped_session(url: str) -> None:
    async with connect(url, token("alice")) as first:
        participant = await first.opened(info("Alice"))
        await first.drop()
    async with connect(url, token("alice")) as second:
        assert (await second.opened(info("Alice")))["id"] == participant["id"]
        async with connect(url, token("alice")) as third:
            assert (await third.resume(participant["id"]))["code"] == ErrorCode.UNKNOWN_PARTICIPANT


# ---------------------------------------------------------------------------------------------
# P10 token replacement, P11 token expiry (R16).
# ---------------------------------------------------------------------------------------------


async def test_p10_the_token_can_be_replaced(url: str) -> None:
    async with connect(url, token("alice")) as client:
        await client.opened(info("Alice"))
        fresh = token("alice", ttl=7200)
        reply = await client.refresh(fresh)
        claims = tokens.read_claims(fresh)
        assert reply == {
            "type": "token_accepted",
            "id": reply["id"],
            "external_id": "alice",
            "expires_at": claims.expires_at,
        }


async def test_p10_r3_a_session_keeps_its_external_id(url: str) -> None:
    async with connect(url, token("alice")) as client:
        await client.opened(info("Alice"))
        for other in (token("bob"), token()):
            reply = await client.refresh(other)
            assert (reply["code"], reply["rule"]) == (ErrorCode.EXTERNAL_ID_MISMATCH, "R3")
        # The old token is still the connection's: R3 still compares against alice.
        assert (await client.opened(info("Alice", "alice")))["info"]["external_id"] == "alice"


async def test_p10_without_a_session_any_valid_token_is_taken(url: str) -> None:
    async with connect(url, token("alice")) as client:
        reply = await client.refresh(token("bob"))
        assert (reply["type"], reply["external_id"]) == ("token_accepted", "bob")
        assert (await client.opened(info("Bob", "bob")))["info"]["external_id"] == "bob"


async def test_p10_a_ghost_may_change_tokens(url: str) -> None:
    async with connect(url, token("alice")) as client:
        await client.opened(None)
        assert (await client.refresh(token()))["type"] == "token_accepted"


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (GARBAGE, ErrorCode.INVALID_TOKEN),
        (UNSIGNED, ErrorCode.INVALID_TOKEN),
        (WRONG_SECRET, ErrorCode.INVALID_TOKEN),
        (EXPIRED, ErrorCode.TOKEN_EXPIRED),
    ],
)
async def test_p10_r16_a_bad_new_token_is_refused(url: str, kind: str, code: str) -> None:
    async with connect(url, token("alice")) as client:
        await client.opened(info("Alice"))
        reply = await client.refresh(bad_token(kind))
        assert (reply["code"], reply["rule"]) == (code, "R16")
        assert (await client.update(name="Still open"))["type"] == "updated"


async def test_p11_an_expired_token_ends_the_connection_unless_replaced(url: str) -> None:
    """P11 and P10: the token's exp ends the session with 4002; a fresh token postpones it."""
    short, expires_at = token_expiring_soon("alice")
    async with connect(url, short) as expiring, connect(url, short) as refreshed:
        participant = await expiring.opened(info("Alice"))
        assert (await refreshed.refresh(token("alice")))["type"] == "token_accepted"
        assert await expiring.receive() == {"type": "ended", "reason": "token_expired"}
        assert time.time() >= expires_at
        assert await expiring.closed_with() == CloseCode.TOKEN_EXPIRED
        # The refreshed connection outlived the old token.
        assert (await refreshed.opened(None))["info"] == info(None)
    async with connect(url, token("alice")) as client:
        # An ended session is not resumable.
        assert (await client.resume(participant["id"]))["code"] == ErrorCode.UNKNOWN_PARTICIPANT


async def test_p11_a_new_token_that_expires_sooner_ends_the_connection_sooner(url: str) -> None:
    """The driver waits on one deadline per connection; a new token (P10) may bring it in."""
    async with connect(url, token("alice")) as client:
        await client.opened(info("Alice"))
        short, expires_at = token_expiring_soon("alice")
        assert (await client.refresh(short))["type"] == "token_accepted"
        assert await client.receive() == {"type": "ended", "reason": "token_expired"}
        assert time.time() >= expires_at
        assert await client.closed_with() == CloseCode.TOKEN_EXPIRED


async def test_p13_frames_keep_a_connection_open_past_the_idle_timeout(
    nursery: trio.Nursery,
) -> None:
    url = await start(nursery, idle_timeout=0.3)
    async with connect(url, token("alice")) as client:
        await client.opened(info("Alice"))
        for n in range(12):  # 0.6 s in all: twice the idle timeout.
            await trio.sleep(0.05)
            assert (await client.update(name=f"Alice {n}"))["type"] == "updated"
        assert await client.closed_with() == CloseCode.IDLE


# ---------------------------------------------------------------------------------------------
# P2, P3, P5: frames the server cannot read.
# ---------------------------------------------------------------------------------------------


# JSON Schema's "integer" is any number with no fractional part, 1.0 included (P3 says: no
# fraction, no exponent), so the schema cannot refuse this one; the decoder does.
SCHEMA_BLIND_SPOTS = {'{"type": "close", "id": 1.0}'}


@pytest.mark.parametrize(
    ("frame", "code", "rid"),
    [
        ("not json", ErrorCode.BAD_FRAME, None),
        ("", ErrorCode.BAD_FRAME, None),
        ("[1, 2]", ErrorCode.BAD_FRAME, None),
        ('"open"', ErrorCode.BAD_FRAME, None),
        ('{"id": 1}', ErrorCode.BAD_FRAME, None),
        ('{"type": 1, "id": 1}', ErrorCode.BAD_FRAME, None),
        ('{"type": "open", "id": 1, "info": {"name": NaN}}', ErrorCode.BAD_FRAME, None),
        ('{"type": "subscribe", "id": 7}', ErrorCode.UNKNOWN_TYPE, 7),
        ('{"type": "opened", "id": 7}', ErrorCode.UNKNOWN_TYPE, 7),
        ('{"type": "subscribe"}', ErrorCode.UNKNOWN_TYPE, None),
        ('{"type": "close"}', ErrorCode.BAD_REQUEST_ID, None),
        ('{"type": "close", "id": 0}', ErrorCode.BAD_REQUEST_ID, None),
        ('{"type": "close", "id": -3}', ErrorCode.BAD_REQUEST_ID, None),
        ('{"type": "close", "id": 9007199254740992}', ErrorCode.BAD_REQUEST_ID, None),
        ('{"type": "close", "id": 1.0}', ErrorCode.BAD_REQUEST_ID, None),
        ('{"type": "close", "id": "1"}', ErrorCode.BAD_REQUEST_ID, None),
        ('{"type": "close", "id": true}', ErrorCode.BAD_REQUEST_ID, None),
        ('{"type": "open", "id": 7, "info": []}', ErrorCode.BAD_REQUEST, 7),
        ('{"type": "open", "id": 7, "info": {"name": 5}}', ErrorCode.BAD_REQUEST, 7),
        ('{"type": "update", "id": 7, "name": null, "avatar_url": 1}', ErrorCode.BAD_REQUEST, 7),
        ('{"type": "resume", "id": 7}', ErrorCode.BAD_REQUEST, 7),
        ('{"type": "token", "id": 7, "token": null}', ErrorCode.BAD_REQUEST, 7),
    ],
)
async def test_p2_p3_an_unreadable_frame_gets_an_error_and_the_connection_goes_on(
    url: str, frame: str, code: str, rid: int | None
) -> None:
    if frame not in SCHEMA_BLIND_SPOTS:
        with pytest.raises((ValidationError, ValueError)):
            validate_client_frame(frame)
    async with connect(url, token("alice")) as client:
        await client.send_raw(frame)
        reply = await client.receive()
        assert (reply["type"], reply["code"], reply["id"]) == ("error", code, rid)
        assert reply["rule"] == ("P3" if code == ErrorCode.BAD_REQUEST_ID else "P2")
        client.next_id = 8  # Past any ID the bad frame used up.
        await client.opened(info("Alice"))


async def test_p3_request_ids_must_increase(url: str) -> None:
    async with connect(url, token("alice")) as client:
        client.next_id = 5
        await client.opened(None)
        for repeated in (5, 3):
            await client.send({"type": "close", "id": repeated})
            reply = await client.receive()
            assert (reply["code"], reply["id"], reply["rule"]) == (
                ErrorCode.BAD_REQUEST_ID,
                repeated,
                "P3",
            )
        # Refused, so not carried out: the session is still open.
        assert (await client.update(name="Ghost no more"))["type"] == "updated"
        client.next_id = 1000  # Gaps are fine.
        assert (await client.close_session())["type"] == "closed"


async def test_p3_a_refused_frame_uses_up_its_id(url: str) -> None:
    async with connect(url, token("alice")) as client:
        await client.send_raw('{"type": "open", "id": 4, "info": []}')
        assert (await client.receive())["code"] == ErrorCode.BAD_REQUEST
        await client.send({"type": "open", "id": 4, "info": None})
        assert (await client.receive())["code"] == ErrorCode.BAD_REQUEST_ID


async def test_p2_a_binary_frame_closes_with_1003(url: str) -> None:
    async with connect(url, token("alice")) as client:
        await client.send_raw(b'{"type": "close", "id": 1}')
        assert await client.closed_with() == CloseCode.UNSUPPORTED_DATA
    async with connect(url, token("alice")) as client:
        await client.opened(None)


async def test_p2_a_frame_at_the_limit_is_read(url: str) -> None:
    head = '{"type":"close","id":1,"padding":"'
    frame = head + "x" * (MAX_FRAME_BYTES - len(head) - 2) + '"}'
    assert len(frame.encode()) == MAX_FRAME_BYTES
    async with connect(url, token("alice")) as client:
        await client.send_raw(frame)
        assert (await client.receive())["type"] == "closed"


@pytest.mark.parametrize("char", ["x", "é"], ids=["ascii", "two-byte"])
async def test_p2_a_frame_over_the_limit_closes_with_1009(url: str, char: str) -> None:
    """P2: the limit is in UTF-8 bytes, so 40000 two-byte characters are over it."""
    count = MAX_FRAME_BYTES + 1 if char == "x" else 40_000
    frame = '{"type":"close","id":1,"padding":"' + char * count + '"}'
    assert len(frame.encode()) > MAX_FRAME_BYTES
    async with connect(url, token("alice")) as client:
        await client.send_raw(frame)
        assert await client.closed_with() == CloseCode.TOO_BIG
    async with connect(url, token("alice")) as client:
        await client.opened(None)


async def test_p2_a_lower_frame_limit_is_kept(nursery: trio.Nursery) -> None:
    url = await start(nursery, max_frame_bytes=512)
    async with connect(url, token("alice")) as client:
        participant = await client.opened(info("Alice"))
        await client.send_raw('{"type":"close","id":9,"padding":"' + "x" * 512 + '"}')
        assert await client.closed_with() == CloseCode.TOO_BIG
    async with connect(url, token("alice")) as client:
        # Closing for a frame is not a logout: the session is resumable (P9).
        assert (await resume_when_dropped(client, participant["id"]))["type"] == "resumed"


async def test_p5_a_failing_request_is_answered_internal_error(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(self: ConnectionState, request: object) -> object:
        raise RuntimeError("update handler bug")

    monkeypatch.setattr(ConnectionState, "on_update", boom)
    async with connect(url, token("alice")) as client, connect(url, token("bob")) as other:
        await client.opened(info("Alice"))
        reply = await client.update(name="x")
        assert (reply["code"], reply["rule"]) == (ErrorCode.INTERNAL_ERROR, "P5")
        assert "update handler bug" not in reply["message"]
        # The same connection and the others go on.
        assert (await client.close_session())["type"] == "closed"
        await other.opened(info("Bob"))
    records = [r for r in caplog.records if r.name == "fsm_session.server" and r.exc_info]
    assert any("update handler bug" in str(r.exc_info[1]) for r in records if r.exc_info)


async def test_p5_a_failure_outside_a_request_closes_only_that_connection(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with connect(url, token("bob")) as other:
        await other.opened(info("Bob"))

        def boom(self: ConnectionState, frame: object) -> object:
            raise RuntimeError("driver bug")

        monkeypatch.setattr(ConnectionState, "receive", boom)
        async with connect(url, token("alice")) as client:
            await client.send({"type": "open", "id": 1, "info": None})
            assert await client.closed_with() == CloseCode.INTERNAL_ERROR
        monkeypatch.undo()
        assert (await other.update(name="Bob B."))["type"] == "updated"
    assert "driver bug" in caplog.text
    async with connect(url, token("alice")) as client:
        await client.opened(None)


# ---------------------------------------------------------------------------------------------
# P13 idle connections, P14 rate limit, P16 secrecy.
# ---------------------------------------------------------------------------------------------


async def test_p13_an_idle_connection_is_closed_with_4003(nursery: trio.Nursery) -> None:
    url = await start(nursery, idle_timeout=0.3)
    async with connect(url, token("alice")) as client:
        participant = await client.opened(info("Alice"))
        assert await client.closed_with() == CloseCode.IDLE
    async with connect(url, token("alice")) as client:
        # Idle is not a logout: the session is resumable (P9).
        assert (await resume_when_dropped(client, participant["id"]))["type"] == "resumed"


async def test_p13_pings_keep_a_connection_open(nursery: trio.Nursery) -> None:
    url = await start(nursery, idle_timeout=0.3)
    async with connect(url, token("alice")) as client:
        await client.opened(None)
        for _ in range(6):
            await trio.sleep(0.1)
            with trio.fail_after(TIMEOUT):
                await client.ws.ping()
        assert (await client.update(name="Awake"))["type"] == "updated"


async def test_p14_frames_over_the_rate_are_refused(nursery: trio.Nursery) -> None:
    url = await start(nursery, max_requests_per_second=5)
    async with connect(url, token("alice")) as client:
        for rid in range(1, 11):
            await client.send({"type": "close", "id": rid})
        replies = [await client.receive() for _ in range(10)]
        assert [r["id"] for r in replies] == list(range(1, 11))
        assert [r["type"] for r in replies[:5]] == ["closed"] * 5
        limited = [r for r in replies if r["type"] == "error"]
        assert len(limited) >= 3  # The bucket refills a little while the frames arrive.
        assert all((r["code"], r["rule"]) == (ErrorCode.RATE_LIMITED, "P14") for r in limited)
        await client.send_raw("not json")
        # P4: a frame that cannot be read gets its own error first, even over the rate.
        assert (await client.receive())["code"] == ErrorCode.BAD_FRAME
        await trio.sleep(0.5)
        client.next_id = 11
        assert (await client.close_session())["type"] == "closed"


async def test_p14_the_rate_is_a_token_bucket() -> None:
    now = [100.0]
    state = ConnectionState(
        store=MemoryStore(resume_grace=60),
        secret=SECRET,
        claims=tokens.TokenClaims(external_id="alice", issued_at=None, expires_at=None),
        config=ServerConfig(max_requests_per_second=2),
        clock=lambda: now[0],
        wall_clock=time.time,
    )

    async def send(*rids: int) -> list[str]:
        kinds = []
        for rid in rids:
            reply = await state.receive(json.dumps({"type": "close", "id": rid}))
            assert reply is not None
            kinds.append(reply.TYPE if reply.TYPE != "error" else reply.code)  # type: ignore[attr-defined]
        return kinds

    assert await send(1, 2, 3) == ["closed", "closed", ErrorCode.RATE_LIMITED]
    now[0] += 0.5  # One frame's worth.
    assert await send(4, 5) == ["closed", ErrorCode.RATE_LIMITED]
    now[0] += 60  # Never more than a burst of the rate.
    assert await send(6, 7, 8) == ["closed", "closed", ErrorCode.RATE_LIMITED]


async def test_p16_tokens_never_reach_the_log(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    first, second, forged = token("alice"), token("alice", ttl=7200), bad_token(WRONG_SECRET)
    async with connect(url, first) as client:
        await client.opened(info("Alice"))
        await client.refresh(second)
        reply = await client.refresh(forged)
        assert reply["code"] == ErrorCode.INVALID_TOKEN
        await client.send_raw('{"type":"token","id":99,"token":5}')
        await client.receive()
        await client.close_session()
    await rejection(url, bad_token(EXPIRED))
    text = caplog.text
    assert "fsm_session.server" in text
    assert SECRET not in text
    for secret in (first, second, forged):
        assert secret not in text
        assert secret.split(".")[2] not in text  # Not even the signature.


def test_the_server_imports_only_the_sans_io_core() -> None:
    """DESIGN.md layers: the server uses models, errors, tokens and protocol, never the client."""
    allowed = {"fsm_session.models", "fsm_session.errors", "fsm_session.tokens"}
    allowed |= {"fsm_session.protocol", "fsm_session.server"}
    package = Path(fsm_session.server.__file__).parent
    for source in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "fsm_session":
                    assert ".".join(name.split(".")[:2]) in allowed, (source.name, name)


# ---------------------------------------------------------------------------------------------
# The cache of verified tokens.
# ---------------------------------------------------------------------------------------------


def test_verified_tokens_are_cached_and_still_expire() -> None:
    cache = VerifiedTokens(SECRET, maxsize=2)
    now = time.time()
    first = token("alice", ttl=10, now=now)
    claims = cache.verify(first, now=now)
    assert claims.external_id == "alice" and len(cache) == 1
    assert cache.verify(first, now=now + 5) is claims  # From the cache.
    with pytest.raises(TokenExpired) as caught:
        cache.verify(first, now=now + 10)  # Expiry is checked on every use.
    assert caught.value.reason == "the access token has expired"
    assert len(cache) == 0
    with pytest.raises(InvalidToken):
        cache.verify(bad_token(WRONG_SECRET), now=now)
    assert len(cache) == 0  # Only tokens that verified are kept.
    for external_id in ("a", "b", "c"):
        cache.verify(token(external_id, now=now), now=now)
    assert len(cache) == 2  # Bounded; the least recently used went first.
    assert first not in repr(cache) and SECRET not in repr(cache)


def test_verified_tokens_raise_as_verify_does() -> None:
    """A cached and an uncached verification refuse the same tokens with the same errors."""
    now = time.time()
    cases = [token("alice", now=now - 7200), bad_token(WRONG_SECRET), "not a jwt", token("bob")]
    cache = VerifiedTokens(SECRET)
    for case in cases:
        expected: object
        try:
            expected = tokens.verify(case, SECRET, now=now)
        except SessionError as exc:
            expected = (type(exc), str(exc))
        results: list[object] = []
        for _ in range(2):  # Uncached, then (if it verified) cached.
            try:
                results.append(cache.verify(case, now=now))
            except SessionError as exc:
                results.append((type(exc), str(exc)))
        assert results == [expected, expected], case[:20]


# ---------------------------------------------------------------------------------------------
# The registry on its own.
# ---------------------------------------------------------------------------------------------


class _Holder:
    def __init__(self) -> None:
        self.ended: list[str] = []

    def session_ended(self, reason: str) -> None:
        self.ended.append(reason)


def test_registry_remembers_participant_ids_and_switches_holders() -> None:
    registry = Registry(resume_grace=10)
    one, two = _Holder(), _Holder()
    first = registry.open(one, ParticipantInfo("A", "a"), "a", now=0)
    second = registry.open(two, ParticipantInfo("A2"), "a", now=1)
    assert first.participant.id == second.participant.id == registry.participant_id("a")
    assert second.participant == Participant(first.participant.id, ParticipantInfo("A2", "a"))
    assert one.ended == ["switched"] and two.ended == []
    assert registry.get(first.participant.id) is second and len(registry) == 1


def test_registry_keeps_dropped_sessions_for_the_grace_only() -> None:
    registry = Registry(resume_grace=10)
    holder = _Holder()
    record = registry.open(holder, None, None, now=0)
    later = registry.open(holder, None, None, now=0)
    registry.drop(record, now=5)
    registry.drop(later, now=8)
    assert registry.resume(holder, record.participant.id, "someone", now=6) is None
    assert registry.resume(holder, record.participant.id, None, now=14.9) is record
    registry.drop(record, now=20)  # Dropped again, with a fresh grace.
    registry.purge(now=18.5)
    assert registry.get(later.participant.id) is None
    assert registry.get(record.participant.id) is record
    registry.end(record)
    registry.drop(record, now=21)  # Ended sessions stay ended.
    assert registry.resume(holder, record.participant.id, None, now=21) is None
    assert len(registry) == 0
