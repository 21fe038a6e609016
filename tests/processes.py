"""Reading what a child process prints, for tests that start ``fsm-session`` for real."""

from __future__ import annotations

import trio


async def first_line(process: trio.Process) -> str:
    """The first line ``process`` prints on its piped stdout (``fsm-session serve`` prints its
    URL there once it listens), read a byte at a time so nothing after it is taken. Fails when
    the process closes stdout first, or prints nothing whole within 20 seconds."""
    assert process.stdout is not None, "start the process with stdout=subprocess.PIPE"
    line = b""
    with trio.fail_after(20):
        while not line.endswith(b"\n"):
            chunk = await process.stdout.receive_some(1)
            assert chunk, f"the process ended its output before a whole line: {line!r}"
            line += chunk
    return line.decode().strip()
