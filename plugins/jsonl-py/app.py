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
    """Reads `config:`; a bad value or an unknown key raises ValueError
    naming the key, which `validate_config` turns into a refused load."""
    global _max_line, _rdy
    for key, value in config:
        if key not in ("max_line_bytes", "rdy"):
            raise ValueError(f"config.{key}: unknown key")
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"config.{key}: {value!r} is not an integer") from None
        if n < 1:
            raise ValueError(f"config.{key}: {n} must be at least 1")
        if key == "max_line_bytes":
            _max_line = n
        else:
            _rdy = n


def _string(req, key):
    v = req.get(key)
    if not isinstance(v, str):
        raise KeyError(f'"{key}" must be a string')
    return v


def _pub(req):
    topic = _string(req, "topic")
    body = _string(req, "body").encode()
    channels = broker.publish(topic, body)
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
    def validate_config(self, config) -> None:
        # Called once at load: raising Err refuses the plugin with our text.
        try:
            _configure(config)
        except ValueError as e:
            raise Err(str(e))

    def on_connect(self, info: types.ConnectInfo) -> None:
        global _rdy
        _buf.extend(info.magic)
        _configure(info.config)  # validated at load
        _rdy = min(_rdy, info.limits.max_rdy_count)

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
            if ack != "auto":
                _inflight[m.id] = sub
        if ack == "auto" and messages:
            try:
                broker.finish_many(sub, [m.id for m in messages])
            except Err:
                pass

    def on_timer(self) -> None:
        pass

    def on_authenticated(self, answer) -> None:
        pass

    def on_close(self) -> None:
        pass
