"""Frames and request IDs (P2 to P5, P15's close codes), tried on raw connections."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from fsm_session.testing.conformance.kit import Kit, info, new_id
from fsm_session.testing.conformance.pacing import is_rate_limited, paced
from fsm_session.testing.conformance.wire import RawClient
from fsm_session.testing.wsframes import OP_CLOSE, OP_PING, OP_TEXT, build_frame

__all__ = ["check_frames"]

_LIMIT = 65536


def _error(reply: dict[str, Any] | None, code: str, rid: object) -> bool:
    return (
        reply is not None
        and reply.get("type") == "error"
        and reply.get("code") == code
        and reply.get("id") == rid
    )


async def _answers(
    kit: Kit, client: RawClient, rule: str, what: str, text: str, code: str, rid: object
) -> None:
    await client.send_text(text)
    reply = await client.reply(rid)
    kit.expect(
        rule, f"{what}: error {code}, id {json.dumps(rid)}", _error(reply, code, rid), reply, client
    )


async def _update(client: RawClient, rid: int) -> None:
    await client.send_text(
        json.dumps({"type": "update", "id": rid, "name": "A", "avatar_url": None})
    )


async def _still_serves(kit: Kit, client: RawClient, rule: str) -> None:
    # An update without a session: answered with its id by every backend that still serves.
    _, reply = await paced(client, partial(_update, client), client.next_id + 1000)
    kit.expect(
        rule,
        "the connection goes on serving after the refusals",
        reply is not None and reply.get("code") == "session_not_open",
        reply,
        client,
    )


async def check_frames(kit: Kit) -> None:
    """P2, P3, P4 and P5 on one connection each; the closing codes of P2 and P15."""
    async with kit.raw(new_id("p2")) as client:
        for what, text, code in (
            ("a text message that is not JSON", "not json", "bad_frame"),
            ("a JSON array", "[1, 2]", "bad_frame"),
            ("an object without a type string", '{"id": 5}', "bad_frame"),
            ("NaN", '{"type":"close","id":NaN}', "bad_frame"),
            ("a byte-order mark before the JSON", '\ufeff{"type":"close","id":1}', "bad_frame"),
        ):
            await _answers(kit, client, "P2", what, text, code, None)
        await _answers(
            kit, client, "P2", "an unknown type", '{"type":"hello","id":1}', "unknown_type", 1
        )
        await _answers(
            kit,
            client,
            "P2",
            "update with a number for name",
            '{"type":"update","id":2,"name":5,"avatar_url":null}',
            "bad_request",
            2,
        )
        await _answers(
            kit,
            client,
            "P2",
            "open with a string for info",
            '{"type":"open","id":3,"info":"Alice"}',
            "bad_request",
            3,
        )
        await _still_serves(kit, client, "P2")

    async with kit.raw(new_id("p3")) as client:
        for what, text in (
            ("no id", '{"type":"close"}'),
            ("id 7.0", '{"type":"close","id":7.0}'),
            ('id "7"', '{"type":"close","id":"7"}'),
            ("id 0", '{"type":"close","id":0}'),
            ("id 2^53", '{"type":"close","id":9007199254740992}'),
            ("a 5,000-digit id", '{"type":"close","id":' + "1" * 5000 + "}"),
        ):
            await _answers(kit, client, "P3", what, text, "bad_request_id", None)
        await _answers(
            kit,
            client,
            "P3",
            "an unknown type with id 5 uses the id up",
            '{"type":"hello","id":5}',
            "unknown_type",
            5,
        )
        await _answers(
            kit, client, "P3", "then id 5 again", '{"type":"close","id":5}', "bad_request_id", 5
        )
        await _answers(
            kit, client, "P3", "then id 4", '{"type":"close","id":4}', "bad_request_id", 4
        )
        _, reply = await paced(client, partial(_update, client), 9)
        kit.expect(
            "P3",
            "then id 9 (not consecutive): carried out (session_not_open)",
            reply is not None and reply.get("code") == "session_not_open",
            reply,
            client,
        )
        # P4's order of checks: an unreadable id before member types, member types before
        # the increase.
        await _answers(
            kit,
            client,
            "P4",
            "update with id 'x' and a number for name",
            '{"type":"update","id":"x","name":5,"avatar_url":null}',
            "bad_request_id",
            None,
        )
        await _answers(
            kit,
            client,
            "P4",
            "update with a stale id and a number for name",
            '{"type":"update","id":2,"name":5,"avatar_url":null}',
            "bad_request",
            2,
        )

    await _ordered(kit)
    await _closes(kit)


async def _ordered(kit: Kit) -> None:
    """P4: requests sent without waiting are answered once each, in order."""
    async with kit.raw(new_id("olga")) as client:
        ids = [
            await client.request("open", info=info("Olga")),
            await client.request("open", info=info("Olga")),
            await client.request("update", name="Olga B.", avatar_url=None),
            await client.request("update", name=None, avatar_url=None),
            await client.request("close"),
        ]
        replies = await client.replies(len(ids))
        got = [reply.get("id") for reply in replies]
        types = [reply.get("type") for reply in replies]
        what = "open, open, update, update, close sent at once"
        if any(is_rate_limited(reply) for reply in replies):
            # P14 lets a backend limit even a burst of five; the checks below need all five.
            kit.inconclusive.append(f"P4: {what}: the backend answered rate_limited")
            return
        kit.expect("P4", f"{what}: one reply each, ids in order", got == ids, got, client)
        extra = await client.receive(0.1)
        kit.expect("P4", "nothing after the last reply", extra is None, extra, client)
        if got != ids:
            return
        kit.expect(
            "P8", "close while a session is open: closed", types[4] == "closed", types[4], client
        )
        kit.expect(
            "P7",
            "update(name='Olga B.'): updated with the name",
            types[2] == "updated" and _name(replies[2]) == "Olga B.",
            replies[2],
            client,
        )
        kit.expect(
            "P7",
            "update with both values null: updated, unchanged",
            types[3] == "updated" and _name(replies[3]) == "Olga B.",
            replies[3],
            client,
        )
        kit.expect(
            "R5",
            "open twice with the same info: opened, the same participant",
            types[:2] == ["opened", "opened"] and _pid(replies[0]) == _pid(replies[1]),
            replies[:2],
            client,
        )


def _participant(reply: dict[str, Any]) -> dict[str, Any]:
    value = reply.get("participant")
    return value if isinstance(value, dict) else {}


def _pid(reply: dict[str, Any]) -> object:
    return _participant(reply).get("id")


def _name(reply: dict[str, Any]) -> object:
    inner = _participant(reply).get("info")
    return inner.get("name") if isinstance(inner, dict) else None


async def _rsv1(client: RawClient) -> None:
    frame = bytearray(build_frame("{}", mask_key=os.urandom(4)))
    frame[0] |= 0x40
    await client.send_raw(bytes(frame))


async def _oversize(client: RawClient) -> None:
    half = _LIMIT // 2 + 1
    await client.send_frame("x" * half, fin=False)
    await client.send_frame("x" * half, opcode=0, fin=True)


async def _text_inside_fragments(client: RawClient) -> None:
    await client.send_frame('{"type":', fin=False)
    await client.send_frame("{}")


_CLOSES: list[tuple[str, str, int, Callable[[RawClient], Awaitable[None]]]] = [
    ("P2", "a binary message: close 1003", 1003, lambda c: c.send_binary(b"\x00\x01")),
    ("P2", f"a message of {_LIMIT + 1} bytes in two fragments: close 1009", 1009, _oversize),
    ("P15", "an unmasked frame: close 1002", 1002, lambda c: c.send_raw(bytes([0x81, 2]) + b"{}")),
    (
        "P15",
        "a text message that is not UTF-8: close 1007",
        1007,
        lambda c: c.send_frame(b'{"type":"close","id":1,"x":"\xff"}', opcode=OP_TEXT),
    ),
    ("P15", "a frame with RSV1 set: close 1002", 1002, _rsv1),
    (
        "P15",
        "a frame of unknown opcode 0x3: close 1002",
        1002,
        lambda c: c.send_frame(b"{}", opcode=3),
    ),
    (
        "P15",
        "a continuation frame with no message under way: close 1002",
        1002,
        lambda c: c.send_frame(b"{}", opcode=0),
    ),
    (
        "P15",
        "a text frame while a fragmented message is under way: close 1002",
        1002,
        _text_inside_fragments,
    ),
    (
        "P15",
        "a fragmented ping: close 1002",
        1002,
        lambda c: c.send_frame(b"kit", opcode=OP_PING, fin=False),
    ),
    (
        "P15",
        "a ping of 126 bytes: close 1002",
        1002,
        lambda c: c.send_frame(b"k" * 126, opcode=OP_PING),
    ),
    (
        "P15",
        "a close frame of one byte: close 1002",
        1002,
        lambda c: c.send_frame(b"\x03", opcode=OP_CLOSE),
    ),
    (
        "P15",
        "a close frame with code 1005: close 1002",
        1002,
        lambda c: c.send_frame((1005).to_bytes(2, "big"), opcode=OP_CLOSE),
    ),
]
"""P2's close codes (binary: 1003; over the limit: 1009) and P15's (framing: 1002, 1007)."""


async def _closes(kit: Kit) -> None:
    for rule, what, code, send in _CLOSES:
        async with kit.raw(new_id("close")) as client:
            await send(client)
            seen = await client.until_closed()
            kit.expect(rule, what, seen == code, f"close code {seen}", client)
            kit.expect(
                "P15",
                "the backend's close frame comes before its TCP close",
                client.close_before_hangup or seen is None,
                "no close frame",
                client,
            )
