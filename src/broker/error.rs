//! The broker's error type. Each variant is something a client can cause and
//! see; the protocol and HTTP layers map them to their wire codes.

use thiserror::Error;

/// Why a broker operation was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BrokerError {
    #[error("topic name {0:?} is not valid")]
    InvalidTopicName(String),
    #[error("channel name {0:?} is not valid")]
    InvalidChannelName(String),
    #[error("topic not found")]
    TopicNotFound,
    #[error("channel not found")]
    ChannelNotFound,
    /// The memory queue of the topic or of one of its channels is at
    /// `mem-queue-size`; nothing of the publish was accepted.
    #[error("queue full")]
    QueueFull,
    /// FIN/REQ/TOUCH for an id this consumer does not hold in flight.
    #[error("message not in flight")]
    MessageNotInFlight,
    /// The channel already has `max-channel-consumers` consumers.
    #[error("too many consumers")]
    TooManyConsumers,
    /// Writing to the disk queue failed (disk full, I/O error); nothing of
    /// the publish was kept in the failing queue.
    #[error("disk write failed: {0}")]
    Disk(String),
    /// The topic or channel is being deleted, or the broker is shutting down.
    #[error("exiting")]
    Exiting,
}
