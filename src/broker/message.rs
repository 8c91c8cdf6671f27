//! A message as the core holds it: a 16-character hex id, a nanosecond
//! timestamp, the delivery attempt count and a body shared (not copied)
//! between every channel of the topic.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// Length of a message id on the wire.
pub const MSG_ID_LEN: usize = 16;

/// A message id: 16 ASCII hex characters, as nsqd sends them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; MSG_ID_LEN]);

impl MessageId {
    /// Renders `n` as 16 lowercase hex characters.
    pub fn from_u64(n: u64) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; MSG_ID_LEN];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 60 - 4 * i;
            *slot = HEX[((n >> shift) & 0xf) as usize];
        }
        MessageId(out)
    }

    /// Takes an id as a client sent it. Like nsqd, only the length is
    /// checked: an unknown id simply is not in flight.
    pub fn from_slice(raw: &[u8]) -> Option<Self> {
        <[u8; MSG_ID_LEN]>::try_from(raw).ok().map(MessageId)
    }

    pub fn as_bytes(&self) -> &[u8; MSG_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// One message. Cloning it is cheap: the body is reference counted.
#[derive(Clone, Debug)]
pub struct Message {
    pub id: MessageId,
    /// Publish time in nanoseconds since the Unix epoch.
    pub timestamp: i64,
    /// Delivery attempts so far; the first delivery sends 1.
    pub attempts: u16,
    pub body: Bytes,
}

/// Hands out unique ids. The counter starts at the wall clock in
/// nanoseconds so that ids stay unique across restarts as long as fewer
/// than one message per nanosecond is published. The node id (`--node-id`,
/// 10 bits) is XORed into the top bits: a bijection, so one gateway's ids
/// stay unique, and two gateways with distinct node ids collide only if
/// their counters are 2^54 ns (208 days) apart.
#[derive(Debug)]
pub struct IdGenerator {
    next: AtomicU64,
    /// `node_id << 54`, XORed into every id.
    node_mask: u64,
}

impl IdGenerator {
    pub fn new() -> Self {
        Self::with_node(0)
    }

    /// A generator whose ids carry `node_id` (0..1024; higher bits dropped).
    pub fn with_node(node_id: u16) -> Self {
        let start = now_nanos().max(1) as u64;
        IdGenerator {
            next: AtomicU64::new(start),
            node_mask: u64::from(node_id & 0x3ff) << 54,
        }
    }

    pub fn next_id(&self) -> MessageId {
        self.id(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Reserves `n` consecutive counter values and returns the first; turn
    /// each into an id with `id`.
    pub fn next_block(&self, n: u64) -> u64 {
        self.next.fetch_add(n, Ordering::Relaxed)
    }

    /// The id of counter value `n` (from `next_block`).
    pub fn id(&self, n: u64) -> MessageId {
        MessageId::from_u64(n ^ self.node_mask)
    }
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

/// Nanoseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_in_the_top_bits() {
        let a = IdGenerator::with_node(0x3ff);
        let b = IdGenerator::with_node(0);
        let n = a.next_block(1);
        let value = |id: MessageId| u64::from_str_radix(&id.to_string(), 16).expect("hex");
        assert_eq!(value(a.id(n)) ^ value(b.id(n)), 0x3ff << 54);
        assert_eq!(b.id(n), MessageId::from_u64(n));
    }

    #[test]
    fn ids_are_16_hex_chars_and_unique() {
        let g = IdGenerator::new();
        let a = g.next_id();
        let b = g.next_id();
        assert_ne!(a, b);
        assert!(a.0.iter().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(MessageId::from_u64(0xabc).to_string(), "0000000000000abc");
    }

    #[test]
    fn from_slice_checks_length() {
        assert!(MessageId::from_slice(b"0123456789abcdef").is_some());
        assert!(MessageId::from_slice(b"0123").is_none());
        assert!(MessageId::from_slice(&[b'a'; 17]).is_none());
    }
}
