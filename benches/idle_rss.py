"""RSS per idle connection of the release binary with the default
gateway.yaml, from /proc/<pid>/status: N connections (env N, default 3000)
of each protocol named on the command line (V2 LINE STOMP RESP WS), each
having answered its first request, then idle; a fresh gateway per protocol.

    cargo build --release && python3 benches/idle_rss.py LINE STOMP RESP V2
    N=500 python3 benches/idle_rss.py WS     # WEB's max_connections is 500

The config is gateway.yaml with data_path moved to $WORK, written next to
it as .idle.yaml (relative component paths) and removed afterwards."""
import os, resource, socket, subprocess, sys, time, shutil
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(os.environ.get("N", "3000"))
EX = {
    "V2": (b"  V2NOP\nPUB cap\n\x00\x00\x00\x01x", b"OK"),
    "LINE": (b"LINE\nPING\n", b"PONG"),
    "STOMP": (b"CONNECT\naccept-version:1.2\nhost:/\n\n\x00", b"CONNECTED"),
    "RESP": (b"*1\r\n$4\r\nPING\r\n", b"+PONG"),
    "WS": (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:4150\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", b"101"),
}
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1])
work = os.environ.get("WORK", "/tmp/nsq-gateway-idle")
shutil.rmtree(work, ignore_errors=True); os.makedirs(work)
cfg = open(f"{root}/gateway.yaml").read().replace('data_path: "."', f'data_path: "{work}"')
open(f"{root}/.idle.yaml", "w").write(cfg)
os.chdir(root)
for proto in sys.argv[1:]:
    p = subprocess.Popen([f"{root}/target/release/nsq-gateway", "--config", f"{root}/.idle.yaml", "--log-level", "warn"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", 4150), timeout=0.2).close(); break
            except OSError:
                time.sleep(0.05)
        time.sleep(0.5)
        before = rss(p.pid)
        hello, answer = EX[proto]
        conns = []
        for i in range(N):
            s = socket.create_connection(("127.0.0.1", 4150))
            s.sendall(hello)
            conns.append(s)
        ok = 0
        for s in conns:
            s.settimeout(30)
            got = b""
            while answer not in got:
                try:
                    d = s.recv(4096)
                except OSError:
                    break
                if not d: break
                got += d
            ok += answer in got
        time.sleep(1.0)
        after = rss(p.pid)
        print(f"{proto}: {ok}/{N} answered; RSS {before/1024:.1f} -> {after/1024:.1f} MiB: {(after-before)/N:.1f} KiB per idle connection")
        for s in conns: s.close()
    finally:
        p.terminate(); p.wait()
os.remove(f"{root}/.idle.yaml")
