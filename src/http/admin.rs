//! `POST /topic/*` and `POST /channel/*`: create, delete, empty, pause and
//! unpause, with nsqd's argument checks and errors. Request bodies are never
//! read here (nsqd reads and ignores them).

use std::sync::Arc;

use axum::extract::State;
use axum::http::Uri;

use super::HttpState;
use super::error::{ApiError, ApiResult, Reply};
use super::params::Query;
use super::publish::topic_from_query;
use crate::broker::{Channel, Topic, names};

/// What a pause route does.
#[derive(Clone, Copy)]
pub enum Pause {
    Pause,
    Unpause,
}

pub async fn topic_create(State(st): State<Arc<HttpState>>, uri: Uri) -> ApiResult {
    let query = Query::parse(uri.query())?;
    topic_from_query(&st, &query)?;
    Ok(Reply::Empty)
}

pub async fn topic_delete(State(st): State<Arc<HttpState>>, uri: Uri) -> ApiResult {
    let query = Query::parse(uri.query())?;
    let name = query.get("topic").ok_or(ApiError::MissingArgTopic)?;
    // nsqd does not check the name here: a bad one is simply not found.
    st.ctx
        .broker
        .delete_topic(name)
        .map_err(|_| ApiError::TopicNotFound)?;
    Ok(Reply::Empty)
}

pub async fn topic_empty(State(st): State<Arc<HttpState>>, uri: Uri) -> ApiResult {
    let query = Query::parse(uri.query())?;
    let name = query.get("topic").ok_or(ApiError::MissingArgTopic)?;
    if !names::is_valid_name(name) {
        return Err(ApiError::InvalidTopic);
    }
    let topic = existing_topic(&st, name)?;
    topic.empty();
    Ok(Reply::Empty)
}

pub async fn topic_pause(st: State<Arc<HttpState>>, uri: Uri) -> ApiResult {
    topic_set_paused(st, uri, Pause::Pause)
}

pub async fn topic_unpause(st: State<Arc<HttpState>>, uri: Uri) -> ApiResult {
    topic_set_paused(st, uri, Pause::Unpause)
}

fn topic_set_paused(State(st): State<Arc<HttpState>>, uri: Uri, what: Pause) -> ApiResult {
    let query = Query::parse(uri.query())?;
    let name = query.get("topic").ok_or(ApiError::MissingArgTopic)?;
    let topic = existing_topic(&st, name)?;
    match what {
        Pause::Pause => topic.pause(),
        Pause::Unpause => topic.unpause(),
    }
    Ok(Reply::Empty)
}

pub async fn channel_create(State(st): State<Arc<HttpState>>, uri: Uri) -> ApiResult {
    let (topic, channel) = topic_and_channel_name(&st, &uri)?;
    topic.channel(&channel).map_err(|e| match e {
        crate::broker::BrokerError::InvalidChannelName(_) => ApiError::InvalidArgChannel,
        crate::broker::BrokerError::Exiting => ApiError::Exiting,
        _ => ApiError::InternalError,
    })?;
    Ok(Reply::Empty)
}

pub async fn channel_delete(State(st): State<Arc<HttpState>>, uri: Uri) -> ApiResult {
    let (topic, channel) = topic_and_channel_name(&st, &uri)?;
    topic
        .delete_channel(&channel)
        .map_err(|_| ApiError::ChannelNotFound)?;
    Ok(Reply::Empty)
}

pub async fn channel_empty(State(st): State<Arc<HttpState>>, uri: Uri) -> ApiResult {
    existing_channel(&st, &uri)?.empty();
    Ok(Reply::Empty)
}

pub async fn channel_pause(State(st): State<Arc<HttpState>>, uri: Uri) -> ApiResult {
    existing_channel(&st, &uri)?.pause();
    Ok(Reply::Empty)
}

pub async fn channel_unpause(State(st): State<Arc<HttpState>>, uri: Uri) -> ApiResult {
    existing_channel(&st, &uri)?.unpause();
    Ok(Reply::Empty)
}

fn existing_topic(st: &HttpState, name: &str) -> Result<Arc<Topic>, ApiError> {
    st.ctx
        .broker
        .existing_topic(name)
        .ok_or(ApiError::TopicNotFound)
}

/// nsqd's `getExistingTopicFromQuery`: both names checked, the topic must
/// exist, the channel need not.
fn topic_and_channel_name(st: &HttpState, uri: &Uri) -> Result<(Arc<Topic>, String), ApiError> {
    let query = Query::parse(uri.query())?;
    let topic = query.get("topic").ok_or(ApiError::MissingArgTopic)?;
    if !names::is_valid_name(topic) {
        return Err(ApiError::InvalidArgTopic);
    }
    let channel = query.get("channel").ok_or(ApiError::MissingArgChannel)?;
    if !names::is_valid_name(channel) {
        return Err(ApiError::InvalidArgChannel);
    }
    Ok((existing_topic(st, topic)?, channel.to_owned()))
}

fn existing_channel(st: &HttpState, uri: &Uri) -> Result<Arc<Channel>, ApiError> {
    let (topic, channel) = topic_and_channel_name(st, uri)?;
    topic
        .existing_channel(&channel)
        .ok_or(ApiError::ChannelNotFound)
}
