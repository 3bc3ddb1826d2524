#!/usr/bin/python3
# SPDX-License-Identifier: BSL-1.0
"""permessage-deflate (RFC 7692) against wsmanager_test_server, with Python's `websockets`
(which offers it by default) and with a raw client that reads the frames' RSV1 bit.

Usage: python_deflate_test.py <path to wsmanager_test_server>

Starts the server twice: with WEBSOCKET_COMPRESSION=on, and with the default (off). Exits 0
when every check passes, 1 on the first mismatch, 2 on a usage error; bounded in time.
"""

import asyncio
import base64
import json
import os
import re
import struct
import sys
import time
import urllib.request
import zlib

import websockets

from test_server_client import STEP_TIMEOUT, Mismatch, check, main, recv_json

TOTAL_TIMEOUT = 90  # seconds, the whole test


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=STEP_TIMEOUT) as r:
        text = r.read().decode()
    found = re.search(rf"^{name} (\d+)$", text, re.MULTILINE)
    if not found:
        raise Mismatch(f"{name} not in /metrics")
    return int(found.group(1))


def extensions_of(ws):
    return ws.response_headers.get("Sec-WebSocket-Extensions", "")


def big_data(n):
    return [{"task_id": f"task-{i}", "step": "download", "done": False} for i in range(n)]


