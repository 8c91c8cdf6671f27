"""JSONL: newline-delimited JSON over nsq-gateway, written in Python.

The gateway hands a connection to this plugin when its first 4 bytes are
`{"op`. Each request is one JSON object on one line; each reply is one line:

    {"op":"pub","topic":T,"body":S}           -> {"ok":true,"channels":N}
    {"op":"sub","topic":T,"channel":C}        -> {"ok":true}, then one line per
        message {"msg":{"id":...,"attempts":...,"timestamp":...,"body":S}},
        FINed once written ("ack":"manual" leaves that to the client)
    {"op":"fin","id":I} / {"op":"req","id":I[,"delay_ms":D]}  (manual ack)
    anything wrong                            -> {"ok":false,"error":"..."}

Every connection gets its own instance of this component, so the module's
globals are that connection's state.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import broker, connection, types

# Defaults; `config:` in gateway.yaml overrides them (see `_configure`).
MAX_LINE = 1 << 20
RDY = 100

# Per-connection state (one instance per connection).
_buf = bytearray()
_max_line = MAX_LINE
_rdy = RDY
# subscription handle -> "auto" | "manual"
_subs = {}
# message id -> subscription handle, for manual fin/req
_inflight = {}


def _error_text(e):
    """One wording for a broker error: its variant name, and its text if any."""
    v = e.value if isinstance(e, Err) else e
    name = type(v).__name__.replace("BrokerError_", "")
    snake = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    text = getattr(v, "value", None)
    return f"{snake}: {text}" if text else snake


def _reply(obj):
    try:
        connection.write((json.dumps(obj, separators=(",", ":")) + "\n").encode())
    except Err:
        # closed or buffer-full: the host ends or backpressures the connection
        pass


def _fail(text):
    _reply({"ok": False, "error": text})


def _configure(config):
    global _max_line, _rdy
    for key, value in config:
        if key == "max_line_bytes":
            _max_line = int(value)
        elif key == "rdy":
            _rdy = int(value)
        else:
            raise ValueError(f"unknown config key {key!r}")


def _string(req, key):
    v = req.get(key)
    if not isinstance(v, str):
        raise KeyError(f'"{key}" must be a string')
    return v


def _pub(req):
    topic = _string(req, "topic")
    body = _string(req, "body").encode()
    broker.publish(topic, body)
    # WIT 0.1.0's publish returns nothing; 0.2.0 returns the channel count.
    channels = 0
    for t in broker.stats(topic):
        if t.name == topic:
            channels = len(t.channels)
    _reply({"ok": True, "channels": channels})


def _sub(req):
    topic = _string(req, "topic")
    channel = _string(req, "channel")
    ack = req.get("ack", "auto")
    if ack not in ("auto", "manual"):
        raise KeyError('"ack" must be "auto" or "manual"')
    sub = broker.subscribe(topic, channel)
    _subs[sub] = ack
    broker.set_ready(sub, _rdy)
    _reply({"ok": True})


def _ack(req, op):
    mid = _string(req, "id")
    sub = _inflight.get(mid)
    if sub is None:
        raise KeyError(f"message {mid} is not in flight on a manual subscription")
    if op == "fin":
        broker.finish(sub, mid)
    else:
        delay = req.get("delay_ms", 0)
        if not isinstance(delay, int) or delay < 0:
            raise KeyError('"delay_ms" must be a non-negative integer')
        broker.requeue(sub, mid, delay)
    del _inflight[mid]
    _reply({"ok": True})


def _handle(line):
    try:
        req = json.loads(line)
    except ValueError as e:
        return _fail(f"bad JSON: {e}")
    if not isinstance(req, dict):
        return _fail("a request is a JSON object")
    op = req.get("op")
    try:
        if op == "pub":
            _pub(req)
        elif op == "sub":
            _sub(req)
        elif op in ("fin", "req"):
            _ack(req, op)
        else:
            _fail(f"unknown op {op!r}")
    except KeyError as e:
        _fail(e.args[0] if e.args else "bad request")
    except Err as e:
        _fail(_error_text(e))


class TcpHandler(exports.TcpHandler):
    def on_connect(self, info: types.ConnectInfo) -> None:
        _buf.extend(info.magic)
        try:
            _configure(info.config)
        except ValueError as e:
            _fail(f"plugin config: {e}")
            connection.close()

    def on_data(self, data: bytes) -> None:
        _buf.extend(data)
        while True:
            nl = _buf.find(b"\n")
            if nl < 0:
                break
            line = bytes(_buf[:nl])
            del _buf[: nl + 1]
            if line.strip():
                _handle(line)
        if len(_buf) > _max_line:
            _fail(f"line longer than {_max_line} bytes")
            _buf.clear()
            connection.close()

    def on_messages(self, sub: int, messages) -> None:
        ack = _subs.get(sub, "auto")
        for m in messages:
            _reply({"msg": {
                "id": m.id,
                "attempts": m.attempts,
                "timestamp": m.timestamp,
                "body": m.body.decode("utf-8", "replace"),
            }})
            if ack == "auto":
                try:
                    broker.finish(sub, m.id)
                except Err:
                    pass
            else:
                _inflight[m.id] = sub

    def on_timer(self) -> None:
        pass

    def on_authenticated(self, answer) -> None:
        pass

    def on_close(self) -> None:
        pass
