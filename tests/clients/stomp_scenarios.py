#!/usr/bin/env python3
"""Drives stomp.py (PyPI stomp-py) against nsq-gateway's STOMP plugin for the
integration tests (tests/plugin_stomp_clients.rs).

Usage: stomp_scenarios.py SCENARIO --addr HOST:PORT --topic T [options]

Each run prints exactly one JSON line on stdout: {"ok": true, ...results} on
success, or {"ok": false, "error": "...", ...partial results} and a non-zero
exit status on failure. Every wait is bounded by --timeout.
"""

import argparse
import json
import sys
import threading
import time
import traceback

import stomp

RESULT = {"ok": False, "client": "stomp.py", "version": ".".join(map(str, stomp.__version__))
          if isinstance(stomp.__version__, tuple) else str(stomp.__version__)}


class Recorder(stomp.ConnectionListener):
    """Records every frame the connection sees, thread-safely."""

    def __init__(self):
        self.cond = threading.Condition()
        self.messages = []
        self.receipts = []
        self.errors = []
        self.heartbeats = 0
        self.disconnected = False

    def on_message(self, frame):
        with self.cond:
            self.messages.append(frame)
            self.cond.notify_all()

    def on_receipt(self, frame):
        with self.cond:
            self.receipts.append(frame.headers.get("receipt-id"))
            self.cond.notify_all()

    def on_error(self, frame):
        with self.cond:
            self.errors.append({"headers": dict(frame.headers), "body": frame.body})
            self.cond.notify_all()

    def on_heartbeat(self):
        with self.cond:
            self.heartbeats += 1

    def on_disconnected(self):
        with self.cond:
            self.disconnected = True
            self.cond.notify_all()

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out waiting for " + what)
                self.cond.wait(left)


def connect(args, version="1.2", heartbeats=(0, 0)):
    host, port = args.addr.rsplit(":", 1)
    cls = {"1.1": stomp.Connection11, "1.2": stomp.Connection12}[version]
    conn = cls([(host, int(port))], heartbeats=heartbeats, reconnect_attempts_max=1)
    rec = Recorder()
    conn.set_listener("rec", rec)
    conn.connect(wait=True, with_connect_command=(version == "1.2"))
    return conn, rec


def bodies(prefix, n):
    return ["%s-%d" % (prefix, i) for i in range(n)]


def send_all(conn, rec, dest, sent, timeout):
    """Sends each body with a receipt and waits for all receipts."""
    for i, body in enumerate(sent):
        conn.send(dest, body, receipt="r-%d" % i)
    rec.wait(lambda: len(rec.receipts) >= len(sent), timeout, "%d receipts" % len(sent))
    RESULT["receipts"] = list(rec.receipts)


def scenario_send(args):
    """Publish only, with receipts (the consumer is another client)."""
    conn, rec = connect(args, args.version)
    sent = bodies("stomp", args.count)
    send_all(conn, rec, args.dest, sent, args.timeout)
    RESULT["sent"] = sent
    conn.disconnect(receipt="bye")
    RESULT["disconnect_receipt"] = "bye" in rec.receipts


def record_bodies(rec):
    RESULT["received"] = [m.body for m in rec.messages]


def scenario_consume(args):
    """Subscribes with --ack, receives --count messages and acknowledges them
    as the mode wants: nothing for auto, every 3rd and the last for client
    (cumulative), each one for client-individual. Then checks nothing more
    arrives for --settle-ms."""
    conn, rec = connect(args, args.version)
    headers = {}
    if args.channel:
        headers["channel"] = args.channel
    if args.prefetch:
        headers["prefetch-count"] = str(args.prefetch)
    conn.subscribe(args.dest, id="s1", ack=args.ack, headers=headers)
    acked = 0
    while acked < args.count:
        rec.wait(lambda: len(rec.messages) > acked, args.timeout, "message %d" % acked)
        frame = rec.messages[acked]
        acked += 1
        h = frame.headers
        RESULT.setdefault("headers", []).append(
            {k: h.get(k) for k in ("subscription", "destination", "message-id", "ack")})
        if args.ack == "client-individual" or (
                args.ack == "client" and (acked % 3 == 0 or acked == args.count)):
            ack_frame(conn, args.version, frame)
    time.sleep(args.settle_ms / 1000.0)
    record_bodies(rec)
    conn.disconnect(receipt="bye")


def ack_frame(conn, version, frame, nack=False):
    h = frame.headers
    fn = conn.nack if nack else conn.ack
    if version == "1.2":
        fn(h["ack"])
    else:
        fn(h["message-id"], h["subscription"])


