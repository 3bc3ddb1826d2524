# SPDX-License-Identifier: BSL-1.0
"""Helpers of tests/cluster/cluster_deployment_test.py: processes the test starts (and only
those it stops), a bare RESP client for Redis, HTTP on loopback, WebSocket tabs that keep
every frame they receive, and the checks' bookkeeping. Debian's python3 and
python3-websockets only; every wait is bounded."""

import asyncio
import ctypes
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import websockets

# A network step's bound: generous, for a busy machine or a sanitizer build.
STEP_S = 15.0

# ---- checks --------------------------------------------------------------------------------


class Failed(Exception):
    """A required step did not happen: the scenario cannot go on."""


class Checks:
    """Every check's outcome, printed as it is made."""

    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, ok, what, detail=""):
        ok = bool(ok)
        if ok:
            self.passed += 1
            print(f"ok      {what}", flush=True)
        else:
            self.failed.append((what, detail))
            print(f"FAILED  {what}{': ' + detail if detail else ''}", flush=True)
        return ok

    def require(self, ok, what, detail=""):
        if not self.check(ok, what, detail):
            raise Failed(what + (": " + detail if detail else ""))


# ---- processes -----------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _child_setup():
    # Dies with the test (even when the test is SIGKILLed by ctest's timeout).
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Proc:
    """A process the test started, in its own process group (so nginx's workers go with its
    master), its output kept in a log file and in memory."""

    def __init__(self, name, argv, log_path, env=None, cwd=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.lines = []
        self._lock = threading.Lock()
        self._log = open(log_path, "a", buffering=1)
        self._log.write(f"---- {' '.join(argv)}\n")
        self.popen = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_child_setup)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._lock:
                self.lines.append(line)
            self._log.write(line + "\n")

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def output(self):
        with self._lock:
            return list(self.lines)

    def wait_line(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.output():
                if line.startswith(prefix):
                    return line
            if not self.alive():
                break
            time.sleep(0.02)
        raise Failed(f"{self.name}: no line starting {prefix!r} within {timeout} s "
                     f"(exit status {self.popen.poll()}; see {self.log_path})")

    def send_signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def kill_hard(self):
        """SIGKILL to the process (a crash)."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Asks it to stop; its process group is SIGKILLed when it does not in time. Returns
        the exit status."""
        if self.alive():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.alive():
            self._kill_group()
            self.popen.wait(timeout=5)
        else:
            self._kill_group()  # leftovers of the group (nginx workers), if any
        self._reader.join(timeout=2)
        return self.popen.returncode

    def _kill_group(self):
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close_log(self):
        try:
            self._log.close()
        except OSError:
            pass


def run_bounded(argv, timeout, env=None):
    """Runs a short-lived command in a session of its own (no terminal, so no installer can
    stop to ask for a password) and returns (exit status, output). Past `timeout` its whole
    process group is killed, so no build or installer outlives the test; Failed then."""
    popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True,
                             preexec_fn=_child_setup)
    try:
        output, _ = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        popen.communicate()
        raise Failed(f"{' '.join(argv)} did not end within {timeout} s") from None
    return popen.returncode, output


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# ---- Redis, spoken directly --------------------------------------------------------------

