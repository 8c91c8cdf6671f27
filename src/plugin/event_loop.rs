//! One plugin connection's event loop: the host owns the socket, the
//! subscriptions and the timer, waits on all of them at once, and calls the
//! guest synchronously once per event (bytes in, messages ready, timer,
//! close) under a fresh CPU budget, then writes out what the guest queued.
//! An idle connection keeps no read, output or delivery buffers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::Poll;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmtime::Store;

use super::Plugin;
use super::bindings;
use super::bindings::nsq::gateway::types::{
    AuthError, ConnectInfo, Identity, Message as WitMessage,
};
use super::state::HostState;
use crate::broker::Message;
use crate::tls::Stream;

/// Bytes read from the socket per `on-data` call at most; the read buffer
/// grows to this under load.
const READ_CHUNK: usize = 64 * 1024;
/// The first read size, and what it falls back to after a small read; also
/// the largest output buffer kept between calls.
const IDLE_BUFFER: usize = 4096;
/// Bodies handed to one `on-messages` call at most (at least one message).
const DELIVERY_BYTES: usize = 1 << 20;

/// Why a connection's event loop ended early.
pub(super) enum Ended {
    /// The guest trapped or a limit ended it (already logged and counted).
    Guest,
    /// The socket failed.
    Io(std::io::Error),
}

/// What woke the serve loop.
enum Wake {
    Shutdown,
    Readable(std::io::Result<()>),
    /// A TLS connection read (into the read buffer) this many bytes.
    Read(std::io::Result<usize>),
    Deliver,
    Timer,
    Expire,
}

/// One live plugin connection: the store, the guest instance, the socket.
pub(super) struct Conn<'a> {
    pub(super) plugin: &'a Plugin,
    pub(super) store: Store<HostState>,
    pub(super) guest: bindings::Plugin,
    /// The socket, or TLS over it.
    pub(super) stream: Stream,
    pub(super) peer: SocketAddr,
    /// Denials already added to the plugin's counter.
    pub(super) denied_seen: u32,
}

