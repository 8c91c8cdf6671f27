#!/usr/bin/env python3
"""Drives pynsq (tornado IOLoop nsq.Writer / nsq.Reader) against an
nsqd-compatible server for nsq-gateway's integration tests.

Usage: pynsq_scenarios.py SCENARIO --nsqd HOST:PORT --topic T [options]

Each run prints exactly one JSON line on stdout: {"ok": true, ...results} on
success, or {"ok": false, "error": "...", ...partial results} and a non-zero
exit status on failure or timeout. Every scenario is bounded by --timeout.

The `compress` scenario negotiates stream compression in IDENTIFY (--compression
deflate with --deflate-level, or snappy; snappy needs python-snappy) for both the
Writer and the Reader, and reports what was sent and received as "length:sha256"
strings, since some bodies are binary.
"""

import argparse
import asyncio
import hashlib
import json
import logging
import random
import sys
import time
import traceback
import urllib.request

import nsq
import tornado.ioloop
import tornado.util

RESULT = {"ok": False, "client": "pynsq", "pynsq": nsq.__version__}


def now_ms():
    return time.monotonic() * 1000.0


async def wait_until(pred, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for " + what)
        await asyncio.sleep(0.005)


async def connect_writer(addr):
    writer = nsq.Writer([addr], reconnect_interval=1.0)
    await wait_until(lambda: writer.conns, 5, "the Writer to connect")
    return writer


def call_pub(writer, method, *args):
    """Calls Writer.pub/mpub/dpub and returns a future for the server's answer."""
    fut = asyncio.get_running_loop().create_future()

    def done(conn, data):
        if fut.done():
            return
        if isinstance(data, Exception):
            fut.set_exception(RuntimeError("%s failed: %r" % (method, data)))
        else:
            fut.set_result(data)

    getattr(writer, method)(*args, callback=done)
    return fut


class Collector:
    """Records every delivery a Reader sees, in arrival order."""

    def __init__(self):
        self.bodies = []
        self.attempts = []
        self.times = []

    def record(self, msg):
        self.bodies.append(msg.body.decode("utf-8"))
        self.attempts.append(msg.attempts)
        self.times.append(now_ms())
        RESULT["received"] = self.bodies
        RESULT["attempts"] = self.attempts


def make_reader(args, channel, handler, **kwargs):
    return nsq.Reader(
        topic=args.topic,
        channel=channel,
        message_handler=handler,
        nsqd_tcp_addresses=[args.nsqd],
        max_in_flight=kwargs.pop("max_in_flight", 1),
        max_tries=0,
        **kwargs
    )


async def consume(args, count, channel=None, settle_ms=300, **reader_kwargs):
    """Consumes until `count` deliveries, FINs each, then waits `settle_ms`
    to catch duplicates. Returns the Collector."""
    c = Collector()

    def handler(msg):
        c.record(msg)
        return True

    reader = make_reader(args, channel or args.channel, handler, **reader_kwargs)
    try:
        await wait_until(lambda: len(c.bodies) >= count, args.timeout, "%d messages" % count)
        await asyncio.sleep(settle_ms / 1000.0)
    finally:
        reader.close()
    return c


def bodies(prefix, n):
    return ["%s-%d" % (prefix, i) for i in range(n)]


async def scenario_pub(args):
    writer = await connect_writer(args.nsqd)
    sent = bodies("pub", args.count)
    for body in sent:
        resp = await call_pub(writer, "pub", args.topic, body.encode())
        RESULT.setdefault("responses", []).append(resp.decode())
    RESULT["sent"] = sent
    await consume(args, len(sent))


async def scenario_mpub(args):
    writer = await connect_writer(args.nsqd)
    sent = bodies("mpub", args.count)
    resp = await call_pub(writer, "mpub", args.topic, [b.encode() for b in sent])
    RESULT["responses"] = [resp.decode()]
    RESULT["sent"] = sent
    await consume(args, len(sent))


async def scenario_publish(args):
    """Publish only (for cross-client tests): half PUB, half MPUB."""
    writer = await connect_writer(args.nsqd)
    sent = bodies("x", args.count)
    half = len(sent) // 2
    for body in sent[:half]:
        await call_pub(writer, "pub", args.topic, body.encode())
    if sent[half:]:
        await call_pub(writer, "mpub", args.topic, [b.encode() for b in sent[half:]])
    RESULT["sent"] = sent


async def scenario_consume(args):
    await consume(args, args.count)


async def scenario_dpub(args):
    writer = await connect_writer(args.nsqd)
    c = Collector()

    def handler(msg):
        c.record(msg)
        return True

    reader = make_reader(args, args.channel, handler)
    await wait_until(lambda: reader.conns, 5, "the Reader to connect")
    t0 = now_ms()
    resp = await call_pub(writer, "dpub", args.topic, args.delay_ms, b"deferred")
    RESULT["responses"] = [resp.decode()]
    await wait_until(lambda: c.bodies, args.timeout, "the deferred message")
    RESULT["elapsed_ms"] = c.times[0] - t0
    await asyncio.sleep(0.3)
    reader.close()


async def scenario_req(args):
    writer = await connect_writer(args.nsqd)
    await call_pub(writer, "pub", args.topic, b"requeue-me")
    c = Collector()

    def handler(msg):
        c.record(msg)
        if msg.attempts == 1:
            msg.enable_async()
            msg.requeue(time_ms=args.delay_ms, backoff=False)
            return None
        return True

    reader = make_reader(args, args.channel, handler)
    await wait_until(lambda: len(c.bodies) >= 2, args.timeout, "the redelivery")
    RESULT["redelivery_ms"] = c.times[1] - c.times[0]
    await asyncio.sleep(0.3)
    reader.close()


async def scenario_touch(args):
    """Holds one message for --hold-ms with msg_timeout=1s, TOUCHing every
    --touch-every-ms, then FINs it; expects exactly one delivery."""
    writer = await connect_writer(args.nsqd)
    await call_pub(writer, "pub", args.topic, b"touch-me")
    c = Collector()
    held = []

    def handler(msg):
        c.record(msg)
        msg.enable_async()
        if len(c.bodies) > 1:
            # A redelivery means the touches did not extend the timeout.
            msg.finish()
            return None
        loop = tornado.ioloop.IOLoop.current()
        start = now_ms()
        touches = [0]

        def tick():
            if now_ms() - start >= args.hold_ms:
                held.append(now_ms() - start)
                RESULT["touches"] = touches[0]
                msg.finish()
                return
            msg.touch()
            touches[0] += 1
            loop.call_later(args.touch_every_ms / 1000.0, tick)

        loop.call_later(args.touch_every_ms / 1000.0, tick)
        return None

    reader = make_reader(args, args.channel, handler, msg_timeout=args.msg_timeout_ms / 1000.0)
    await wait_until(lambda: held, args.timeout, "the held message to be finished")
    RESULT["held_ms"] = held[0]
    await asyncio.sleep(args.settle_ms / 1000.0)
    RESULT["deliveries"] = len(c.bodies)
    reader.close()


async def scenario_timeout(args):
    """Never answers the first delivery; expects a redelivery with attempts=2
    after msg_timeout."""
    writer = await connect_writer(args.nsqd)
    await call_pub(writer, "pub", args.topic, b"time-me-out")
    c = Collector()

    def handler(msg):
        c.record(msg)
        if msg.attempts == 1:
            msg.enable_async()
            return None
        return True

    reader = make_reader(
        args, args.channel, handler, max_in_flight=2, msg_timeout=args.msg_timeout_ms / 1000.0
    )
    await wait_until(lambda: len(c.bodies) >= 2, args.timeout, "the timeout redelivery")
    RESULT["redelivery_ms"] = c.times[1] - c.times[0]
    await asyncio.sleep(0.3)
    reader.close()


async def scenario_two_channels(args):
    a, b = Collector(), Collector()

    def handler_for(col):
        def handler(msg):
            col.record(msg)
            return True

        return handler

    ra = make_reader(args, args.channel + "_a", handler_for(a))
    rb = make_reader(args, args.channel + "_b", handler_for(b))
    writer = await connect_writer(args.nsqd)
    # A channel only receives messages published after it exists, and pynsq
    # does not say when SUB was answered. Publish probes until each Reader has
    # seen one: from then on both channels exist.
    deadline = time.monotonic() + args.timeout
    probes = 0

    def seen_probe(col):
        return any(x.startswith("probe-") for x in col.bodies)

    while not (seen_probe(a) and seen_probe(b)):
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for both channels to exist")
        await call_pub(writer, "pub", args.topic, ("probe-%d" % probes).encode())
        probes += 1
        await asyncio.sleep(0.1)
    sent = bodies("fan", args.count)
    await call_pub(writer, "mpub", args.topic, [s.encode() for s in sent])
    RESULT["sent"] = sent

    def fan(col):
        return [x for x in col.bodies if not x.startswith("probe-")]

    await wait_until(
        lambda: len(fan(a)) >= len(sent) and len(fan(b)) >= len(sent),
        args.timeout,
        "both channels to receive every message",
    )
    await asyncio.sleep(0.3)
    RESULT["channel_a"] = fan(a)
    RESULT["channel_b"] = fan(b)
    RESULT["probes"] = probes
    ra.close()
    rb.close()


def compression_kwargs(args):
    """The pynsq connection options that ask for --compression in IDENTIFY,
    and for TLS (tls_v1 with tls_options) with --tls-ca."""
    kw = {}
    if args.compression == "deflate":
        kw = {"deflate": True, "deflate_level": args.deflate_level}
    if args.compression == "snappy":
        kw = {"snappy": True}
    if args.tls_ca:
        import ssl

        opts = {"ca_certs": args.tls_ca, "cert_reqs": ssl.CERT_REQUIRED}
        if args.tls_cert:
            opts["certfile"] = args.tls_cert
            opts["keyfile"] = args.tls_key
        kw.update({"tls_v1": True, "tls_options": opts})
    return kw


def negotiated(data):
    """The compression fields of an IDENTIFY response."""
    return {k: data.get(k) for k in ("deflate", "deflate_level", "snappy")}


class RecordingWriter(nsq.Writer):
    """A Writer that reports the server's IDENTIFY response."""

    def _on_connection_identify_response(self, conn, data, **kwargs):
        RESULT["writer_identify"] = negotiated(data)
        return super()._on_connection_identify_response(conn, data, **kwargs)


class RecordingReader(nsq.Reader):
    """A Reader that reports the server's IDENTIFY response and counts the
    heartbeats it answered."""

    heartbeats = 0

    def _on_connection_identify_response(self, conn, data, **kwargs):
        RESULT["reader_identify"] = negotiated(data)
        return super()._on_connection_identify_response(conn, data, **kwargs)

    def heartbeat(self, conn):
        # pynsq has already answered this _heartbeat_ with a NOP.
        self.heartbeats += 1
        RESULT["heartbeats"] = self.heartbeats


def digest(body):
    return "%d:%s" % (len(body), hashlib.sha256(body).hexdigest())


def compress_bodies(count):
    """Bodies for the compress scenario as (singles, batch): one PUB each,
    then one MPUB. Small text, every byte value, 100 KB of repetitive text (compresses well,
    and is more than one 64 KiB snappy block), and 150 KB of random bytes
    (does not compress: deflate stored blocks, snappy uncompressed chunks)."""
    line = b"nsq-gateway stream compression, the same line again and again\n"
    large_text = (line * (100_000 // len(line) + 1))[:100_000]
    singles = [("compress-%d" % i).encode() for i in range(count)]
    singles += [bytes(range(256)) * 16, large_text]
    batch = [
        b"mpub-0",
        b"\x00\n\r\xff" * 1000,
        random.Random(7).randbytes(150_000),
        large_text.upper(),
        b"mpub-1",
    ]
    return singles, batch


async def fetch_stats(args):
    """GET /stats?format=json for the topic, off the IOLoop thread."""
    url = "http://%s/stats?format=json&topic=%s" % (args.http, args.topic)

    def get():
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read().decode("utf-8"))

    return await asyncio.get_running_loop().run_in_executor(None, get)


def client_flags(clients, *extra):
    return [{k: c[k] for k in ("deflate", "snappy") + extra} for c in clients]


async def scenario_compress(args):
    """PUBs and an MPUB through a compressed Writer, consumed by a compressed
    Reader; reports both IDENTIFY responses, the socket wrapper each
    connection reads through, and the server's /stats flags for both. With
    --heartbeat-s the Reader then stays until it has answered two
    heartbeats, so both directions carry frames outside a command's answer."""
    if not args.http:
        raise ValueError("compress needs --http")
    comp = compression_kwargs(args)
    writer = RecordingWriter([args.nsqd], reconnect_interval=1.0, **comp)
    await wait_until(lambda: writer.conns, 5, "the Writer to connect")
    # The socket pynsq reads through: DeflateSocket or SnappySocket once upgraded.
    RESULT["writer_stream"] = [type(c.socket).__name__ for c in writer.conns.values()]
    singles, batch = compress_bodies(args.count)
    sent = []
    for body in singles:
        resp = await call_pub(writer, "pub", args.topic, body)
        RESULT.setdefault("responses", []).append(resp.decode())
        sent.append(digest(body))
    resp = await call_pub(writer, "mpub", args.topic, batch)
    RESULT["responses"].append(resp.decode())
    sent += [digest(b) for b in batch]
    RESULT["sent"] = sent
    stats = await fetch_stats(args)
    RESULT["producer_stats"] = client_flags(
        p for p in stats["producers"] if any(c["topic"] == args.topic for c in p["pub_counts"])
    )

    received = []

    def handler(msg):
        received.append(digest(msg.body))
        RESULT["received"] = received
        return True

    reader_kwargs = dict(comp)
    if args.heartbeat_s:
        reader_kwargs["heartbeat_interval"] = args.heartbeat_s
    reader = RecordingReader(
        topic=args.topic,
        channel=args.channel,
        message_handler=handler,
        nsqd_tcp_addresses=[args.nsqd],
        max_in_flight=5,
        max_tries=0,
        **reader_kwargs
    )
    try:
        await wait_until(lambda: len(received) >= len(sent), args.timeout, "%d messages" % len(sent))
        RESULT["reader_stream"] = [type(c.socket).__name__ for c in reader.conns.values()]
        if args.heartbeat_s:
            await wait_until(lambda: reader.heartbeats >= 2, args.timeout, "two heartbeats")
        stats = await fetch_stats(args)
        RESULT["consumer_stats"] = client_flags((
            c
            for t in stats["topics"]
            if t["topic_name"] == args.topic
            for ch in t["channels"]
            if ch["channel_name"] == args.channel
            for c in ch["clients"]
        ), "message_count")
        # Catch duplicates.
        await asyncio.sleep(0.3)
    finally:
        reader.close()


async def scenario_lookupd_consume(args):
    """Consumes --count messages from every producer that nsqlookupd
    (--lookupd, HTTP) lists for the topic; no nsqd address is given to the
    Reader. Reports the bodies and the producers it connected to."""
    c = Collector()

    def handler(msg):
        c.record(msg)
        return True

    reader = nsq.Reader(
        topic=args.topic,
        channel=args.channel,
        message_handler=handler,
        lookupd_http_addresses=["http://" + a for a in args.lookupd],
        lookupd_poll_interval=1,
        max_in_flight=10,
        max_tries=0,
    )
    try:
        await wait_until(lambda: len(c.bodies) >= args.count, args.timeout, "%d messages" % args.count)
        RESULT["producers"] = sorted(reader.conns.keys())
        await asyncio.sleep(args.settle_ms / 1000.0)
    finally:
        reader.close()


async def scenario_auth(args):
    """Publishes and consumes with --auth-secret; then a publish to
    --denied-topic reports the error pynsq was given."""
    writer = nsq.Writer([args.nsqd], reconnect_interval=60.0, auth_secret=args.auth_secret)
    await wait_until(lambda: writer.conns, 5, "the Writer to connect and AUTH")
    sent = bodies("auth", args.count)
    for body in sent:
        resp = await call_pub(writer, "pub", args.topic, body.encode())
        RESULT.setdefault("responses", []).append(resp.decode())
    RESULT["sent"] = sent
    await consume(args, len(sent), auth_secret=args.auth_secret)
    if args.denied_topic:
        try:
            await call_pub(writer, "pub", args.denied_topic, b"x")
            RESULT["denied_error"] = None
        except Exception as e:  # the server's error frame, as pynsq reports it
            RESULT["denied_error"] = str(e)


SCENARIOS = {
    "auth": scenario_auth,
    "lookupd_consume": scenario_lookupd_consume,
    "pub": scenario_pub,
    "mpub": scenario_mpub,
    "publish": scenario_publish,
    "consume": scenario_consume,
    "dpub": scenario_dpub,
    "req": scenario_req,
    "touch": scenario_touch,
    "timeout": scenario_timeout,
    "two_channels": scenario_two_channels,
    "compress": scenario_compress,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--nsqd", help="HOST:PORT of the TCP listener")
    p.add_argument("--lookupd", action="append", default=[], help="HOST:PORT of an nsqlookupd HTTP listener")
    p.add_argument("--topic", required=True)
    p.add_argument("--channel", default="ch")
    p.add_argument("--auth-secret", default=None, help="secret for AUTH")
    p.add_argument("--denied-topic", default=None, help="a topic the secret may not publish to")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--delay-ms", type=int, default=1000)
    p.add_argument("--msg-timeout-ms", type=int, default=1000)
    p.add_argument("--hold-ms", type=int, default=2500)
    p.add_argument("--touch-every-ms", type=int, default=300)
    p.add_argument("--settle-ms", type=int, default=1500)
    p.add_argument("--http", help="HOST:PORT of the HTTP listener, for /stats")
    p.add_argument("--compression", choices=["none", "deflate", "snappy"], default="none")
    p.add_argument("--deflate-level", type=int, default=6)
    p.add_argument("--tls-ca", help="CA PEM: connect with tls_v1 and verify the server against it")
    p.add_argument("--tls-cert", help="client certificate PEM (with --tls-key)")
    p.add_argument("--tls-key", help="client key PEM")
    p.add_argument("--heartbeat-s", type=int, default=0, help="Reader heartbeat interval")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds for the whole scenario")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    RESULT["scenario"] = args.scenario

    async def run():
        await SCENARIOS[args.scenario](args)

    code = 0
    try:
        tornado.ioloop.IOLoop.current().run_sync(run, timeout=args.timeout + 5)
        RESULT["ok"] = True
    except (TimeoutError, tornado.util.TimeoutError) as e:
        RESULT["error"] = "timeout: %s" % (e or "scenario exceeded --timeout")
        code = 2
    except Exception as e:  # report anything else the same way
        RESULT["error"] = "%s: %s" % (type(e).__name__, e)
        traceback.print_exc()
        code = 1
    print(json.dumps(RESULT), flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
