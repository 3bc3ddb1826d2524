#!/usr/bin/python3
# SPDX-License-Identifier: BSL-1.0
"""The deployment of deploy/, as real processes on loopback: redis-server, three task_server
nodes (examples/task_server, clustered through WEBSOCKET_REDIS_URL) and nginx in front of
them with deploy/nginx.conf, driven over real WebSocket connections (Debian's
python3-websockets) through nginx and to the nodes directly.

    cluster_deployment_test.py --build-dir DIR --task-server PATH --redis-server PATH
                               --nginx PATH

What it checks (docs/cluster.md):
  0. the deployment files: deploy/Dockerfile builds only through deploy/build-task-server.sh,
     which this test runs too (deps, then build in DIR: it must yield PATH); the compose file
     runs deploy/nginx.conf and the nodes nginx.conf names; nginx.conf is used as is, only
     its three upstream ports and its listen port replaced;
  1. through nginx: the dashboard, /healthz, the REST API and WebSockets pass; /metrics,
     /status and /api/admin/ are refused (every request reaches the nodes from loopback);
  2. broadcast from every node reaches every connection of every node exactly once;
     send_to_user reaches a user's tabs on two nodes and nobody else; publish from B reaches
     a subscriber on A; disconnect_user on A closes the user's tabs on B, C and behind nginx;
  3. notify_user on A (a task's question) answered on B resolves A's call once, and every tab
     (A, B, C, nginx) gets confirmation_resolved once; a tab that connects to C after the
     request gets it; a late answer gets unknown_callback;
  4. two tabs on A and B answer the same question at the same moment, 30 times: exactly one
     wins each time, the other gets unknown_callback, both see the winner;
  5. an answer after the timeout loses (unknown_callback), the call resolved `timeout` once;
  6. a cancel on B reaches the on_cancel of A, which runs the task; another user's is refused;
  7. Redis SIGKILLed and restarted on its port: meanwhile local delivery goes on (also a
     running task's progress), cross-node delivery does not, a confirm gets `unavailable`;
     then the owner records its question again, cross-node delivery resumes and the
     confirmation is decided once, as answered;
  8. a node SIGKILLed while its user has a question pending on another node: the cluster's
     status (GET /status on a node, from loopback) drops it within the node TTL (plus slack
     for a busy machine), its own pending question is dismissed (reason shutdown), the
     user's tabs reconnect through nginx, get the question again and answer it; the node
     restarts under its id and is heard again;
  9. at the end pending_callbacks is 0 on every node, the nodes stop cleanly (exit 0) and
     Redis holds nothing of the cluster once the decided confirmations' keep time is over.

Timings: the nodes get TASK_SERVER_CLUSTER_TIMINGS (heartbeat 500 ms, node TTL 2 s, decided
confirmations kept 3 s, reconnects 50-500 ms, cancel round 10 s). Every wait is bounded
(STEP, WAIT), the whole run by TOTAL_TIMEOUT; nothing asserts on speed but the dead node's
TTL. Ports are picked free on 127.0.0.1; the test stops only the processes it started, in
`finally`, and they die with it (PR_SET_PDEATHSIG) if it is killed. Logs are kept in a
temporary folder when a check fails.
Exit status 0 when every check passed, 1 otherwise, 2 on a usage error.
"""

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import websockets

sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "deployment"))

from harness import (STEP_S, Checks, Failed, Proc, Resp, Tab, ahttp,  # noqa: E402
                     free_port, of_type, run_bounded, task_frame, wait_port)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
# Generous bounds: a busy shared machine (or a sanitizer build) may be many times slower than
# an idle one. Only a failing run waits them out.
TOTAL_TIMEOUT = 240  # seconds, the whole run; an idle run takes about 25 s
STEP = STEP_S        # seconds, one network step (15)
WAIT = 30.0          # seconds, the cluster settling (nodes joining, reconnecting)

HEARTBEAT_S = 0.5
NODE_TTL_S = 2.0
DECIDED_KEPT_S = 3.0
TIMINGS = (f"heartbeat_interval={int(HEARTBEAT_S * 1000)}ms,node_ttl={NODE_TTL_S}s,"
           f"decided_kept={DECIDED_KEPT_S}s,reconnect_initial=50ms,reconnect_max=500ms,"
           "cancel_timeout=10s")
NODE_NAMES = ("a", "b", "c")
# nginx.conf's placeholders, in the order of the nodes
UPSTREAM_PLACEHOLDERS = ("127.0.0.1:8765", "127.0.0.1:8766", "127.0.0.1:8767")
LISTEN_PLACEHOLDER = "listen 8080;"

checks = Checks()
check = checks.check
require = checks.require


def confirm_task(name, timeout_ms=60000):
    return {"name": name, "confirm_timeout_ms": timeout_ms,
            "steps": [{"name": "ask", "work_ms": 0, "confirm": f"{name}: proceed?"},
                      {"name": "finish", "work_ms": 0}]}


def answers(task):
    """The task log's `Answer: ...` lines: one per resolved notify_user."""
    return [line["text"] for line in task.get("log", []) if line["text"].startswith("Answer:")]