/// One event for the guest.
enum Event<'a> {
    Connect(&'a ConnectInfo),
    Data(&'a [u8]),
    Messages(u32, &'a [WitMessage]),
    Timer,
    Authenticated(&'a Result<Identity, AuthError>),
    Close,
}

impl Conn<'_> {
    pub(super) async fn run(
        &mut self,
        info: ConnectInfo,
        shutdown: &CancellationToken,
    ) -> Result<(), Ended> {
        self.call(Event::Connect(&info))?;
        // The config pairs, peer and magic are the guest's now: freed here,
        // not kept for the life of the connection (a plugin with a dozen
        // config keys would keep about a kilobyte of copies per connection).
        drop(info);
        // Allocated when the socket is readable and never zero-filled
        // (`try_read_buf` writes into spare capacity); released once a read
        // drains the socket, so an idle connection holds no read buffer.
        let mut rbuf: Vec<u8> = Vec::new();
        let mut chunk = IDLE_BUFFER;
        let mut taken: Vec<Message> = Vec::new();
        let mut wit_msgs: Vec<WitMessage> = Vec::new();
        loop {
            self.flush().await?;
            if self.store.data().close_requested {
                break;
            }
            // An `authenticate` the guest asked for: only this connection
            // waits for the auth server, and it reads nothing meanwhile.
            if self.store.data().auth.pending() {
                let answer = self.store.data_mut().auth.run_pending().await;
                self.call(Event::Authenticated(&answer))?;
                continue;
            }
            // A grant past its ttl is asked for again before the guest runs.
            self.store.data_mut().auth.refresh_if_expired().await;
            // Deliver whatever the ready subscriptions can take now.
            if self.deliver(&mut taken, &mut wit_msgs).await? {
                continue;
            }
            // About to wait: an idle connection keeps no delivery or output
            // buffers (after a full batch of the default 256 messages the
            // delivery ones alone hold 32 KB).
            taken = Vec::new();
            wit_msgs = Vec::new();
            let out = &mut self.store.data_mut().out;
            if out.is_empty() {
                *out = Vec::new();
            }
            let wake = {
                let data = self.store.data();
                let mut waits: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = data
                    .subs
                    .iter()
                    .flatten()
                    .filter(|c| c.is_ready())
                    .map(|c| Box::pin(c.wait()))
                    .collect();
                let any_ready = std::future::poll_fn(|cx| {
                    for w in waits.iter_mut() {
                        if w.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(());
                        }
                    }
                    Poll::Pending
                });
                // A plain socket is waited on for readiness, so an idle
                // connection holds no read buffer; TLS must decrypt to know
                // whether there is data, so it reads into the buffer, which
                // it keeps (rustls holds larger buffers of its own anyway).
                let tls = self.stream.is_tls();
                if tls && rbuf.capacity() < chunk {
                    rbuf.clear();
                    if let Err(e) = rbuf.try_reserve(chunk) {
                        return Err(Ended::Io(std::io::Error::other(format!(
                            "no memory for the read buffer: {e}"
                        ))));
                    }
                }
                let timer = data.timer;
                let expiry = data
                    .subs
                    .iter()
                    .flatten()
                    .filter_map(|c| c.next_timeout())
                    .min();
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => Wake::Shutdown,
                    _ = sleep_until_opt(timer), if timer.is_some() => Wake::Timer,
                    _ = sleep_until_opt(expiry), if expiry.is_some() => Wake::Expire,
                    _ = any_ready => Wake::Deliver,
                    w = input(&mut self.stream, &mut rbuf) => w,
                }
            };
            match wake {
                Wake::Shutdown => break,
                Wake::Deliver => {}
                Wake::Timer => {
                    self.store.data_mut().timer = None;
                    self.call(Event::Timer)?;
                }
                Wake::Expire => {
                    let now = Instant::now();
                    for c in self.store.data_mut().subs.iter_mut().flatten() {
                        c.expire_timeouts(now);
                    }
                }
                Wake::Readable(Err(e)) | Wake::Read(Err(e)) => return Err(Ended::Io(e)),
                Wake::Read(Ok(0)) => break,
                Wake::Read(Ok(n)) => {
                    self.call(Event::Data(&rbuf))?;
                    chunk = if n >= chunk {
                        (chunk * 2).min(READ_CHUNK)
                    } else {
                        IDLE_BUFFER
                    };
                    rbuf.clear();
                }
                Wake::Readable(Ok(())) => {
                    rbuf.clear();
                    // Under memory pressure this connection ends, not the process.
                    if let Err(e) = rbuf.try_reserve(chunk) {
                        return Err(Ended::Io(std::io::Error::other(format!(
                            "no memory for the read buffer: {e}"
                        ))));
                    }
                    let Stream::Plain(tcp) = &self.stream else {
                        continue;
                    };
                    match tcp.try_read_buf(&mut rbuf) {
                        Ok(0) => break,
                        Ok(n) => {
                            self.call(Event::Data(&rbuf))?;
                            if n >= chunk {
                                // Probably more waiting: keep the buffer, grow.
                                chunk = (chunk * 2).min(READ_CHUNK);
                            } else {
                                // Drained: the connection may now idle.
                                if n < IDLE_BUFFER {
                                    chunk = IDLE_BUFFER;
                                }
                                rbuf = Vec::new();
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            // Stale readiness (the magic read left it set).
                            rbuf = Vec::new();
                        }
                        Err(e) => return Err(Ended::Io(e)),
                    }
                }
            }
        }
        self.call(Event::Close)?;
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
        Ok(())
    }

    /// Takes messages from every ready subscription and hands each batch to
    /// the guest. Returns whether anything was delivered.
    async fn deliver(
        &mut self,
        taken: &mut Vec<Message>,
        wit_msgs: &mut Vec<WitMessage>,
    ) -> Result<bool, Ended> {
        let max = self.plugin.shared.limits.max_batch;
        let mut delivered = false;
        let count = self.store.data().subs.len();
        for i in 0..count {
            taken.clear();
            {
                let data = self.store.data_mut();
                let Some(Some(c)) = data.subs.get_mut(i) else {
                    continue;
                };
                if c.is_closed() {
                    // The channel was deleted: drop the subscription.
                    data.subs[i] = None;
                    continue;
                }
                if c.take_messages(max, DELIVERY_BYTES, taken) == 0 {
                    continue;
                }
            }
            wit_msgs.clear();
            wit_msgs.extend(taken.drain(..).map(|m| WitMessage {
                id: String::from_utf8_lossy(m.id.as_bytes()).into_owned(),
                timestamp: m.timestamp,
                attempts: m.attempts,
                body: m.body.to_vec(),
            }));
            let sub = u32::try_from(i).unwrap_or(u32::MAX);
            self.call(Event::Messages(sub, wit_msgs))?;
            self.flush().await?;
            delivered = true;
        }
        Ok(delivered)
    }

    /// Calls the guest for one event under a fresh CPU budget. The call is
    /// synchronous, on this task's worker thread (no fiber, so no stack is
    /// kept per connection); the epoch deadline bounds how long it runs.
    fn call(&mut self, event: Event<'_>) -> Result<(), Ended> {
        self.plugin.arm(&mut self.store);
        let handler = self.guest.nsq_gateway_tcp_handler();
        let store = &mut self.store;
        let (name, result) = match event {
            Event::Connect(info) => ("on-connect", handler.call_on_connect(store, info)),
            Event::Data(bytes) => ("on-data", handler.call_on_data(store, bytes)),
            Event::Messages(sub, msgs) => {
                ("on-messages", handler.call_on_messages(store, sub, msgs))
            }
            Event::Timer => ("on-timer", handler.call_on_timer(store)),
            Event::Authenticated(answer) => (
                "on-authenticated",
                handler.call_on_authenticated(store, answer.as_ref().map_err(Clone::clone)),
            ),
            Event::Close => ("on-close", handler.call_on_close(store)),
        };
        let denied = self.store.data().denied;
        if denied > self.denied_seen {
            let delta = u64::from(denied - self.denied_seen);
            self.plugin
                .counters
                .denied
                .fetch_add(delta, Ordering::Relaxed);
            self.denied_seen = denied;
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                self.plugin.ended_by_guest(&self.store, &e, self.peer, name);
                Err(Ended::Guest)
            }
        }
    }

    /// Writes what the guest queued during the last call.
    async fn flush(&mut self) -> Result<(), Ended> {
        if self.store.data().out.is_empty() {
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.store.data_mut().out);
        let limit = self.store.data().server.write_timeout;
        let written = match tokio::time::timeout(limit, self.stream.write_all(&out)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("client read nothing for {limit:?}"),
            )),
        };
        out.clear();
        if out.capacity() <= IDLE_BUFFER {
            // Keep a small buffer for the next call; drop big ones.
            self.store.data_mut().out = out;
        }
        written.map_err(Ended::Io)
    }
}

/// Waits for input: readiness of a plain socket (nothing is read), or a
/// TLS read into `rbuf`. Both are cancel-safe.
async fn input(stream: &mut Stream, rbuf: &mut Vec<u8>) -> Wake {
    match stream {
        Stream::Plain(tcp) => Wake::Readable(tcp.readable().await),
        tls => Wake::Read(tls.read_buf(rbuf).await),
    }
}

/// Sleeps until `at`, or forever when `None` (the select guard disables it).
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
