#!/usr/bin/env python3
"""Figures for the WEB plugin against a running gateway (use the release
binary with the default gateway.yaml): WebSocket delivery throughput and the
gateway's CPU per message against V2 on the same workload, and idle memory
per WebSocket connection, all read from /proc/PID of the gateway.

Usage: web_bench.py --pid PID --addr HOST:PORT --http HOST:PORT
                    [--messages 100000] [--size 100] [--idle 1000]

Workload: --messages bodies of --size bytes are published with HTTP /mpub
into a fresh topic with one channel, then one consumer drains the channel
(V2: SUB, RDY 2500, a FIN per message; WebSocket: sub with prefetch 2500,
auto acks), timed and with the gateway's utime+stime over the drain. Both
consumers are Python on the same machine, so throughput is the client's
bound as much as the gateway's; CPU per message is the gateway's alone.
Prints one JSON line.
"""

import argparse
import asyncio
import json
import os
import socket
import struct
import time
import urllib.request

from websockets.asyncio.client import connect

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def http_post(addr, path, body):
    req = urllib.request.Request("http://%s%s" % (addr, path), data=body, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def fill(args, topic, channel):
    http_post(args.http, "/topic/create?topic=%s" % topic, b"")
    http_post(args.http, "/channel/create?topic=%s&channel=%s" % (topic, channel), b"")
    body = b"x" * args.size
    left = args.messages
    while left:
        n = min(left, 1000)
        http_post(args.http, "/mpub?topic=%s" % topic, b"\n".join([body] * n))
        left -= n


def v2_drain(args, topic, channel):
    s = socket.create_connection(tuple_addr(args.addr))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"  V2")
    s.sendall(b"SUB %s %s\n" % (topic.encode(), channel.encode()))
    s.sendall(b"RDY 2500\n")
    buf = bytearray()
    got = 0
    ok_seen = False
    while got < args.messages:
        data = s.recv(1 << 20)
        if not data:
            raise RuntimeError("V2 connection closed after %d" % got)
        buf += data
        fins = []
        at = 0
        while len(buf) - at >= 8:
            size, kind = struct.unpack_from(">ii", buf, at)
            if len(buf) - at < 4 + size:
                break
            frame = bytes(buf[at + 8:at + 4 + size])
            at += 4 + size
            if kind == 2:
                fins.append(b"FIN " + frame[10:26] + b"\n")
                got += 1
            elif kind == 0 and frame == b"_heartbeat_":
                fins.append(b"NOP\n")
            elif kind == 0:
                ok_seen = True
            else:
                raise RuntimeError("V2 error %r" % frame)
        del buf[:at]
        if fins:
            s.sendall(b"".join(fins))
    s.close()
    return ok_seen


def tuple_addr(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


async def ws_drain(args, topic, channel):
    async with connect("ws://%s/ws" % args.addr, max_size=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"op": "sub", "topic": topic, "channel": channel, "prefetch": 2500}))
        got = 0
        while got < args.messages:
            text = await ws.recv()
            # cheap test, no JSON parse per message: deliveries start with {"msg"
            if text.startswith('{"msg"'):
                got += 1
            elif '"ok":false' in text:
                raise RuntimeError(text)


def measure(args, name, drain):
    topic = "bench_%s_%d_%d" % (name, os.getpid(), int(time.time()))
    fill(args, topic, "c")
    c0, t0 = cpu_s(args.pid), time.monotonic()
    drain(topic, "c")
    c1, t1 = cpu_s(args.pid), time.monotonic()
    return {
        "messages": args.messages,
        "seconds": round(t1 - t0, 3),
        "msgs_per_s": round(args.messages / (t1 - t0)),
        "gateway_cpu_us_per_msg": round((c1 - c0) * 1e6 / args.messages, 3),
    }


async def idle(args):
    conns = []
    base = rss_kib(args.pid)
    for _ in range(args.idle):
        conns.append(await connect("ws://%s/ws" % args.addr, ping_interval=None))
    await asyncio.sleep(0.5)
    grown = rss_kib(args.pid) - base
    for c in conns:
        await c.close()
    return {"connections": args.idle, "rss_kib": grown, "kib_per_connection": round(grown / args.idle, 2)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--addr", required=True)
    p.add_argument("--http", required=True)
    p.add_argument("--messages", type=int, default=100000)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    out = {"size": args.size, "v2": [], "ws": []}
    for _ in range(args.rounds):
        out["v2"].append(measure(args, "v2", lambda t, c: v2_drain(args, t, c)))
        out["ws"].append(measure(args, "ws", lambda t, c: asyncio.run(ws_drain(args, t, c))))
    out["idle_ws"] = asyncio.run(idle(args))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