class Deployment:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.procs = []
        self.redis = None
        self.redis_port = free_port()
        self.resp = Resp(self.redis_port)
        self.prefix = f"wsmdeploy{os.getpid()}"
        self.nodes = {}        # name -> Proc
        self.ports = {}        # name -> port
        self.node_ids = {}     # name -> node id
        self.nginx = None
        self.nginx_port = None
        self.tabs = []

    # ---- processes -----------------------------------------------------------------------

    def start_redis(self):
        self.redis = Proc("redis", [self.args.redis_server, "--port", str(self.redis_port),
                                    "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                    "--protected-mode", "yes"],
                          os.path.join(self.tmp, "redis.log"), cwd=self.tmp)
        self.procs.append(self.redis)
        deadline = time.monotonic() + WAIT
        while not self.resp.reachable():
            if time.monotonic() > deadline or not self.redis.alive():
                raise Failed("redis-server did not start (see redis.log)")
            time.sleep(0.05)

    def node_env(self, name):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("WEBSOCKET_") and not k.startswith("TASK_SERVER_")}
        env.update({
            "WEBSOCKET_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}",
            "WEBSOCKET_NODE_ID": f"node-{name}",
            "WEBSOCKET_CLUSTER_PREFIX": self.prefix,
            "WEBSOCKET_LOG_LEVEL": "warning",
            "TASK_SERVER_CLUSTER_TIMINGS": TIMINGS,
        })
        return env

    def start_node(self, name, port=0):
        proc = Proc(f"node-{name}", [self.args.task_server, "--host", "127.0.0.1", "--port",
                                     str(port), "--max-running", "16"],
                    os.path.join(self.tmp, f"node-{name}.log"), env=self.node_env(name),
                    cwd=self.tmp)
        self.procs.append(proc)
        node_line = proc.wait_line("NODE ", WAIT)
        listening = proc.wait_line("LISTENING ", WAIT)
        self.nodes[name] = proc
        self.ports[name] = int(listening.split()[1])
        self.node_ids[name] = node_line.split()[1]
        return proc

    def write_nginx_conf(self):
        with open(os.path.join(DEPLOY, "nginx.conf")) as f:
            original = f.read()
        text = original
        for placeholder, name in zip(UPSTREAM_PLACEHOLDERS, NODE_NAMES):
            require(text.count(placeholder) == 1,
                    f"deploy/nginx.conf names upstream {placeholder} once")
            text = text.replace(placeholder, f"127.0.0.1:{self.ports[name]}")
        require(text.count(LISTEN_PLACEHOLDER) == 1, f"deploy/nginx.conf has `{LISTEN_PLACEHOLDER}` once")
        self.nginx_port = free_port()
        text = text.replace(LISTEN_PLACEHOLDER, f"listen {self.nginx_port};")
        changed = [(a, b) for a, b in zip(original.splitlines(), text.splitlines()) if a != b]
        check(len(changed) == 4 and len(original.splitlines()) == len(text.splitlines()),
              "the test runs deploy/nginx.conf as is: only 3 upstream ports and the listen port "
              "differ", str(changed))
        prefix = os.path.join(self.tmp, "nginx")
        os.makedirs(prefix)
        # Started as root, nginx's workers run as nobody: they must reach the temp folders.
        os.chmod(self.tmp, 0o755)
        os.chmod(prefix, 0o755)
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(text)
        return prefix, conf

    def start_nginx(self):
        prefix, conf = self.write_nginx_conf()
        argv = [self.args.nginx, "-e", "stderr", "-p", prefix + "/", "-c", conf]
        test = subprocess.run(argv + ["-t"], capture_output=True, text=True, timeout=WAIT)
        require(test.returncode == 0, "nginx -t accepts the configuration", test.stderr)
        self.nginx = Proc("nginx", argv, os.path.join(self.tmp, "nginx.log"), cwd=self.tmp)
        self.procs.append(self.nginx)
        require(wait_port(self.nginx_port, WAIT), "nginx listens")

    # ---- cluster state -------------------------------------------------------------------

    async def status(self, name):
        status, body = await ahttp(self.ports[name], "GET", "/status")
        if status != 200 or not isinstance(body, dict):
            raise Failed(f"GET /status on node {name}: {status} {body!r:.200}")
        return body

    async def wait_cluster(self, names, nodes, timeout, what):
        deadline = time.monotonic() + timeout
        last = {}
        while time.monotonic() < deadline:
            ok = True
            for name in names:
                try:
                    s = await self.status(name)
                except (Failed, OSError):
                    ok = False
                    continue
                last[name] = s.get("cluster")
                cluster = s.get("cluster") or {}
                ok &= bool(cluster.get("connected")) and cluster.get("nodes") == nodes
            if ok:
                return True
            await asyncio.sleep(0.1)
        raise Failed(f"{what}: cluster not {nodes} connected nodes within {timeout} s: {last}")

    async def task(self, name, task_id):
        status, body = await ahttp(self.ports[name], "GET", f"/api/tasks/{task_id}")
        if status != 200:
            raise Failed(f"GET /api/tasks/{task_id} on node {name}: {status} {body!r:.200}")
        return body

    async def wait_task(self, name, task_id, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        task = None
        while time.monotonic() < deadline:
            task = await self.task(name, task_id)
            if predicate(task):
                return task
            await asyncio.sleep(0.1)
        raise Failed(f"{what}: task {task_id} on node {name} is {task and task.get('state')}")

    async def start_task(self, name, user, definition):
        status, body = await ahttp(self.ports[name], "POST", "/api/tasks",
                                   {"user_id": user, "task": definition})
        if status != 201:
            raise Failed(f"POST /api/tasks on node {name}: {status} {body}")
        return body["task_id"]

    async def admin(self, name, operation, body):
        status, reply = await ahttp(self.ports[name], "POST", f"/api/admin/{operation}", body)
        if status != 202:
            raise Failed(f"POST /api/admin/{operation} on node {name}: {status} {reply}")
        return reply

    # ---- tabs ----------------------------------------------------------------------------

    async def tab(self, name, user, where):
        """A tab of `user` on node `where` (a, b, c) or through nginx ('nginx')."""
        port = self.nginx_port if where == "nginx" else self.ports[where]
        t = Tab(name, port, user)
        await t.open()
        if where != "nginx":
            t.node = where
        self.tabs.append(t)
        return t

    async def connections(self):
        counts = {}
        for name in self.nodes:
            if self.nodes[name].alive():
                counts[name] = (await self.status(name))["active_connections"]
        return counts

    async def nginx_tab(self, name, user):
        """A tab through nginx, and the node it landed on (from the nodes' /status)."""
        before = await self.connections()
        t = await self.tab(name, user, "nginx")
        deadline = time.monotonic() + STEP
        while time.monotonic() < deadline:
            after = await self.connections()
            grown = [n for n in after if after[n] > before.get(n, 0)]
            if len(grown) == 1:
                t.node = grown[0]
                return t
            await asyncio.sleep(0.05)
        raise Failed(f"cannot tell which node {name} reached through nginx")

    async def close_tabs(self):
        for t in self.tabs:
            await t.close()
        self.tabs = []

    def stop_all(self):
        for proc in reversed(self.procs):
            if proc.alive():
                proc.stop(signal.SIGTERM, timeout=15)
            proc.close_log()


# ---- 0: the deployment's files and its build script --------------------------------------

def check_files(args):
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        dockerfile = f.read()
    runs = [m.group(1).strip() for m in re.finditer(r"^RUN\s+(.+?)\s*$", dockerfile, re.M)]
    builds = [r for r in runs if "build-task-server.sh" in r]
    check(builds == ["deploy/build-task-server.sh deps",
                     "deploy/build-task-server.sh build build/deploy"],
          "deploy/Dockerfile installs and builds through deploy/build-task-server.sh only",
          str(runs))
    check(not any(re.search(r"\b(cmake|apt-get|apt|make|g\+\+|install-\w+-deps\.sh)\b", r)
                  for r in runs if "build-task-server.sh" not in r),
          "no other RUN line of deploy/Dockerfile builds or installs anything", str(runs))
    check(re.search(r"^FROM debian:12\b", dockerfile, re.M),
          "deploy/Dockerfile starts from debian:12")

    with open(os.path.join(DEPLOY, "docker-compose.yml")) as f:
        compose_text = f.read()
    compose = None
    try:
        import yaml  # python3-yaml, when there
        compose = yaml.safe_load(compose_text)
    except ImportError:
        pass
    if compose is not None:
        services = compose.get("services", {})
        nodes = [services.get(f"websocket{i}", {}) for i in (1, 2, 3)]
        ports = [str(n.get("environment", {}).get("WEBSOCKET_PORT")) for n in nodes]
        check(ports == [p.split(":")[1] for p in UPSTREAM_PLACEHOLDERS],
              "compose's three nodes listen on nginx.conf's upstream ports", str(ports))
        check(all(n.get("environment", {}).get("WEBSOCKET_REDIS_URL") for n in nodes) and
              all(n.get("network_mode") == "service:nginx" for n in nodes),
              "compose's nodes join Redis and share nginx's network namespace")
        check(any(v.startswith("./nginx.conf:") for v in
                  services.get("nginx", {}).get("volumes", [])),
              "compose's nginx runs deploy/nginx.conf")
        check(all(s.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
                  for s in services.values()),
              "every compose service runs deploy/Dockerfile's image")
    else:
        check("./nginx.conf:" in compose_text and compose_text.count("WEBSOCKET_PORT") == 3,
              "compose runs deploy/nginx.conf and three nodes (no python3-yaml: text check)")

    script = os.path.join(DEPLOY, "build-task-server.sh")
    env = dict(os.environ, WSMANAGER_BUILD_JOBS="1")
    started = time.monotonic()
    for step in (["deps"], ["build", args.build_dir]):
        status, output = run_bounded(["nice", "-n", "19", "bash", script] + step, 240, env)
        require(status == 0, f"deploy/build-task-server.sh {step[0]} (the Dockerfile's "
                f"step) succeeds here", output[-2000:])
        if step[0] == "build":
            built = [line.split("=", 1)[1] for line in output.splitlines()
                     if line.startswith("TASK_SERVER=")]
            check(built and os.path.realpath(built[-1]) == os.path.realpath(args.task_server),
                  "deploy/build-task-server.sh builds the task_server this test runs",
                  f"{built} vs {args.task_server}")
    print(f"        (the build script took {time.monotonic() - started:.1f} s)")


# ---- 1: through nginx --------------------------------------------------------------------

async def through_nginx(d):
    port = d.nginx_port
    status, body = await ahttp(port, "GET", "/")
    check(status == 200 and "<html" in str(body).lower(), "nginx serves the dashboard (GET /)",
          f"{status}")
    status, body = await ahttp(port, "GET", "/healthz")
    check(status == 200 and str(body).strip() == "ok", "GET /healthz through nginx: 200",
          f"{status} {body!r:.80}")
    for path in ("/metrics", "/status", "/status?x=1", "//metrics", "/metrics/../status"):
        status, _ = await ahttp(port, "GET", path)
        check(status == 403, f"GET {path} through nginx is refused (403)", str(status))
    status, _ = await ahttp(port, "POST", "/api/admin/broadcast",
                            {"message": {"type": "intruder"}})
    check(status == 403, "POST /api/admin/broadcast through nginx is refused (403)", str(status))
    status, body = await ahttp(d.ports["a"], "GET", "/status")
    check(status == 200 and body.get("node_id") == d.node_ids["a"] and
          body.get("cluster", {}).get("nodes") == 3,
          "GET /status on a node, from loopback: its node_id and 3 nodes", f"{body!r:.300}")
    status, body = await ahttp(port, "POST", "/api/tasks", {"user_id": "zed", "task": {
        "name": "through nginx", "steps": [{"name": "noop", "work_ms": 0}]}})
    check(status == 201 and body.get("task_id"), "POST /api/tasks through nginx: 201",
          f"{status} {body!r:.200}")
    t = await d.tab("zed-n", "zed", "nginx")
    check(t.ws.subprotocol == "wsmanager.v1", "a WebSocket through nginx gets wsmanager.v1")
    check(await t.ping(), "ping/pong through nginx")


# ---- 2: fan-out across nodes -------------------------------------------------------------

async def fan_out(d):
    alice_a = await d.tab("alice@a", "alice", "a")
    alice_b = await d.tab("alice@b", "alice", "b")
    bob_c = await d.tab("bob@c", "bob", "c")
    carol_b = await d.tab("carol@b", "carol", "b")
    carol_c = await d.tab("carol@c", "carol", "c")
    carol_n = await d.tab("carol@nginx", "carol", "nginx")
    ned_n = await d.tab("ned@nginx", "ned", "nginx")
    everyone = [alice_a, alice_b, bob_c, carol_b, carol_c, carol_n, ned_n]

    for origin in NODE_NAMES:
        marker = f"broadcast-from-{origin}"
        await d.admin(origin, "broadcast", {"message": {"type": "probe", "marker": marker}})
        for t in everyone:
            await t.wait(of_type("probe", marker=marker), STEP, marker)
    await asyncio.sleep(0.5)
    for origin in NODE_NAMES:
        marker = f"broadcast-from-{origin}"
        counts = {t.name: t.count(of_type("probe", marker=marker)) for t in everyone}
        check(all(c == 1 for c in counts.values()),
              f"broadcast from node {origin}: every connection of every node, exactly once",
              str(counts))

    await d.admin("c", "send_to_user", {"user_id": "alice",
                                        "message": {"type": "probe", "marker": "to-alice"}})
    for t in (alice_a, alice_b):
        await t.wait(of_type("probe", marker="to-alice"), STEP, "to-alice")
    await asyncio.sleep(0.4)
    counts = {t.name: t.count(of_type("probe", marker="to-alice")) for t in everyone}
    check(counts == {t.name: (1 if t.user == "alice" else 0) for t in everyone},
          "send_to_user on C: alice's tabs on A and B once each, nobody else", str(counts))

    # A topic of a task that runs on A. The demo lets only the task's own user join
    # task:<id>, and only on the node that runs the task (the others do not know it).
    topic_task = await d.start_task("a", "alice", {"name": "watched", "steps": [
        {"name": "wait", "work_ms": 20000}]})
    topic = f"task:{topic_task}"
    start = len(alice_a.frames)
    await alice_a.send({"action": "subscribe", "topic": topic})
    await alice_a.wait(of_type("subscribed", topic=topic), STEP, "subscribed", start)
    start = len(alice_b.frames)
    await alice_b.send({"action": "subscribe", "topic": topic, "request_id": "sub-b"})
    refused = await alice_b.wait(of_type("error", request_id="sub-b"), STEP, "error", start)
    check(refused.get("code") == "forbidden",
          "the demo refuses task:<id> on a node that does not run the task", str(refused))
    await d.admin("b", "publish", {"topic": topic,
                                   "message": {"type": "probe", "marker": "published"}})
    await alice_a.wait(of_type("probe", marker="published"), STEP, "published")
    await asyncio.sleep(0.4)
    counts = {t.name: t.count(of_type("probe", marker="published")) for t in everyone}
    check(counts == {t.name: (1 if t is alice_a else 0) for t in everyone},
          "publish on B reaches the topic's subscriber on A once, nobody else", str(counts))
    await alice_a.send({"action": "cancel", "task_id": topic_task})
    await alice_a.wait(of_type("task_cancelled", task_id=topic_task), STEP, "task_cancelled")

    await d.admin("a", "disconnect_user", {"user_id": "carol", "code": 4001,
                                           "reason": "logged out"})
    closes = {}
    for t in (carol_b, carol_c, carol_n):
        closes[t.name] = await t.wait_closed(STEP)
    check(all(c == (4001, "logged out") for c in closes.values()),
          "disconnect_user on A closes carol's tabs on B, C and behind nginx (4001)",
          str(closes))
    still = [await t.ping() for t in (alice_a, alice_b, bob_c, ned_n)]
    check(all(still), "the other connections stay open")


# ---- 3: a question asked on A, answered on B ---------------------------------------------

async def confirm_across(d):
    dora_a = await d.tab("dora@a", "dora", "a")
    dora_b = await d.tab("dora@b", "dora", "b")
    task_id = await d.start_task("a", "dora", confirm_task("across"))
    asked_a = await dora_a.wait(of_type("task_step_result", task_id=task_id), STEP, "request")
    asked_b = await dora_b.wait(of_type("task_step_result", task_id=task_id), STEP, "request")
    callback = asked_a["callback_id"]
    check(asked_b["callback_id"] == callback, "the request reaches dora's tabs on A and B")
    dora_c = await d.tab("dora@c", "dora", "c")
    asked_c = await dora_c.wait(of_type("task_step_result", callback_id=callback), STEP,
                                "request on C")
    check(asked_c["timeout_s"] > 0, "a tab that connects to C after the request gets it",
          str(asked_c))
    dora_n = await d.tab("dora@nginx", "dora", "nginx")
    await dora_n.wait(of_type("task_step_result", callback_id=callback), STEP,
                      "request through nginx")
    tabs = [dora_a, dora_b, dora_c, dora_n]

    await dora_b.send({"action": "confirm", "callback_id": callback, "proceed": True,
                       "feedback": "from B"})
    for t in tabs:
        await t.wait(of_type("confirmation_resolved", callback_id=callback), STEP,
                     f"confirmation_resolved on {t.name}")
    task = await d.wait_task("a", task_id, lambda t: t["state"] == "completed", WAIT,
                             "the task proceeds")
    await asyncio.sleep(0.3)
    resolved = {t.name: t.matching(of_type("confirmation_resolved", callback_id=callback))
                for t in tabs}
    check(all(len(r) == 1 and r[0]["proceed"] is True and r[0]["feedback"] == "from B" and
              r[0]["reason"] == "user" for r in resolved.values()),
          "every tab (A, B, C, nginx) gets confirmation_resolved once, with B's answer",
          str({k: len(v) for k, v in resolved.items()}))
    got = answers(task)
    check(len(got) == 1 and 'feedback: "from B"' in got[0],
          "A's notify_user resolved once, with the answer given on B", str(got))

    await dora_c.send({"action": "confirm", "callback_id": callback, "proceed": False,
                       "request_id": "late"})
    late = await dora_c.wait(of_type("error", request_id="late"), STEP, "late error")
    check(late["code"] == "unknown_callback", "a late answer gets unknown_callback", str(late))


# ---- 4: two tabs, one question, the same moment ------------------------------------------

async def race(d, tasks=2, steps=15):
    """`tasks` tasks on A one after the other, each asking `steps` questions (the demo allows
    20 steps a task); every question answered by both tabs at once."""
    erin_a = await d.tab("erin@a", "erin", "a")
    erin_b = await d.tab("erin@b", "erin", "b")
    rounds = []   # (task id, callback id), in order
    logs = []     # each round's `Answer:` line, from its task's log
    for n in range(tasks):
        definition = {"name": f"race {n}", "confirm_timeout_ms": 60000,
                      "steps": [{"name": f"r{i}", "work_ms": 0, "confirm": f"round {i}?"}
                                for i in range(steps)]}
        task_id = await d.start_task("a", "erin", definition)
        for step in range(1, steps + 1):
            i = len(rounds)
            qa = await erin_a.wait(of_type("task_step_result", task_id=task_id, step=step),
                                   STEP, f"round {i} on A")
            qb = await erin_b.wait(of_type("task_step_result", task_id=task_id, step=step),
                                   STEP, f"round {i} on B")
            callback = qa["callback_id"]
            if qb["callback_id"] != callback:
                raise Failed(f"round {i}: two requests for one question ({callback}, "
                             f"{qb['callback_id']})")
            await asyncio.gather(
                erin_a.send({"action": "confirm", "callback_id": callback, "proceed": True,
                             "feedback": "A", "request_id": f"race{i}-A"}),
                erin_b.send({"action": "confirm", "callback_id": callback, "proceed": True,
                             "feedback": "B", "request_id": f"race{i}-B"}))
            for t in (erin_a, erin_b):
                await t.wait(of_type("confirmation_resolved", callback_id=callback), STEP,
                             f"round {i} resolved on {t.name}")
            rounds.append((task_id, callback))
        task = await d.wait_task("a", task_id, lambda t: t["state"] == "completed", WAIT,
                                 f"race task {n} completes")
        got = answers(task)
        logs.extend(got + [None] * (steps - len(got)))
        check(len(got) == steps, f"race task {n}: A's notify_user resolved once per question",
              f"{len(got)} answers for {steps} questions")
    # The loser's error may trail the winner's news: wait until every round has one.
    def error_of(t, side, i):
        return t.matching(of_type("error", request_id=f"race{i}-{side}"))
    deadline = time.monotonic() + STEP
    while time.monotonic() < deadline and not all(
            error_of(erin_a, "A", i) or error_of(erin_b, "B", i) for i in range(len(rounds))):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # a second error or decision would show by now
    problems = []
    wins = {"A": 0, "B": 0}
    for i, (_, callback) in enumerate(rounds):
        errors = {"A": error_of(erin_a, "A", i), "B": error_of(erin_b, "B", i)}
        losers = [side for side, e in errors.items() if e]
        resolved = [t.matching(of_type("confirmation_resolved", callback_id=callback))
                    for t in (erin_a, erin_b)]
        if len(losers) != 1 or len(errors[losers[0]]) != 1 or \
                errors[losers[0]][0].get("code") != "unknown_callback":
            problems.append(f"round {i}: errors {errors}")
            continue
        winner = "B" if losers[0] == "A" else "A"
        wins[winner] += 1
        if any(len(r) != 1 or r[0].get("feedback") != winner for r in resolved):
            problems.append(f"round {i}: resolved {resolved}")
        if logs[i] is None or f'feedback: "{winner}"' not in logs[i]:
            problems.append(f"round {i}: task log {logs[i]}")
    check(not problems,
          f"{len(rounds)} simultaneous answers on A and B: one winner each time "
          f"(A {wins['A']}, B {wins['B']}), the other unknown_callback, both tabs told the "
          f"winner once, A's call resolved with the winner's answer", "; ".join(problems[:5]))


# ---- 5: the timeout ----------------------------------------------------------------------

async def timeout_loses(d):
    fay_b = await d.tab("fay@b", "fay", "b")
    task_id = await d.start_task("a", "fay", confirm_task("short", timeout_ms=1000))
    asked = await fay_b.wait(of_type("task_step_result", task_id=task_id), STEP, "request")
    resolved = await fay_b.wait(of_type("confirmation_resolved",
                                        callback_id=asked["callback_id"]), STEP, "timeout")
    check(resolved["reason"] == "timeout" and resolved["proceed"] is True,
          "the question times out on A (proceed, reason timeout) and B's tab is told",
          str(resolved))
    await fay_b.send({"action": "confirm", "callback_id": asked["callback_id"],
                      "proceed": False, "request_id": "after-timeout"})
    late = await fay_b.wait(of_type("error", request_id="after-timeout"), STEP, "error")
    check(late["code"] == "unknown_callback", "an answer after the timeout loses",
          str(late))
    task = await d.wait_task("a", task_id, lambda t: t["state"] == "completed", WAIT,
                             "the task proceeds after the timeout")
    got = answers(task)
    check(len(got) == 1 and "(timeout)" in got[0], "A's call resolved once, by the timeout",
          str(got))


# ---- 6: cancel on B, task on A -----------------------------------------------------------

async def cancel_across(d):
    gus_b = await d.tab("gus@b", "gus", "b")
    hal_c = await d.tab("hal@c", "hal", "c")
    task_id = await d.start_task("a", "gus", {"name": "long", "heartbeat_ms": 500,
                                              "steps": [{"name": "wait", "work_ms": 30000}]})
    await gus_b.wait(task_frame(task_id, "running"), STEP, "running")
    await hal_c.send({"action": "cancel", "task_id": task_id, "request_id": "hal"})
    refused = await hal_c.wait(of_type("error", request_id="hal"), STEP, "refusal")
    check(refused["code"] == "forbidden", "another user's cancel (on C) is refused",
          str(refused))
    check((await d.task("a", task_id))["state"] == "running", "... and the task runs on")
    await gus_b.send({"action": "cancel", "task_id": task_id})
    await gus_b.wait(of_type("task_cancelled", task_id=task_id), STEP, "task_cancelled")
    await gus_b.wait(task_frame(task_id, "cancelled"), STEP, "cancelled")
    # A's handler logs the cancel; its line may reach us after B's frames.
    deadline = time.monotonic() + STEP
    while not (said := any(line.endswith(f"gus cancels task {task_id}")
                           for line in d.nodes["a"].output())) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    check(said, "a cancel on B reached the on_cancel handler of A, which runs the task")
    check((await d.task("a", task_id))["state"] == "cancelled", "the task is cancelled on A")


# ---- 7: Redis killed and restarted -------------------------------------------------------

async def redis_outage(d):
    ivy_a = await d.tab("ivy@a", "ivy", "a")
    ivy_b = await d.tab("ivy@b", "ivy", "b")
    question = await d.start_task("a", "ivy", confirm_task("outage"))
    asked = await ivy_b.wait(of_type("task_step_result", task_id=question), STEP, "request")
    await ivy_a.wait(of_type("task_step_result", task_id=question), STEP, "request on A")
    callback = asked["callback_id"]
    # Long enough to outlive the outage however slow the machine is; cancelled at the end.
    work = await d.start_task("a", "ivy", {"name": "work", "heartbeat_ms": 1000,
                                           "steps": [{"name": "grind", "work_ms": 120000}]})
    await ivy_b.wait(task_frame(work, "running"), STEP, "work running")

    d.redis.kill_hard()
    outage = time.monotonic()
    deadline = outage + STEP
    while time.monotonic() < deadline:
        states = [(await d.status(n))["cluster"]["connected"] for n in NODE_NAMES]
        if not any(states):
            break
        await asyncio.sleep(0.05)
    check(not any(states), "every node reports cluster.connected false without Redis",
          str(states))
    mark_a, mark_b = len(ivy_a.frames), len(ivy_b.frames)
    await d.admin("a", "broadcast", {"message": {"type": "probe", "marker": "outage-a"}})
    await d.admin("b", "send_to_user", {"user_id": "ivy",
                                        "message": {"type": "probe", "marker": "outage-b"}})
    await ivy_a.wait(of_type("probe", marker="outage-a"), STEP, "local broadcast on A")
    await ivy_b.wait(of_type("probe", marker="outage-b"), STEP, "local send_to_user on B")
    check(True, "without Redis, delivery to a node's own connections goes on")
    progress = await ivy_a.wait(task_frame(work), STEP, "progress", mark_a + 1)
    check(progress, "a task running on A keeps reporting its progress to A's tab")
    for t, rid in ((ivy_b, "outage-confirm-b"), (ivy_a, "outage-confirm-a")):
        await t.send({"action": "confirm", "callback_id": callback, "proceed": True,
                      "feedback": "during outage", "request_id": rid})
        reply = await t.wait(of_type("error", request_id=rid), STEP, "unavailable")
        check(reply["code"] == "unavailable",
              f"a confirm on {t.node.upper()} without Redis gets `unavailable`", str(reply))
    await asyncio.sleep(0.5)
    crossed = (ivy_b.count(of_type("probe", marker="outage-a"), mark_b),
               ivy_a.count(of_type("probe", marker="outage-b"), mark_a))
    check(crossed == (0, 0),
          "... and nothing crosses to the other nodes meanwhile", str(crossed))

    # Redis comes back on its port, empty (no persistence).
    d.start_redis()
    await d.wait_cluster(NODE_NAMES, 3, WAIT, "every node back on Redis")
    # A has recorded its question again (reconciled).
    key = f"{d.prefix}:conf:{callback}"
    deadline = time.monotonic() + STEP
    while d.resp.command("HGET", key, "state") != "pending" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    check(d.resp.command("HGET", key, "state") == "pending",
          "A recorded its pending question in the new Redis (reconciled)")

    # The client retries while it hears `unavailable`, as the protocol says it may.
    decided = False
    for attempt in range(30):
        rid = f"retry-{attempt}"
        start = len(ivy_b.frames)
        await ivy_b.send({"action": "confirm", "callback_id": callback, "proceed": True,
                          "feedback": "after outage", "request_id": rid})
        try:
            await ivy_b.wait(lambda f: (f.get("type") == "confirmation_resolved" and
                                        f.get("callback_id") == callback) or
                             f.get("request_id") == rid, STEP, "reply", start)
        except Failed:
            pass
        await asyncio.sleep(0.2)
        reply = ivy_b.matching(of_type("error", request_id=rid), start)
        if not reply or reply[0]["code"] != "unavailable":
            decided = not reply
            break
    check(decided, "after Redis is back, B's answer decides the question",
          str(ivy_b.matching(of_type("error"))[-3:]))
    for t in (ivy_a, ivy_b):
        await t.wait(of_type("confirmation_resolved", callback_id=callback), STEP,
                     f"resolved on {t.name}")
    task = await d.wait_task("a", question, lambda t: t["state"] == "completed", WAIT,
                             "the question's task proceeds")
    await asyncio.sleep(0.3)
    got = answers(task)
    counts = [t.count(of_type("confirmation_resolved", callback_id=callback))
              for t in (ivy_a, ivy_b)]
    check(len(got) == 1 and "after outage" in got[0] and counts == [1, 1],
          "the question was decided once, as answered after the outage, and told once",
          f"{got} {counts}")

    await d.admin("a", "broadcast", {"message": {"type": "probe", "marker": "after-a"}})
    await ivy_b.wait(of_type("probe", marker="after-a"), STEP, "broadcast from A on B")
    await d.admin("c", "send_to_user", {"user_id": "ivy",
                                        "message": {"type": "probe", "marker": "after-c"}})
    for t in (ivy_a, ivy_b):
        await t.wait(of_type("probe", marker="after-c"), STEP, f"after-c on {t.name}")
    check(True, "after Redis is back, cross-node delivery resumes")
    mark_b = len(ivy_b.frames)
    await ivy_b.wait(task_frame(work, "running"), STEP, "the work task's progress on B", mark_b)
    await ivy_b.send({"action": "cancel", "task_id": work})
    await d.wait_task("a", work, lambda t: t["state"] == "cancelled", WAIT,
                      "the task that ran through the outage, cancelled from B")
    check(True, "the task that ran through the outage reports to B again and B cancels it")


# ---- 8: a node killed --------------------------------------------------------------------

async def node_killed(d):
    jay_c = await d.tab("jay@c", "jay", "c")
    behind = [await d.nginx_tab(f"jay@nginx{i}", "jay") for i in range(3)]
    for i in range(3):
        if any(t.node == "c" for t in behind):
            break
        behind.append(await d.nginx_tab(f"jay@nginx{3 + i}", "jay"))
    on_c = [t for t in behind if t.node == "c"]
    require(on_c, "a tab through nginx landed on node C", str([t.node for t in behind]))
    question = await d.start_task("a", "jay", confirm_task("failover"))
    for t in [jay_c] + behind:
        await t.wait(of_type("task_step_result", task_id=question), STEP, f"request {t.name}")
    callback = jay_c.matching(of_type("task_step_result", task_id=question))[0]["callback_id"]

    kim_a = await d.tab("kim@a", "kim", "a")
    kims = await d.start_task("c", "kim", confirm_task("on C"))
    kim_asked = await kim_a.wait(of_type("task_step_result", task_id=kims), STEP,
                                 "kim's request")

    d.nodes["c"].kill_hard()
    killed = time.monotonic()
    # The dead node's heartbeat key expires NODE_TTL_S after its last beat; the slack is for
    # a busy machine, where the polling and the live nodes' own beats run late.
    bound = NODE_TTL_S + HEARTBEAT_S + 4.0
    dropped = {}
    while time.monotonic() - killed < bound + STEP and len(dropped) < 2:
        for name in ("a", "b"):
            if name not in dropped and (await d.status(name))["cluster"]["nodes"] == 2:
                dropped[name] = time.monotonic() - killed
        await asyncio.sleep(0.05)
    check(len(dropped) == 2 and max(dropped.values()) <= bound,
          f"A's and B's /status drop the dead node within the TTL "
          f"({', '.join(f'{k} {v:.2f} s' for k, v in sorted(dropped.items()))}; "
          f"TTL {NODE_TTL_S} s + heartbeat {HEARTBEAT_S} s + slack)", str(dropped))
    dismissed = await kim_a.wait(of_type("confirmation_resolved",
                                         callback_id=kim_asked["callback_id"]), bound + STEP,
                                 "the dead node's question dismissed")
    check(dismissed["reason"] == "shutdown" and dismissed["proceed"] is False,
          "the dead node's pending question is dismissed on the user's tab elsewhere "
          "(reason shutdown)", str(dismissed))

    for t in [jay_c] + on_c:
        check(await t.wait_closed(STEP) is not None, f"{t.name} lost its connection")
    # The clients reconnect through nginx, as the dashboard does (backoff, bounded).
    again = []
    for i, _ in enumerate(on_c):
        t = Tab(f"jay@nginx-again{i}", d.nginx_port, "jay")
        deadline = time.monotonic() + WAIT
        while True:
            try:
                await t.open()
                break
            except (Failed, OSError, asyncio.TimeoutError, Exception):
                if time.monotonic() > deadline:
                    raise Failed("cannot reconnect through nginx")
                await asyncio.sleep(0.2)
        d.tabs.append(t)
        again.append(t)
        await t.wait(of_type("task_step_result", callback_id=callback), STEP,
                     "the question again after reconnecting")
    check(True, "the user's tabs reconnect through nginx and get the pending question again")
    await again[0].send({"action": "confirm", "callback_id": callback, "proceed": True,
                         "feedback": "after failover"})
    survivors = [t for t in behind if t.node != "c"] + again
    for t in survivors:
        await t.wait(of_type("confirmation_resolved", callback_id=callback), STEP,
                     f"resolved on {t.name}")
    task = await d.wait_task("a", question, lambda t: t["state"] == "completed", WAIT,
                             "the question's task proceeds")
    await asyncio.sleep(0.3)
    got = answers(task)
    counts = [t.count(of_type("confirmation_resolved", callback_id=callback))
              for t in survivors]
    check(len(got) == 1 and "after failover" in got[0] and all(c == 1 for c in counts),
          "the question asked on A is answered once, through nginx, after C died",
          f"{got} {counts}")

    # C comes back with its node id, on its port (nginx's upstream).
    d.start_node("c", d.ports["c"])
    await d.wait_cluster(NODE_NAMES, 3, WAIT, "C rejoins")
    check(True, "the restarted node rejoins the cluster (3 nodes)")
    watcher = await d.tab("lou@a", "lou", "a")
    lou_c = await d.tab("lou@c", "lou", "c")
    await d.admin("a", "broadcast", {"message": {"type": "probe", "marker": "to-new-c"}})
    await lou_c.wait(of_type("probe", marker="to-new-c"), STEP, "A's broadcast on the new C")
    await d.admin("c", "broadcast", {"message": {"type": "probe", "marker": "from-new-c"}})
    await watcher.wait(of_type("probe", marker="from-new-c"), STEP, "C's broadcast on A")
    check(True, "a broadcast from the restarted node C (same node id) reaches A's connections")


# ---- 9: the end --------------------------------------------------------------------------

async def the_end(d):
    deadline = time.monotonic() + WAIT
    pending = {}
    while time.monotonic() < deadline:
        pending = {n: (await d.status(n))["pending_callbacks"] for n in NODE_NAMES}
        if not any(pending.values()):
            break
        await asyncio.sleep(0.1)
    check(not any(pending.values()), "pending_callbacks is back to 0 on every node",
          str(pending))
    await d.close_tabs()
    codes = {}
    for name in NODE_NAMES:
        codes[name] = d.nodes[name].stop(signal.SIGTERM, timeout=WAIT)
    check(all(c == 0 for c in codes.values()), "every node stops cleanly (SIGTERM, exit 0)",
          str(codes))
    keys = d.resp.keys(f"{d.prefix}:*")
    lasting = []
    for key in keys:
        ttl = d.resp.command("PTTL", key)
        state = d.resp.command("HGET", key, "state") if ":conf:" in key and \
            not key.endswith(":conf") else None
        if not (":conf:" in key and state == "resolved" and 0 < ttl <= DECIDED_KEPT_S * 1000):
            lasting.append((key, ttl, state))
    check(not lasting, "after the nodes stopped, Redis holds no node, user or pending keys "
          "(only decided confirmations, expiring within decided_kept)", str(lasting[:5]))
    deadline = time.monotonic() + DECIDED_KEPT_S + 2
    while d.resp.keys(f"{d.prefix}:*") and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    left = d.resp.keys(f"{d.prefix}:*")
    check(not left, "no Redis key of the cluster is left behind", str(left[:5]))
    check(d.resp.command("DBSIZE") == 0, "Redis is empty")


# ---- the run -----------------------------------------------------------------------------

async def run(d):
    timings = {}

    async def scenario(name, body):
        started = time.monotonic()
        print(f"---- {name}", flush=True)
        try:
            await body(d)
        except Failed as problem:
            check(False, f"{name}: could not finish", str(problem))
        except (OSError, EOFError, websockets.WebSocketException) as error:
            check(False, f"{name}: could not finish", f"{type(error).__name__}: {error}")
        timings[name] = time.monotonic() - started

    d.start_redis()
    for name in NODE_NAMES:
        d.start_node(name)
    d.start_nginx()
    await d.wait_cluster(NODE_NAMES, 3, WAIT, "three nodes join")
    check(True, f"redis, three nodes ({', '.join(d.node_ids.values())}) and nginx are up")

    await scenario("1 through nginx", through_nginx)
    await scenario("2 fan-out", fan_out)
    await scenario("3 confirmation across nodes", confirm_across)
    await scenario("4 simultaneous answers", race)
    await scenario("5 timeout", timeout_loses)
    await scenario("6 cancel across nodes", cancel_across)
    await d.close_tabs()
    await scenario("7 Redis outage", redis_outage)
    await scenario("8 node killed", node_killed)
    await scenario("9 the end", the_end)
    print("scenario times: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--task-server", required=True)
    parser.add_argument("--redis-server", required=True)
    parser.add_argument("--nginx", required=True)
    parser.add_argument("--keep", action="store_true", help="keep the logs' folder")
    args = parser.parse_args()
    for path in (args.task_server, args.redis_server, args.nginx):
        if not os.path.isabs(path):
            print(f"cluster_deployment_test: {path}: give absolute paths", file=sys.stderr)
            return 2

    started = time.monotonic()
    print("---- 0 the deployment files and the build script", flush=True)
    try:
        check_files(args)
    except (Failed, subprocess.TimeoutExpired) as problem:
        check(False, "the deployment files", str(problem))
        return 1

    tmp = tempfile.mkdtemp(prefix="wsm-deployment-")
    d = Deployment(args, tmp)
    try:
        asyncio.run(asyncio.wait_for(run(d), TOTAL_TIMEOUT))
    except Failed as problem:
        check(False, "the deployment came up", str(problem))
    except asyncio.TimeoutError:
        check(False, f"the run ended within {TOTAL_TIMEOUT} s")
    except Exception as error:  # a broken connection or a bug of the test: said plainly
        check(False, "ran to the end", f"{type(error).__name__}: {error}")
    finally:
        d.stop_all()
        if checks.failed or args.keep:
            print(f"logs kept in {tmp}")
            for name in ("redis", "nginx", "node-a", "node-b", "node-c"):
                path = os.path.join(tmp, f"{name}.log")
                if checks.failed and os.path.exists(path):
                    with open(path) as f:
                        tail = f.read().splitlines()[-15:]
                    print(f"---- last lines of {name}.log")
                    print("\n".join("  | " + line for line in tail))
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"{checks.passed} passed, {len(checks.failed)} failed, "
          f"{time.monotonic() - started:.1f} s")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
