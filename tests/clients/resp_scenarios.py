#!/usr/bin/env python3
"""Drives redis-py (the official Python Redis client, RESP2) against
nsq-gateway's RESP plugin for the integration tests (tests/plugin_resp.rs).

Usage: resp_scenarios.py SCENARIO --addr HOST:PORT --topic T [options]

Each run prints exactly one JSON line on stdout: {"ok": true, ...results} on
success, or {"ok": false, "error": "...", ...partial results} and a non-zero
exit status on failure. Every blocking call has its own timeout.
"""

import argparse
import json
import sys
import time
import traceback

import redis

RESULT = {"ok": False, "client": "redis-py", "redis_py": redis.__version__}


def connect(args):
    host, port = args.addr.rsplit(":", 1)
    # redis-py 8 speaks RESP3 (HELLO 3) unless told protocol=2.
    return redis.Redis(host=host, port=int(port), socket_timeout=args.timeout,
                       protocol=args.protocol)


def expect_error(fn, prefix):
    """Runs fn, which must raise a ResponseError starting with prefix."""
    try:
        fn()
    except redis.exceptions.ResponseError as e:
        if not str(e).startswith(prefix):
            raise AssertionError("error %r does not start with %r" % (str(e), prefix))
        return str(e)
    raise AssertionError("expected an error starting with %r" % prefix)


def scenario_basics(args):
    r = connect(args)
    RESULT["replies"] = replies = {
        "ping": r.ping(),
        "echo": r.echo("hi there").decode(),
        "setname": r.client_setname("worker-1"),
        "getname": r.client_getname(),
        "select": r.execute_command("SELECT", 0),
    }
    for k in ("getname", "select"):
        if isinstance(replies[k], bytes):
            replies[k] = replies[k].decode()
    want = {"ping": True, "echo": "hi there", "setname": True, "getname": "worker-1"}
    for k, v in want.items():
        assert replies[k] == v, "%s: got %r, want %r" % (k, replies[k], v)
    assert replies["select"] in ("OK", True), replies
    errors = {}
    errors["select"] = expect_error(lambda: r.execute_command("SELECT", 3), "DB index is out of range")
    errors["hello4"] = expect_error(lambda: r.execute_command("HELLO", 4), "NOPROTO sorry, this protocol")
    errors["unknown"] = expect_error(lambda: r.execute_command("FLUSHALL"), "unknown command 'FLUSHALL'")
    errors["arity"] = expect_error(lambda: r.execute_command("PUBLISH", "x"), "wrong number of arguments")
    errors["topic"] = expect_error(lambda: r.publish("bad/topic", "x"), "invalid topic name")
    RESULT["errors"] = errors
    hello = r.execute_command("HELLO", args.protocol)
    if isinstance(hello, dict):  # RESP3 map
        hello = [x for kv in hello.items() for x in kv]
    RESULT["hello"] = [x.decode() if isinstance(x, bytes) else x for x in hello if not isinstance(x, list)]
    # The connection survived every error above.
    assert r.ping() is True
    # Pipelining: many commands in one write, replies in order.
    pipe = r.pipeline(transaction=False)
    for i in range(50):
        pipe.echo("p%d" % i)
    RESULT["pipeline"] = [x.decode() for x in pipe.execute()]
    r.close()


def scenario_pubsub(args):
    """Subscribes, then publishes --count messages from a second connection
    and reads them back as pushes."""
    r = connect(args)
    p = r.pubsub()
    p.subscribe(args.topic)
    confirm = p.get_message(timeout=args.timeout)
    RESULT["confirm"] = [confirm["type"], confirm["channel"].decode(), confirm["data"]]
    pub = connect(args)
    sent = ["ps-%d" % i for i in range(args.count)]
    RESULT["publish_replies"] = [pub.publish(args.topic, s) for s in sent]
    RESULT["sent"] = sent
    received = []
    deadline = time.monotonic() + args.timeout
    while len(received) < len(sent) and time.monotonic() < deadline:
        m = p.get_message(timeout=0.5)
        if m and m["type"] == "message":
            assert m["channel"].decode() == args.topic, m
            received.append(m["data"].decode())
    RESULT["received"] = received
    p.unsubscribe(args.topic)
    unsub = p.get_message(timeout=args.timeout)
    RESULT["unsubscribe"] = [unsub["type"], unsub["channel"].decode(), unsub["data"]]
    # Out of subscriber mode, the pubsub connection accepts commands again.
    p.close()
    pub.close()
    r.close()


