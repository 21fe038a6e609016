"""The ``fsm-session`` command: serve, token, demo, diagram, paths, conform."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import NoReturn

import trio

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    """Run the server until SIGINT or SIGTERM; exit 0 after a clean stop, 2 when it cannot
    start (no secret, a bad option, the address in use), each time with one line on stderr."""
    from fsm_session.server import ConfigurationError, ServerConfig, secret_from_env, serve

    try:
        secret = secret_from_env()
    except ConfigurationError as error:
        print(f"fsm-session serve: {error}", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(
            f"fsm-session serve: --port must be from 0 to 65535, not {args.port}", file=sys.stderr
        )
        return 2
    config = ServerConfig()
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    stopped_by: list[str] = []

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(
                    partial(serve, args.host, args.port, secret=secret, config=config)
                )
                print(url, flush=True)  # The first line of stdout: where to connect.
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
        where = f"{args.host}:{args.port}"
        print(f"fsm-session serve: cannot listen on {where}: {failure}", file=sys.stderr)
        return 2
    print(f"fsm-session serve: stopped by {', '.join(stopped_by[:1])}", file=sys.stderr)
    return 0


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _token(args: argparse.Namespace) -> int:
    from fsm_session.server import ConfigurationError, secret_from_env
    from fsm_session.tokens import mint

    try:
        secret = secret_from_env()
    except ConfigurationError as error:
        print(f"fsm-session token: {error}", file=sys.stderr)
        return 2
    if args.ttl <= 0:
        print("fsm-session token: --ttl must be positive", file=sys.stderr)
        return 2
    print(mint(secret, external_id=args.external_id, ttl=args.ttl, now=time.time()))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from fsm_session.demo import main as demo_main

    return demo_main()


def _diagram(args: argparse.Namespace) -> int:
    from fsm_session.diagrams import diagram_command

    return diagram_command(args.machine, args.format, args.highlight, args.output)


def _paths(args: argparse.Namespace) -> int:
    from fsm_session.diagrams import paths_command

    return paths_command(args.machine)


def _conform(args: argparse.Namespace) -> int:
    from fsm_session.testing.conformance import conform_command

    return conform_command(args.url, examples=args.examples, seed=args.seed)


class _Parser(argparse.ArgumentParser):
    """Reports a bad option in one line on stderr (and exits 2), without the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="fsm-session",
        description="A session with a real-time backend, run by an explicit state machine.",
    )
    commands = top.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser(
        "serve",
        help="run the reference backend server",
        description="Run the reference server. Needs FSM_SESSION_SECRET. Prints its ws:// URL "
        "as the first line of stdout and logs to stderr.",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    serve.set_defaults(run=_serve)

    token = commands.add_parser(
        "token",
        help="mint a development access token with FSM_SESSION_SECRET",
        description="Print only an HS256 access token signed with FSM_SESSION_SECRET.",
    )
    token.add_argument("--external-id", default=None, help="the external ID the token allows")
    token.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds")
    token.set_defaults(run=_token)

    demo = commands.add_parser("demo", help="walk the SDK workflow against an embedded server")
    demo.set_defaults(run=_demo)

    diagram = commands.add_parser("diagram", help="draw a state machine")
    diagram.add_argument("--machine", choices=["session", "socket"], default="session")
    diagram.add_argument("--format", choices=["mermaid", "dot", "svg", "table"], default="mermaid")
    diagram.add_argument("--highlight", metavar="STATE", default=None, help="fill this state")
    diagram.add_argument("-o", "--output", metavar="FILE", default=None)
    diagram.set_defaults(run=_diagram)

    paths = commands.add_parser(
        "paths", help="shortest trigger sequences covering every transition"
    )
    paths.add_argument("--machine", choices=["session", "socket"], default="session")
    paths.set_defaults(run=_paths)

    conform = commands.add_parser(
        "conform",
        help="check a backend against the written rules (needs FSM_SESSION_SECRET)",
        description="Run the conformance kit against the backend at URL, minting tokens with "
        "FSM_SESSION_SECRET. Prints a per-rule table, the transition coverage and the shortest "
        "failing sequence of each broken rule; exits 1 when a rule is broken.",
    )
    conform.add_argument("url", metavar="URL", help="the backend, e.g. ws://127.0.0.1:8765/")
    conform.add_argument(
        "--examples", type=int, default=15, help="Hypothesis examples to explore (0: none)"
    )
    conform.add_argument("--seed", type=int, default=0, help="the seed of the exploration")
    conform.set_defaults(run=_conform)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
