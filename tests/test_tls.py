"""The reference server over TLS: ``serve(ssl_context=...)`` and ``fsm-session serve --certfile``.

A throwaway certificate authority (``trustme``) signs a certificate for 127.0.0.1. The client
here is raw: it opens the TCP stream, does the TLS handshake on a ``trio.SSLStream`` it owns (so
that a certificate problem shows as itself rather than as trio-websocket's connect timeout, see
``DESIGN.md``), then upgrades to a WebSocket and speaks the protocol frame by frame.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
import trustme
from trio_websocket import wrap_client_stream

from fsm_session import tokens
from fsm_session.protocol import SUBPROTOCOL
from fsm_session.server import ServerConfig, serve
from fsm_session.testing.credentials import token_minter
from tests.frames import validate_server_frame
from tests.processes import first_line

SECRET = "tls-test-secret-of-at-least-32-bytes-for-hs256"
TIMEOUT = 10.0  # Bounds every wait that could hang; a passing test takes far less.
CLI = [sys.executable, "-m", "fsm_session"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def certificate(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture
def server_context(certificate: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    return context


def client_context(ca: trustme.CA | None) -> ssl.SSLContext:
    """A client's context trusting ``ca`` only (``None``: a CA that signed nothing here)."""
    context = ssl.create_default_context()
    (trustme.CA() if ca is None else ca).configure_trust(context)
    return context


@pytest.fixture
async def wss_url(nursery: trio.Nursery, server_context: ssl.SSLContext) -> str:
    # A handshake timeout far beyond TIMEOUT: a test that passes saw the server hang up on a
    # failed TLS handshake at once, not when that timeout ended the connection.
    config = ServerConfig(handshake_timeout=10 * TIMEOUT)
    url: str = await nursery.start(
        partial(serve, "127.0.0.1", 0, secret=SECRET, config=config, ssl_context=server_context)
    )
    return url


async def tls_stream(url: str, context: ssl.SSLContext) -> trio.SSLStream[trio.SocketStream]:
    """A TCP stream to ``url``'s host with its TLS handshake done (or failed) right here."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with trio.fail_after(TIMEOUT):
        tcp = await trio.open_tcp_stream(parts.hostname, parts.port)
    stream = trio.SSLStream(tcp, context, server_hostname=parts.hostname)
    try:
        with trio.fail_after(TIMEOUT):
            await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def session_over_tls(url: str, context: ssl.SSLContext) -> list[dict[str, Any]]:
    """Open a named session over ``url`` and close it; the server's replies, schema-checked."""
    parts = urlsplit(url)
    assert parts.scheme == "wss", url
    token = tokens.mint(SECRET, external_id="ada", ttl=60, now=time.time())
    stream = await tls_stream(url, context)
    replies = []
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(TIMEOUT):
                ws = await wrap_client_stream(
                    nursery,
                    stream,
                    f"{parts.hostname}:{parts.port}",
                    "/",
                    subprotocols=[SUBPROTOCOL],
                    extra_headers=[(b"authorization", f"Bearer {token}".encode())],
                )
                assert ws.subprotocol == SUBPROTOCOL
                info = {"name": "Ada", "external_id": "ada", "avatar_url": None}
                await ws.send_message(json.dumps({"type": "open", "id": 1, "info": info}))
                replies.append(validate_server_frame(await ws.get_message()))
                await ws.send_message(json.dumps({"type": "close", "id": 2}))
                replies.append(validate_server_frame(await ws.get_message()))
                await ws.aclose()
    finally:
        await trio.aclose_forcefully(stream)
    return replies


def check_open_and_close(replies: list[dict[str, Any]]) -> None:
    opened, closed = replies
    assert opened["type"] == "opened" and opened["id"] == 1
    assert opened["participant"]["info"] == {
        "name": "Ada",
        "external_id": "ada",
        "avatar_url": None,
    }
    assert closed == {"type": "closed", "id": 2}