def scenario_nack(args):
    """NACKs the first delivery of each message, then ACKs the redelivery."""
    conn, rec = connect(args, args.version)
    conn.subscribe(args.dest, id="n1", ack="client-individual")
    seen = {}
    i = 0
    while sum(1 for v in seen.values() if v >= 2) < args.count:
        rec.wait(lambda: len(rec.messages) > i, args.timeout, "delivery %d" % i)
        frame = rec.messages[i]
        i += 1
        seen[frame.body] = seen.get(frame.body, 0) + 1
        RESULT.setdefault("deliveries", []).append(
            {"body": frame.body, "redelivered": frame.headers.get("redelivered"),
             "attempts": frame.headers.get("nsq-attempts")})
        ack_frame(conn, args.version, frame, nack=(seen[frame.body] == 1))
    time.sleep(args.settle_ms / 1000.0)
    RESULT["total_deliveries"] = len(rec.messages)
    conn.disconnect(receipt="bye")


def scenario_roundtrip(args):
    """One connection subscribes to /topic/T, another sends: fan-out to two
    /topic subscribers on separate connections, both get every message."""
    subs = []
    for i in range(2):
        conn, rec = connect(args, args.version)
        conn.subscribe(args.dest, id="t%d" % i, ack="auto", receipt="sub-%d" % i)
        rec.wait(lambda: ("sub-%d" % i) in rec.receipts, args.timeout, "SUBSCRIBE receipt")
        subs.append((conn, rec))
    pconn, prec = connect(args, args.version)
    sent = bodies("fan", args.count)
    send_all(pconn, prec, args.dest, sent, args.timeout)
    RESULT["sent"] = sent
    got = []
    for conn, rec in subs:
        rec.wait(lambda: len(rec.messages) >= len(sent), args.timeout, "fan-out messages")
        got.append([m.body for m in rec.messages])
        conn.disconnect()
    RESULT["received"] = got
    pconn.disconnect()


def scenario_heartbeat(args):
    """Negotiates heart-beats, stays idle for --idle-ms while both sides send
    heart-beats, then checks the connection still works."""
    hb = (args.heartbeat_ms, args.heartbeat_ms)
    conn, rec = connect(args, args.version, heartbeats=hb)
    RESULT["negotiated"] = list(conn.heartbeats) if hasattr(conn, "heartbeats") else None
    time.sleep(args.idle_ms / 1000.0)
    RESULT["heartbeats_received"] = rec.heartbeats
    RESULT["connected_after_idle"] = conn.is_connected() and not rec.disconnected
    conn.subscribe(args.dest, id="h1", ack="auto")
    send_all(conn, rec, args.dest, ["after-idle"], args.timeout)
    rec.wait(lambda: len(rec.messages) >= 1, args.timeout, "a message after idling")
    record_bodies(rec)
    conn.disconnect(receipt="bye")


def scenario_error(args):
    """Sends to an unknown destination: expects an ERROR frame and a close."""
    conn, rec = connect(args, args.version)
    conn.send("/exchange/nope", "x")
    rec.wait(lambda: rec.errors, args.timeout, "an ERROR frame")
    rec.wait(lambda: rec.disconnected, args.timeout, "the server to close")
    RESULT["errors"] = rec.errors


SCENARIOS = {
    "send": scenario_send,
    "consume": scenario_consume,
    "nack": scenario_nack,
    "roundtrip": scenario_roundtrip,
    "heartbeat": scenario_heartbeat,
    "error": scenario_error,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--addr", required=True, help="HOST:PORT of the gateway")
    p.add_argument("--topic", required=True)
    p.add_argument("--kind", choices=["queue", "topic"], default="queue")
    p.add_argument("--version", choices=["1.1", "1.2"], default="1.2")
    p.add_argument("--ack", choices=["auto", "client", "client-individual"], default="auto")
    p.add_argument("--channel", default=None)
    p.add_argument("--prefetch", type=int, default=0)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--heartbeat-ms", type=int, default=200)
    p.add_argument("--idle-ms", type=int, default=1500)
    p.add_argument("--settle-ms", type=int, default=300)
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args()
    args.dest = "/%s/%s" % (args.kind, args.topic)
    RESULT["scenario"] = args.scenario
    code = 0
    try:
        SCENARIOS[args.scenario](args)
        RESULT["ok"] = True
    except TimeoutError as e:
        RESULT["error"] = "timeout: %s" % e
        code = 2
    except Exception as e:  # report anything else the same way
        RESULT["error"] = "%s: %s" % (type(e).__name__, e)
        traceback.print_exc()
        code = 1
    print(json.dumps(RESULT), flush=True)
    sys.stdout.flush()
    # stomp.py's receiver/heart-beat threads are daemons; exit promptly.
    import os
    os._exit(code)


if __name__ == "__main__":
    main()
