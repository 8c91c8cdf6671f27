#!/usr/bin/env node
// Drives nsqjs (nsq.Writer / nsq.Reader) against an nsqd-compatible server for
// nsq-gateway's integration tests.
//
// Usage: node nsqjs_scenarios.js SCENARIO --nsqd HOST:PORT --topic T [options]
//
// Each run prints exactly one JSON line on stdout: {"ok": true, ...results} on
// success, or {"ok": false, "error": "...", ...partial results} and a non-zero
// exit status on failure or timeout. Every scenario is bounded by --timeout.
//
// The `compress` scenario negotiates stream compression in IDENTIFY
// (--compression deflate with --deflate-level, or snappy; snappy needs the
// snappystream package) for both the Writer and the Reader, and reports what
// was sent and received as "length:sha256" strings, since some bodies are binary.
'use strict'

const crypto = require('crypto')
const http = require('http')
const nsq = require('nsqjs')

const RESULT = { ok: false, client: 'nsqjs', nsqjs: require('nsqjs/package.json').version }

function parseArgs (argv) {
  const args = {
    scenario: argv[0],
    nsqd: null,
    lookupd: [],
    topic: null,
    channel: 'ch',
    count: 10,
    delayMs: 1000,
    msgTimeoutMs: 1000,
    holdMs: 2500,
    touchEveryMs: 300,
    settleMs: 1500,
    http: null,
    compression: 'none',
    deflateLevel: 6,
    tlsCa: null,
    tlsCert: null,
    tlsKey: null,
    timeout: 15
  }
  const names = {
    '--nsqd': ['nsqd', String],
    '--topic': ['topic', String],
    '--channel': ['channel', String],
    '--auth-secret': ['authSecret', String],
    '--denied-topic': ['deniedTopic', String],
    '--count': ['count', Number],
    '--delay-ms': ['delayMs', Number],
    '--msg-timeout-ms': ['msgTimeoutMs', Number],
    '--hold-ms': ['holdMs', Number],
    '--touch-every-ms': ['touchEveryMs', Number],
    '--settle-ms': ['settleMs', Number],
    '--http': ['http', String],
    '--compression': ['compression', String],
    '--deflate-level': ['deflateLevel', Number],
    '--tls-ca': ['tlsCa', String],
    '--tls-cert': ['tlsCert', String],
    '--tls-key': ['tlsKey', String],
    '--timeout': ['timeout', Number]
  }
  for (let i = 1; i < argv.length; i += 2) {
    if (argv[i] === '--lookupd' && i + 1 < argv.length) {
      args.lookupd.push(argv[i + 1])
      continue
    }
    const spec = names[argv[i]]
    if (!spec || i + 1 >= argv.length) throw new Error('bad argument ' + argv[i])
    args[spec[0]] = spec[1](argv[i + 1])
  }
  if (!args.topic || !(args.nsqd || args.lookupd.length)) {
    throw new Error('--topic and --nsqd (or --lookupd) are required')
  }
  if (!args.nsqd) return args
  const idx = args.nsqd.lastIndexOf(':')
  args.host = args.nsqd.slice(0, idx)
  args.port = Number(args.nsqd.slice(idx + 1))
  return args
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const nowMs = () => Number(process.hrtime.bigint()) / 1e6

async function waitUntil (pred, timeoutMs, what) {
  const deadline = nowMs() + timeoutMs
  while (!pred()) {
    if (nowMs() > deadline) throw new Error('timeout: waiting for ' + what)
    await sleep(5)
  }
}

function connectWriter (args, opts = {}) {
  return new Promise((resolve, reject) => {
    const w = new nsq.Writer(args.host, args.port, opts)
    const timer = setTimeout(() => reject(new Error('timeout: Writer connect')), 5000)
    w.once('ready', () => {
      clearTimeout(timer)
      resolve(w)
    })
    w.on('error', (err) => {
      RESULT.writer_errors = (RESULT.writer_errors || []).concat(String(err))
      reject(err)
    })
    w.connect()
  })
}

function publish (w, topic, msgs) {
  return new Promise((resolve, reject) =>
    w.publish(topic, msgs, (err) => (err ? reject(err) : resolve())))
}

function deferPublish (w, topic, msg, ms) {
  // nsqjs 0.13's deferPublish, unlike publish, only accepts a one-element
  // array (it then sends DPUB with that message).
  return new Promise((resolve, reject) =>
    w.deferPublish(topic, [msg], ms, (err) => (err ? reject(err) : resolve())))
}

class Collector {
  constructor () {
    this.bodies = []
    this.attempts = []
    this.times = []
  }

  record (msg) {
    this.bodies.push(msg.body.toString('utf8'))
    this.attempts.push(msg.attempts)
    this.times.push(nowMs())
    RESULT.received = this.bodies
    RESULT.attempts = this.attempts
  }
}

function makeReader (args, channel, onMessage, opts = {}) {
  const r = new nsq.Reader(args.topic, channel, Object.assign({
    nsqdTCPAddresses: [args.nsqd],
    maxInFlight: 1,
    maxAttempts: 0
  }, opts))
  r.on('message', onMessage)
  r.on('error', (err) => {
    RESULT.reader_errors = (RESULT.reader_errors || []).concat(String(err))
  })
  r.on('discard', (msg) => {
    RESULT.discarded = (RESULT.discarded || 0) + 1
    msg.finish()
  })
  r.connect()
  return r
}

async function consume (args, count, channel, opts) {
  const c = new Collector()
  const r = makeReader(args, channel || args.channel, (msg) => {
    c.record(msg)
    msg.finish()
  }, opts)
  try {
    await waitUntil(() => c.bodies.length >= count, args.timeout * 1000, count + ' messages')
    await sleep(300)
  } finally {
    r.close()
  }
  return c
}

const bodies = (prefix, n) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`)

// The nsqjs options that ask for --compression in IDENTIFY, and for TLS
// (tls_v1, verified against --tls-ca) when --tls-ca is given.
function compressionOptions (args) {
  const tls = {}
  if (args.tlsCa) {
    const fs = require('fs')
    Object.assign(tls, { tls: true, tlsVerification: true, ca: fs.readFileSync(args.tlsCa) })
    if (args.tlsCert) {
      Object.assign(tls, { cert: fs.readFileSync(args.tlsCert), key: fs.readFileSync(args.tlsKey) })
    }
  }
  switch (args.compression) {
    case 'deflate': return Object.assign({ deflate: true, deflateLevel: args.deflateLevel }, tls)
    case 'snappy': return Object.assign({ snappy: true }, tls)
    case 'none': return tls
    default: throw new Error('unknown --compression ' + args.compression)
  }
}

// The compression fields of a connection's IDENTIFY response.
function negotiated (conn) {
  const r = conn.statemachine.identifyResponse || {}
  return { deflate: r.deflate, deflate_level: r.deflate_level, snappy: r.snappy }
}

// The stream a connection reads through: InflateRaw or UnsnappyStream once
// compression started, else the socket.
const streamName = (conn) => (conn.inflater || conn.conn).constructor.name

const digest = (body) =>
  `${body.length}:${crypto.createHash('sha256').update(body).digest('hex')}`

// Deterministic bytes that do not compress (xorshift32).
function noise (n, seed) {
  const out = Buffer.alloc(n)
  let x = seed
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

// Bodies for the compress scenario: [one PUB each, one MPUB]. Small text,
// every byte value, 100 KB of repetitive text (compresses well, and is more
// than one 64 KiB snappy block), and 150 KB of noise (does not compress:
// deflate stored blocks, snappy uncompressed chunks).
function compressBodies (count) {
  const line = 'nsq-gateway stream compression, the same line again and again\n'
  const largeText = Buffer.from(line.repeat(Math.ceil(100000 / line.length)).slice(0, 100000))
  const everyByte = Buffer.alloc(256 * 16, 0).map((_, i) => i % 256)
  const singles = bodies('compress', count).map((b) => Buffer.from(b))
  singles.push(everyByte, largeText)
  const batch = [
    Buffer.from('mpub-0'),
    Buffer.from('\x00\n\r\xff'.repeat(1000), 'latin1'),
    noise(150000, 7),
    Buffer.from(largeText.toString().toUpperCase()),
    Buffer.from('mpub-1')
  ]
  return [singles, batch]
}

function fetchStats (args) {
  const url = `http://${args.http}/stats?format=json&topic=${encodeURIComponent(args.topic)}`
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      const parts = []
      res.on('data', (d) => parts.push(d))
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(parts).toString('utf8')))
        } catch (e) {
          reject(e)
        }
      })
    })
    req.on('error', reject)
    req.setTimeout(5000, () => req.destroy(new Error('timeout: GET /stats')))
  })
}

