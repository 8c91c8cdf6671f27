"""Measures the JSONL Python plugin inside a running gateway (the release
binary), for plugins/README.md:

    python3 plugins/jsonl-py/measure.py PID HOST:PORT [N_IDLE] [N_MSGS]

- instantiation: connect, send one request, read its reply, on N fresh
  connections one after another (instance + on-connect + one request);
- idle memory per connection: the gateway's RSS (/proc/PID/status) before and
  after N_IDLE connections that each answered one request, divided by N_IDLE;
- CPU per message: the gateway's user+system CPU (/proc/PID/stat) over N_MSGS
  pipelined `pub` requests with their replies, against the same number of
  V2 PUBs on one connection, both to a topic with one channel.
"""

import json
import os
import socket
import struct
import sys
import time

pid = int(sys.argv[1])
host, port = sys.argv[2].rsplit(":", 1)
addr = (host, int(port))
n_idle = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
n_msgs = int(sys.argv[4]) if len(sys.argv) > 4 else 20000
tick = os.sysconf("SC_CLK_TCK")


def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick


def jsonl():
    s = socket.create_connection(addr)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, s.makefile("rb")


def readlines(f, n):
    for _ in range(n):
        line = f.readline()
        if not line:
            raise SystemExit("connection closed")
    return line


# Instantiation (+ on-connect + one request), sequential.
samples = []
for i in range(50):
    t = time.perf_counter()
    s, f = jsonl()
    s.sendall(b'{"op":"sub","topic":"m-inst","channel":"c"}\n')
    reply = readlines(f, 1)
    samples.append(time.perf_counter() - t)
    s.close()
samples.sort()
print(f"connect to first reply: median {samples[len(samples)//2]*1e3:.2f} ms, "
      f"p90 {samples[int(len(samples)*0.9)]*1e3:.2f} ms ({reply!r})")

# Idle memory per connection.
time.sleep(0.5)
before = rss_kib()
idle = []
for i in range(n_idle):
    s, f = jsonl()
    s.sendall(b'{"op":"sub","topic":"m-idle","channel":"c%d"}\n' % (i % 4))
    readlines(f, 1)
    idle.append((s, f))
time.sleep(1)
after = rss_kib()
print(f"idle: {n_idle} connections, RSS {before} -> {after} KiB, "
      f"{(after - before) / n_idle:.1f} KiB per connection")
for s, _ in idle:
    s.close()
idle.clear()

# CPU per message: JSONL pub vs V2 PUB, one channel on the topic.
sub, sf = jsonl()
sub.sendall(b'{"op":"sub","topic":"m-cpu","channel":"c"}\n')
readlines(sf, 1)
sub.close()  # the channel stays; messages queue in it


def jsonl_pubs(n):
    s, f = jsonl()
    line = b'{"op":"pub","topic":"m-cpu","body":"0123456789abcdef0123456789abcdef"}\n'
    batch = 100
    for _ in range(n // batch):
        s.sendall(line * batch)
        readlines(f, batch)
    s.close()


def v2_pubs(n):
    s = socket.create_connection(addr)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"  V2")
    f = s.makefile("rb")
    body = b"0123456789abcdef0123456789abcdef"
    cmd = b"PUB m-cpu\n" + struct.pack(">I", len(body)) + body
    batch = 100
    for _ in range(n // batch):
        s.sendall(cmd * batch)
        for _ in range(batch):
            size, = struct.unpack(">I", f.read(4))
            f.read(size)
    s.close()


for name, run in (("v2", v2_pubs), ("jsonl", jsonl_pubs)):
    run(n_msgs // 10)  # warm-up
    c0, t0 = cpu_s(), time.perf_counter()
    run(n_msgs)
    c1, t1 = cpu_s(), time.perf_counter()
    print(f"{name}: {n_msgs} publishes, gateway CPU {(c1 - c0) / n_msgs * 1e6:.1f} us/msg, "
          f"wall {(t1 - t0) / n_msgs * 1e6:.1f} us/msg")
