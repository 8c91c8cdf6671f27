#!/usr/bin/env python3
"""CPU per message of a running nsq-gateway: the same publish and consume
workload over NSQ V2 and over the RESP plugin, with the gateway's process CPU
time (utime + stime from /proc/<pid>/stat) read around each phase.

Usage: resp_bench.py --addr HOST:PORT --pid GATEWAY_PID [--count N] [--size B]
                     [--rounds R] [--redis-benchmark]

Raw sockets, pipelined in batches of 1000 (each batch's replies are read
before the next is sent), no client library, so the driver stays cheap:
  v2_pub        PUB per message, OK per message
  resp_publish  PUBLISH per message, integer reply per message
  resp_lpush    LPUSH per message, integer reply per message
  v2_sub        SUB + RDY 2500, FIN per message (drains v2_pub's topic)
  resp_sub      SUBSCRIBE (the plugin FINs each push; drains resp_publish's)
  resp_brpop    BRPOP per message (drains resp_lpush's topic)
Each consume phase drains a topic filled by a publish phase while it had no
channel, so the first channel created on it gets every message. The gateway
needs --mem-queue-size >= count. With --redis-benchmark it also measures
`redis-benchmark -P 16 -c 10` PUBLISH and LPUSH (Debian redis-tools).
Prints one JSON line with CPU ms and microseconds per message per phase.
"""

import argparse
import json
import os
import socket
import struct
import subprocess
import time

TICK = os.sysconf("SC_CLK_TCK")
BATCH = 1000


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
        self.pos = 0

    def fill(self):
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("server closed")
        self.buf += chunk

    def exact(self, n):
        while len(self.buf) - self.pos < n:
            self.fill()
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                out = bytes(self.buf[self.pos : i])
                self.pos = i + 2
                return out
            self.fill()


# ---- V2 ----


def v2_frame(r):
    size, kind = struct.unpack(">II", r.exact(8))
    return kind, r.exact(size - 4)


def v2_pub(addr, topic, bodies):
    s = connect(addr)
    s.sendall(b"  V2")
    r = Reader(s)
    for i in range(0, len(bodies), BATCH):
        chunk = bodies[i : i + BATCH]
        s.sendall(b"".join(b"PUB %s\n" % topic.encode() + struct.pack(">I", len(b)) + b for b in chunk))
        for _ in chunk:
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
        if len(fins) >= 100 or len(r.buf) == r.pos:
            s.sendall(b"".join(fins))
            fins = []
    if fins:
        s.sendall(b"".join(fins))
    time.sleep(0.2)
    s.close()


# ---- RESP ----


def cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def resp_value(r):
    """One RESP2 reply: int, bytes, None, list, or an exception for errors."""
    line = r.line()
    kind, rest = line[:1], line[1:]
    if kind == b":":
        return int(rest)
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else r.exact(n + 2)[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [resp_value(r) for _ in range(n)]
    raise RuntimeError("unexpected reply %r" % line)


def resp_pipelined(addr, commands):
    """Sends the commands in batches, reading each batch's replies."""
    s = connect(addr)
    r = Reader(s)
    last = None
    for i in range(0, len(commands), BATCH):
        chunk = commands[i : i + BATCH]
        s.sendall(b"".join(chunk))
        for _ in chunk:
            last = resp_value(r)
    s.close()
    return last


def resp_sub(addr, topic, count):
    s = connect(addr)
    r = Reader(s)
    s.sendall(cmd(b"SUBSCRIBE", topic.encode()))
    confirm = resp_value(r)
    assert confirm[0] == b"subscribe", confirm
    for _ in range(count):
        push = resp_value(r)
        assert push[0] == b"message", push
    s.close()


def redis_benchmark(addr, command, count):
    host, port = addr.rsplit(":", 1)
    out = subprocess.run(
        ["redis-benchmark", "-h", host, "-p", port, "-n", str(count), "-c", "10", "-P", "16", "-q"]
        + command,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out.stdout.strip().splitlines()[-1:] + out.stderr.strip().splitlines()[-1:]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default="127.0.0.1:4150")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--count", type=int, default=100000)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--redis-benchmark", action="store_true")
    args = p.parse_args()
    bodies = [(b"%08d" % i) + b"x" * (args.size - 8) for i in range(args.count)]
    tag = "%d_%d" % (os.getpid(), int(time.time()))
    results = {"count": args.count, "size": args.size, "rounds": args.rounds}

    def measure(name, fn):
        t0, c0 = time.monotonic(), cpu_seconds(args.pid)
        note = fn()
        c1, t1 = cpu_seconds(args.pid), time.monotonic()
        cpu_ms = (c1 - c0) * 1000
        entry = results.setdefault(name, {"cpu_ms": [], "us_per_msg": [], "wall_ms": []})
        entry["cpu_ms"].append(round(cpu_ms, 1))
        entry["us_per_msg"].append(round(cpu_ms * 1000 / args.count, 2))
        entry["wall_ms"].append(round((t1 - t0) * 1000, 1))
        if note is not None:
            entry.setdefault("note", []).append(note)

    measure("idle_1s", lambda: time.sleep(1.0))
    for rnd in range(args.rounds):
        t = lambda kind: "bench_%s_%s_%d" % (kind, tag, rnd)
        pub = [cmd(b"PUBLISH", t("rp").encode(), b) for b in bodies]
        push = [cmd(b"LPUSH", t("rq").encode(), b) for b in bodies]
        pop = [cmd(b"BRPOP", t("rq").encode(), b"5")] * args.count
        measure("v2_pub", lambda: v2_pub(args.addr, t("v2"), bodies))
        measure("resp_publish", lambda: (resp_pipelined(args.addr, pub), None)[1])
        measure("resp_lpush", lambda: (resp_pipelined(args.addr, push), None)[1])
        measure("v2_sub", lambda: v2_sub(args.addr, t("v2"), args.count))
        measure("resp_sub", lambda: resp_sub(args.addr, t("rp"), args.count))
        measure("resp_brpop", lambda: (resp_pipelined(args.addr, pop), None)[1])
        if args.redis_benchmark:
            data = b"x" * args.size
            measure(
                "redis_benchmark_publish",
                lambda: redis_benchmark(args.addr, ["publish", t("rb"), data.decode()], args.count),
            )
            measure(
                "redis_benchmark_lpush",
                lambda: redis_benchmark(args.addr, ["lpush", t("rbq"), data.decode()], args.count),
            )
    results["ok"] = True
    print(json.dumps(results))


if __name__ == "__main__":
    main()