const clientFlags = (clients, ...extra) => clients.map((c) =>
  Object.fromEntries(['deflate', 'snappy', ...extra].map((k) => [k, c[k]])))

const SCENARIOS = {
  // Consumes --count messages from every producer nsqlookupd (--lookupd,
  // HTTP, repeatable) lists for the topic; the Reader gets no nsqd address.
  async lookupd_consume (args) {
    const bodies = []
    const r = new nsq.Reader(args.topic, args.channel, {
      lookupdHTTPAddresses: args.lookupd,
      lookupdPollInterval: 1,
      maxInFlight: 10,
      maxAttempts: 0
    })
    r.on('message', (msg) => {
      bodies.push(msg.body.toString())
      RESULT.received = bodies
      msg.finish()
    })
    r.on('error', (err) => {
      RESULT.reader_errors = (RESULT.reader_errors || []).concat(String(err))
    })
    r.connect()
    try {
      await waitUntil(() => bodies.length >= args.count, args.timeout * 1000, args.count + ' messages')
      RESULT.producers = Object.keys(r.connectionIds ? r.connectionIds : {}).sort()
      await sleep(args.settleMs)
    } finally {
      r.close()
    }
  },
  // PUBs and an MPUB through a compressed Writer, consumed by a compressed
  // Reader; reports both IDENTIFY responses and the server's /stats flags.
  async compress (args) {
    if (!args.http) throw new Error('compress needs --http')
    const opts = compressionOptions(args)
    const w = await connectWriter(args, opts)
    RESULT.writer_identify = negotiated(w.conn)
    RESULT.writer_stream = [streamName(w.conn)]
    const [singles, batch] = compressBodies(args.count)
    const sent = []
    for (const b of singles) {
      await publish(w, args.topic, b)
      sent.push(digest(b))
    }
    await publish(w, args.topic, batch)
    sent.push(...batch.map(digest))
    RESULT.sent = sent
    let stats = await fetchStats(args)
    RESULT.producer_stats = clientFlags(stats.producers.filter((p) =>
      (p.pub_counts || []).some((c) => c.topic === args.topic)))

    const received = []
    const r = makeReader(args, args.channel, (msg) => {
      received.push(digest(msg.body))
      RESULT.received = received
      msg.finish()
    }, Object.assign({ maxInFlight: 5 }, opts))
    try {
      await waitUntil(() => received.length >= sent.length, args.timeout * 1000,
        sent.length + ' messages')
      // readerRdy wraps each NSQDConnection in a ConnectionRdy.
      const conns = r.readerRdy.connections.map((c) => c.conn)
      if (conns.length !== 1) throw new Error(`${conns.length} Reader connections, expected 1`)
      RESULT.reader_identify = negotiated(conns[0])
      RESULT.reader_stream = conns.map(streamName)
      stats = await fetchStats(args)
      RESULT.consumer_stats = clientFlags(stats.topics
        .filter((t) => t.topic_name === args.topic)
        .flatMap((t) => t.channels.filter((c) => c.channel_name === args.channel))
        .flatMap((c) => c.clients), 'message_count')
      await sleep(300) // catch duplicates
    } finally {
      r.close()
      w.close()
    }
  },

  // Publishes and consumes with --auth-secret; then a publish to
  // --denied-topic reports the error nsqjs was given.
  async auth (args) {
    const opts = { authSecret: args.authSecret }
    const w = await connectWriter(args, opts)
    const sent = bodies('auth', args.count)
    for (const b of sent) await publish(w, args.topic, b)
    RESULT.sent = sent
    await consume(args, sent.length, args.channel, opts)
    if (args.deniedTopic) {
      w.removeAllListeners('error')
      w.on('error', () => {})
      try {
        await publish(w, args.deniedTopic, 'x')
        RESULT.denied_error = null
      } catch (err) {
        RESULT.denied_error = String(err)
      }
    }
    w.close()
  },

  async pub (args) {
    const w = await connectWriter(args)
    const sent = bodies('pub', args.count)
    for (const b of sent) await publish(w, args.topic, b)
    RESULT.sent = sent
    w.close()
    await consume(args, sent.length)
  },

  async mpub (args) {
    const w = await connectWriter(args)
    const sent = bodies('mpub', args.count)
    await publish(w, args.topic, sent)
    RESULT.sent = sent
    w.close()
    await consume(args, sent.length)
  },

  async publish (args) {
    const w = await connectWriter(args)
    const sent = bodies('x', args.count)
    const half = Math.floor(sent.length / 2)
    for (const b of sent.slice(0, half)) await publish(w, args.topic, b)
    if (sent.length > half) await publish(w, args.topic, sent.slice(half))
    RESULT.sent = sent
    w.close()
  },

  async consume (args) {
    await consume(args, args.count)
  },

  async dpub (args) {
    const w = await connectWriter(args)
    const c = new Collector()
    const r = makeReader(args, args.channel, (msg) => {
      c.record(msg)
      msg.finish()
    })
    await new Promise((resolve) => r.once('nsqd_connected', resolve))
    const t0 = nowMs()
    await deferPublish(w, args.topic, 'deferred', args.delayMs)
    await waitUntil(() => c.bodies.length >= 1, args.timeout * 1000, 'the deferred message')
    RESULT.elapsed_ms = c.times[0] - t0
    await sleep(300)
    r.close()
    w.close()
  },

  async req (args) {
    const w = await connectWriter(args)
    await publish(w, args.topic, 'requeue-me')
    w.close()
    const c = new Collector()
    const r = makeReader(args, args.channel, (msg) => {
      c.record(msg)
      if (msg.attempts === 1) msg.requeue(args.delayMs, false)
      else msg.finish()
    })
    await waitUntil(() => c.bodies.length >= 2, args.timeout * 1000, 'the redelivery')
    RESULT.redelivery_ms = c.times[1] - c.times[0]
    await sleep(300)
    r.close()
  },

  async touch (args) {
    const w = await connectWriter(args)
    await publish(w, args.topic, 'touch-me')
    w.close()
    const c = new Collector()
    let heldMs = null
    let touches = 0
    const r = makeReader(args, args.channel, (msg) => {
      c.record(msg)
      if (c.bodies.length > 1) {
        msg.finish()
        return
      }
      const start = nowMs()
      const tick = () => {
        if (nowMs() - start >= args.holdMs) {
          heldMs = nowMs() - start
          RESULT.touches = touches
          msg.finish()
          return
        }
        msg.touch()
        touches += 1
        setTimeout(tick, args.touchEveryMs)
      }
      setTimeout(tick, args.touchEveryMs)
    }, { messageTimeout: args.msgTimeoutMs })
    await waitUntil(() => heldMs !== null, args.timeout * 1000, 'the held message to be finished')
    RESULT.held_ms = heldMs
    await sleep(args.settleMs)
    RESULT.deliveries = c.bodies.length
    r.close()
  },

  async timeout (args) {
    const w = await connectWriter(args)
    await publish(w, args.topic, 'time-me-out')
    w.close()
    const c = new Collector()
    const r = makeReader(args, args.channel, (msg) => {
      c.record(msg)
      if (msg.attempts > 1) msg.finish()
      // attempts == 1: never answer, let the server time it out.
    }, { messageTimeout: args.msgTimeoutMs, maxInFlight: 2 })
    await waitUntil(() => c.bodies.length >= 2, args.timeout * 1000, 'the timeout redelivery')
    RESULT.redelivery_ms = c.times[1] - c.times[0]
    await sleep(300)
    r.close()
  },

  async two_channels (args) {
    const a = new Collector()
    const b = new Collector()
    const ra = makeReader(args, args.channel + '_a', (m) => { a.record(m); m.finish() })
    const rb = makeReader(args, args.channel + '_b', (m) => { b.record(m); m.finish() })
    const w = await connectWriter(args)
    // A channel only receives messages published after it exists, and
    // nsqjs's nsqd_connected fires before SUB is answered. Publish probes
    // until each Reader has seen one: from then on both channels exist.
    const isProbe = (x) => x.startsWith('probe-')
    const deadline = nowMs() + args.timeout * 1000
    let probes = 0
    while (!(a.bodies.some(isProbe) && b.bodies.some(isProbe))) {
      if (nowMs() > deadline) throw new Error('timeout: waiting for both channels to exist')
      await publish(w, args.topic, 'probe-' + probes)
      probes += 1
      await sleep(100)
    }
    const sent = bodies('fan', args.count)
    await publish(w, args.topic, sent)
    RESULT.sent = sent
    w.close()
    const fan = (c) => c.bodies.filter((x) => !isProbe(x))
    await waitUntil(() => fan(a).length >= sent.length && fan(b).length >= sent.length,
      args.timeout * 1000, 'both channels to receive every message')
    await sleep(300)
    RESULT.channel_a = fan(a)
    RESULT.channel_b = fan(b)
    RESULT.probes = probes
    ra.close()
    rb.close()
  }
}

