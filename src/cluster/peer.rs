//! One nsqlookupd peer: a task that connects, IDENTIFYs, registers every
//! topic and channel the broker has (a lookupd that restarted has forgotten
//! them all), then forwards REGISTER/UNREGISTER events and PINGs every 15 s,
//! as nsqd's `lookupLoop` does. Every connect, write and read has a timeout;
//! any failure (a refused connect, a stall, garbage, a huge length) is
//! logged with the peer and answered by reconnecting with backoff. The
//! broker never waits on this task: events reach it through a bounded queue,
//! and an overflow makes the task reconnect and register everything again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::wire::{self, Command, Decoded, PeerInfo};
use crate::broker::{Broker, BrokerEvent};

/// nsqd's lookupd ping interval.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// nsqd dials a lookupd with a one-second timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for one write or one response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect backoff: doubles from the first to the last.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the owner keeps of a running peer task.
pub(super) struct PeerHandle {
    /// Events to forward; bounded, never awaited by the broker.
    pub tx: mpsc::Sender<BrokerEvent>,
    /// Set when an event did not fit: the task re-registers everything.
    pub overflowed: Arc<AtomicBool>,
    /// Cancelled when the address is removed from the set.
    pub stop: CancellationToken,
}

/// Starts the task for the lookupd at `addr`.
pub(super) fn spawn(
    addr: String,
    info: Arc<PeerInfo>,
    broker: Broker,
    queue: usize,
    shutdown: CancellationToken,
) -> PeerHandle {
    let (tx, rx) = mpsc::channel(queue);
    let overflowed = Arc::new(AtomicBool::new(false));
    let stop = shutdown.child_token();
    let peer = Peer {
        addr,
        info,
        broker,
        rx,
        overflowed: overflowed.clone(),
        stop: stop.clone(),
        buf: Vec::new(),
    };
    tokio::spawn(peer.run());
    PeerHandle {
        tx,
        overflowed,
        stop,
    }
}

/// Why a session with the lookupd ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Wire(#[from] wire::WireError),
    #[error("lookupd refused IDENTIFY: {0}")]
    Identify(String),
    #[error("{0} events did not fit the queue; reconnecting to register everything again")]
    Overflow(usize),
    #[error("stopped")]
    Stopped,
}

struct Peer {
    addr: String,
    info: Arc<PeerInfo>,
    broker: Broker,
    rx: mpsc::Receiver<BrokerEvent>,
    overflowed: Arc<AtomicBool>,
    stop: CancellationToken,
    /// Response bytes read but not yet decoded.
    buf: Vec<u8>,
}

