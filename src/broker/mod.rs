//! The native topic/channel core that every protocol and the HTTP API share.
//! No sockets here: only topics, channels, consumers and their bounded queues,
//! with disk spill-over and metadata under `data_path` when opened durable.
//! `Broker` is a cheap `Clone` handle; every lock inside is a short
//! synchronous section, never held across `.await`.

mod channel;
mod client;
mod consumer;
pub(crate) mod deferred_store;
pub mod diskqueue;
mod error;
pub mod events;
mod health;
pub mod latency;
mod message;
pub mod metadata;
pub mod names;
mod spill;
mod timers;
mod topic;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use channel::{Channel, ChannelStats};
pub use client::{ClientInfo, ClientMeta, ClientStats, MAX_PUB_TOPICS, PubCount};
pub use consumer::Consumer;
pub use error::BrokerError;
pub use events::{BrokerEvent, EventListener};
pub use latency::{E2eLatency, LatencyOptions, Percentile};
pub use message::{IdGenerator, MSG_ID_LEN, Message, MessageId, now_nanos};
pub use topic::{Topic, TopicStats};

use crate::sync::lock;
use deferred_store::DeferredLog;
use diskqueue::{DiskQueue, DiskQueueOptions};
use health::Health;
use metadata::{ChannelMeta, Metadata, MetadataStore, TopicMeta};
use timers::Timers;

/// The core's limits, with nsqd's defaults.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Messages kept in memory per topic and per channel.
    pub mem_queue_size: usize,
    /// Default in-flight timeout before a message is redelivered.
    pub msg_timeout: Duration,
    /// Longest timeout a client may ask for, and the TOUCH ceiling.
    pub max_msg_timeout: Duration,
    /// Consumers per channel; 0 means no limit.
    pub max_channel_consumers: usize,
    /// Where disk queues and metadata live. Only `Broker::open` uses it;
    /// `Broker::new` is memory-only.
    pub data_path: Option<PathBuf>,
    /// `--node-id`: mixed into every message id so that gateways with
    /// distinct node ids never hand out the same id.
    pub node_id: u16,
    /// Segment size, fsync policy and size limits of the disk queues.
    pub disk: DiskQueueOptions,
    /// The E2E processing latency window and its percentiles; `None` (no
    /// percentiles configured) records nothing, as nsqd.
    pub e2e: Option<LatencyOptions>,
}

impl BrokerOptions {
    /// Deferred messages are kept in memory; this bounds them per channel
    /// (and per topic without channels).
    pub fn max_deferred(&self) -> usize {
        self.mem_queue_size.max(10_000)
    }
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            mem_queue_size: 10_000,
            msg_timeout: Duration::from_secs(60),
            max_msg_timeout: Duration::from_secs(15 * 60),
            max_channel_consumers: 0,
            data_path: None,
            node_id: 0,
            disk: DiskQueueOptions::default(),
            e2e: None,
        }
    }
}

/// State shared by every handle. Topics point back here weakly.
pub(crate) struct Shared {
    opts: Arc<BrokerOptions>,
    ids: Arc<IdGenerator>,
    timers: Arc<Timers>,
    /// Topic map. Read-locked on the publish path, write-locked only to add
    /// or remove a topic.
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    client_ids: AtomicU64,
    /// Set once a durable broker has restored its metadata; from then on
    /// every topic/channel change is saved.
    store: OnceLock<MetadataStore>,
    /// Disk-queue failures, reported by `/ping` as nsqd does.
    health: Arc<Health>,
    /// Metadata changed since it was last written. Saves are coalesced by the
    /// scanner task, so a burst of topic creations costs one write, and no
    /// publisher's worker thread ever waits on an fsync for metadata.
    meta_dirty: AtomicBool,
    /// Wakes the metadata saver.
    meta_notify: tokio::sync::Notify,
    /// Every connected client of every protocol, by id, for `/stats`
    /// producers. Bounded by the connection limit; entries are removed by
    /// `ClientRegistration`'s drop.
    clients: Mutex<HashMap<u64, Weak<ClientInfo>>>,
    /// Told of every topic and channel created or deleted (the nsqlookupd
    /// registration); set once, at startup.
    listener: events::ListenerSlot,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A broker dropped without `persist` (or before the saver ran) still
        // leaves its latest metadata behind.
        if self.meta_dirty.load(Ordering::Acquire) {
            self.write_metadata_now();
        }
    }
}

