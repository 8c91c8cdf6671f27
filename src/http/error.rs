//! The HTTP API's one error type and its success replies, rendered the way
//! nsqd 1.x's `V1` decorator does: errors as `{"message":"CODE"}` with
//! nsqd's status codes, and every reply tagged `X-NSQ-Content-Type`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::broker::BrokerError;

/// The header nsqd 1.x puts on every V1 API response.
pub const NSQ_CONTENT_TYPE: &str = "x-nsq-content-type";
const NSQ_CONTENT_TYPE_V1: &str = "nsq; version=1.0";
const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Every error the API answers with; each renders to nsqd's status and text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiError {
    /// The query string does not parse (bad `%` escape, `;` separator).
    InvalidRequest,
    MissingArgTopic,
    /// A bad topic name where nsqd creates the topic (`/pub`, `/topic/create`).
    InvalidTopic,
    /// A bad topic name where nsqd wants an existing one (channel routes).
    InvalidArgTopic,
    MissingArgChannel,
    InvalidArgChannel,
    TopicNotFound,
    ChannelNotFound,
    MsgTooBig,
    BodyTooBig,
    MsgEmpty,
    InvalidDefer,
    /// Binary `/mpub`: the message count is missing or out of range.
    BadBody,
    /// Binary `/mpub`: a message size or body is missing or out of range.
    BadMessage,
    /// A memory queue is full (nsqd spills to disk instead; this is the
    /// equivalent of V2's `E_PUB_FAILED`).
    PubFailed,
    Exiting,
    InternalError,
    InvalidOption,
    /// `PUT /config/:opt` with a body that does not parse.
    InvalidValue,
    /// `PUT /config/:opt` with an empty or too large body.
    InvalidValueSize,
    NotFound,
    MethodNotAllowed,
}

impl ApiError {
    pub fn status(self) -> StatusCode {
        use ApiError::*;
        match self {
            InvalidRequest | MissingArgTopic | InvalidTopic | InvalidArgTopic
            | MissingArgChannel | InvalidArgChannel | MsgEmpty | InvalidDefer | InvalidOption
            | InvalidValue => StatusCode::BAD_REQUEST,
            TopicNotFound | ChannelNotFound | NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            MsgTooBig | BodyTooBig | BadBody | BadMessage | InvalidValueSize => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            PubFailed | Exiting => StatusCode::SERVICE_UNAVAILABLE,
            InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable text nsqd puts in `message`.
    pub fn code(self) -> &'static str {
        use ApiError::*;
        match self {
            InvalidRequest => "INVALID_REQUEST",
            MissingArgTopic => "MISSING_ARG_TOPIC",
            InvalidTopic => "INVALID_TOPIC",
            InvalidArgTopic => "INVALID_ARG_TOPIC",
            MissingArgChannel => "MISSING_ARG_CHANNEL",
            InvalidArgChannel => "INVALID_ARG_CHANNEL",
            TopicNotFound => "TOPIC_NOT_FOUND",
            ChannelNotFound => "CHANNEL_NOT_FOUND",
            MsgTooBig => "MSG_TOO_BIG",
            BodyTooBig => "BODY_TOO_BIG",
            MsgEmpty => "MSG_EMPTY",
            InvalidDefer => "INVALID_DEFER",
            BadBody => "BAD_BODY",
            BadMessage => "BAD_MESSAGE",
            PubFailed => "PUB_FAILED",
            Exiting => "EXITING",
            InternalError => "INTERNAL_ERROR",
            InvalidOption => "INVALID_OPTION",
            InvalidValue | InvalidValueSize => "INVALID_VALUE",
            NotFound => "NOT_FOUND",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
        }
    }

    /// The error for a refused publish.
    pub fn from_publish(e: BrokerError) -> ApiError {
        match e {
            BrokerError::QueueFull => ApiError::PubFailed,
            BrokerError::Exiting => ApiError::Exiting,
            BrokerError::InvalidTopicName(_) => ApiError::InvalidTopic,
            _ => ApiError::InternalError,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The code is a fixed ASCII identifier: no JSON escaping needed.
        let body = format!("{{\"message\":\"{}\"}}", self.code());
        v1(self.status(), JSON, body.into_bytes())
    }
}

/// A successful V1 reply.
#[derive(Debug)]
pub enum Reply {
    /// 200 with an empty body (nsqd's `nil` data).
    Empty,
    /// 200 with a plain-text body (`OK`, text stats, string options).
    Text(String),
    /// 200 with a JSON body.
    Json(Vec<u8>),
}

impl Reply {
    /// Serialises `value` as the JSON reply.
    pub fn json<T: serde::Serialize>(value: &T) -> Result<Reply, ApiError> {
        serde_json::to_vec(value)
            .map(Reply::Json)
            .map_err(|_| ApiError::InternalError)
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Empty => v1(StatusCode::OK, "", Vec::new()),
            Reply::Text(t) => v1(StatusCode::OK, TEXT, t.into_bytes()),
            Reply::Json(j) => v1(StatusCode::OK, JSON, j),
        }
    }
}

/// The result of a V1 handler.
pub type ApiResult = Result<Reply, ApiError>;

fn v1(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    if content_type.is_empty() {
        headers.remove(header::CONTENT_TYPE);
    } else {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    headers.insert(
        NSQ_CONTENT_TYPE,
        HeaderValue::from_static(NSQ_CONTENT_TYPE_V1),
    );
    resp
}

/// A plain-text response without the V1 header (nsqd's `PlainText`, used by
/// `/ping`).
pub fn plain_text(status: StatusCode, text: impl Into<String>) -> Response {
    let text: String = text.into();
    let mut resp = (status, text).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_failures_map_to_nsqds_codes() {
        assert_eq!(
            ApiError::from_publish(BrokerError::QueueFull),
            ApiError::PubFailed
        );
        assert_eq!(
            ApiError::from_publish(BrokerError::Exiting),
            ApiError::Exiting
        );
        assert_eq!(ApiError::Exiting.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            ApiError::PubFailed.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::from_publish(BrokerError::TopicNotFound),
            ApiError::InternalError
        );
        assert_eq!(ApiError::InternalError.status().as_u16(), 500);
        assert_eq!(ApiError::InvalidValueSize.code(), "INVALID_VALUE");
        assert_eq!(ApiError::InvalidValueSize.status().as_u16(), 413);
    }
}
