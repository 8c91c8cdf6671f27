#!/usr/bin/env python3
"""Drives redis-py and stomp.py against nsq-gateway's RESP and STOMP plugins
with an auth server configured (tests/suite/auth_plugins.rs).

Usage: auth_scenarios.py {redis,stomp} --addr HOST:PORT --secret S
       --bad-secret B --topic T --denied-topic D [--protocol 2|3]

Prints exactly one JSON line on stdout: {"ok": true, ...results} on success,
or {"ok": false, "error": "...", ...partial results} and a non-zero exit
status on failure. Every blocking call has its own timeout.
"""

import argparse
import json
import sys
import threading
import traceback

RESULT = {"ok": False}


def error_of(fn):
    """Runs fn; returns "<ExceptionClass>: <text>" if it raised, else None."""
    try:
        fn()
    except Exception as e:  # the client's own exception for the server's reply
        return "%s: %s" % (type(e).__name__, e)
    return None


def scenario_redis(args):
    import redis

    RESULT["client"] = "redis-py " + redis.__version__
    host, port = args.addr.rsplit(":", 1)

    def client(**kw):
        return redis.Redis(host=host, port=int(port), socket_timeout=args.timeout, **kw)

    # Without a password, commands get NOAUTH (RESP2: no HELLO on connect).
    RESULT["no_auth"] = error_of(lambda: client(protocol=2).publish(args.topic, "x"))
    # A wrong password: redis-py sends AUTH (RESP2) or HELLO 3 AUTH (RESP3).
    RESULT["bad_secret"] = error_of(
        lambda: client(password=args.bad_secret, protocol=args.protocol).ping())
    # The right one, with and without a username.
    good = client(password=args.secret, protocol=args.protocol)
    RESULT["ping"] = good.ping()
    sub = client(password=args.secret, protocol=args.protocol).pubsub()
    sub.subscribe(args.topic)
    first = sub.get_message(timeout=args.timeout)
    RESULT["subscribed"] = first is not None and first["type"] == "subscribe"
    RESULT["receivers"] = good.publish(args.topic, "hello-auth")
    msg = None
    for _ in range(20):
        msg = sub.get_message(timeout=args.timeout)
        if msg is not None and msg["type"] == "message":
            break
    RESULT["received"] = None if msg is None else msg["data"].decode()
    named = client(username="svc", password=args.secret, protocol=args.protocol)
    RESULT["named_ping"] = named.ping()
    # Outside the grant: the host refuses, whatever the guest does.
    RESULT["denied"] = error_of(lambda: good.publish(args.denied_topic, "x"))


def scenario_stomp(args):
    import stomp

    version = stomp.__version__
    RESULT["client"] = "stomp.py " + (".".join(map(str, version)) if isinstance(version, tuple) else str(version))
    host, port = args.addr.rsplit(":", 1)

    class Listener(stomp.ConnectionListener):
        def __init__(self):
            self.cond = threading.Condition()
            self.messages = []
            self.errors = []

        def on_message(self, frame):
            with self.cond:
                self.messages.append(frame.body)
                self.cond.notify_all()

        def on_error(self, frame):
            with self.cond:
                self.errors.append("%s: %s" % (frame.headers.get("message"), frame.body))
                self.cond.notify_all()

    bad = stomp.Connection12([(host, int(port))], heartbeats=(0, 0))
    bad_listener = Listener()
    bad.set_listener("l", bad_listener)
    RESULT["bad_connect"] = error_of(
        lambda: bad.connect("svc", args.bad_secret, wait=True, headers={"host": "/"}))
    with bad_listener.cond:
        bad_listener.cond.wait_for(lambda: bad_listener.errors, timeout=args.timeout)
    RESULT["bad_errors"] = bad_listener.errors

    conn = stomp.Connection12([(host, int(port))], heartbeats=(0, 0))
    listener = Listener()
    conn.set_listener("l", listener)
    conn.connect("svc", args.secret, wait=True, headers={"host": "/"})
    conn.subscribe("/topic/" + args.topic, id="1", ack="auto")
    conn.send("/topic/" + args.topic, "hello-stomp", receipt="r1")
    with listener.cond:
        listener.cond.wait_for(lambda: listener.messages, timeout=args.timeout)
    RESULT["received"] = listener.messages
    conn.send("/topic/" + args.denied_topic, "x")
    with listener.cond:
        listener.cond.wait_for(lambda: listener.errors, timeout=args.timeout)
    RESULT["denied_errors"] = listener.errors


SCENARIOS = {"redis": scenario_redis, "stomp": scenario_stomp}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--addr", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--bad-secret", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--denied-topic", required=True)
    p.add_argument("--protocol", type=int, choices=[2, 3], default=3)
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args()
    try:
        SCENARIOS[args.scenario](args)
        RESULT["ok"] = True
    except Exception as e:
        RESULT["error"] = "%s: %s" % (type(e).__name__, e)
        RESULT["traceback"] = traceback.format_exc()
    print(json.dumps(RESULT, default=str))
    sys.stdout.flush()
    sys.exit(0 if RESULT["ok"] else 1)


if __name__ == "__main__":
    main()