impl Shared {
    /// Removes `name` if it still maps to `topic` (an ephemeral topic that
    /// lost its last channel).
    fn remove_topic_if(&self, name: &str, topic: &Topic) {
        let removed = {
            let mut topics = crate::sync::write(&self.topics);
            match topics.get(name) {
                Some(t) if std::ptr::eq(Arc::as_ptr(t), topic) && t.channels().is_empty() => {
                    topics.remove(name)
                }
                _ => None,
            }
        };
        if let Some(t) = removed {
            t.close();
            self.emit(|| BrokerEvent::TopicDeleted(name.to_owned()));
        }
    }

    /// Tells the event listener, if any (see `events`).
    pub(crate) fn emit(&self, event: impl FnOnce() -> BrokerEvent) {
        events::emit(&self.listener, event);
    }

    /// The disk queue for a durable topic or channel named `name` (`topic`
    /// or `topic:channel`), or `None` when this broker is memory-only or the
    /// queue cannot be opened (logged, and the queue stays in memory).
    pub(crate) fn open_queue(&self, name: &str) -> Option<DiskQueue> {
        let dir = self.opts.data_path.as_ref()?;
        self.store.get()?;
        match DiskQueue::open(dir, name, self.opts.disk.clone()) {
            Ok(q) => Some(q),
            Err(e) => {
                error!(queue = name, error = %e, "cannot open disk queue; keeping it in memory only");
                self.health.set_error(format!("disk queue {name}: {e}"));
                None
            }
        }
    }

    /// The deferred log of a durable channel named `name`, when every
    /// message goes through disk (`mem_queue_size: 0`): see
    /// `deferred_store::DeferredLog`. `None` otherwise, or if it cannot be
    /// opened (logged; deferred messages are then saved on shutdown only).
    pub(crate) fn open_deferred_log(&self, name: &str) -> Option<DeferredLog> {
        if self.opts.mem_queue_size != 0 {
            return None;
        }
        let dir = self.opts.data_path.as_ref()?;
        self.store.get()?;
        let qname = deferred_store::queue_name(name);
        match DiskQueue::open(dir, &qname, deferred_store::log_options(&self.opts.disk)) {
            Ok(q) => Some(DeferredLog::new(q)),
            Err(e) => {
                error!(queue = qname, error = %e, "cannot open deferred log; deferred messages are saved on shutdown only");
                self.health.set_error(format!("disk queue {qname}: {e}"));
                None
            }
        }
    }

    /// Records that topic/channel metadata changed; the scanner task writes
    /// it shortly (no-op when memory-only).
    pub(crate) fn save_metadata(&self) {
        if self.store.get().is_some() {
            self.meta_dirty.store(true, Ordering::Release);
            self.meta_notify.notify_one();
        }
    }

    /// Writes the metadata now. Callers hold no topic or channel lock.
    pub(crate) fn write_metadata_now(&self) {
        let Some(store) = self.store.get() else {
            return;
        };
        self.meta_dirty.store(false, Ordering::Release);
        let result = store.save_with(|| self.snapshot());
        if let Err(e) = result {
            error!(error = %e, "cannot write metadata");
            self.health.set_error(format!("metadata: {e}"));
        }
    }

