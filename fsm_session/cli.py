"""The ``fsm-session`` command: serve, token, demo, diagram, paths, conform."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from fsm_session import __version__
from fsm_session.cli_serve import serve_command
from fsm_session.cli_support import CommandError, read_secret
from fsm_session.server.config import SECRET_ENV

__all__ = ["CommandError", "main", "parser"]


def _token(args: argparse.Namespace) -> int:
    from fsm_session.tokens import mint

    secret = read_secret()
    if not args.ttl > 0:
        raise CommandError("--ttl must be a positive number of seconds")
    print(mint(secret, external_id=args.external_id, ttl=args.ttl, now=time.time()))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from fsm_session.demo import main as demo_main

    if not (args.pace >= 0 and math.isfinite(args.pace)):
        raise CommandError("--pace must be zero or a positive, finite number of seconds")
    return demo_main(inspect=args.inspect, pace=args.pace)


def _diagram(args: argparse.Namespace) -> int:
    from fsm_session.diagrams import diagram_command

    return diagram_command(args.machine, args.format, args.highlight, args.output, full=args.full)


def _paths(args: argparse.Namespace) -> int:
    from fsm_session.diagrams import paths_command

    return paths_command(args.machine)


def _conform(args: argparse.Namespace) -> int:
    try:
        from fsm_session.testing.conformance import conform_command
    except ModuleNotFoundError as exc:
        if exc.name not in ("hypothesis", "jsonschema"):
            raise
        raise CommandError(
            f"the conformance kit needs {exc.name}: pip install 'fsm_session[testing]'"
        ) from None
    return conform_command(
        args.url,
        examples=args.examples,
        seed=args.seed,
        time_factor=args.timeout,
        json_path=args.json,
        cafile=args.cafile,
        idle_timeout=args.idle_timeout,
    )


def _count(text: str) -> int:
    """An argparse type: an integer of 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _factor(text: str) -> float:
    """An argparse type: a positive number."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (``None``, a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as one line on stderr, with where to read more, and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def parser() -> argparse.ArgumentParser:
    """The ``fsm-session`` argument parser: one subcommand per job."""
    top = _Parser(
        prog="fsm-session",
        description="A session with a real-time backend, run by an explicit state machine.",
        epilog="Run 'fsm-session COMMAND --help' for the options of a command.",
        formatter_class=_Formatter,
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = top.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(
            name, help=summary, description=description, formatter_class=_Formatter
        )
        return sub

    serve = command(
        "serve",
        "run the reference backend server",
        f"Run the reference server. Needs {SECRET_ENV}. Prints its ws:// URL (wss:// with "
        "--certfile) as the first line of stdout and logs to stderr.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    serve.add_argument("--port", type=int, default=8765, help="the port; 0 picks a free one")
    serve.add_argument(
        "--certfile",
        metavar="FILE",
        help="serve wss:// with this PEM certificate chain (and its key, unless --keyfile)",
    )
    serve.add_argument(
        "--keyfile", metavar="FILE", help="the PEM private key of --certfile, if not in it"
    )
    serve.add_argument(
        "--store",
        metavar="URL",
        help="where sessions live: 'memory' (the default) or redis://HOST:PORT/DB, shared by "
        "every node on that database (default: $FSM_SESSION_STORE)",
    )
    serve.add_argument(
        "--inspect",
        action="store_true",
        help="serve the live inspector's page on a second port and print 'inspector: URL' "
        "on the second line of stdout",
    )
    serve.add_argument(
        "--inspect-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the inspector's address; beyond loopback it needs an access token in "
        "FSM_SESSION_INSPECTOR_TOKEN",
    )
    serve.add_argument(
        "--inspect-port", type=int, default=0, metavar="PORT", help="the inspector's port"
    )
    serve.add_argument(
        "--idle-timeout",
        type=_factor,
        metavar="SECONDS",
        help="close connections silent for this long with 4003 (default: the server's, 120)",
    )
    serve.set_defaults(run=serve_command)

    token = command(
        "token",
        f"mint a development access token with {SECRET_ENV}",
        f"Print only an HS256 access token signed with {SECRET_ENV}, for the reference server "
        "or any backend sharing that secret.",
    )
    token.add_argument(
        "--external-id",
        help="the external ID the token carries; without it, only participants with no "
        "external ID may open a session with the token (R3)",
    )
    token.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds")
    token.set_defaults(run=_token)

    demo = command(
        "demo",
        "walk the SDK workflow against an embedded server",
        "Start a reference server on a free loopback port, then open, update, close and reopen "
        "a session on it, printing each call, its result or refusal, and every event.",
    )
    demo.add_argument(
        "--inspect",
        action="store_true",
        help="show the demo's sessions live in a browser; prints 'inspector: URL' first",
    )
    demo.add_argument(
        "--pace",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long after each call, so that a person can follow in the inspector",
    )
    demo.set_defaults(run=_demo)

    diagram = command(
        "diagram",
        "draw a state machine",
        "Draw a machine from its transition table: Mermaid or DOT text, an SVG (needs "
        "Graphviz's dot), or a Markdown table of its rows and rules.",
    )
    diagram.add_argument(
        "--machine", choices=["session", "socket"], default="session", help="which machine"
    )
    diagram.add_argument(
        "--format",
        choices=["mermaid", "dot", "svg", "table"],
        default="mermaid",
        help="what to draw",
    )
    diagram.add_argument("--highlight", metavar="STATE", help="fill this state")
    diagram.add_argument(
        "--full",
        action="store_true",
        help="every selector and guard of every row (default: the readable view, with a legend)",
    )
    diagram.add_argument(
        "-o", "--output", metavar="FILE", help="write here instead of standard output"
    )
    diagram.set_defaults(run=_diagram)

    paths = command(
        "paths",
        "shortest trigger sequences covering every transition",
        "Print, for each transition of a machine, the shortest sequence of triggers from the "
        "initial state that ends with it, and the rules of its row. Exits 1 when a transition "
        "cannot be reached.",
    )
    paths.add_argument(
        "--machine", choices=["session", "socket"], default="session", help="which machine"
    )
    paths.set_defaults(run=_paths)

    conform = command(
        "conform",
        f"check a backend against the written rules (needs {SECRET_ENV})",
        "Run the conformance kit against the backend at URL, minting tokens with "
        f"{SECRET_ENV}. Prints a per-rule table, the transition coverage and the shortest "
        "failing sequence of each broken rule. Exits 0 when conformant, 1 when a rule is "
        "broken, 2 for a usage or setup problem, 3 when the backend cannot be checked.",
    )
    conform.add_argument("url", metavar="URL", help="the backend, e.g. ws://127.0.0.1:8765/")
    conform.add_argument(
        "--examples", type=_count, default=15, help="Hypothesis examples to explore (0: none)"
    )
    conform.add_argument("--seed", type=int, default=0, help="the seed of the exploration")
    conform.add_argument(
        "--timeout",
        type=_factor,
        default=1.0,
        metavar="FACTOR",
        help="scale every wait of the kit, for a backend farther away than loopback",
    )
    conform.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH")
    conform.add_argument(
        "--cafile", metavar="PEM", help="trust this CA for a wss:// URL (default: the system's)"
    )
    conform.add_argument(
        "--idle-timeout",
        type=_factor,
        metavar="SECONDS",
        help="the backend's idle timeout, to check P13 (not checked without it)",
    )
    conform.set_defaults(run=_conform)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fsm-session`` with ``argv`` (default: the process's arguments); the exit status.

    Expected failures print one line on stderr: a usage or setup error exits 2. Ctrl-C exits
    130 and a closed standard output (``fsm-session paths | head -1``) exits 141, as the
    shell reports a process ended by SIGINT or SIGPIPE, both without a traceback.
    """
    try:
        args = parser().parse_args(argv)
        try:
            status: int = args.run(args)
        except CommandError as error:
            print(f"fsm-session {args.command}: error: {error}", file=sys.stderr)
            return 2
        # Flush here, not at exit, so that a closed pipe is seen while it can be handled.
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:
        # Ctrl-C inside trio.run arrives wrapped in the groups of the nurseries it crossed.
        if group.split(KeyboardInterrupt)[1] is None:
            return 130
        raise
    except BrokenPipeError:
        # The reader has gone: nothing more can be written, and Python's own flush at exit must
        # not fail again and print a traceback of its own.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
