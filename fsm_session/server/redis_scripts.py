"""The Lua scripts of the Redis store: every change that two nodes could race on, made atomic.

Redis runs a script alone, start to end, so a script that reads a session and then changes it
can never interleave with another node's: two logins of one external ID, a resume against the
grace expiry (the key's own TTL), an update against a close, a resume against the reaping of a
dead node. No script leaves half a record: the participant ID of an external ID is written in
the same script as the session that first uses it.

Keys, under a prefix (``fsm:`` by default), all in one database:

* ``ext:<external ID>`` -> participant ID; never expires (R4: the same ID on every node, after
  any restart);
* ``s:<participant ID>`` -> hash ``info`` (JSON of name, external_id, avatar_url), ``tx`` (the
  holder's token external ID: ``=`` + ID, or empty for none), ``node`` and ``conn`` (who holds
  it; both empty while it waits to be resumed, and then the key expires after the grace, P9);
* ``held:<node>`` -> set of the participant IDs a node holds (what a dead node leaves behind);
* ``nodes`` -> sorted set of node IDs by the end of their lease (milliseconds, Redis's clock).

The functions below write and read the ``tx`` and ``info`` fields.

Every script takes the prefix as ``ARGV[1]`` and builds its keys from it, so the store is for a
single Redis server (not a cluster). Times are read from Redis (``TIME``), never from a node.
"""

from __future__ import annotations

import json

from fsm_session.models import ParticipantInfo

__all__ = [
    "DROP",
    "END",
    "HEARTBEAT",
    "LEAVE",
    "OPEN",
    "RESUME",
    "SET_FIELD",
    "info_json",
    "read_info",
    "tx_field",
]


def tx_field(token_external_id: str | None) -> str:
    """The ``tx`` field of a token external ID."""
    return "" if token_external_id is None else "=" + token_external_id


def info_json(info: ParticipantInfo) -> str:
    """The ``info`` field of a participant's info."""
    return json.dumps(
        {"name": info.name, "external_id": info.external_id, "avatar_url": info.avatar_url}
    )


def read_info(text: str) -> ParticipantInfo:
    """A participant's info from its ``info`` field; raises ``ValueError``, ``KeyError`` or
    ``TypeError`` when the field is not one."""
    data = json.loads(text)
    return ParticipantInfo(
        name=data["name"], external_id=data["external_id"], avatar_url=data["avatar_url"]
    )


_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Forget every session a node held, as if each connection had dropped: resumable for the grace.
_RELEASE_NODE = """
local function release_node(prefix, dead, grace_ms)
  local held = prefix .. 'held:' .. dead
  for _, pid in ipairs(redis.call('SMEMBERS', held)) do
    local key = prefix .. 's:' .. pid
    if redis.call('HGET', key, 'node') == dead then
      redis.call('HSET', key, 'node', '', 'conn', '')
      redis.call('PEXPIRE', key, grace_ms)
    end
  end
  redis.call('DEL', held)
  redis.call('ZREM', prefix .. 'nodes', dead)
end
"""

OPEN = """
local prefix, ext, pid, info, tx, node, conn = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
  ARGV[6], ARGV[7]
if ext ~= '' then
  local known = redis.call('GET', prefix .. 'ext:' .. ext)
  if known then pid = known else redis.call('SET', prefix .. 'ext:' .. ext, pid) end
end
local key = prefix .. 's:' .. pid
local old = redis.call('HMGET', key, 'node', 'conn')
local local_conn = ''
if old[1] and old[1] ~= '' then
  redis.call('SREM', prefix .. 'held:' .. old[1], pid)
  if old[1] ~= node then
    redis.call('PUBLISH', prefix .. 'node:' .. old[1], 'switched ' .. old[2] .. ' ' .. pid)
  else
    local_conn = old[2]
  end
end
redis.call('DEL', key)
redis.call('HSET', key, 'info', info, 'tx', tx, 'node', node, 'conn', conn)
redis.call('SADD', prefix .. 'held:' .. node, pid)
return {pid, local_conn}
"""
"""Open (R4, R17): returns the participant ID and the connection of this node that held the
session before (to be told ``switched``; another node's holder is told through its channel)."""

SET_FIELD = """
local prefix, pid, node, conn, field, value = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local key = prefix .. 's:' .. pid
local who = redis.call('HMGET', key, 'node', 'conn')
if who[1] ~= node or who[2] ~= conn then return 0 end
redis.call('HSET', key, field, value)
return 1
"""
"""Update ``info`` or ``tx``, only while this connection holds the session: 1, else 0."""

END = """
local prefix, pid, node, conn = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = prefix .. 's:' .. pid
local who = redis.call('HMGET', key, 'node', 'conn')
if who[1] ~= node or who[2] ~= conn then return 0 end
redis.call('DEL', key)
redis.call('SREM', prefix .. 'held:' .. node, pid)
return 1
"""
"""Close: forget the session, only while this connection holds it."""

DROP = """
local prefix, pid, node, conn, grace_ms, ext = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if pid == '' then
  pid = redis.call('GET', prefix .. 'ext:' .. ext)
  if not pid then return 0 end
end
local key = prefix .. 's:' .. pid
local who = redis.call('HMGET', key, 'node', 'conn')
if who[1] ~= node or who[2] ~= conn then return 0 end
redis.call('HSET', key, 'node', '', 'conn', '')
redis.call('PEXPIRE', key, grace_ms)
redis.call('SREM', prefix .. 'held:' .. node, pid)
return 1
"""
"""A drop: the session waits to be resumed, and its key expires after the grace (P9); only while
this connection holds it. An empty participant ID is read from the external ID ``ARGV[6]`` (an
open whose reply was lost)."""

RESUME = (
    _NOW
    + """
local prefix, pid, tx, node, conn, stale = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local key = prefix .. 's:' .. pid
local r = redis.call('HMGET', key, 'info', 'tx', 'node', 'conn')
if not r[1] or r[2] ~= tx then return {'unknown'} end
if r[4] ~= '' then
  if r[3] == node then
    if r[4] ~= stale then return {'held', r[4]} end
  else
    local lease = redis.call('ZSCORE', prefix .. 'nodes', r[3])
    if lease and tonumber(lease) >= now then return {'busy', r[3]} end
  end
  redis.call('SREM', prefix .. 'held:' .. r[3], pid)
end
redis.call('PERSIST', key)
redis.call('HSET', key, 'node', node, 'conn', conn)
redis.call('SADD', prefix .. 'held:' .. node, pid)
return {'ok', r[1]}
"""
)
"""Resume (P9, R14): ``ok`` and the info; ``unknown``; ``held`` by a connection of this node
(which the node knows to be alive or not: ``stale`` names one it knows is gone); ``busy``: held
on another node whose lease has not lapsed, so it may still be serving it."""

HEARTBEAT = (
    _NOW
    + _RELEASE_NODE
    + """
local prefix, node, lease_ms, grace_ms = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
redis.call('ZADD', prefix .. 'nodes', now + lease_ms, node)
local dead = redis.call('ZRANGEBYSCORE', prefix .. 'nodes', '-inf', now - 1, 'LIMIT', 0, 16)
for _, d in ipairs(dead) do release_node(prefix, d, grace_ms) end
return #dead
"""
)
"""Extend this node's lease; release the sessions of nodes whose lease has lapsed."""

LEAVE = (
    _RELEASE_NODE
    + """
release_node(ARGV[1], ARGV[2], ARGV[3])
return 1
"""
)
"""A node that stops: whatever it still holds becomes resumable, and it leaves ``nodes``."""