    fn snapshot(&self) -> Metadata {
        let mut topics: Vec<Arc<Topic>> = {
            let map = crate::sync::read(&self.topics);
            map.values()
                .filter(|t| !t.is_ephemeral())
                .cloned()
                .collect()
        };
        topics.sort_by(|a, b| a.name().cmp(b.name()));
        Metadata {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            topics: topics
                .iter()
                .map(|t| TopicMeta {
                    name: t.name().to_owned(),
                    paused: t.is_paused(),
                    channels: t
                        .channels()
                        .iter()
                        .filter(|c| !c.is_ephemeral())
                        .map(|c| ChannelMeta {
                            name: c.name().to_owned(),
                            paused: c.is_paused(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Handle to the core.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

impl Broker {
    /// A memory-only broker: nothing is read from or written to disk, and a
    /// full memory queue refuses publishes.
    pub fn new(opts: BrokerOptions) -> Self {
        let ids = Arc::new(IdGenerator::with_node(opts.node_id));
        Broker {
            shared: Arc::new(Shared {
                opts: Arc::new(opts),
                ids,
                timers: Arc::new(Timers::default()),
                topics: RwLock::new(HashMap::new()),
                client_ids: AtomicU64::new(1),
                store: OnceLock::new(),
                health: Arc::new(Health::default()),
                meta_dirty: AtomicBool::new(false),
                meta_notify: tokio::sync::Notify::new(),
                clients: Mutex::new(HashMap::new()),
                listener: events::ListenerSlot::new(),
            }),
        }
    }

    /// A durable broker under `opts.data_path` (memory-only without one):
    /// restores topics, channels, their paused state, queued messages and
    /// deferred messages saved by a previous run. Overflow beyond
    /// `mem_queue_size` goes to disk queues.
    pub fn open(opts: BrokerOptions) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let broker = Broker::new(opts);
        let Some(dir) = broker.shared.opts.data_path.clone() else {
            return Ok(broker);
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create data path {}", dir.display()))?;
        let store = MetadataStore::new(&dir);
        let meta = store
            .load()
            .with_context(|| format!("cannot read metadata in {}", dir.display()))?;
        // From here on topics and channels get disk queues; saves start only
        // after the restore, which would otherwise rewrite the file per item.
        let _ = broker.shared.store.set(store);
        if let Some(meta) = meta {
            let (mut topics, mut channels) = (0, 0);
            for tm in &meta.topics {
                let Ok(topic) = broker.topic_quiet(&tm.name) else {
                    warn!(topic = %tm.name, "skipping invalid topic name in metadata");
                    continue;
                };
                // Paused while its channels are restored, so that what it
                // holds is handed to all of them, not to the first alone.
                topic.pause_quiet();
                topics += 1;
                for cm in &tm.channels {
                    match topic.channel_quiet(&cm.name) {
                        Ok(ch) => {
                            if cm.paused {
                                ch.pause_quiet();
                            }
                            ch.restore_deferred();
                            channels += 1;
                        }
                        Err(_) => {
                            warn!(channel = %cm.name, "skipping invalid channel name in metadata")
                        }
                    }
                }
                topic.restore_deferred();
                if !tm.paused {
                    topic.resume_after_restore();
                }
            }
            info!(topics, channels, path = %dir.display(), "restored metadata");
        }
        broker.shared.write_metadata_now();
        Ok(broker)
    }

    /// Writes every memory queue, deferred heap and pending message of the
    /// durable topics and channels to disk, fsyncs, and saves the metadata.
    /// Called on graceful shutdown after the sessions have ended (their
    /// consumers put their in-flight messages back on drop).
    pub fn persist(&self) {
        if self.shared.store.get().is_none() {
            return;
        }
        let mut saved = 0u64;
        for topic in self.topics() {
            saved += topic.persist();
        }
        self.shared.write_metadata_now();
        info!(messages = saved, "wrote in-memory messages to disk");
    }

    /// Test hook for crash tests: fsyncs every disk queue and writes its
    /// metadata as of now (the committed read positions), without writing
    /// out anything held in memory, as if the periodic sync ran just before
    /// a crash.
    #[cfg(test)]
    pub(crate) fn sync_disks(&self) {
        for topic in self.topics() {
            topic.sync_disks();
        }
        // The metadata saver runs ~20 ms after a change; a crash after it.
        self.shared.write_metadata_now();
    }

    /// `Ok` while every disk write succeeded since the last failure was
    /// cleared; `Err` with the last failure otherwise (nsqd's health).
    pub fn health(&self) -> Result<(), String> {
        self.shared.health.get()
    }

    pub fn options(&self) -> &BrokerOptions {
        &self.shared.opts
    }

    /// A fresh client id, unique for the life of the process.
    pub fn next_client_id(&self) -> u64 {
        self.shared.client_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Gets or creates a topic.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        if let Some(t) = self.existing_topic(name) {
            return Ok(t);
        }
        let topic = self.topic_quiet(name)?;
        if !topic.is_ephemeral() {
            self.shared.save_metadata();
        }
        Ok(topic)
    }

    /// Gets or creates a topic without saving metadata.
    fn topic_quiet(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        if !names::is_valid_name(name) {
            return Err(BrokerError::InvalidTopicName(name.to_owned()));
        }
        let mut topics = crate::sync::write(&self.shared.topics);
        if let Some(t) = topics.get(name) {
            return Ok(t.clone());
        }
        let disk = if names::is_ephemeral(name) {
            None
        } else {
            self.shared.open_queue(name)
        };
        let topic = Arc::new(Topic::new(
            name,
            self.shared.opts.clone(),
            self.shared.ids.clone(),
            self.shared.timers.clone(),
            Arc::downgrade(&self.shared),
            self.shared.health.clone(),
            disk,
        ));
        topics.insert(name.to_owned(), topic.clone());
        drop(topics);
        self.shared
            .emit(|| BrokerEvent::TopicCreated(name.to_owned()));
        Ok(topic)
    }

    /// Sets the listener told of every topic and channel created or deleted
    /// from now on. Only the first call takes effect.
    pub fn set_event_listener(&self, listener: Arc<dyn EventListener>) {
        let _ = self.shared.listener.set(listener);
    }

    pub fn existing_topic(&self, name: &str) -> Option<Arc<Topic>> {
        let topics = crate::sync::read(&self.shared.topics);
        topics.get(name).cloned()
    }

    /// Deletes a topic with all its channels and messages.
    pub fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        let removed = {
            let mut topics = crate::sync::write(&self.shared.topics);
            topics.remove(name)
        };
        let topic = removed.ok_or(BrokerError::TopicNotFound)?;
        let channels: Vec<String> = topic
            .channels()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        topic.close();
        for channel in channels {
            self.shared.emit(|| BrokerEvent::ChannelDeleted {
                topic: name.to_owned(),
                channel,
            });
        }
        self.shared
            .emit(|| BrokerEvent::TopicDeleted(name.to_owned()));
        if !topic.is_ephemeral() {
            self.shared.save_metadata();
        }
        Ok(())
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<Arc<Topic>> = {
            let topics = crate::sync::read(&self.shared.topics);
            topics.values().cloned().collect()
        };
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// Stats for every topic (or only `topic`), sorted by name.
    /// Lists `client` among the connected clients until the returned guard
    /// is dropped (when its connection ends).
    pub fn register_client(&self, client: &Arc<ClientInfo>) -> ClientRegistration {
        lock(&self.shared.clients).insert(client.id, Arc::downgrade(client));
        ClientRegistration {
            shared: Arc::downgrade(&self.shared),
            id: client.id,
        }
    }

    /// nsqd's `GetProducerStats`: connected clients that published, by id.
    pub fn producers(&self) -> Vec<ClientStats> {
        let live: Vec<Arc<ClientInfo>> = {
            let map = lock(&self.shared.clients);
            map.values().filter_map(Weak::upgrade).collect()
        };
        let mut out: Vec<(u64, ClientStats)> = live
            .iter()
            .filter(|c| c.is_producer())
            .map(|c| (c.id, c.stats()))
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out.into_iter().map(|(_, s)| s).collect()
    }

    pub fn stats(&self, topic: Option<&str>) -> Vec<TopicStats> {
        self.topics()
            .iter()
            .filter(|t| topic.is_none_or(|n| n == t.name()))
            .map(|t| t.stats())
            .collect()
    }

    /// Runs the deferred-message clock and the disk queues' `sync-timeout`
    /// until `shutdown` is cancelled. The server spawns this once.
    pub async fn run_scanner(self, shutdown: CancellationToken) {
        let timers = self.shared.timers.clone();
        let durable = self.shared.store.get().is_some();
        let period = self
            .shared
            .opts
            .disk
            .sync_timeout
            .max(Duration::from_millis(10));
        let weak = Arc::downgrade(&self.shared);
        drop(self);
        let syncer = async {
            if !durable {
                return;
            }
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                let Some(shared) = weak.upgrade() else { return };
                let broker = Broker { shared };
                let now = tokio::time::Instant::now();
                for topic in broker.topics() {
                    topic.maybe_sync(now);
                }
            }
        };
        let saver_weak = weak.clone();
        let saver = async {
            if !durable {
                return;
            }
            loop {
                let notified = match saver_weak.upgrade() {
                    Some(shared) => {
                        let wait = async move { shared.meta_notify.notified().await };
                        tokio::select! {
                            _ = wait => {}
                            _ = shutdown.cancelled() => return,
                        }
                        true
                    }
                    None => false,
                };
                if !notified {
                    return;
                }
                // Let a burst of changes land, then write once.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let Some(shared) = saver_weak.upgrade() else {
                    return;
                };
                if shared.meta_dirty.load(Ordering::Acquire) {
                    let _ = tokio::task::spawn_blocking(move || shared.write_metadata_now()).await;
                }
            }
        };
        tokio::join!(timers.run(shutdown.clone()), syncer, saver);
    }
}

/// Keeps a client listed in the broker's client registry; dropping it (at
/// the end of the connection) removes the entry.
#[must_use = "the client is unlisted when this is dropped"]
pub struct ClientRegistration {
    shared: Weak<Shared>,
    id: u64,
}

impl Drop for ClientRegistration {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            lock(&shared.clients).remove(&self.id);
        }
    }
}

#[cfg(test)]
mod durability_tests;
#[cfg(test)]
mod tests;
