"""A loopback TCP forwarder in front of several nodes, as a load balancer is.

Each new connection goes to the next node in turn (``round_robin``) or to the first node that
accepts (the default), skipping nodes that refuse the connection (a dead node). Bytes are copied
unchanged both ways; when either side closes, both do.
"""

from __future__ import annotations

import trio


class Forwarder:
    def __init__(self, ports: list[int], *, round_robin: bool = False) -> None:
        self.ports = ports
        self.round_robin = round_robin
        self._next = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(self._handle, listeners, task_status=task_status)

    def _order(self) -> list[int]:
        if not self.round_robin:
            return list(self.ports)
        start = self._next % len(self.ports)
        self._next += 1
        return self.ports[start:] + self.ports[:start]

    async def _handle(self, client: trio.SocketStream) -> None:
        upstream: trio.SocketStream | None = None
        for port in self._order():
            try:
                upstream = await trio.open_tcp_stream("127.0.0.1", port)
                break
            except OSError:
                continue  # That node is down: try the next.
        if upstream is None:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(_copy, client, upstream, nursery.cancel_scope)
            nursery.start_soon(_copy, upstream, client, nursery.cancel_scope)


async def _copy(source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        both.cancel()
