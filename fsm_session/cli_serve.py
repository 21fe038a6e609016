"""``fsm-session serve``: the reference server from the command line, with TLS, a session store,
the live inspector on a second port, and a clean stop on SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import ssl
import sys
from functools import partial
from typing import Any

import trio

from fsm_session.cli_support import CommandError, read_secret

__all__ = ["INSPECTOR_TOKEN_ENV", "serve_command"]


def _server_tls(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    """The TLS context ``serve --certfile F [--keyfile F]`` asks for, or ``None`` for ws://."""
    if certfile is None:
        if keyfile is not None:
            raise CommandError("--keyfile needs --certfile")
        return None
    for path in (certfile, keyfile):
        # ssl's own error for a missing file does not say which one.
        if path is not None and not os.access(path, os.R_OK):
            why = "no such file" if not os.path.exists(path) else "permission denied"
            raise CommandError(f"cannot read {path}: {why}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as error:
        files = certfile if keyfile is None else f"{certfile} and {keyfile}"
        raise CommandError(f"cannot load a certificate and its key from {files}: {error}") from None
    return context


def serve_command(args: argparse.Namespace) -> int:
    """Run the server until SIGINT or SIGTERM; exit 0 after a clean stop, 2 when it cannot
    start (no secret, a bad option, the address in use), each time with one line on stderr."""
    from fsm_session.server import ConfigurationError, ServerConfig, serve
    from fsm_session.server.store import check_store_url, store_from_env

    secret = read_secret()
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be from 0 to 65535, not {args.port}")
    ssl_context = _server_tls(args.certfile, args.keyfile)
    inspector = _server_inspector(args)
    config = ServerConfig()
    store = args.store if args.store is not None else store_from_env()
    try:
        check_store_url(store)
    except ConfigurationError as error:
        raise CommandError(error) from None
    if args.idle_timeout is not None:  # e.g. for `conform --idle-timeout` to check P13 quickly
        config = ServerConfig(idle_timeout=args.idle_timeout)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    stopped_by: list[str] = []
    listening_on = [f"{args.host}:{args.port}"]  # the address a listen error is about

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(
                    partial(
                        serve,
                        args.host,
                        args.port,
                        secret=secret,
                        config=config,
                        ssl_context=ssl_context,
                        store=store,
                        observer=None if inspector is None else inspector[1],
                    )
                )
                page = None
                if inspector is not None:  # listening before any address is printed
                    # The node as clients reach it: the port bound, not the 0 asked for.
                    inspector[1].node = "server " + url.split("//", 1)[1].rstrip("/")
                    listening_on[0] = (
                        f"{args.inspect_host}:{args.inspect_port} (--inspect-host/--inspect-port)"
                    )
                    page = await nursery.start(inspector[0].serve)
                print(url, flush=True)  # The first line of stdout: where to connect.
                if page is not None:
                    print(f"inspector: {page}", flush=True)
                async for signum in signals:
                    stopped_by.append(signal.Signals(signum).name)
                    # Cancelling serve() stops accepting and closes every connection with
                    # 1001 within the drain time.
                    nursery.cancel_scope.cancel()
                    break

    failure: BaseException | None = None
    try:
        trio.run(run)
    except* OSError as group:
        failure = _first_leaf(group)
    except* KeyboardInterrupt:  # Before the signal receiver was in place.
        stopped_by.append("SIGINT")
    if failure is not None:
        print(f"fsm-session serve: cannot listen on {listening_on[0]}: {failure}",
              file=sys.stderr)  # fmt: skip
        return 2
    print(f"fsm-session serve: stopped by {', '.join(stopped_by[:1])}", file=sys.stderr)
    return 0


INSPECTOR_TOKEN_ENV = "FSM_SESSION_INSPECTOR_TOKEN"
"""The access token of ``serve --inspect``'s page, read from the environment (never argv)."""


def _server_inspector(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """The inspector's HTTP server and the server's observer for ``serve --inspect``."""
    if not args.inspect:
        return None
    from fsm_session.inspector import Board, InspectorServer, InspectorSetupError, ServerObserver
    from fsm_session.inspector.render import session_rows

    if not 0 <= args.inspect_port <= 65535:
        raise CommandError(f"--inspect-port must be from 0 to 65535, not {args.inspect_port}")
    board = Board(rows=session_rows())
    try:
        server = InspectorServer(
            board,
            host=args.inspect_host,
            port=args.inspect_port,
            token=os.environ.get(INSPECTOR_TOKEN_ENV) or None,
        )
    except InspectorSetupError as error:
        raise CommandError(f"{error} (in {INSPECTOR_TOKEN_ENV})") from None
    return server, ServerObserver(board, node=f"server {args.host}:{args.port}")


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
