"""The fsm-session command's manners, through the real command in a child process: its version,
``python -m fsm_session``, help that describes and shows defaults, one-line errors with exit 2,
and no traceback for a closed pipe or Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import fsm_session
from fsm_session.cli import parser

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "fsm_session"]
SECRET = "cli-manners-secret-of-at-least-32-bytes"
SUBCOMMANDS = ["serve", "token", "demo", "diagram", "paths", "conform"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


def test_version_comes_from_the_package_metadata() -> None:
    assert fsm_session.__version__ == project_version()


def test_version_option_of_the_module_and_the_installed_script() -> None:
    done = run("--version")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == f"fsm-session {project_version()}\n"
    script = Path(sys.executable).parent / "fsm-session"
    if not script.exists():  # pragma: no cover - the project is installed with its script
        pytest.skip("no installed fsm-session script beside this Python")
    installed = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60
    )
    assert installed.returncode == 0 and installed.stdout == done.stdout


def subparsers() -> dict[str, argparse.ArgumentParser]:
    for action in parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("fsm-session has no subcommands")


def test_every_subcommand_is_listed() -> None:
    assert sorted(subparsers()) == sorted(SUBCOMMANDS)
    done = run("--help")
    assert done.returncode == 0
    for name in SUBCOMMANDS:
        assert f"    {name} " in done.stdout, name


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_describes_the_subcommand_and_shows_defaults(name: str) -> None:
    sub = subparsers()[name]
    done = run(name, "--help")
    assert done.returncode == 0 and done.stderr == ""
    text = " ".join(done.stdout.split())  # Undo the help's line wrapping.
    assert sub.description and " ".join(sub.description.split()) in text
    for action in sub._actions:
        if action.option_strings and action.help != argparse.SUPPRESS:
            assert action.help, f"{name} {action.option_strings[0]} has no help"
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in text, (name, action.dest)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["no-such-command"], "invalid choice: 'no-such-command'"),
        (["diagram", "--format", "gif"], "argument --format: invalid choice: 'gif'"),
        (["paths", "--machine", "elevator"], "argument --machine: invalid choice: 'elevator'"),
        (["token", "--ttl", "soon"], "argument --ttl: invalid float value: 'soon'"),
        (["token", "--ttl", "-5"], "--ttl must be a positive number of seconds"),
        (["token", "--ttl", "nan"], "--ttl must be a positive number of seconds"),
        (["serve", "--port"], "argument --port: expected one argument"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(args: list[str], expected: str) -> None:
    done = run(*args, env={"FSM_SESSION_SECRET": SECRET})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    assert done.stderr.startswith("fsm-session")


@pytest.mark.parametrize("command", [["token"], ["serve", "--port", "0"], ["conform", "ws://x/"]])
def test_a_setup_error_is_one_line_and_exit_2(command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FSM_SESSION_SECRET"}
    done = subprocess.run([*CLI, *command], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "FSM_SESSION_SECRET is not set" in done.stderr


def test_a_short_secret_is_a_setup_error() -> None:
    done = run("token", env={"FSM_SESSION_SECRET": "s3cret"})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "at least 32 bytes" in done.stderr
    assert "s3cret" not in done.stderr


@pytest.mark.parametrize("command", [["paths"], ["diagram", "--format", "table"], ["token"]])
def test_a_closed_pipe_ends_quietly(command: list[str]) -> None:
    """The reader of stdout has gone before anything is written (``| head -0``): exit 141, as
    for SIGPIPE, and nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # Closed before the child starts: its first write finds no reader.
    try:
        done = subprocess.run(
            [*CLI, *command],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env={**os.environ, "FSM_SESSION_SECRET": SECRET},
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 141


def test_paths_into_head_prints_one_line_and_no_traceback() -> None:
    done = subprocess.run(
        f"'{sys.executable}' -m fsm_session paths | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("# session machine:") and done.stdout.count("\n") == 1


def test_ctrl_c_stops_serve_without_a_traceback() -> None:
    process = subprocess.Popen(
        [*CLI, "serve", "--port", "0"],
        env={**os.environ, "FSM_SESSION_SECRET": SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("ws://127.0.0.1:")  # Serving now.
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:  # pragma: no cover - only when the test already failed
            process.kill()
            process.wait()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert process.returncode in (0, 130)
