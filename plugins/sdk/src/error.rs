//! One wording for every broker error, so LINE, STOMP, RESP and any new
//! protocol describe a refusal the same way: [`describe`] for people and
//! [`code`] for the nsqd error code a V2 client would have seen. (The
//! bindings' own `Display` of `BrokerError` is its `Debug`; use these.)

use crate::{AuthError, BrokerError};

/// A readable reason for a broker error, without a protocol's prefix.
pub fn describe(e: &BrokerError) -> String {
    match e {
        BrokerError::InvalidTopicName => {
            "invalid topic name (1-64 of a-z A-Z 0-9 . _ -, optionally ending in #ephemeral)".into()
        }
        BrokerError::InvalidChannelName => {
            "invalid channel name (1-64 of a-z A-Z 0-9 . _ -, optionally ending in #ephemeral)"
                .into()
        }
        BrokerError::TopicNotFound => "no such topic".into(),
        BrokerError::ChannelNotFound => "no such channel".into(),
        BrokerError::PublishFailed(why) => format!("publish failed: {why}"),
        BrokerError::NotInFlight => {
            "message is not in flight (unknown id, or already acknowledged)".into()
        }
        BrokerError::TooManyConsumers => "too many consumers on this channel".into(),
        BrokerError::Denied(why) => format!("denied: {why}"),
        BrokerError::UnknownSubscription => "unknown subscription".into(),
        BrokerError::InvalidArgument(why) => format!("invalid argument: {why}"),
        BrokerError::Exiting => "the gateway is shutting down".into(),
        BrokerError::AuthRequired => "authentication required".into(),
        BrokerError::Unauthorized(why) => format!("unauthorized: {why}"),
        BrokerError::AuthDisabled => "no auth server is configured".into(),
    }
}

/// The nsqd error code a V2 client gets for the same refusal.
pub fn code(e: &BrokerError) -> &'static str {
    match e {
        BrokerError::InvalidTopicName => "E_BAD_TOPIC",
        BrokerError::InvalidChannelName => "E_BAD_CHANNEL",
        BrokerError::TopicNotFound | BrokerError::ChannelNotFound => "E_INVALID",
        BrokerError::PublishFailed(_) => "E_PUB_FAILED",
        BrokerError::NotInFlight => "E_FIN_FAILED",
        BrokerError::TooManyConsumers => "E_TOO_MANY_CHANNEL_CONSUMERS",
        BrokerError::Denied(_) | BrokerError::Unauthorized(_) => "E_UNAUTHORIZED",
        BrokerError::UnknownSubscription | BrokerError::InvalidArgument(_) => "E_INVALID",
        BrokerError::Exiting => "E_INVALID",
        BrokerError::AuthRequired => "E_AUTH_FIRST",
        BrokerError::AuthDisabled => "E_AUTH_DISABLED",
    }
}

/// A readable reason for a failed `authenticate`.
pub fn describe_auth(e: AuthError) -> &'static str {
    match e {
        AuthError::Failed => "authentication failed",
        AuthError::NoAuthorizations => "no authorizations found",
    }
}