async def test_serve_with_an_ssl_context_serves_wss(wss_url: str, ca: trustme.CA) -> None:
    """With ``ssl_context`` the server reports a wss:// URL and a session opens and closes."""
    assert wss_url.startswith("wss://127.0.0.1:") and wss_url.endswith("/")
    check_open_and_close(await session_over_tls(wss_url, client_context(ca)))


async def test_a_client_not_trusting_the_ca_fails_the_tls_handshake(
    wss_url: str, ca: trustme.CA
) -> None:
    """The failure is the certificate's, named, at once; the server goes on serving others."""
    with pytest.raises(trio.BrokenResourceError) as caught:
        await tls_stream(wss_url, client_context(None))
    cause = caught.value.__cause__
    assert isinstance(cause, ssl.SSLCertVerificationError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(cause)
    check_open_and_close(await session_over_tls(wss_url, client_context(ca)))


async def test_a_plain_websocket_client_is_hung_up_on(
    wss_url: str, ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    """A ws:// upgrade sent to the wss:// server gets no HTTP answer: the server logs why and
    hangs up at once, rather than at the end of the handshake timeout."""
    caplog.set_level(logging.INFO, logger="fsm_session.server")
    parts = urlsplit(wss_url)
    assert parts.hostname is not None and parts.port is not None
    request = (
        f"GET / HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    ).encode("ascii")
    received = bytearray()
    with trio.fail_after(TIMEOUT):
        async with await trio.open_tcp_stream(parts.hostname, parts.port) as stream:
            await stream.send_all(request)
            try:
                while chunk := await stream.receive_some():
                    received += chunk
            except trio.BrokenResourceError:
                pass  # A reset is a hang-up too.
    assert not received.startswith(b"HTTP/")
    (failure,) = [r for r in caplog.records if "the TLS handshake failed" in r.getMessage()]
    assert failure.name == "fsm_session.server" and failure.levelno == logging.INFO
    check_open_and_close(await session_over_tls(wss_url, client_context(ca)))


# ---------------------------------------------------------------------------------------------
# fsm-session serve --certfile F --keyfile F
# ---------------------------------------------------------------------------------------------


@asynccontextmanager
async def served_url(args: list[str]) -> AsyncIterator[str]:
    """Run ``fsm-session serve ARGS`` and yield the URL it prints first; stop it after."""
    env = {**os.environ, "FSM_SESSION_SECRET": SECRET}
    process = await trio.lowlevel.open_process(
        [*CLI, "serve", "--port", "0", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield await first_line(process)
    finally:
        process.terminate()
        with trio.fail_after(10):
            await process.wait()


@pytest.mark.parametrize("separate_key", [True, False], ids=["keyfile", "key-in-certfile"])
async def test_cli_serves_wss_with_a_certificate(
    tmp_path: Path, ca: trustme.CA, certificate: trustme.LeafCert, separate_key: bool
) -> None:
    """``serve --certfile F [--keyfile F]`` prints a wss:// URL that a session opens over."""
    certfile = tmp_path / "cert.pem"
    if separate_key:
        keyfile = tmp_path / "key.pem"
        for blob in certificate.cert_chain_pems:
            blob.write_to_path(certfile, append=True)
        certificate.private_key_pem.write_to_path(keyfile)
        args = ["--certfile", str(certfile), "--keyfile", str(keyfile)]
    else:
        certificate.private_key_and_cert_chain_pem.write_to_path(certfile)
        args = ["--certfile", str(certfile)]
    async with served_url(args) as url:
        assert url.startswith("wss://127.0.0.1:")
        check_open_and_close(await session_over_tls(url, client_context(ca)))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--keyfile", "key.pem"], "--keyfile needs --certfile"),
        (["--certfile", "missing.pem"], "cannot read missing.pem"),
        (["--certfile", "junk.pem"], "cannot load a certificate and its key from junk.pem"),
    ],
)
def test_cli_refuses_a_tls_setup_it_cannot_use(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    """A bad --certfile/--keyfile is a setup error: one line on stderr, exit 2, nothing served."""
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    env = {**os.environ, "FSM_SESSION_SECRET": SECRET}
    done = subprocess.run(
        [*CLI, "serve", "--port", "0", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr


# ---------------------------------------------------------------------------- the client over TLS


def mint_token() -> str:
    return token_minter(SECRET)("ext-ada")


async def test_the_session_service_opens_updates_and_closes_over_wss(
    wss_url: str, ca: trustme.CA
) -> None:
    """The service speaks wss:// with the ssl_context it is given (R4, R10, R11 over TLS)."""
    from fsm_session import ParticipantInfo, SessionState, open_session_service

    with trio.fail_after(TIMEOUT):
        async with open_session_service(
            wss_url, access_token=mint_token(), ssl_context=client_context(ca)
        ) as session:
            participant = await session.open(ParticipantInfo("Ada", external_id="ext-ada"))
            assert session.is_local_participant(participant)
            await session.update(name="Ada L.")
            await session.close()
            assert session.state is SessionState.CLOSED


@pytest.mark.parametrize(
    ("trusted", "names", "problem"),
    [
        (False, ("127.0.0.1",), "unable to get local issuer certificate"),
        (True, ("localhost",), "IP address mismatch"),  # not issued for the address dialled
    ],
)
async def test_a_client_that_cannot_verify_the_server_fails_at_once_naming_the_problem(
    nursery: trio.Nursery, ca: trustme.CA, trusted: bool, names: tuple[str, ...], problem: str
) -> None:
    """P1: a certificate the client cannot verify gives a typed ConnectionFailed naming the
    certificate problem at once, not after the connect timeout; the session stays CLOSED."""
    from fsm_session import ConnectionFailed, ParticipantInfo, SessionState, open_session_service
    from fsm_session.service import ServiceConfig
    from fsm_session.transport import TransportConfig

    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(server_context)
    url: str = await nursery.start(
        partial(serve, "127.0.0.1", 0, secret=SECRET, ssl_context=server_context)
    )
    config = ServiceConfig(transport=TransportConfig(connect_timeout=10 * TIMEOUT))
    with trio.fail_after(TIMEOUT):
        async with open_session_service(
            url,
            access_token=mint_token(),
            ssl_context=client_context(ca if trusted else None),
            config=config,
        ) as session:
            with pytest.raises(ConnectionFailed) as caught:
                await session.open(ParticipantInfo("Ada", external_id="ext-ada"))
            message = str(caught.value)
            assert "CERTIFICATE_VERIFY_FAILED" in message and problem in message
            assert caught.value.rule == "P1"
            assert session.state is SessionState.CLOSED


async def test_a_ws_client_against_a_tls_port_fails_at_once(wss_url: str) -> None:
    """P1: ws:// against a TLS server fails at once with ConnectionFailed, not a timeout."""
    from fsm_session import ConnectionFailed, ParticipantInfo, open_session_service
    from fsm_session.service import ServiceConfig
    from fsm_session.transport import TransportConfig

    config = ServiceConfig(transport=TransportConfig(connect_timeout=10 * TIMEOUT))
    with trio.fail_after(TIMEOUT):
        async with open_session_service(
            wss_url.replace("wss://", "ws://"), access_token=mint_token(), config=config
        ) as session:
            with pytest.raises(ConnectionFailed):
                await session.open(ParticipantInfo("Ada", external_id="ext-ada"))


def test_an_ssl_context_needs_a_wss_url() -> None:
    """P1: an ssl_context with a ws:// URL is a mistake, said at once."""
    from fsm_session import ConnectionFailed, open_session_service

    async def main() -> None:
        async with open_session_service(
            "ws://127.0.0.1:1/", access_token=mint_token(), ssl_context=ssl.create_default_context()
        ):
            pass  # pragma: no cover

    with pytest.raises(ConnectionFailed, match="wss://"):
        trio.run(main)