class Resp:
    """One command at a time over a fresh loopback connection (RESP2)."""

    def __init__(self, port):
        self.port = port

    def command(self, *args, timeout=10.0):
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            out = f"*{len(args)}\r\n".encode()
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            reader = s.makefile("rb")
            return self._read(reader)

    def _read(self, r):
        line = r.readline()
        if not line:
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError("Redis error: " + rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = r.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read(r) for _ in range(n)]
        raise RuntimeError(f"unexpected RESP reply {line!r}")

    def keys(self, pattern="*"):
        found, cursor = [], "0"
        while True:
            cursor, batch = self.command("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
            found.extend(batch)
            if cursor == "0":
                return sorted(set(found))

    def reachable(self):
        try:
            return self.command("PING", timeout=0.5) == "PONG"
        except OSError:
            return False


# ---- HTTP --------------------------------------------------------------------------------

def http(port, method, path, body=None, timeout=STEP_S):
    """(status, parsed JSON or text) from http://127.0.0.1:<port><path>."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, ctype = response.status, response.read(), response.headers.get(
                "Content-Type", "")
    except urllib.error.HTTPError as error:
        status, raw, ctype = error.code, error.read(), error.headers.get("Content-Type", "")
    text = raw.decode(errors="replace")
    if "json" in ctype:
        try:
            return status, json.loads(text)
        except ValueError:
            pass
    return status, text


async def ahttp(port, method, path, body=None, timeout=STEP_S):
    return await asyncio.to_thread(http, port, method, path, body, timeout)


# ---- WebSocket tabs ----------------------------------------------------------------------

class Tab:
    """One browser tab of a user: a WebSocket connection whose frames are all kept."""

    def __init__(self, name, port, user):
        self.name = name
        self.port = port
        self.user = user
        self.frames = []
        self.ws = None
        self.node = None  # the node it is connected to, when the test located it
        self.closed = None  # (code, reason) once closed
        self._changed = asyncio.Condition()
        self._reader = None
        self._pings = 0

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/ws?user_id={self.user}"

    async def open(self, timeout=STEP_S):
        self.closed = None
        self.ws = await asyncio.wait_for(
            websockets.connect(self.url, subprotocols=["wsmanager.v1"], open_timeout=timeout,
                               close_timeout=2, max_queue=None), timeout + 1)
        self._reader = asyncio.create_task(self._read(self.ws))
        hello = await self.wait(lambda f: f.get("type") == "connected", timeout,
                                "connected", start=len(self.frames))
        return hello

    async def _read(self, ws):
        try:
            async for text in ws:
                frame = json.loads(text)
                frame["_at"] = time.monotonic()
                async with self._changed:
                    self.frames.append(frame)
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            async with self._changed:
                self.closed = (ws.close_code, ws.close_reason)
                self._changed.notify_all()

    async def send(self, value):
        await asyncio.wait_for(self.ws.send(json.dumps(value)), STEP_S)

    def matching(self, predicate, start=0):
        return [f for f in self.frames[start:] if predicate(f)]

    def count(self, predicate, start=0):
        return len(self.matching(predicate, start))

    async def wait(self, predicate, timeout, what, start=0):
        """The first frame from index `start` that matches; Failed after `timeout`."""
        async def find():
            async with self._changed:
                while True:
                    found = self.matching(predicate, start)
                    if found:
                        return found[0]
                    if self.closed is not None:
                        raise Failed(f"{self.name} closed {self.closed} waiting for {what}")
                    await self._changed.wait()
        try:
            return await asyncio.wait_for(find(), timeout)
        except asyncio.TimeoutError:
            raise Failed(f"{self.name}: no {what} within {timeout} s") from None

    async def wait_closed(self, timeout):
        async def closed():
            async with self._changed:
                while self.closed is None:
                    await self._changed.wait()
                return self.closed
        try:
            return await asyncio.wait_for(closed(), timeout)
        except asyncio.TimeoutError:
            return None

    async def ping(self, timeout=STEP_S):
        # An integer and a request_id: the server parses numbers at RapidJSON's default
        # precision, so a float timestamp may come back one unit in the last place off.
        self._pings += 1
        rid = f"{self.name}-ping-{self._pings}"
        start = len(self.frames)
        await self.send({"action": "ping", "timestamp": self._pings, "request_id": rid})
        await self.wait(lambda f: f.get("type") == "pong" and f.get("request_id") == rid and
                        f.get("timestamp") == self._pings, timeout, "pong", start)
        return True

    async def close(self):
        if self.ws is not None and self.closed is None:
            try:
                await asyncio.wait_for(self.ws.close(), 3)
            except (asyncio.TimeoutError, websockets.WebSocketException, OSError):
                pass
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 3)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._reader.cancel()


def of_type(kind, **fields):
    """A frame predicate: type == kind and each given field equal."""
    def predicate(frame):
        if frame.get("type") != kind:
            return False
        return all(frame.get(k) == v for k, v in fields.items())
    return predicate


def task_frame(task_id, state=None):
    def predicate(frame):
        if frame.get("type") != "task_update":
            return False
        task = frame.get("task", {})
        return task.get("id") == task_id and (state is None or task.get("state") == state)
    return predicate
