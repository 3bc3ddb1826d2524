# SPDX-License-Identifier: BSL-1.0
"""task_server without a browser: its REST API and its WebSocket frames, end to end.

    python3 smoke_test.py <path/to/task_server>

Starts `task_server --port 0`, connects as alice (Python's websockets, subprotocol
wsmanager.v1), starts the sample task over HTTP, subscribes to its topic (and is refused a
topic of no task of hers), answers its two questions (retry the failed step, then proceed with
feedback), checks it completes; starts a long task and cancels it with
a `cancel` frame (GET /api/tasks then says `cancelled`); sends SIGTERM and checks the server
closes the connection with 1001 and exits 0. Bounded to 60 s. Prints `N passed, M failed`.
"""

import asyncio
import json
import os
import signal
import sys
import urllib.error
import urllib.request

import websockets

results = []


def check(name, ok, detail=""):
    ok = bool(ok)
    results.append(ok)
    print(f"smoke_test: {'ok    ' if ok else 'FAILED'} {name}{'' if ok else ': ' + detail}",
          flush=True)
    return ok


def http(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def next_frame(ws, wanted, task_id=None, timeout=15):
    """The next frame of type `wanted` (about `task_id`, when given)."""
    async def wait():
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") != wanted:
                continue
            about = frame.get("task_id") or frame.get("task", {}).get("id")
            if task_id is None or about == task_id:
                return frame
    return await asyncio.wait_for(wait(), timeout)


async def until_state(ws, task_id, state, timeout=15):
    async def wait():
        while True:
            frame = await next_frame(ws, "task_update", task_id, timeout)
            if frame["task"]["state"] == state:
                return frame["task"]
    return await asyncio.wait_for(wait(), timeout)


async def run(binary):
    env = {k: v for k, v in os.environ.items()
           if k not in ("WEBSOCKET_AUTH_SECRET", "WEBSOCKET_AUTH_PUBLIC_KEY",
                        "WEBSOCKET_AUTH_ISSUER", "WEBSOCKET_AUTH_AUDIENCE",
                        "WEBSOCKET_ALLOWED_ORIGINS", "WEBSOCKET_HOST",
                        "WEBSOCKET_PORT", "WEBSOCKET_TLS_CERT", "WEBSOCKET_TLS_KEY")}
    env["WEBSOCKET_LOG_LEVEL"] = "warning"
    server = await asyncio.create_subprocess_exec(
        binary, "--port", "0", "--host", "127.0.0.1", env=env, stdout=asyncio.subprocess.PIPE)
    try:
        port = None
        while port is None:
            line = (await asyncio.wait_for(server.stdout.readline(), 20)).decode()
            if not line:
                raise RuntimeError("task_server exited before listening")
            print(f"  | {line.rstrip()}")
            if line.startswith("LISTENING "):
                port = int(line.split()[1])
        # Keep printing the server's output.
        async def echo():
            async for line in server.stdout:
                print(f"  | {line.decode().rstrip()}")
        echo_task = asyncio.create_task(echo())
        base = f"http://127.0.0.1:{port}"

        status, body = await asyncio.to_thread(http, base, "POST", "/api/tasks", {"user_id": "x"})
        check("POST without a task -> 400 JSON error", status == 400 and "error" in body, str(body))

        async with websockets.connect(f"ws://127.0.0.1:{port}/ws?user_id=alice",
                                      subprotocols=["wsmanager.v1"]) as ws:
            connected = await next_frame(ws, "connected")
            check("connected as alice with wsmanager.v1",
                  connected["user_id"] == "alice" and ws.subprotocol == "wsmanager.v1",
                  str(connected))

            status, body = await asyncio.to_thread(http, base, "POST", "/api/tasks",
                                                   {"user_id": "alice", "sample": True})
            task_id = body.get("task_id")
            check("POST the sample task -> 201", status == 201 and task_id, str(body))

            await ws.send(json.dumps({"action": "subscribe", "topic": f"task:{task_id}"}))
            reply = await next_frame(ws, "subscribed")
            check("alice may subscribe to her task's topic", reply["topic"] == f"task:{task_id}",
                  str(reply))
            await ws.send(json.dumps({"action": "subscribe", "topic": "task:t999-00000000"}))
            reply = await next_frame(ws, "error")
            check("a topic of no task of hers is forbidden", reply["code"] == "forbidden",
                  str(reply))

            question = await next_frame(ws, "task_step_result", task_id)
            check("the failed step asks whether to retry",
                  question["status"] == "failed" and
                  question["step_result"]["error_code"] == "E_VALIDATION", str(question))
            await ws.send(json.dumps({"action": "confirm", "callback_id": question["callback_id"],
                                      "proceed": True}))
            resolved = await next_frame(ws, "confirmation_resolved")
            check("confirmation_resolved after the answer",
                  resolved["callback_id"] == question["callback_id"] and resolved["proceed"],
                  str(resolved))

            question = await next_frame(ws, "task_step_result", task_id)
            check("the publish step asks for confirmation",
                  question["message"] == "Publish the results?", str(question))
            await ws.send(json.dumps({"action": "confirm", "callback_id": question["callback_id"],
                                      "proceed": True, "feedback": "fine"}))
            task = await until_state(ws, task_id, "completed")
            check("the sample task completes at 100%", task["progress"] == 100, str(task))

            status, body = await asyncio.to_thread(http, base, "POST", "/api/tasks", {
                "user_id": "alice",
                "task": {"name": "Long", "steps": [{"name": "wait", "work_ms": 60000}]}})
            long_id = body.get("task_id")
            await until_state(ws, long_id, "running")
            await next_frame(ws, "heartbeat", long_id)
            await ws.send(json.dumps({"action": "cancel", "task_id": long_id}))
            # The manager's task_cancelled and the host's final task_update, in either order.
            async def cancelled():
                seen = set()
                while seen != {"task_cancelled", "cancelled"}:
                    frame = json.loads(await ws.recv())
                    if frame.get("type") == "task_cancelled" and frame["task_id"] == long_id:
                        seen.add("task_cancelled")
                    if frame.get("type") == "task_update" and frame["task"]["id"] == long_id \
                            and frame["task"]["state"] == "cancelled":
                        seen.add("cancelled")
            await asyncio.wait_for(cancelled(), 5)
            status, tasks = await asyncio.to_thread(http, base, "GET", "/api/tasks?user_id=alice")
            states = {t["id"]: t["state"] for t in tasks}
            check("a cancel frame cancels a running task (GET /api/tasks)",
                  states.get(long_id) == "cancelled" and states.get(task_id) == "completed",
                  str(states))

            server.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(ws.wait_closed(), 10)
            except asyncio.TimeoutError:
                pass
            check("SIGTERM closes the connection with 1001", ws.close_code == 1001,
                  f"close code {ws.close_code}")
        code = await asyncio.wait_for(server.wait(), 10)
        check("task_server exits 0 after SIGTERM", code == 0, f"exit status {code}")
        echo_task.cancel()
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()


def main():
    if len(sys.argv) != 2:
        print("usage: smoke_test.py <path/to/task_server>", file=sys.stderr)
        return 2
    try:
        asyncio.run(asyncio.wait_for(run(sys.argv[1]), 60))
    except Exception as error:  # a timeout or a broken connection is a failure, said plainly
        check("ran to the end", False, f"{type(error).__name__}: {error}")
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if results and all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