def scenario_subscribe(args):
    """Only consumes: subscribes and waits for --count pushes (the test
    publishes from another protocol once the subscription exists)."""
    r = connect(args)
    p = r.pubsub()
    p.subscribe(args.topic)
    p.get_message(timeout=args.timeout)
    print("SUBSCRIBED", flush=True)
    received = []
    deadline = time.monotonic() + args.timeout
    while len(received) < args.count and time.monotonic() < deadline:
        m = p.get_message(timeout=0.5)
        if m and m["type"] == "message":
            received.append(m["data"].decode())
    RESULT["received"] = received
    if len(received) < args.count:
        raise TimeoutError("got %d of %d messages" % (len(received), args.count))
    p.close()


def scenario_queue(args):
    """LPUSH/RPUSH then BRPOP/BLPOP, a timed-out BRPOP, and LLEN."""
    r = connect(args)
    key = args.topic
    sent = ["job-%d" % i for i in range(args.count)]
    RESULT["lpush"] = r.lpush(key, sent[0])
    RESULT["rpush"] = r.rpush(key, *sent[1:]) if len(sent) > 1 else None
    RESULT["llen"] = r.llen(key)
    got = []
    for i in range(len(sent)):
        pop = r.brpop([key], timeout=5) if i % 2 == 0 else r.blpop([key], timeout=5)
        assert pop is not None, "pop %d timed out" % i
        assert pop[0].decode() == key, pop
        got.append(pop[1].decode())
    RESULT["popped"] = got
    t0 = time.monotonic()
    RESULT["empty_pop"] = r.brpop([key], timeout=0.3)
    RESULT["empty_pop_ms"] = (time.monotonic() - t0) * 1000
    RESULT["llen_after"] = r.llen(key)
    # Two keys: the pop returns from whichever has a message.
    other = key + "_b"
    r.lpush(other, "from-b")
    pop = r.brpop([key, other], timeout=5)
    RESULT["two_keys"] = [pop[0].decode(), pop[1].decode()]
    r.close()


def scenario_pop(args):
    """Only consumes: BRPOPs --count messages (for cross-protocol tests)."""
    r = connect(args)
    got = []
    for _ in range(args.count):
        pop = r.brpop([args.topic], timeout=args.timeout)
        if pop is None:
            raise TimeoutError("BRPOP timed out after %d messages" % len(got))
        got.append(pop[1].decode())
    RESULT["received"] = got
    r.close()


def scenario_publish(args):
    r = connect(args)
    sent = ["rp-%d" % i for i in range(args.count)]
    RESULT["publish_replies"] = [r.publish(args.topic, s) for s in sent]
    RESULT["sent"] = sent
    r.close()


SCENARIOS = {
    "basics": scenario_basics,
    "pubsub": scenario_pubsub,
    "subscribe": scenario_subscribe,
    "queue": scenario_queue,
    "pop": scenario_pop,
    "publish": scenario_publish,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--addr", required=True, help="HOST:PORT of the gateway")
    p.add_argument("--topic", default="resp_test")
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per blocking call")
    p.add_argument("--protocol", type=int, choices=[2, 3], default=3, help="RESP version")
    args = p.parse_args()
    RESULT["scenario"] = args.scenario
    code = 0
    try:
        SCENARIOS[args.scenario](args)
        RESULT["ok"] = True
    except Exception as e:  # report everything the same way
        RESULT["error"] = "%s: %s" % (type(e).__name__, e)
        traceback.print_exc()
        code = 1
    print(json.dumps(RESULT), flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
