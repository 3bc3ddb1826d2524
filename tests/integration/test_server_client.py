# SPDX-License-Identifier: BSL-1.0
"""What the Python-client tests share: checks that print what they checked, JSON frames with a
bound on each step, and runs of wsmanager_test_server (its `PORT <n>` line, stopped by closing
its stdin, its exit status checked). Imported by python_client_test.py and
python_deflate_test.py, which sit next to it."""

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time

STEP_TIMEOUT = 5.0  # seconds, each network step


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


def read_port(server):
    """The `PORT <n>` line of the server, within 2 * STEP_TIMEOUT seconds."""
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


def run_server(path, environment, checks):
    """Starts the server with `environment` over the caller's (its WEBSOCKET_* left out), runs
    `await checks(port)`, then stops the server and checks it exited with 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBSOCKET_")}
    env.update(environment)
    server = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        port = read_port(server)
        asyncio.run(checks(port))
        server.stdin.close()  # stdin's end stops the server cleanly
        code = server.wait(timeout=STEP_TIMEOUT * 2)
        check(code == 0, f"server exited with 0 on stdin EOF (got {code})")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def main(usage, name, total_timeout, runs):
    """A test's main: `runs` is a list of (environment, checks), each against a server of its
    own; the whole test is bounded by `total_timeout` seconds. Exit status 0 when every check
    passes, 1 on the first mismatch, 2 on a usage error."""
    if len(sys.argv) != 2:
        print(usage, file=sys.stderr)
        return 2

    def on_alarm(signum, frame):
        print(f"FAIL: {name} still running after {total_timeout}s", file=sys.stderr)
        os._exit(1)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(total_timeout)
    try:
        for environment, checks in runs:
            run_server(sys.argv[1], environment, checks)
    except Mismatch as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # timeouts, refused connections, bad JSON...
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0