impl Peer {
    async fn run(mut self) {
        let mut backoff = BACKOFF_START;
        loop {
            let started = Instant::now();
            match self.session().await {
                Err(SessionError::Stopped) | Ok(()) => break,
                Err(e) => {
                    warn!(lookupd = %self.addr, error = %e, retry_in = ?backoff,
                        "nsqlookupd connection failed");
                }
            }
            // A session that lasted resets the backoff.
            if started.elapsed() > PING_INTERVAL {
                backoff = BACKOFF_START;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.cancelled() => break,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        info!(lookupd = %self.addr, "LOOKUP: closing connection to nsqlookupd");
    }

    /// One connection: identify, register everything, then forward events
    /// and ping until something fails or the peer is stopped.
    async fn session(&mut self) -> Result<(), SessionError> {
        self.buf.clear();
        let mut stream = tokio::select! {
            r = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr)) => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(SessionError::Connect(e)),
                Err(_) => return Err(SessionError::Timeout(CONNECT_TIMEOUT)),
            },
            _ = self.stop.cancelled() => return Err(SessionError::Stopped),
        };
        let _ = stream.set_nodelay(true);
        self.write(&mut stream, wire::MAGIC_V1).await?;
        let answer = self.command(&mut stream, &Command::Identify).await?;
        if let Some(e) = wire::error_text(&answer) {
            return Err(SessionError::Identify(e));
        }
        debug!(lookupd = %self.addr, answer = %String::from_utf8_lossy(&answer), "IDENTIFY answered");
        // Events queued before this point are covered by the full sync.
        while self.rx.try_recv().is_ok() {}
        self.overflowed.store(false, Ordering::Release);
        let registered = self.sync(&mut stream).await?;
        info!(lookupd = %self.addr, registered, "registered with nsqlookupd");
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if self.overflowed.load(Ordering::Acquire) {
                return Err(SessionError::Overflow(self.rx.len()));
            }
            let cmd = tokio::select! {
                ev = self.rx.recv() => match ev {
                    Some(ev) => to_command(ev),
                    None => return Err(SessionError::Stopped),
                },
                _ = ping.tick() => Command::Ping,
                r = stream.readable() => {
                    // Nothing is owed to us between commands: bytes or EOF
                    // here mean the lookupd closed or misbehaves.
                    r?;
                    let mut probe = [0u8; 64];
                    return match stream.try_read(&mut probe) {
                        Ok(0) => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
                        Ok(n) => Err(std::io::Error::other(format!("{n} unsolicited bytes")).into()),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(e) => Err(e.into()),
                    };
                }
                _ = self.stop.cancelled() => return Err(SessionError::Stopped),
            };
            let answer = self.command(&mut stream, &cmd).await?;
            match wire::error_text(&answer) {
                Some(e) => warn!(lookupd = %self.addr, command = %cmd.describe(), error = %e,
                    "nsqlookupd refused a command"),
                None => debug!(lookupd = %self.addr, command = %cmd.describe(), "nsqlookupd: OK"),
            }
        }
    }

    /// Registers every topic (without channels) and every channel, as
    /// nsqd's `syncTopicChan` does. Returns how many commands it sent.
    async fn sync(&mut self, stream: &mut TcpStream) -> Result<usize, SessionError> {
        let mut cmds = Vec::new();
        for topic in self.broker.topics() {
            let channels = topic.channels();
            if channels.is_empty() {
                cmds.push(Command::Register {
                    topic: topic.name().to_owned(),
                    channel: None,
                });
            }
            for ch in channels {
                cmds.push(Command::Register {
                    topic: topic.name().to_owned(),
                    channel: Some(ch.name().to_owned()),
                });
            }
        }
        for cmd in &cmds {
            let answer = self.command(stream, cmd).await?;
            if let Some(e) = wire::error_text(&answer) {
                warn!(lookupd = %self.addr, command = %cmd.describe(), error = %e,
                    "nsqlookupd refused a command");
            }
        }
        Ok(cmds.len())
    }

    /// Sends `cmd` and reads its response.
    async fn command(
        &mut self,
        stream: &mut TcpStream,
        cmd: &Command,
    ) -> Result<Vec<u8>, SessionError> {
        let mut out = Vec::new();
        cmd.encode(&self.info, &mut out);
        self.write(stream, &out).await?;
        self.read_response(stream).await
    }

    async fn write(&self, stream: &mut TcpStream, bytes: &[u8]) -> Result<(), SessionError> {
        tokio::select! {
            r = tokio::time::timeout(IO_TIMEOUT, stream.write_all(bytes)) => match r {
                Ok(r) => Ok(r?),
                Err(_) => Err(SessionError::Timeout(IO_TIMEOUT)),
            },
            _ = self.stop.cancelled() => Err(SessionError::Stopped),
        }
    }

    /// Reads one size-prefixed response, at most `MAX_RESPONSE` bytes.
    async fn read_response(&mut self, stream: &mut TcpStream) -> Result<Vec<u8>, SessionError> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if let Decoded::Response(body, used) = wire::decode(&self.buf)? {
                let body = body.to_vec();
                self.buf.drain(..used);
                return Ok(body);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::select! {
                r = tokio::time::timeout_at(deadline, stream.read(&mut chunk)) => match r {
                    Ok(r) => r?,
                    Err(_) => return Err(SessionError::Timeout(IO_TIMEOUT)),
                },
                _ = self.stop.cancelled() => return Err(SessionError::Stopped),
            };
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn to_command(ev: BrokerEvent) -> Command {
    match ev {
        BrokerEvent::TopicCreated(topic) => Command::Register {
            topic,
            channel: None,
        },
        BrokerEvent::TopicDeleted(topic) => Command::Unregister {
            topic,
            channel: None,
        },
        BrokerEvent::ChannelCreated { topic, channel } => Command::Register {
            topic,
            channel: Some(channel),
        },
        BrokerEvent::ChannelDeleted { topic, channel } => Command::Unregister {
            topic,
            channel: Some(channel),
        },
    }
}
