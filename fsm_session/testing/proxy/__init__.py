"""The project's one WebSocket proxy, for the conformance kit, the mutation harness and tests.

:class:`LoopbackProxy` sits on 127.0.0.1 between a client and a backend and forwards every byte
unchanged unless told otherwise. On the way it can

* report each complete message to an observer (``on_frame``) and keep them all (``frames``);
* **hold** one direction (``hold("server")`` until ``release("server")``), which keeps a session
  OPENING or CLOSING for as long as a test needs;
* **cut** every live connection (``cut()``), a dropped TCP peer for both sides;
* rewrite messages with a :class:`Mutator` (a broken backend made from the real one);
* apply **faults** armed for a direction and a frame label::

      proxy = LoopbackProxy(server_url)
      url = await proxy.start(nursery)
      lost = proxy.arm(Drop(after=True), TO_CLIENT, "opened")
      async with open_session_service(url, access_token=token) as session:
          await session.open(info)      # the reply arrives, then both TCP sides close
          await lost.fired.wait()

  :class:`Drop`, :class:`Delay`, :class:`Stall`, :class:`Truncate`, :class:`Corrupt`,
  :class:`Inject` and :class:`Capture` (:mod:`fsm_session.testing.proxy.faults`).

Frames are parsed and built by :mod:`fsm_session.testing.wsframes`.
"""

from __future__ import annotations

from fsm_session.testing.proxy.faults import (
    GARBAGE_JSON,
    INVALID_UTF8,
    Armed,
    Capture,
    Corrupt,
    Delay,
    Drop,
    Fault,
    Hit,
    Inject,
    Stall,
    Truncate,
)
from fsm_session.testing.proxy.loopback import LoopbackProxy, open_proxy
from fsm_session.testing.proxy.messages import TO_CLIENT, TO_SERVER, Direction, Frame, Mutator

__all__ = [
    "GARBAGE_JSON",
    "INVALID_UTF8",
    "TO_CLIENT",
    "TO_SERVER",
    "Armed",
    "Capture",
    "Corrupt",
    "Delay",
    "Direction",
    "Drop",
    "Fault",
    "Frame",
    "Hit",
    "Inject",
    "LoopbackProxy",
    "Mutator",
    "Stall",
    "Truncate",
    "open_proxy",
]
