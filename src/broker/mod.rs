//! The native topic/channel core that every protocol and the HTTP API share.
//! No sockets here: only topics, channels, consumers and their bounded queues.
//! `Broker` is a cheap `Clone` handle; every lock inside is a short
//! synchronous section, never held across `.await`.

mod channel;
mod client;
mod consumer;
mod error;
pub mod diskqueue;
mod message;
pub mod names;
mod timers;
mod topic;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use channel::{Channel, ChannelStats};
pub use client::{ClientInfo, ClientMeta, ClientStats};
pub use consumer::Consumer;
pub use error::BrokerError;
pub use message::{IdGenerator, MSG_ID_LEN, Message, MessageId, now_nanos};
pub use topic::{Topic, TopicStats};

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
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            mem_queue_size: 10_000,
            msg_timeout: Duration::from_secs(60),
            max_msg_timeout: Duration::from_secs(15 * 60),
            max_channel_consumers: 0,
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
}

impl Shared {
    /// Removes `name` if it still maps to `topic` (an ephemeral topic that
    /// lost its last channel).
    fn remove_topic_if(&self, name: &str, topic: &Topic) {
        let removed = {
            let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
            match topics.get(name) {
                Some(t) if std::ptr::eq(Arc::as_ptr(t), topic) && t.channels().is_empty() => {
                    topics.remove(name)
                }
                _ => None,
            }
        };
        if let Some(t) = removed {
            t.close();
        }
    }
}

/// Handle to the core.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

impl Broker {
    pub fn new(opts: BrokerOptions) -> Self {
        Broker {
            shared: Arc::new(Shared {
                opts: Arc::new(opts),
                ids: Arc::new(IdGenerator::new()),
                timers: Arc::new(Timers::default()),
                topics: RwLock::new(HashMap::new()),
                client_ids: AtomicU64::new(1),
            }),
        }
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
        if !names::is_valid_name(name) {
            return Err(BrokerError::InvalidTopicName(name.to_owned()));
        }
        let mut topics = self
            .shared
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let topic = topics.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(Topic::new(
                name,
                self.shared.opts.clone(),
                self.shared.ids.clone(),
                self.shared.timers.clone(),
                Arc::downgrade(&self.shared),
            ))
        });
        Ok(topic.clone())
    }

    pub fn existing_topic(&self, name: &str) -> Option<Arc<Topic>> {
        let topics = self.shared.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.get(name).cloned()
    }

    /// Deletes a topic with all its channels and messages.
    pub fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        let removed = {
            let mut topics = self
                .shared
                .topics
                .write()
                .unwrap_or_else(|p| p.into_inner());
            topics.remove(name)
        };
        let topic = removed.ok_or(BrokerError::TopicNotFound)?;
        topic.close();
        Ok(())
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<Arc<Topic>> = {
            let topics = self.shared.topics.read().unwrap_or_else(|p| p.into_inner());
            topics.values().cloned().collect()
        };
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// Stats for every topic (or only `topic`), sorted by name.
    pub fn stats(&self, topic: Option<&str>) -> Vec<TopicStats> {
        self.topics()
            .iter()
            .filter(|t| topic.is_none_or(|n| n == t.name()))
            .map(|t| t.stats())
            .collect()
    }

    /// Runs the deferred-message clock until `shutdown` is cancelled. The
    /// server spawns this once.
    pub async fn run_scanner(self, shutdown: CancellationToken) {
        let timers = self.shared.timers.clone();
        drop(self);
        timers.run(shutdown).await;
    }
}

#[cfg(test)]
mod tests;
