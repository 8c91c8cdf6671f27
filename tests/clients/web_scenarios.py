#!/usr/bin/env python3
"""Drives the WEB plugin (GET on the gateway's TCP port) with real clients for
nsq-gateway's integration tests: the `websockets` library for /ws, pynsq for
the NSQ side, and selenium with headless Chromium for the console page.

Usage: web_scenarios.py SCENARIO --addr HOST:PORT --topic T [options]

Scenarios:
  ws       pub, sub with auto and manual acks, a binary body, ping/pong, the
           close handshake, and an oversized frame refused with 1009
  cross    pynsq publishes -> a WebSocket receives; a WebSocket publishes ->
           a pynsq Reader receives
  browser  Chromium loads the console, subscribes, shows pynsq-published
           messages (latency p50/p99 from timestamps in the bodies), publishes
           from the page to a pynsq Reader, and uses EventSource on /sse; saves
           a screenshot to --screenshot

Each run prints exactly one JSON line on stdout: {"ok": true, ...results} on
success, or {"ok": false, "error": "...", ...} and a non-zero exit status.
"""

import argparse
import asyncio
import base64
import json
import logging
import sys
import time
import traceback

import nsq
import tornado.ioloop
import tornado.util
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

RESULT = {"ok": False}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def wait_until(pred, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for " + what)
        await asyncio.sleep(0.005)


class Client:
    """A /ws connection: requests carry a "ref", replies are matched by it,
    deliveries queue up in arrival order."""

    def __init__(self, ws):
        self.ws = ws
        self.next_ref = 0
        self.msgs = []

    @classmethod
    async def open(cls, addr, **kw):
        ws = await connect("ws://%s/ws" % addr, max_size=None, ping_interval=None, **kw)
        return cls(ws)

    async def recv(self, timeout=10):
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def request(self, **req):
        self.next_ref += 1
        req["ref"] = self.next_ref
        await self.ws.send(json.dumps(req))
        while True:
            v = await self.recv()
            if "msg" in v:
                self.msgs.append(v["msg"])
            elif v.get("ref") == self.next_ref:
                return v

    async def ok(self, **req):
        v = await self.request(**req)
        check(v.get("ok") is True, "%s answered %s" % (req.get("op"), v))
        return v

    async def message(self, timeout=10):
        while not self.msgs:
            v = await self.recv(timeout)
            if "msg" in v:
                self.msgs.append(v["msg"])
        return self.msgs.pop(0)


async def scenario_ws(args):
    t = args.topic
    c = await Client.open(args.addr)
    # pub before any channel: the topic keeps it for the first one
    r = await c.ok(op="pub", topic=t, body="first")
    RESULT["pub_channels_before_sub"] = r["channels"]
    r = await c.ok(op="sub", topic=t, channel="auto")
    check(r["channel"] == "auto" and r["prefetch"] > 0, "sub reply %s" % r)
    for i in range(3):
        r = await c.ok(op="pub", topic=t, body="auto-%d" % i)
    RESULT["pub_channels"] = r["channels"]
    got = [(await c.message())["body"] for _ in range(4)]
    RESULT["auto"] = got
    check(got == ["first", "auto-0", "auto-1", "auto-2"], "auto order %s" % got)

    # manual acks: REQ brings it back with attempts 2, FIN ends it
    m = await Client.open(args.addr)
    await m.ok(op="sub", topic=t + "-m", channel="manual", ack="manual", prefetch=1)
    await m.ok(op="pub", topic=t + "-m", body="again")
    first = await m.message()
    check(first["attempts"] == 1, "first delivery %s" % first)
    await m.ok(op="req", id=first["id"], delay_ms=0)
    second = await m.message()
    check(second["id"] == first["id"] and second["attempts"] == 2, "redelivery %s" % second)
    await m.ok(op="fin", id=second["id"])
    r = await m.request(op="fin", id=second["id"])
    check(r["ok"] is False, "a second fin fails: %s" % r)
    RESULT["manual_attempts"] = [first["attempts"], second["attempts"]]
    stats = await m.ok(op="stats", topic=t + "-m")
    ch = stats["topics"][0]["channels"][0]
    RESULT["manual_stats"] = {"depth": ch["depth"], "in_flight": ch["in_flight"]}
    check(ch["in_flight"] == 0 and ch["depth"] == 0, "after fin %s" % ch)

    # binary: a non-UTF-8 body goes in and comes out as base64; the request
    # itself may come as a binary frame
    raw = bytes([0xFF, 0x00, 0xFE, 0x80]) + b"bin"
    b64 = base64.b64encode(raw).decode()
    await c.ws.send(json.dumps({"op": "pub", "topic": t, "body": b64, "encoding": "base64"}).encode())
    msg = await c.message()
    check(msg.get("encoding") == "base64" and base64.b64decode(msg["body"]) == raw, "binary %s" % msg)
    RESULT["binary"] = msg["body"]

    # bad requests are answered, not fatal
    r = await c.request(op="nope")
    check(r["ok"] is False and "unknown op" in r["error"], "unknown op %s" % r)
    r = await c.request(op="pub", topic="bad topic!", body="x")
    check(r["ok"] is False and "invalid topic name" in r["error"], "bad topic %s" % r)

    # ping/pong
    pong = await c.ws.ping(b"hello")
    RESULT["ping_rtt_ms"] = round(await asyncio.wait_for(pong, 5) * 1000, 3)

    # the close handshake: our close code comes back
    await c.ws.close(1000, "bye")
    RESULT["close"] = [c.ws.close_code, c.ws.close_reason]
    check(c.ws.close_code == 1000, "close code %s" % c.ws.close_code)
    await m.ws.close()

    # an oversized frame: the server closes with 1009
    big = await Client.open(args.addr)
    try:
        await big.ws.send("x" * (args.max_frame + 1))
        await big.recv(10)
        raise AssertionError("an oversized frame was answered")
    except ConnectionClosed:
        pass
    RESULT["oversized_close"] = big.ws.close_code
    check(big.ws.close_code == 1009, "oversized close code %s" % big.ws.close_code)


def make_reader(args, topic, channel, handler):
    return nsq.Reader(
        topic=topic,
        channel=channel,
        message_handler=handler,
        nsqd_tcp_addresses=[args.addr],
        max_in_flight=10,
        max_tries=0,
    )


async def pynsq_pub(writer, topic, body):
    fut = asyncio.get_running_loop().create_future()

    def done(conn, data):
        if not fut.done():
            if isinstance(data, Exception):
                fut.set_exception(RuntimeError("pub failed: %r" % (data,)))
            else:
                fut.set_result(data)

    writer.pub(topic, body, callback=done)
    return await asyncio.wait_for(fut, 10)


async def connect_writer(args):
    writer = nsq.Writer([args.addr], reconnect_interval=1.0)
    await wait_until(lambda: writer.conns, 10, "the pynsq Writer to connect")
    return writer


async def scenario_cross(args):
    t = args.topic
    writer = await connect_writer(args)
    c = await Client.open(args.addr)
    await c.ok(op="sub", topic=t, channel="ws")
    sent = ["from-pynsq-%d" % i for i in range(5)]
    for body in sent:
        await pynsq_pub(writer, t, body.encode())
    got = [(await c.message())["body"] for _ in sent]
    RESULT["pynsq_to_ws"] = got
    check(got == sent, "pynsq -> ws %s" % got)

    received = []

    def handler(msg):
        received.append(msg.body.decode())
        return True

    reader = make_reader(args, t + "-back", "py", handler)
    back = ["from-ws-%d" % i for i in range(5)]
    for body in back:
        await c.ok(op="pub", topic=t + "-back", body=body)
    await wait_until(lambda: len(received) >= len(back), 10, "the pynsq Reader")
    reader.close()
    RESULT["ws_to_pynsq"] = received
    check(sorted(received) == sorted(back), "ws -> pynsq %s" % received)
    await c.ws.close()


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = args_global.chromium
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,860", "--force-device-scale-factor=1"]:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(args_global.chromedriver), options=opts)


async def in_thread(fn, *a):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *a)


