//! Cluster membership: the gateway registers its topics and channels with
//! every configured nsqlookupd, exactly as nsqd 1.3 does, so consumers and
//! nsqadmin find it through lookupd. `Cluster` owns one task per lookupd
//! (`peer`), fans the broker's create/delete events out to them without
//! ever blocking the broker, and changes the set of lookupds at run time
//! (`PUT /config/nsqlookupd_tcp_addresses`).

mod peer;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::broker::{Broker, BrokerEvent, EventListener};
pub use peer::PING_INTERVAL;
pub use wire::PeerInfo;

/// Events queued per lookupd before it counts as stalled (it then
/// reconnects and registers everything again).
const EVENT_QUEUE: usize = 4096;

/// The lookupds this node registers with.
pub struct Cluster {
    broker: Broker,
    shutdown: CancellationToken,
    /// Set by `start`, once the listeners' ports are known.
    info: OnceLock<Arc<PeerInfo>>,
    /// Running peers by address, and the configured list (in order, for
    /// `GET /config`). The lock is held only to change or walk the map.
    peers: Mutex<Peers>,
}

#[derive(Default)]
struct Peers {
    configured: Vec<String>,
    running: BTreeMap<String, peer::PeerHandle>,
}

impl Cluster {
    /// A cluster member for `broker` that will register with `addresses`
    /// once started. The broker's events are routed here from now on.
    pub fn new(broker: Broker, addresses: Vec<String>, shutdown: CancellationToken) -> Arc<Self> {
        let cluster = Arc::new(Cluster {
            broker: broker.clone(),
            shutdown,
            info: OnceLock::new(),
            peers: Mutex::new(Peers {
                configured: addresses,
                running: BTreeMap::new(),
            }),
        });
        broker.set_event_listener(Arc::new(Listener(Arc::downgrade(&cluster))));
        cluster
    }

    fn lock(&self) -> MutexGuard<'_, Peers> {
        crate::sync::lock(&self.peers)
    }

    /// Starts registering, with what IDENTIFY tells each lookupd.
    pub fn start(&self, info: PeerInfo) {
        let _ = self.info.set(Arc::new(info));
        let addrs = self.lock().configured.clone();
        self.set_addresses(addrs);
    }

    /// Replaces the set of lookupds: new addresses get a peer, removed ones
    /// are disconnected (nsqlookupd then drops this node's registrations).
    pub fn set_addresses(&self, addresses: Vec<String>) {
        let mut peers = self.lock();
        peers.configured = addresses.clone();
        let Some(info) = self.info.get() else {
            return;
        };
        peers.running.retain(|addr, handle| {
            let keep = addresses.contains(addr);
            if !keep {
                info!(lookupd = %addr, "nsqlookupd removed");
                handle.stop.cancel();
            }
            keep
        });
        for addr in addresses {
            if peers.running.contains_key(&addr) {
                continue;
            }
            info!(lookupd = %addr, "nsqlookupd added");
            let handle = peer::spawn(
                addr.clone(),
                info.clone(),
                self.broker.clone(),
                EVENT_QUEUE,
                self.shutdown.clone(),
            );
            peers.running.insert(addr, handle);
        }
    }

    /// The configured lookupd addresses.
    pub fn addresses(&self) -> Vec<String> {
        self.lock().configured.clone()
    }

    fn event(&self, ev: BrokerEvent) {
        let peers = self.lock();
        for handle in peers.running.values() {
            if handle.tx.try_send(ev.clone()).is_err() {
                handle.overflowed.store(true, Ordering::Release);
            }
        }
    }
}

/// The broker's view of the cluster: a weak link, so a dropped cluster
/// simply stops hearing events.
struct Listener(std::sync::Weak<Cluster>);

impl EventListener for Listener {
    fn event(&self, event: BrokerEvent) {
        if let Some(c) = self.0.upgrade() {
            c.event(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use tokio::sync::mpsc;

    use super::*;
    use crate::broker::BrokerOptions;

    /// A lookupd whose queue is full is flagged to re-register everything,
    /// and the broker's call returns at once.
    #[test]
    fn an_event_that_does_not_fit_flags_the_peer_for_a_resync() {
        let broker = Broker::new(BrokerOptions::default());
        let cluster = Cluster::new(broker.clone(), Vec::new(), CancellationToken::new());
        let (tx, mut rx) = mpsc::channel(1);
        let overflowed = Arc::new(AtomicBool::new(false));
        cluster.lock().running.insert(
            "127.0.0.1:1".into(),
            peer::PeerHandle {
                tx,
                overflowed: overflowed.clone(),
                stop: CancellationToken::new(),
            },
        );
        broker.topic("first").expect("topic");
        assert!(!overflowed.load(Ordering::Acquire));
        broker.topic("second").expect("topic");
        assert!(overflowed.load(Ordering::Acquire));
        assert_eq!(
            rx.try_recv().ok(),
            Some(BrokerEvent::TopicCreated("first".into()))
        );
        broker.delete_topic("first").expect("delete");
        assert_eq!(
            rx.try_recv().ok(),
            Some(BrokerEvent::TopicDeleted("first".into()))
        );
    }
}
