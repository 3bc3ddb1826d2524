#!/usr/bin/python3
# SPDX-License-Identifier: BSL-1.0
"""A client in another language against wsmanager: Python's `websockets` (the library the
original component was built on) talks to wsmanager_test_server.

Usage: python_client_test.py <path to wsmanager_test_server>

Run it with Debian's /usr/bin/python3 (python3-websockets). Exits 0 when every check
passes, 1 on the first mismatch, 2 on a usage error; everything is bounded in time.
"""

import asyncio
import json
import sys
import time

import websockets

from test_server_client import STEP_TIMEOUT, Mismatch, check, main, recv_json

TOTAL_TIMEOUT = 60  # seconds, the whole test


async def send_json(ws, value):
    await asyncio.wait_for(ws.send(json.dumps(value)), STEP_TIMEOUT)


async def run_checks(port):
    base = f"ws://127.0.0.1:{port}"

    async with websockets.connect(
        f"{base}/ws?user_id=alice",
        subprotocols=["wsmanager.v1"],
        open_timeout=STEP_TIMEOUT,
        close_timeout=STEP_TIMEOUT,
    ) as alice:
        check(alice.subprotocol == "wsmanager.v1", "server selected subprotocol wsmanager.v1")

        hello = await recv_json(alice)
        check(hello.get("type") == "connected", "first frame is `connected`")
        check(hello.get("user_id") == "alice", "connected.user_id is alice")
        check(hello.get("protocol") == "wsmanager.v1", "connected.protocol is wsmanager.v1")
        check(isinstance(hello.get("connection_id"), str) and hello["connection_id"] != "",
              "connected.connection_id is a non-empty string")
        check(isinstance(hello.get("server_time"), (int, float))
              and abs(hello["server_time"] - time.time()) < 60,
              "connected.server_time is the current time")

        await send_json(alice, {"action": "ping", "timestamp": 1712345678.5, "request_id": "p1"})
        pong = await recv_json(alice)
        check(pong.get("type") == "pong", "ping answered with pong")
        check(pong.get("timestamp") == 1712345678.5, "pong echoes the timestamp")
        check(pong.get("request_id") == "p1", "pong echoes the request_id")
        check(isinstance(pong.get("server_time"), (int, float)), "pong has server_time")

        await asyncio.wait_for(alice.send("this is not json"), STEP_TIMEOUT)
        error = await recv_json(alice)
        check(error.get("type") == "error", "invalid JSON answered with an error frame")
        check(error.get("code") == "invalid_json", "error.code is invalid_json")
        check(error.get("message") == "Invalid JSON format", "error.message is 'Invalid JSON format'")

        await send_json(alice, {"action": "zzz", "request_id": 3})
        error = await recv_json(alice)
        check(error.get("code") == "unknown_action" and error.get("message") == "Unknown action: zzz"
              and error.get("request_id") == 3, "unknown action: unknown_action with request_id")

        await send_json(alice, {"action": "subscribe", "topic": "task:42", "request_id": "s1"})
        reply = await recv_json(alice)
        check(reply.get("type") == "subscribed", "subscribe answered with subscribed")
        check(reply.get("topic") == "task:42", "subscribed.topic is task:42")
        check(reply.get("request_id") == "s1", "subscribed echoes the request_id")

        await send_json(alice, {"action": "echo", "data": {"n": [1, 2, 3]}, "request_id": "e1"})
        echo = await recv_json(alice)
        check(echo.get("type") == "echo" and echo.get("data") == {"n": [1, 2, 3]}
              and echo.get("user_id") == "alice" and echo.get("request_id") == "e1",
              "host action echo replies to the sender")

        # A second client, offering no subprotocol (the original's browser client).
        async with websockets.connect(
            f"{base}/",
            open_timeout=STEP_TIMEOUT,
            close_timeout=STEP_TIMEOUT,
        ) as anonymous:
            check(anonymous.subprotocol is None, "client offering no subprotocol is accepted without one")
            hello = await recv_json(anonymous)
            check(hello.get("type") == "connected", "second client gets `connected`")
            check(hello.get("user_id") is None, "anonymous connected.user_id is null")
            check(hello.get("protocol") == "", "connected.protocol is empty without a subprotocol")
            await send_json(anonymous, {"action": "ping"})
            pong = await recv_json(anonymous)
            check(pong.get("type") == "pong" and pong.get("timestamp") is None,
                  "anonymous ping answered, timestamp null")

        # Alice's connection is still served after all of that.
        await send_json(alice, {"action": "ping", "request_id": "last"})
        pong = await recv_json(alice)
        check(pong.get("request_id") == "last", "first client still served")

    # Binary frames are a protocol violation: closed with 1003.
    async with websockets.connect(f"{base}/", open_timeout=STEP_TIMEOUT) as binary:
        await recv_json(binary)  # connected
        await asyncio.wait_for(binary.send(b"\x00\x01"), STEP_TIMEOUT)
        try:
            await asyncio.wait_for(binary.recv(), STEP_TIMEOUT)
            raise Mismatch("binary frame did not close the connection")
        except websockets.ConnectionClosed as closed:
            check(closed.rcvd is not None and closed.rcvd.code == 1003, "binary frame closed with 1003")


if __name__ == "__main__":
    sys.exit(main(__doc__, "python_client_test", TOTAL_TIMEOUT, [({}, run_checks)]))
