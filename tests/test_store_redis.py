"""The Redis store: sessions that survive a restart and span nodes, races across nodes, and Redis
itself failing (P17). A real redis-server, started by the tests; real nodes on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest
import trio
from coredis.tokens import PureToken

from fsm_session import ParticipantInfo, SessionLostEvent, SessionService, open_session_service
from fsm_session.protocol import CloseCode, ErrorCode
from fsm_session.server import ConfigurationError, ServerConfig, serve
from fsm_session.server.observe import ObservedStore
from fsm_session.server.redis_store import RedisStore
from fsm_session.server.store import StoreUnavailable, check_store_url, open_store
from tests.forwarder import Forwarder
from tests.processes import first_line
from tests.redis_server import RedisServer
from tests.test_server import SECRET, TIMEOUT, Client, connect, info, token

ADA = ParticipantInfo(name="Ada", external_id="ada")


class Node:
    """One serve() call on a store: its URL, and how to stop it."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.stopped = trio.Event()

    def cancel(self) -> None:
        self.scope.cancel()

    async def stop(self) -> None:
        self.scope.cancel()
        await self.stopped.wait()


async def start_node(
    nursery: trio.Nursery, store: str, port: int = 0, **config: Any
) -> tuple[str, Node]:
    """A node (one serve() call) on ``store``, running in ``nursery``."""
    node = Node()

    async def run(task_status: trio.TaskStatus[str]) -> None:
        try:
            with node.scope:
                await serve(
                    "127.0.0.1",
                    port,
                    secret=SECRET,
                    store=store,
                    config=ServerConfig(**config),
                    task_status=task_status,
                )
        finally:
            node.stopped.set()

    url: str = await nursery.start(run)
    return url, node


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
        await node.stop()  # 1001 to its connections; their sessions are released into Redis.
        async with open_store(store, resume_grace=60) as observer:
            views = await observer.sessions()
        assert [(v.participant.id, v.held) for v in views] == [(participant.id, False)]
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


