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
import os
import select
import signal
import subprocess
import sys
import time

import websockets

STEP_TIMEOUT = 5.0  # seconds, each network step
TOTAL_TIMEOUT = 60  # seconds, the whole test


class Mismatch(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Mismatch(what)
    print(f"ok: {what}")


async def recv_json(ws):
    text = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
    check(isinstance(text, str), f"text frame received ({text!r:.80})")
    return json.loads(text)


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


def read_port(server):
    """The `PORT <n>` line of the server, within STEP_TIMEOUT seconds."""
    deadline = time.monotonic() + STEP_TIMEOUT * 2
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Mismatch("server did not print its port in time")
        ready, _, _ = select.select([server.stdout], [], [], left)
        if ready:
            chunk = os.read(server.stdout.fileno(), 1)
            if not chunk:
                raise Mismatch("server exited before printing its port")
            line += chunk
    text = line.decode().strip()
    check(text.startswith("PORT "), f"server printed '{text}'")
    return int(text.split()[1])


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2

    def on_alarm(signum, frame):
        print(f"FAIL: python_client_test still running after {TOTAL_TIMEOUT}s", file=sys.stderr)
        os._exit(1)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TOTAL_TIMEOUT)

    server = subprocess.Popen([sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        port = read_port(server)
        asyncio.run(run_checks(port))
        # Closing stdin stops the server cleanly.
        server.stdin.close()
        code = server.wait(timeout=STEP_TIMEOUT * 2)
        check(code == 0, f"server exited with 0 on stdin EOF (got {code})")
    except Mismatch as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # timeouts, refused connections, bad JSON...
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