class RawClient:
    """Just enough of a WebSocket client to see each frame's RSV1 bit."""

    def __init__(self, reader, writer, response):
        self.reader, self.writer, self.response = reader, writer, response

    @classmethod
    async def connect(cls, port, offer="permessage-deflate; client_max_window_bits"):
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                                STEP_TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /?user_id=raw HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Extensions: {offer}\r\n\r\n")
        writer.write(request.encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP_TIMEOUT)
        return cls(reader, writer, head.decode("latin-1"))

    async def read_frame(self):
        """(rsv1, opcode, payload) of the next frame (the server's are never fragmented)."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), STEP_TIMEOUT)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        payload = await asyncio.wait_for(self.reader.readexactly(length), STEP_TIMEOUT)
        return bool(first & 0x40), first & 0x0F, payload

    def send(self, payload, rsv1=False):
        mask = os.urandom(4)
        header = bytes([0x81 | (0x40 if rsv1 else 0)])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) <= 0xFFFF:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)

    def close(self):
        self.writer.close()


def inflate(payload):
    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


def deflate_alone(data):
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


async def checks_with_compression(port):
    base = f"ws://127.0.0.1:{port}"

    # Python's websockets offers permessage-deflate by default.
    async with websockets.connect(f"{base}/?user_id=alice", open_timeout=STEP_TIMEOUT,
                                  close_timeout=STEP_TIMEOUT, max_size=2**24) as alice, \
            websockets.connect(f"{base}/?user_id=bob", open_timeout=STEP_TIMEOUT,
                               close_timeout=STEP_TIMEOUT, max_size=2**24) as bob, \
            websockets.connect(f"{base}/?user_id=carol", open_timeout=STEP_TIMEOUT,
                               close_timeout=STEP_TIMEOUT, max_size=2**24) as carol, \
            websockets.connect(f"{base}/?user_id=dave", compression=None,
                               open_timeout=STEP_TIMEOUT, close_timeout=STEP_TIMEOUT,
                               max_size=2**24) as dave:
        answer = extensions_of(alice)
        check(answer.startswith("permessage-deflate") and "server_no_context_takeover" in answer,
              f"negotiated: Sec-WebSocket-Extensions: {answer}")
        check(extensions_of(dave) == "", "a client that offers nothing gets no extension")
        for ws in (alice, bob, carol, dave):
            check((await recv_json(ws)).get("type") == "connected", "connected")

        # A client's compressed frame (websockets compresses what it sends) is answered.
        padding = "x" * 20000
        await asyncio.wait_for(alice.send(json.dumps(
            {"action": "ping", "request_id": "big", "padding": padding})), STEP_TIMEOUT)
        pong = await recv_json(alice)
        check(pong.get("type") == "pong" and pong.get("request_id") == "big",
              "a compressed client frame (a ping with 20 kB of padding) is answered")

        # One large broadcast to three deflate connections and a plain one: every client
        # reads it intact, and it was compressed once.
        compressed_before = metric(port, "wsmanager_messages_compressed_total")
        data = big_data(800)  # about 45 kB: within max_message_size on the way in
        await asyncio.wait_for(alice.send(json.dumps({"action": "broadcast", "data": data})),
                               STEP_TIMEOUT)
        for name, ws in (("alice", alice), ("bob", bob), ("carol", carol), ("dave", dave)):
            frame = await recv_json(ws)
            check(frame.get("type") == "broadcast" and frame.get("data") == data,
                  f"{name} receives the large broadcast intact")
        compressed = metric(port, "wsmanager_messages_compressed_total") - compressed_before
        check(compressed == 1,
              f"the broadcast to 3 deflate connections was compressed once (counted {compressed})")

        # A compression bomb: 10 MB that deflates to about 10 kB, past max_message_size
        # (64 KiB) once inflated: closed with 1009.
        async with websockets.connect(f"{base}/?user_id=mallory", open_timeout=STEP_TIMEOUT,
                                      close_timeout=STEP_TIMEOUT) as mallory:
            await recv_json(mallory)
            await asyncio.wait_for(mallory.send("a" * 10_000_000), STEP_TIMEOUT * 2)
            try:
                await asyncio.wait_for(mallory.recv(), STEP_TIMEOUT)
                raise Mismatch("the compression bomb did not close the connection")
            except websockets.ConnectionClosed as closed:
                check(closed.rcvd is not None and closed.rcvd.code == 1009,
                      f"a compression bomb is closed with 1009 (got {closed.rcvd})")

        # Everyone else is still served.
        await asyncio.wait_for(bob.send(json.dumps({"action": "ping", "request_id": "after"})),
                               STEP_TIMEOUT)
        check((await recv_json(bob)).get("request_id") == "after",
              "other connections are still served after the bomb")

    # The frames themselves: small ones plain, large ones compressed (RSV1), both readable.
    raw = await RawClient.connect(port)
    try:
        check("permessage-deflate; server_no_context_takeover" in raw.response,
              "the raw client's offer is answered with server_no_context_takeover")
        rsv1, opcode, payload = await raw.read_frame()
        check(opcode == 1 and not rsv1 and json.loads(payload)["type"] == "connected",
              f"a small message ({len(payload)} bytes) is sent uncompressed")
        ping = json.dumps({"action": "ping", "request_id": "raw", "padding": "y" * 5000})
        raw.send(deflate_alone(ping.encode()), rsv1=True)
        rsv1, opcode, payload = await raw.read_frame()
        check(opcode == 1 and not rsv1 and json.loads(payload)["request_id"] == "raw",
              "a compressed frame from the raw client is answered (a small pong, uncompressed)")
        echo = {"action": "echo", "data": big_data(100), "request_id": "e"}
        raw.send(json.dumps(echo).encode())
        rsv1, opcode, payload = await raw.read_frame()
        text = inflate(payload)
        check(opcode == 1 and rsv1 and json.loads(text)["data"] == echo["data"],
              f"a large message is compressed (RSV1): {len(payload)} bytes for {len(text)}")
    finally:
        raw.close()


async def checks_without_compression(port):
    base = f"ws://127.0.0.1:{port}"
    async with websockets.connect(f"{base}/?user_id=alice", open_timeout=STEP_TIMEOUT,
                                  close_timeout=STEP_TIMEOUT) as alice:
        check(extensions_of(alice) == "",
              "compression off by default: no extension in the response, even though offered")
        await recv_json(alice)
        await asyncio.wait_for(alice.send(json.dumps({"action": "echo", "data": big_data(100)})),
                               STEP_TIMEOUT)
        check((await recv_json(alice)).get("type") == "echo", "served uncompressed")

    # A client that compresses anyway, unasked, breaks the protocol: closed with 1002.
    raw = await RawClient.connect(port)
    try:
        check("Sec-WebSocket-Extensions" not in raw.response,
              "the raw client's offer is not answered")
        await raw.read_frame()  # connected
        raw.send(deflate_alone(json.dumps({"action": "ping", "pad": "z" * 500}).encode()),
                 rsv1=True)
        rsv1, opcode, payload = await raw.read_frame()
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        check(opcode == 8 and code == 1002,
              f"an unnegotiated compressed frame is closed with 1002 (got opcode {opcode}, {code})")
    finally:
        raw.close()


if __name__ == "__main__":
    sys.exit(main(__doc__, "python_deflate_test", TOTAL_TIMEOUT,
                  [({"WEBSOCKET_COMPRESSION": "on"}, checks_with_compression),
                   ({}, checks_without_compression)]))