async def scenario_browser(args):
    from selenium.webdriver.common.by import By

    t = args.topic
    writer = await connect_writer(args)
    driver = await in_thread(browser)
    try:
        await in_thread(driver.get, "http://%s/" % args.addr)
        find = lambda id_: driver.find_element(By.ID, id_)  # noqa: E731

        async def page_until(js, timeout, what):
            deadline = time.monotonic() + timeout
            while True:
                v = await in_thread(driver.execute_script, js)
                if v:
                    return v
                if time.monotonic() > deadline:
                    raise TimeoutError("timed out waiting for " + what)
                await asyncio.sleep(0.02)

        await page_until("return document.getElementById('status').textContent === 'connected'", 10, "the page's WebSocket")

        def subscribe():
            find("topic").send_keys(t)
            find("subscribe").click()

        await in_thread(subscribe)
        await page_until("return document.getElementById('sub-note').textContent.startsWith('subscribed')", 10, "the subscription")

        # pynsq publishes with the send time in the body; the page stamps
        # each message's arrival (data-received, the same machine's clock)
        n = args.count
        first_deadline = None
        for i in range(n):
            sent_ms = time.time() * 1000.0
            await pynsq_pub(writer, t, ("lat %d %.3f" % (i, sent_ms)).encode())
            if i == 0:
                first_deadline = time.monotonic() + 1.0
                await page_until("return document.querySelectorAll('#messages > div').length >= 1", 1.0, "the first message within 1 s")
                RESULT["first_within_s"] = round(1.0 - (first_deadline - time.monotonic()), 3)
            await asyncio.sleep(0.01)
        await page_until("return document.querySelectorAll('#messages > div').length >= %d" % n, 10, "%d messages" % n)
        rows = await in_thread(driver.execute_script,
                               "return [...document.querySelectorAll('#messages > div')].map(d => [d.textContent, d.dataset.received])")
        lat = []
        for text, received in rows:
            _, i, sent = text.split(" ")
            lat.append(float(received) - float(sent))
        check([r[0].split(" ")[1] for r in rows] == [str(i) for i in range(n)], "page order")
        RESULT["messages_on_page"] = len(rows)
        RESULT["latency_ms"] = {"p50": round(percentile(lat, 50), 2), "p99": round(percentile(lat, 99), 2),
                                "max": round(max(lat), 2), "n": len(lat)}

        # the page publishes; a pynsq Reader receives
        received = []

        def handler(msg):
            received.append(msg.body.decode())
            return True

        reader = make_reader(args, t + "-page", "py", handler)

        def publish():
            find("pub-topic").send_keys(t + "-page")
            find("pub-body").send_keys("hello from the page")
            find("publish").click()

        await in_thread(publish)
        await wait_until(lambda: received, 10, "the pynsq Reader to get the page's message")
        reader.close()
        RESULT["page_to_pynsq"] = received
        check(received == ["hello from the page"], "page -> pynsq %s" % received)

        # EventSource against /sse, from the page's origin
        await in_thread(driver.execute_script, """
            window.__sse = []; window.__sseOpen = false;
            const es = new EventSource('/sse?topic=' + encodeURIComponent(arguments[0]));
            es.onopen = () => { window.__sseOpen = true; };
            es.onmessage = (e) => window.__sse.push([e.lastEventId, e.data]);
            window.__es = es;
        """, t + "-sse")
        await page_until("return window.__sseOpen", 10, "EventSource to open")
        sse_sent = ["sse-%d" % i for i in range(3)] + ["two\nlines"]
        for body in sse_sent:
            await pynsq_pub(writer, t + "-sse", body.encode())
        events = await page_until("return window.__sse.length >= %d && window.__sse" % len(sse_sent), 10, "SSE events")
        RESULT["sse"] = events
        check([e[1] for e in events] == sse_sent, "sse bodies %s" % events)
        check(all(len(e[0]) == 16 for e in events), "sse ids %s" % events)
        await in_thread(driver.execute_script, "window.__es.close()")

        # let the stats table refresh (every 2 s), then the screenshot
        await page_until("return [...document.querySelectorAll('#topics td')].some(td => td.textContent === arguments[0])".replace("arguments[0]", json.dumps(t + "-page")), 10, "the stats table")
        await in_thread(driver.save_screenshot, args.screenshot)
        RESULT["screenshot"] = args.screenshot
        RESULT["console_errors"] = [e["message"] for e in await in_thread(driver.get_log, "browser")
                                    if e.get("level") == "SEVERE"]
    finally:
        await in_thread(driver.quit)


SCENARIOS = {"ws": scenario_ws, "cross": scenario_cross, "browser": scenario_browser}
args_global = None


def main():
    global args_global
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--addr", required=True, help="HOST:PORT of the gateway's TCP listener")
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--max-frame", type=int, default=1 << 20)
    p.add_argument("--screenshot", default="web-console.png")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    args_global = args
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    RESULT["scenario"] = args.scenario

    async def run():
        await asyncio.wait_for(SCENARIOS[args.scenario](args), args.timeout)

    code = 0
    try:
        tornado.ioloop.IOLoop.current().run_sync(run, timeout=args.timeout + 5)
        RESULT["ok"] = True
    except (TimeoutError, asyncio.TimeoutError, tornado.util.TimeoutError) as e:
        RESULT["error"] = "timeout: %s" % (e or "scenario exceeded --timeout")
        traceback.print_exc()
        code = 2
    except Exception as e:  # report anything else the same way
        RESULT["error"] = "%s: %s" % (type(e).__name__, e)
        traceback.print_exc()
        code = 1
    print(json.dumps(RESULT), flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
