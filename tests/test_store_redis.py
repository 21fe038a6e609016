"""The Redis store: sessions that survive a restart and span nodes, races across nodes, and Redis
itself failing (P17). A real redis-server, started by the tests; real nodes on loopback."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from fsm_session import ParticipantInfo, SessionLostEvent, SessionService, open_session_service
from fsm_session.protocol import CloseCode, ErrorCode
from fsm_session.server import ConfigurationError, ServerConfig, serve
from fsm_session.server.store import check_store_url, open_store
from tests.forwarder import Forwarder
from tests.redis_server import RedisServer
from tests.test_server import SECRET, TIMEOUT, Client, connect, info, token

ADA = ParticipantInfo(name="Ada", external_id="ada")


async def start_node(
    nursery: trio.Nursery, store: str, port: int = 0, **config: Any
) -> tuple[str, trio.CancelScope]:
    """A node (one serve() call) on ``store``, and the scope that stops it."""
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[str]) -> None:
        with scope:
            await serve(
                "127.0.0.1",
                port,
                secret=SECRET,
                store=store,
                config=ServerConfig(**config),
                task_status=task_status,
            )

    url: str = await nursery.start(run)
    return url, scope


async def _losses(session: SessionService, into: list[str]) -> None:
    async with session.subscribe() as events:
        async for event in events:
            if isinstance(event, SessionLostEvent):
                into.append(event.reason)


async def reply_to(client: Client, rid: int) -> dict[str, Any]:
    """The reply to request ``rid``, or the ``ended`` event that came first."""
    while True:
        frame = await client.receive()
        if frame.get("id") == rid or frame["type"] == "ended":
            return frame


async def open_as(name: str, client: Client, results: dict[str, dict[str, Any]]) -> None:
    rid = client.take_id()
    await client.send({"type": "open", "id": rid, "info": info(name)})
    results[name] = await reply_to(client, rid)


# ---------------------------------------------------------------------------------------------
# Restart and failover.
# ---------------------------------------------------------------------------------------------


async def test_p9_r14_a_restart_keeps_the_session(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    """Stop the node, start it again on the same port: the client resumes, same participant."""
    store = redis_server.url()
    url, node = await start_node(nursery, store)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    lost: list[str] = []
    async with (
        open_session_service(url, access_token=token("ada")) as session,
        trio.open_nursery() as watch,
    ):
        watch.start_soon(_losses, session, lost)
        participant = await session.open(ADA)
        node.cancel()  # The node stops: 1001 to its connections, sessions released into Redis.
        await start_node(nursery, store, port)
        with trio.fail_after(TIMEOUT):
            updated = await session.update(name="Ada L.")
        assert updated.id == participant.id and updated.info.name == "Ada L."
        assert session.is_open()
        watch.cancel_scope.cancel()
    assert lost == []


@pytest.fixture
def node_processes(redis_server: RedisServer) -> Any:
    """Start ``fsm-session serve --store URL`` processes; all are killed at the end."""
    processes: list[subprocess.Popen[str]] = []
    env = {**os.environ, "FSM_SESSION_SECRET": SECRET}

    def start(store: str) -> tuple[subprocess.Popen[str], int]:
        process = subprocess.Popen(
            [sys.executable, "-m", "fsm_session.cli", "serve", "--port", "0", "--store", store],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        url = process.stdout.readline().strip()  # Its first line, printed once it listens.
        assert url.startswith("ws://"), url
        return process, int(url.rsplit(":", 1)[1].strip("/"))

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


async def test_p17_r14_a_killed_node_leaves_its_session_resumable_on_another(
    nursery: trio.Nursery, redis_server: RedisServer, node_processes: Any
) -> None:
    """Two nodes behind a forwarder; the one holding the session is killed (SIGKILL): the client
    resumes on the other, same participant ID, no session lost. Until the dead node's lease
    lapses (1 s here) the other answers store_unavailable, and the client tries again."""
    store = redis_server.url(lease="1")
    node_a, port_a = await trio.to_thread.run_sync(node_processes, store)
    _, port_b = await trio.to_thread.run_sync(node_processes, store)
    forwarder = Forwarder([port_a, port_b])  # Everything to A while it lives.
    await nursery.start(forwarder.run)
    lost: list[str] = []
    async with (
        open_session_service(forwarder.url, access_token=token("ada")) as session,
        trio.open_nursery() as watch,
    ):
        watch.start_soon(_losses, session, lost)
        participant = await session.open(ADA)
        node_a.send_signal(signal.SIGKILL)
        with trio.fail_after(3 * TIMEOUT):
            updated = await session.update(name="Ada on B")
        assert updated.id == participant.id
        watch.cancel_scope.cancel()
    assert lost == []


# ---------------------------------------------------------------------------------------------
# Across nodes.
# ---------------------------------------------------------------------------------------------


async def test_p12_r17_a_login_on_another_node_switches_the_first(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    store = redis_server.url()
    url_a, _ = await start_node(nursery, store)
    url_b, _ = await start_node(nursery, store)
    async with connect(url_a, token("alice")) as first, connect(url_b, token("alice")) as second:
        one = await first.opened(info("Alice"))
        two = await second.opened(info("Alice"))
        assert one["id"] == two["id"]  # R4 across nodes.
        with trio.fail_after(1):  # Within a second, over Redis pub/sub.
            assert await first.receive() == {"type": "ended", "reason": "switched"}
            assert await first.closed_with() == CloseCode.SWITCHED
        assert (await second.update(name="Alice B."))["type"] == "updated"


async def test_r4_r17_two_logins_racing_on_two_nodes_leave_one_holder(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    """Many times: the same external ID opens on A and B at once, and A's holder updates while B
    opens. Exactly one connection keeps the session; A's update never lands on B's session."""
    store = redis_server.url()
    url_a, _ = await start_node(nursery, store, max_requests_per_second=1000)
    url_b, _ = await start_node(nursery, store, max_requests_per_second=1000)
    for round_ in range(25):
        who = f"racer{round_}"
        async with connect(url_a, token(who)) as a, connect(url_b, token(who)) as b:
            results: dict[str, dict[str, Any]] = {}

            async with trio.open_nursery() as race:
                race.start_soon(open_as, "A", a, results)
                race.start_soon(open_as, "B", b, results)
            assert results["A"]["type"] == results["B"]["type"] == "opened", results
            assert results["A"]["participant"]["id"] == results["B"]["participant"]["id"]
            # One of the two is switched; the other keeps the session and can update it.
            outcomes = []
            for name, client in (("A", a), ("B", b)):
                rid = client.take_id()
                try:
                    await client.send(
                        {"type": "update", "id": rid, "name": None, "avatar_url": None}
                    )
                    reply = await reply_to(client, rid)
                except ConnectionClosed as closed:  # Switched, and already closed: 4001.
                    assert closed.reason.code == CloseCode.SWITCHED
                    reply = {"type": "ended"}
                if reply["type"] == "updated":
                    assert reply["participant"]["info"]["name"] == name
                    outcomes.append("kept")
                else:
                    assert reply["type"] == "ended" or reply["code"] == "session_not_open", reply
                    outcomes.append("switched")
            assert sorted(outcomes) == ["kept", "switched"], (round_, outcomes)


async def test_r14_resume_racing_the_grace_expiry_is_all_or_nothing(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    """Many times: a dropped session on A is resumed on B right around its (tiny) grace. Either
    the resume wins and the session works, or it is gone for good; never half of it."""
    store = redis_server.url()
    grace = 0.05
    url_a, _ = await start_node(nursery, store, resume_grace=grace)
    url_b, _ = await start_node(nursery, store, resume_grace=grace)
    seen = set()
    for round_ in range(25):
        async with connect(url_a, token(None)) as a:
            pid = (await a.opened(None))["id"]
            await a.drop()
        await trio.sleep(grace * (round_ % 5) / 4)  # Spread the resumes around the expiry.
        async with connect(url_b, token(None)) as b:
            with trio.fail_after(TIMEOUT):
                while (reply := await b.resume(pid))["type"] == "error" and reply["code"] in (
                    ErrorCode.STORE_UNAVAILABLE,  # A has not seen the drop yet.
                    ErrorCode.UNKNOWN_PARTICIPANT,
                ):
                    if reply["code"] == ErrorCode.UNKNOWN_PARTICIPANT:
                        break
            seen.add(reply["type"])
            if reply["type"] == "resumed":
                assert reply["participant"]["id"] == pid
                assert (await b.update(name="Back"))["type"] == "updated"
            else:
                assert reply["code"] == ErrorCode.UNKNOWN_PARTICIPANT
                assert (await b.resume(pid))["code"] == ErrorCode.UNKNOWN_PARTICIPANT
    assert seen  # At least one outcome of each kind is likely, but only consistency is required.


# ---------------------------------------------------------------------------------------------
# Redis failing (P17), and configuration.
# ---------------------------------------------------------------------------------------------


# coredis 6.9 leaves the channels of a failed connection to the garbage collector, which warns.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_p17_redis_down_refuses_keeps_the_connection_and_recovers() -> None:
    redis = RedisServer()
    redis.start()
    try:
        async with trio.open_nursery() as nursery:
            url, node = await start_node(nursery, redis.url())
            async with connect(url, token("bob")) as client:
                redis.stop()
                reply = await client.open(info("Bob"))
                assert (reply["code"], reply["rule"]) == (ErrorCode.STORE_UNAVAILABLE, "P17")
                assert (await client.open(info("Bob")))["code"] == ErrorCode.STORE_UNAVAILABLE
                await trio.to_thread.run_sync(redis.start)
                participant = await client.opened(info("Bob"))  # Same connection, served again.
                reply = await client.update(name="Bobby")
                assert reply["participant"]["id"] == participant["id"]
            node.cancel()
    finally:
        await trio.to_thread.run_sync(redis.close)
        gc.collect()  # Let coredis's leftovers warn now, under this test's filter.


def test_p17_store_urls_are_checked_before_the_server_starts() -> None:
    assert check_store_url(None) is None and check_store_url("memory") is None
    read = check_store_url("redis://127.0.0.1:6379/2?prefix=a:&lease=1.5")
    assert read is not None and (read.prefix, read.lease) == ("a:", 1.5)
    assert read.url == "redis://127.0.0.1:6379/2"
    for bad in ("postgres://x/1", "redis://", "redis://h:1/0?lease=0", "redis://h:1/0?lease=x"):
        with pytest.raises(ConfigurationError):
            check_store_url(bad)


async def test_the_store_lists_live_sessions_for_observers(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    store_url = redis_server.url()
    async with open_store(store_url, resume_grace=60) as store:
        url, _ = await start_node(nursery, store_url)
        async with connect(url, token("carol")) as client:
            participant = await client.opened(info("Carol"))
            views = await store.sessions()
        assert [(v.participant.id, v.held) for v in views] == [(participant["id"], True)]
        assert views[0].participant.info.name == "Carol"


async def test_the_cli_serves_on_the_store_of_the_environment(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    """``FSM_SESSION_STORE`` selects the store: a participant opened through one process is
    known, with the same ID, to another."""
    store = redis_server.url()
    env = {**os.environ, "FSM_SESSION_SECRET": SECRET, "FSM_SESSION_STORE": store}
    ids = []
    for _ in range(2):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "fsm_session.cli", "serve", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            line = b""
            with trio.fail_after(20):
                while not line.endswith(b"\n"):
                    line += await process.stdout.receive_some(1)
            async with connect(line.decode().strip(), token("dave")) as client:
                ids.append((await client.opened(info("Dave")))["id"])
        finally:
            process.kill()
            await process.wait()
    assert ids[0] == ids[1]