async def test_p12_a_switch_published_while_a_node_lost_its_channel_still_arrives(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    """Redis drops every subscriber (as in a network blip), and B takes the session before A
    has subscribed again: A catches up when its channel is back and ends its connection."""
    store = redis_server.url()
    url_a, _ = await start_node(nursery, store)
    url_b, _ = await start_node(nursery, store)
    async with connect(url_a, token("erin")) as first, connect(url_b, token("erin")) as second:
        await first.opened(info("Erin"))
        async with open_store(store, resume_grace=60) as observer:
            killed = await observer._client.client_kill(  # type: ignore[attr-defined]
                type_=PureToken.PUBSUB
            )
            assert killed >= 2  # Both nodes' channels.
        await second.opened(info("Erin"))
        with trio.fail_after(TIMEOUT):
            assert await first.receive() == {"type": "ended", "reason": "switched"}
            assert await first.closed_with() == CloseCode.SWITCHED


async def told_switched(clients: dict[str, Client]) -> str:
    """The one of ``clients`` told ``ended`` ``switched`` within a second, the others nothing."""
    told: list[str] = []
    with trio.fail_after(1):
        async with trio.open_nursery() as waiting:

            async def wait(name: str, client: Client) -> None:
                frame = await client.receive()
                assert frame == {"type": "ended", "reason": "switched"}, (name, frame)
                told.append(name)
                waiting.cancel_scope.cancel()

            for name, client in clients.items():
                waiting.start_soon(wait, name, client)
    return told[0]


async def test_r4_r17_two_logins_racing_leave_one_holder_and_switch_the_other(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    """Many times: the same external ID opens twice at once, on two nodes or on one. Exactly one
    connection keeps the session; the other is told ``ended`` ``switched`` and closed with 4001
    within a second (P12), even when the switch comes before its own open has returned."""
    store = redis_server.url()
    url_a, _ = await start_node(nursery, store, max_requests_per_second=1000)
    url_b, _ = await start_node(nursery, store, max_requests_per_second=1000)
    for round_ in range(30):
        who = f"racer{round_}"
        other = url_b if round_ % 2 else url_a  # Odd rounds across nodes, even ones on one.
        async with connect(url_a, token(who)) as a, connect(other, token(who)) as b:
            results: dict[str, dict[str, Any]] = {}

            async with trio.open_nursery() as race:
                race.start_soon(open_as, "A", a, results)
                race.start_soon(open_as, "B", b, results)
            assert results["A"]["type"] == results["B"]["type"] == "opened", results
            assert results["A"]["participant"]["id"] == results["B"]["participant"]["id"]
            clients = {"A": a, "B": b}
            loser = await told_switched(clients)
            assert await clients[loser].closed_with() == CloseCode.SWITCHED
            winner = "B" if loser == "A" else "A"
            reply = await clients[winner].update(name=None)
            assert reply["type"] == "updated", (round_, reply)
            assert reply["participant"]["info"]["name"] == winner


async def test_r14_resume_racing_the_grace_expiry_is_all_or_nothing(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    """Many times: a dropped session on A is resumed on B right around its (tiny) grace. Either
    the resume wins and the session works, or it is gone for good; never half of it."""
    store = redis_server.url()
    grace = 0.05
    url_a, _ = await start_node(nursery, store, resume_grace=grace)
    url_b, _ = await start_node(nursery, store, resume_grace=grace)
    async with open_store(store, resume_grace=60) as redis:
        assert isinstance(redis, RedisStore)
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
                key = f"{redis.prefix}s:{pid}"
                if reply["type"] == "resumed":
                    assert reply["participant"]["id"] == pid
                    # All of it: held by B's connection, with no expiry left on it.
                    node, conn = await redis._client.hmget(key, ["node", "conn"])
                    assert node not in ("", None) and conn not in ("", None), (node, conn)
                    assert await redis._client.pttl(key) == -1
                    assert (await b.update(name="Back"))["type"] == "updated"
                else:
                    # None of it: no record left behind in Redis.
                    assert reply["code"] == ErrorCode.UNKNOWN_PARTICIPANT
                    assert await redis._client.exists([key]) == 0
                    assert (await b.resume(pid))["code"] == ErrorCode.UNKNOWN_PARTICIPANT


# ---------------------------------------------------------------------------------------------
# Redis failing (P17), and configuration.
# ---------------------------------------------------------------------------------------------


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


async def test_p17_a_release_that_failed_while_redis_was_down_is_made_when_it_returns() -> None:
    """A connection drops while Redis is down: its node cannot release the session then, and
    does so by itself once Redis is back (here with its data kept), so another node can resume
    it; without that the session would stay held by a live node, refused store_unavailable."""
    redis = RedisServer(persist=True)
    redis.start()
    try:
        async with trio.open_nursery() as nursery:
            store = redis.url(lease="0.3")
            url_a, node_a = await start_node(nursery, store)
            url_b, node_b = await start_node(nursery, store)
            async with connect(url_a, token("fay")) as client:
                pid = (await client.opened(info("Fay")))["id"]
                redis.stop()
                await client.drop()
            await trio.to_thread.run_sync(redis.start)
            async with connect(url_b, token("fay")) as other:
                with trio.fail_after(TIMEOUT):
                    while (reply := await other.resume(pid))["type"] == "error":
                        assert reply["code"] == ErrorCode.STORE_UNAVAILABLE, reply
                        await trio.sleep(0.05)  # Until node A's next tick releases it.
                assert reply["participant"]["id"] == pid
            node_a.cancel()
            node_b.cancel()
    finally:
        await trio.to_thread.run_sync(redis.close)


def test_store_urls_are_checked_before_the_server_starts() -> None:
    assert check_store_url(None) is None and check_store_url("memory") is None
    read = check_store_url("redis://127.0.0.1:6379/2?prefix=a:&lease=1.5")
    assert read is not None and (read.prefix, read.lease) == ("a:", 1.5)
    assert read.url == "redis://127.0.0.1:6379/2"
    bad_urls = (
        "postgres://x/1",
        "redis://",
        "redis://h:1/0?lease=0",
        "redis://h:1/0?lease=x",
        6379,
    )
    for bad in bad_urls:
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
            async with connect(await first_line(process), token("dave")) as client:
                ids.append((await client.opened(info("Dave")))["id"])
        finally:
            process.kill()
            await process.wait()
    assert ids[0] == ids[1]


async def test_the_conformance_kit_passes_a_two_node_deployment(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    """``fsm-session conform`` through a forwarder that sends each connection to the next of two
    nodes on one Redis: every rule holds whichever node a connection reaches."""
    store = redis_server.url()
    url_a, _ = await start_node(nursery, store)
    url_b, _ = await start_node(nursery, store)
    ports = [int(url.rsplit(":", 1)[1].strip("/")) for url in (url_a, url_b)]
    forwarder = Forwarder(ports, round_robin=True)
    await nursery.start(forwarder.run)
    done = await trio.run_process(
        [sys.executable, "-m", "fsm_session.cli", "conform", forwarder.url, "--examples", "2"],
        env={**os.environ, "FSM_SESSION_SECRET": SECRET},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, out
    assert f"conformance of {forwarder.url}: PASS" in out
    assert min(forwarder.served.values()) > 10, forwarder.served  # Both nodes served.


def test_the_cli_refuses_an_unknown_store_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fsm_session.cli", "serve", "--port", "0", "--store", "pg://x/1"],
        env={**os.environ, "FSM_SESSION_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "unknown session store" in done.stderr, done.stderr


class _Holder:
    def __init__(self) -> None:
        self.ended: list[str] = []

    def session_ended(self, reason: str) -> None:
        self.ended.append(reason)


async def test_p9_a_dead_nodes_sessions_are_released_when_its_lease_lapses(
    redis_server: RedisServer,
) -> None:
    """Node A takes a lease and then never renews it, as if killed: once it lapses, node B's
    next tick makes A's session resumable for the grace period (a key expiry), and B resumes it."""
    url = check_store_url(redis_server.url())
    assert url is not None
    async with (
        RedisStore.connect(url, resume_grace=30) as a,
        RedisStore.connect(url, resume_grace=30) as b,
    ):
        await a._tick()
        record = await a.open(_Holder(), ParticipantInfo("Eve", "eve"), "eve")
        pid = record.participant.id
        await b._tick()
        assert [(v.participant.id, v.held, v.node) for v in await b.sessions()] == [
            (pid, True, a.node)
        ]
        await b._client.zadd(f"{b.prefix}nodes", {a.node: 0})  # A's lease has lapsed.
        await b._tick()
        assert [(v.participant.id, v.held) for v in await b.sessions()] == [(pid, False)]
        ttl = await b._client.pttl(f"{b.prefix}s:{pid}")
        assert 0 < ttl <= 30_000
        resumed = await b.resume(_Holder(), pid, "eve")
        assert resumed is not None and resumed.participant == record.participant
        assert await b._client.pttl(f"{b.prefix}s:{pid}") == -1  # Held again: no expiry.


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_serve_raises_oserror_for_an_address_in_use(
    nursery: trio.Nursery, request: pytest.FixtureRequest, kind: str
) -> None:
    """On either store, a port in use is an OSError, as serve() documents (not a group)."""
    store = request.getfixturevalue("redis_server").url() if kind == "redis" else None
    url, _ = await start_node(nursery, store or "memory")
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with pytest.raises(OSError):
        await serve("127.0.0.1", port, secret=SECRET, store=store)


# ---------------------------------------------------------------------------------------------
# The store itself, one call held or failed at a chosen point.
# ---------------------------------------------------------------------------------------------


def hold_reply(store: RedisStore, script: str) -> tuple[trio.Event, trio.Event]:
    """Hold the reply to the next call of ``script``: ``ran`` is set once the script has run in
    Redis, and the caller gets its reply once ``release`` is set (a reply still on its way)."""
    run = store._scripts[script]
    ran, release = trio.Event(), trio.Event()

    async def held(args: list[str]) -> Any:
        reply = await run(args=args)
        store._scripts[script] = run  # Only this call is held.
        ran.set()
        await release.wait()
        return reply

    store._scripts[script] = held  # type: ignore[assignment]
    return ran, release


def lose_reply(store: RedisStore, script: str) -> None:
    """The next call of ``script`` runs in Redis, but its reply never arrives (a timeout)."""
    run = store._scripts[script]

    async def lost(args: list[str]) -> Any:
        store._scripts[script] = run
        await run(args=args)
        raise TimeoutError("the reply was lost")

    store._scripts[script] = lost  # type: ignore[assignment]


def redis_url(redis_server: RedisServer) -> Any:
    url = check_store_url(redis_server.url())
    assert url is not None
    return url


@pytest.mark.parametrize("where", ["one node", "two nodes"])
async def test_r17_a_switch_that_comes_before_the_open_returns_is_not_lost(
    redis_server: RedisServer, where: str
) -> None:
    """The first open has run in Redis but not yet returned when a second open of the same
    external ID (on this node, or another whose notice comes over pub/sub) takes the session:
    the first holder is told ``switched`` once its open returns, and holds nothing."""
    url = redis_url(redis_server)
    async with (
        RedisStore.connect(url, resume_grace=30) as a,
        RedisStore.connect(url, resume_grace=30) as b,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(a.run)
        noticed = trio.Event()
        on_message = a._on_message

        def notice(data: Any) -> None:
            on_message(data)
            noticed.set()

        a._on_message = notice  # type: ignore[method-assign]
        first, second = _Holder(), _Holder()
        ran, release = hold_reply(a, "OPEN")
        records = {}
        done = trio.Event()

        async def open_first() -> None:
            records["first"] = await a.open(first, ADA, "ada")
            done.set()

        nursery.start_soon(open_first)
        await ran.wait()
        if where == "one node":
            records["second"] = await a.open(second, ADA, "ada")
        else:
            records["second"] = await b.open(second, ADA, "ada")
            with trio.fail_after(TIMEOUT):
                await noticed.wait()
        with trio.fail_after(TIMEOUT):
            release.set()
            await done.wait()
        assert (first.ended, second.ended) == (["switched"], [])
        assert records["first"].conn not in a._holders and records["first"].holder is None
        assert not await a.update(records["first"], "Not mine", None)
        store = a if where == "one node" else b
        assert await store.update(records["second"], "Ada B.", None)
        nursery.cancel_scope.cancel()


async def test_r14_a_resume_does_not_take_a_session_whose_open_is_in_flight(
    redis_server: RedisServer,
) -> None:
    """A connection of this node whose open has run but not returned is alive, not stale: a
    resume of its session on the same node is refused, and the open keeps it."""
    url = redis_url(redis_server)
    async with RedisStore.connect(url, resume_grace=30) as a, trio.open_nursery() as nursery:
        holder = _Holder()
        ran, release = hold_reply(a, "OPEN")
        records = {}
        done = trio.Event()

        async def open_first() -> None:
            records["first"] = await a.open(holder, ADA, "ada")
            done.set()

        nursery.start_soon(open_first)
        await ran.wait()
        pid = await a._client.get(f"{a.prefix}ext:ada")
        assert pid is not None
        assert await a.resume(_Holder(), pid, "ada") is None
        with trio.fail_after(TIMEOUT):
            release.set()
            await done.wait()
        assert holder.ended == []
        assert await a.update(records["first"], "Still Ada", None)


async def test_p17_a_release_cancelled_by_its_deadline_is_made_at_the_next_tick(
    redis_server: RedisServer,
) -> None:
    """The connection's release deadline cancels the drop mid-call: the node still releases the
    session at its next tick, so that it becomes resumable and is not held by nobody for ever."""
    url = redis_url(redis_server)
    async with RedisStore.connect(url, resume_grace=30) as a:
        record = await a.open(_Holder(), ADA, "ada")
        key = f"{a.prefix}s:{record.participant.id}"
        run = a._scripts["DROP"]

        async def hang(args: list[str]) -> Any:
            await trio.sleep_forever()

        a._scripts["DROP"] = hang  # type: ignore[assignment]
        with trio.CancelScope() as deadline:
            deadline.cancel()
            await a.drop(record)
        assert deadline.cancelled_caught
        a._scripts["DROP"] = run
        assert await a._client.hget(key, "node") == a.node  # Not released yet.
        await a._tick()
        assert await a._client.hget(key, "node") == ""
        assert 0 < await a._client.pttl(key) <= 30_000
        assert record.holder is None


@pytest.mark.parametrize("anonymous", [False, True])
async def test_p17_an_open_or_resume_whose_reply_was_lost_is_released(
    redis_server: RedisServer, anonymous: bool
) -> None:
    """OPEN and RESUME run in Redis but their replies time out (store_unavailable): the node
    releases what they may have taken at its next tick, so the session is resumable, not held
    for ever by a connection that never learnt it held it."""
    url = redis_url(redis_server)
    info_, tx = (None, None) if anonymous else (ADA, "ada")
    async with RedisStore.connect(url, resume_grace=30) as a:
        lose_reply(a, "OPEN")
        if anonymous:
            known = set(await a._client.keys(f"{a.prefix}s:*"))
        with pytest.raises(StoreUnavailable):
            await a.open(_Holder(), info_, tx)
        if anonymous:
            (key,) = set(await a._client.keys(f"{a.prefix}s:*")) - known
            pid = key[len(a.prefix) + 2 :]
        else:
            pid = await a._client.get(f"{a.prefix}ext:ada")
            key = f"{a.prefix}s:{pid}"
        assert await a._client.hget(key, "node") == a.node  # Taken, by nobody.
        await a._tick()
        assert await a._client.hget(key, "node") == ""
        lose_reply(a, "RESUME")
        with pytest.raises(StoreUnavailable):
            await a.resume(_Holder(), pid, tx)
        assert await a._client.hget(key, "node") == a.node
        await a._tick()
        assert await a._client.hget(key, "node") == ""
        resumed = await a.resume(_Holder(), pid, tx)
        assert resumed is not None and resumed.participant.id == pid


class _Changes:
    def __init__(self) -> None:
        self.changes: list[str] = []
        self.seen: list[list[str]] = []
        self.listed = trio.Event()

    def session_changed(self, change: str, record: Any) -> None:
        self.changes.append(change)

    def sessions_seen(self, views: Any, skip: Any) -> None:
        self.seen.append([view.participant.info.name for view in views])
        self.listed.set()


async def test_a_dropped_or_ended_record_has_no_holder_and_reopening_it_is_no_switch(
    redis_server: RedisServer,
) -> None:
    """Drop and end leave the record without a holder (the inspector shows it disconnected);
    an open of a participant whose session was only dropped is ``opened``, not ``switched``."""
    url = redis_url(redis_server)
    async with RedisStore.connect(url, resume_grace=30) as redis:
        changes = _Changes()
        store = ObservedStore(redis, changes)
        record = await store.open(_Holder(), ADA, "ada")
        await store.drop(record)
        assert record.holder is None
        again = await store.open(_Holder(), ADA, "ada")
        await store.end(again)
        assert again.holder is None
        assert changes.changes == ["opened", "dropped", "opened", "closed"]
        first, second = _Holder(), _Holder()
        await store.open(first, ADA, "ada")
        await store.open(second, ADA, "ada")
        assert changes.changes[-3:] == ["opened", "switched", "opened"]
        assert first.ended == ["switched"]


async def test_records_that_do_not_parse_are_skipped_by_the_list_of_sessions(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Anything under the prefix that is not a session record is logged and skipped: the
    observer's list of sessions goes on (it used to raise, and end the server)."""
    url = redis_url(redis_server)
    async with RedisStore.connect(url, resume_grace=30) as redis:
        await redis.open(_Holder(), ADA, "ada")
        await redis._client.hset(f"{redis.prefix}s:notjson", {"info": "{", "node": ""})
        await redis._client.hset(f"{redis.prefix}s:nokeys", {"info": "{}", "node": ""})
        await redis._client.hset(f"{redis.prefix}s:notadict", {"info": "[1]", "node": ""})
        await redis._client.set(f"{redis.prefix}s:notahash", "x")
        assert [view.participant.info.name for view in await redis.sessions()] == ["Ada"]
        assert caplog.text.count("not a session record") == 4, caplog.text
        changes = _Changes()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ObservedStore(redis, changes).watch)
            with trio.fail_after(TIMEOUT):
                await changes.listed.wait()
            nursery.cancel_scope.cancel()
        assert changes.seen == [["Ada"]]


async def test_r17_the_observer_hears_only_of_the_login_that_won_a_race(
    redis_server: RedisServer,
) -> None:
    """The first open is switched before it returns: the observer is told of the second only,
    and the first connection's release afterwards is no ``dropped`` (the session is not its)."""
    url = redis_url(redis_server)
    async with RedisStore.connect(url, resume_grace=30) as redis, trio.open_nursery() as nursery:
        changes = _Changes()
        store = ObservedStore(redis, changes)
        ran, release = hold_reply(redis, "OPEN")
        records = {}
        done = trio.Event()

        async def open_first() -> None:
            records["first"] = await store.open(_Holder(), ADA, "ada")
            done.set()

        nursery.start_soon(open_first)
        await ran.wait()
        second = await store.open(_Holder(), ADA, "ada")
        with trio.fail_after(TIMEOUT):
            release.set()
            await done.wait()
        await store.drop(records["first"])
        assert changes.changes == ["opened"]
        assert store._live == {second.participant.id: second}
