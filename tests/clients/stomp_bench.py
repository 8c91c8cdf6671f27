#!/usr/bin/env python3
"""CPU per message of a running nsq-gateway: the same publish and consume
workload over NSQ V2 and over the STOMP plugin, with the gateway's process
CPU time (utime + stime from /proc/<pid>/stat) read around each phase.

Usage: stomp_bench.py --addr HOST:PORT --http HOST:PORT --pid GATEWAY_PID [--count N] [--size B]

Raw sockets, pipelined, no client library, so the driver stays cheap:
  v2_pub          PUB per message, then all N `OK`s are read
  stomp_pub       SEND per message (no receipts but the last), RECEIPT awaited
  v2_sub          SUB + RDY 2500, FIN per message
  stomp_sub_auto  SUBSCRIBE ack:auto prefetch-count:2500 (the plugin FINs)
  stomp_sub_ack   SUBSCRIBE ack:client-individual, ACK per message
Each consume phase drains the channel `bench` of a topic filled by the
matching publish phase; the channel is created over HTTP before publishing
(creating the first channel of a topic with a deep backlog copies it, which
in a plugin call would count against limits.call_timeout_ms).
Prints one JSON line with CPU ms and microseconds per message per phase.
"""

import argparse
import json
import os
import socket
import struct
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / TICK


