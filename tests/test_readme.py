"""The README runs as written.

The shell block that starts the dev server runs unmodified in bash, with the installed
``fsm-session`` on ``PATH`` as after ``. .venv/bin/activate``; then every Python block of the
README runs as a program of its own, in a second shell that exports the same variables and sets
``FSM_SESSION_URL`` to the URL the server printed, as the README's text says.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return [body for lang, body in BLOCK.findall(text) if lang == language]


def server_block() -> str:
    (block,) = [body for body in blocks("sh") if "fsm-session serve" in body]
    return block


def shell_env() -> dict[str, str]:
    """This environment, with the installed scripts first on PATH, and no secret or URL yet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSM_SESSION_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    """Run the README's server block in bash; the URL it prints first."""
    process = subprocess.Popen(
        ["bash", "-euc", server_block()],
        cwd=tmp_path,
        env=shell_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # So the server under bash stops with it.
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()  # "" if the server could not start.
        if not url:
            _, err = process.communicate(timeout=30)
            pytest.fail(f"the README's server did not start: {err}")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=30)


def test_the_readme_has_a_server_block_and_a_python_sample() -> None:
    assert "export FSM_SESSION_SECRET=" in server_block()
    assert any("open_session_service" in block for block in blocks("python"))


def test_the_server_block_uses_a_secret_long_enough_for_hs256() -> None:
    (secret,) = re.findall(r"^export FSM_SESSION_SECRET=(\S+)$", server_block(), re.MULTILINE)
    assert len(secret.encode()) >= 32


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_every_python_block_runs_against_the_readme_server(
    server_url: str, tmp_path: Path, index: int
) -> None:
    assert server_url.startswith("ws://127.0.0.1:")
    program = tmp_path / f"readme_{index}.py"
    program.write_text(blocks("python")[index], encoding="utf-8")
    exports = [line for line in server_block().splitlines() if line.startswith("export ")]
    second_shell = "\n".join(
        [*exports, f"export FSM_SESSION_URL={server_url}", f"python {program.name}"]
    )
    done = subprocess.run(
        ["bash", "-euc", second_shell],
        cwd=tmp_path,
        env=shell_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    if "print(" in program.read_text(encoding="utf-8"):
        assert done.stdout.strip(), "the block prints what it did"