async function main () {
  let args
  try {
    args = parseArgs(process.argv.slice(2))
    if (!SCENARIOS[args.scenario]) throw new Error('unknown scenario ' + args.scenario)
  } catch (e) {
    RESULT.error = String(e.message || e)
    console.log(JSON.stringify(RESULT))
    process.exit(64)
  }
  RESULT.scenario = args.scenario
  const guard = setTimeout(() => {
    RESULT.error = 'timeout: scenario exceeded --timeout'
    console.log(JSON.stringify(RESULT))
    process.exit(2)
  }, (args.timeout + 5) * 1000)
  try {
    await SCENARIOS[args.scenario](args)
    RESULT.ok = true
    clearTimeout(guard)
    console.log(JSON.stringify(RESULT))
    process.exit(0)
  } catch (e) {
    clearTimeout(guard)
    RESULT.error = String(e && e.message ? e.message : e)
    if (e && e.stack) console.error(e.stack)
    console.log(JSON.stringify(RESULT))
    process.exit(String(RESULT.error).startsWith('timeout') ? 2 : 1)
  }
}

process.on('unhandledRejection', (e) => {
  RESULT.error = 'unhandled rejection: ' + String(e && e.stack ? e.stack : e)
  console.log(JSON.stringify(RESULT))
  process.exit(1)
})

main()