def connect(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Reader:
    """Buffered reads over a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("server closed")
        self.buf += chunk

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


# ---- V2 ----

def v2_frame(r):
    size, kind = struct.unpack(">II", r.exact(8))
    return kind, r.exact(size - 4)


def v2_pub(addr, topic, bodies):
    s = connect(addr)
    s.sendall(b"  V2")
    r = Reader(s)
    batch = []
    for b in bodies:
        batch.append(b"PUB %s\n" % topic.encode() + struct.pack(">I", len(b)) + b)
        if len(batch) == 1000:
            s.sendall(b"".join(batch))
            batch = []
    if batch:
        s.sendall(b"".join(batch))
    for _ in bodies:
        kind, data = v2_frame(r)
        assert kind == 0 and data == b"OK", (kind, data)
    s.close()


def v2_sub(addr, topic, count):
    s = connect(addr)
    s.sendall(b"  V2")
    r = Reader(s)
    s.sendall(b"SUB %s bench\nRDY 2500\n" % topic.encode())
    kind, data = v2_frame(r)
    assert data == b"OK", data
    got = 0
    fins = []
    while got < count:
        kind, data = v2_frame(r)
        if kind == 0:
            if data == b"_heartbeat_":
                s.sendall(b"NOP\n")
            continue
        assert kind == 2, (kind, data)
        fins.append(b"FIN " + data[10:26] + b"\n")
        got += 1
        if len(fins) >= 100 or not r.buf:
            s.sendall(b"".join(fins))
            fins = []
    if fins:
        s.sendall(b"".join(fins))
    time.sleep(0.2)
    s.close()


# ---- STOMP ----

def stomp_frame(r):
    """Returns (command, headers dict, body)."""
    while True:
        while not r.buf or (r.buf[0:1] == b"\n"):
            if r.buf[0:1] == b"\n":
                del r.buf[0]
            else:
                r.fill()
        end = r.buf.find(b"\n\n")
        while end < 0:
            r.fill()
            end = r.buf.find(b"\n\n")
        head = bytes(r.buf[:end]).decode()
        lines = head.split("\n")
        headers = {}
        for l in lines[1:]:
            k, v = l.split(":", 1)
            headers.setdefault(k, v)
        del r.buf[:end + 2]
        n = int(headers.get("content-length", -1))
        if n >= 0:
            body = r.exact(n + 1)[:-1]
        else:
            i = r.buf.find(b"\0")
            while i < 0:
                r.fill()
                i = r.buf.find(b"\0")
            body = bytes(r.buf[:i])
            del r.buf[:i + 1]
        return lines[0], headers, body


def stomp_connect(addr):
    s = connect(addr)
    s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0")
    r = Reader(s)
    cmd, _, _ = stomp_frame(r)
    assert cmd == "CONNECTED", cmd
    return s, r


def stomp_pub(addr, topic, bodies):
    s, r = stomp_connect(addr)
    dest = b"destination:/queue/%s\n" % topic.encode()
    batch = []
    for i, b in enumerate(bodies):
        receipt = b"receipt:last\n" if i == len(bodies) - 1 else b""
        batch.append(b"SEND\n" + dest + receipt + b"content-length:%d\n\n" % len(b) + b + b"\0")
        if len(batch) == 1000:
            s.sendall(b"".join(batch))
            batch = []
    if batch:
        s.sendall(b"".join(batch))
    cmd, headers, body = stomp_frame(r)
    assert cmd == "RECEIPT", (cmd, headers, body)
    s.close()


def stomp_sub(addr, topic, count, ack):
    s, r = stomp_connect(addr)
    s.sendall(b"SUBSCRIBE\nid:1\ndestination:/queue/%s\nchannel:bench\nack:%s\n"
              b"prefetch-count:2500\n\n\0" % (topic.encode(), ack.encode()))
    got = 0
    acks = []
    while got < count:
        cmd, headers, body = stomp_frame(r)
        assert cmd == "MESSAGE", (cmd, headers, body)
        got += 1
        if ack != "auto":
            acks.append(b"ACK\nid:%s\n\n\0" % headers["ack"].encode())
            if len(acks) >= 100 or not r.buf:
                s.sendall(b"".join(acks))
                acks = []
    if acks:
        s.sendall(b"".join(acks))
    s.sendall(b"DISCONNECT\nreceipt:bye\n\n\0")
    while True:
        cmd, headers, _ = stomp_frame(r)
        if cmd == "RECEIPT":
            break
    s.close()


def create_channel(http, topic):
    for path in ("topic/create?topic=%s" % topic, "channel/create?topic=%s&channel=bench" % topic):
        req = urllib.request.Request("http://%s/%s" % (http, path), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default="127.0.0.1:4150")
    p.add_argument("--http", default="127.0.0.1:4151", help="HOST:PORT of the HTTP API")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--count", type=int, default=100000)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    bodies = [(b"%08d" % i) + b"x" * (args.size - 8) for i in range(args.count)]
    tag = "%d_%d" % (os.getpid(), int(time.time()))
    results = {"count": args.count, "size": args.size, "rounds": args.rounds}

    def measure(name, fn):
        t0, c0 = time.monotonic(), cpu_seconds(args.pid)
        fn()
        c1, t1 = cpu_seconds(args.pid), time.monotonic()
        cpu_ms = (c1 - c0) * 1000
        entry = results.setdefault(name, {"cpu_ms": [], "us_per_msg": [], "wall_ms": []})
        entry["cpu_ms"].append(round(cpu_ms, 1))
        entry["us_per_msg"].append(round(cpu_ms * 1000 / args.count, 2))
        entry["wall_ms"].append(round((t1 - t0) * 1000, 1))

    measure("idle_1s", lambda: time.sleep(1.0))
    for rnd in range(args.rounds):
        t = lambda kind: "bench_%s_%s_%d" % (kind, tag, rnd)
        for kind in ("v2", "stomp", "v2b"):
            create_channel(args.http, t(kind))
        measure("v2_pub", lambda: v2_pub(args.addr, t("v2"), bodies))
        measure("stomp_pub", lambda: stomp_pub(args.addr, t("stomp"), bodies))
        measure("v2_sub", lambda: v2_sub(args.addr, t("v2"), args.count))
        measure("stomp_sub_ack", lambda: stomp_sub(args.addr, t("stomp"), args.count, "client-individual"))
        measure("v2_pub_2", lambda: v2_pub(args.addr, t("v2b"), bodies))
        measure("stomp_sub_auto", lambda: stomp_sub(args.addr, t("v2b"), args.count, "auto"))
    results["ok"] = True
    print(json.dumps(results))


if __name__ == "__main__":
    main()
