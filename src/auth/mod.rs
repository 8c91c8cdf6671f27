//! The auth server client, nsqd's `--auth-http-address` contract: ask an
//! auth server what a secret may do (`GET /auth?remote_ip=&tls=&secret=&
//! common_name=`), keep the answer (identity, authorizations, expiry) per
//! connection, and decide whether it allows a publish or a subscribe. V2's
//! AUTH command and the plugin host's `authenticate` import both use it, so
//! every protocol is authorized the same way.

mod http;
mod tls;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use tokio::time::Instant;

use crate::config::Config;

/// Longest auth server answer accepted, in bytes.
pub const MAX_RESPONSE: usize = 1 << 20;
/// Most authorizations one answer may carry.
pub const MAX_AUTHORIZATIONS: usize = 1024;

/// Where the auth servers are and how long to wait for them.
#[derive(Debug)]
pub struct AuthConfig {
    /// `<host>:<port>` (queried at `http://<host>:<port>/auth`) or full URLs.
    pub addresses: Vec<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Roots for `https://` auth servers (`--tls-root-ca-file`); the
    /// system's when unset.
    pub root_ca_file: Option<PathBuf>,
    /// The TLS client configuration, built on the first `https://` query.
    tls: OnceLock<Result<Arc<tokio_rustls::rustls::ClientConfig>, String>>,
}

impl AuthConfig {
    /// The auth settings of `config`, or `None` when no auth server is set
    /// (auth is then disabled, as in nsqd).
    pub fn from_config(config: &Config) -> Option<Arc<AuthConfig>> {
        (!config.auth_http_addresses.is_empty()).then(|| {
            Arc::new(AuthConfig {
                addresses: config.auth_http_addresses.clone(),
                connect_timeout: config.http_client_connect_timeout,
                request_timeout: config.http_client_request_timeout,
                root_ca_file: (!config.tls_root_ca_file.is_empty())
                    .then(|| PathBuf::from(&config.tls_root_ca_file)),
                tls: OnceLock::new(),
            })
        })
    }

    fn tls(&self) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
        self.tls
            .get_or_init(|| crate::tls::client_config_trusting(self.root_ca_file.as_deref()))
            .clone()
    }
}

/// Who is asking: the query string nsqd sends.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub remote_ip: String,
    pub tls: bool,
    pub secret: String,
    /// The client certificate's subject common name, or empty.
    pub common_name: String,
}

/// Why a query failed. Never shown to the client (nsqd answers only
/// `E_AUTH_FAILED`); logged at warn.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Http(String),
    #[error("bad answer: {0}")]
    Answer(String),
}

/// One grant from the auth server.
#[derive(Debug, Clone)]
pub struct Authorization {
    topic: Regex,
    channels: Vec<Regex>,
    publish: bool,
    subscribe: bool,
}

impl Authorization {
    /// nsqd's `Authorization.IsAllowed`: `channel` empty means a publish.
    /// Patterns match anywhere in the name, as Go's `MatchString` does.
    fn allows(&self, topic: &str, channel: &str) -> bool {
        let permitted = if channel.is_empty() {
            self.publish
        } else {
            self.subscribe
        };
        permitted && self.topic.is_match(topic) && self.channels.iter().any(|c| c.is_match(channel))
    }
}

/// What the auth server said about one secret, until it expires.
#[derive(Debug, Clone)]
pub struct AuthState {
    pub identity: String,
    pub identity_url: String,
    pub authorizations: Vec<Authorization>,
    /// After this, the next check asks the auth server again.
    pub expires: Instant,
    /// The last topic a publish was allowed on: a stream of PUBs to one
    /// topic runs the patterns once per grant, not once per message.
    publish_memo: Option<String>,
}

impl AuthState {
    /// nsqd's `State.IsAllowed`.
    pub fn allows(&self, topic: &str, channel: &str) -> bool {
        self.authorizations.iter().any(|a| a.allows(topic, channel))
    }

    /// `allows`, remembering the last topic a publish was allowed on.
    pub fn allows_memo(&mut self, topic: &str, channel: &str) -> bool {
        if channel.is_empty() && self.publish_memo.as_deref() == Some(topic) {
            return true;
        }
        let ok = self.allows(topic, channel);
        if ok && channel.is_empty() {
            self.publish_memo = Some(topic.to_owned());
        }
        ok
    }

    /// Whether any authorization's topic pattern matches `topic`.
    pub fn names_topic(&self, topic: &str) -> bool {
        self.authorizations.iter().any(|a| a.topic.is_match(topic))
    }

    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.expires
    }
}

/// The auth server's JSON answer.
#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    ttl: i64,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    identity_url: String,
    #[serde(default)]
    authorizations: Vec<AnswerAuthorization>,
}

#[derive(Debug, Deserialize)]
struct AnswerAuthorization {
    #[serde(default)]
    topic: String,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    permissions: Vec<String>,
}

/// nsqd's `QueryAnyAuthd`: tries the servers in turn, starting at a
/// pseudo-random one, and returns the first answer or the last error.
pub async fn query_any(cfg: &AuthConfig, who: &Credentials) -> Result<AuthState, AuthError> {
    let n = cfg.addresses.len();
    let start = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos()) as usize)
        % n.max(1);
    let mut last = AuthError::Http("no auth server configured".into());
    for i in 0..n {
        let addr = &cfg.addresses[(start + i) % n];
        match query(addr, cfg, who).await {
            Ok(state) => return Ok(state),
            Err(e) => {
                tracing::warn!(auth_server = %addr, error = %e, "auth query failed");
                last = e;
            }
        }
    }
    Err(last)
}

/// nsqd's `QueryAuthd` against one server.
async fn query(addr: &str, cfg: &AuthConfig, who: &Credentials) -> Result<AuthState, AuthError> {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("common_name", &who.common_name)
        .append_pair("remote_ip", &who.remote_ip)
        .append_pair("secret", &who.secret)
        .append_pair("tls", if who.tls { "true" } else { "false" })
        .finish();
    let endpoint = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}/auth")
    };
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    let url = format!("{endpoint}{sep}{query}");
    let body = http::get(&url, cfg).await.map_err(AuthError::Http)?;
    parse_answer(&body)
}

/// Validates an answer as nsqd does: known permissions, compilable
/// patterns, a positive `ttl`.
fn parse_answer(body: &[u8]) -> Result<AuthState, AuthError> {
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| AuthError::Answer(format!("not JSON: {e}")))?;
    if answer.authorizations.len() > MAX_AUTHORIZATIONS {
        return Err(AuthError::Answer(format!(
            "{} authorizations, more than {MAX_AUTHORIZATIONS}",
            answer.authorizations.len()
        )));
    }
    let compile = |p: &str| {
        regex::RegexBuilder::new(p)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| AuthError::Answer(format!("unable to compile {p:?}: {e}")))
    };
    let mut authorizations = Vec::with_capacity(answer.authorizations.len());
    for a in &answer.authorizations {
        let (mut publish, mut subscribe) = (false, false);
        for p in &a.permissions {
            match p.as_str() {
                "publish" => publish = true,
                "subscribe" => subscribe = true,
                other => return Err(AuthError::Answer(format!("unknown permission {other}"))),
            }
        }
        authorizations.push(Authorization {
            topic: compile(&a.topic)?,
            channels: a
                .channels
                .iter()
                .map(|c| compile(c))
                .collect::<Result<_, _>>()?,
            publish,
            subscribe,
        });
    }
    if answer.ttl <= 0 {
        return Err(AuthError::Answer(format!(
            "invalid TTL {} (must be >0)",
            answer.ttl
        )));
    }
    let ttl = Duration::from_secs(u64::try_from(answer.ttl).unwrap_or(u64::MAX).min(1 << 32));
    Ok(AuthState {
        identity: answer.identity,
        identity_url: answer.identity_url,
        authorizations,
        expires: Instant::now() + ttl,
        publish_memo: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: &str) -> AuthState {
        parse_answer(json.as_bytes()).expect("valid answer")
    }

    #[test]
    fn publish_needs_publish_and_a_channel_pattern_matching_empty() {
        let s = state(
            r#"{"ttl":60,"identity":"me","authorizations":[
                {"topic":"^orders$","channels":[".*"],"permissions":["publish"]}]}"#,
        );
        assert!(s.allows("orders", ""));
        assert!(!s.allows("orders", "ch"), "no subscribe permission");
        assert!(!s.allows("other", ""));
        let s = state(
            r#"{"ttl":60,"authorizations":[
                {"topic":".*","channels":["^x$"],"permissions":["publish","subscribe"]}]}"#,
        );
        assert!(
            !s.allows("t", ""),
            "nsqd also matches the channel patterns on publish"
        );
        assert!(s.allows("t", "x"));
    }

    #[test]
    fn the_publish_memo_never_widens_the_grant() {
        let mut s = state(
            r#"{"ttl":60,"authorizations":[{"topic":"^a$","channels":[".*"],"permissions":["publish"]}]}"#,
        );
        assert!(s.allows_memo("a", ""));
        assert!(s.allows_memo("a", ""));
        assert!(!s.allows_memo("b", ""));
        assert!(!s.allows_memo("a", "ch"), "a subscribe is never memoised");
        assert!(s.allows_memo("a", ""));
    }

    #[test]
    fn patterns_match_anywhere_like_go() {
        let s = state(
            r#"{"ttl":1,"authorizations":[{"topic":"ord","channels":["arch"],"permissions":["subscribe"]}]}"#,
        );
        assert!(s.allows("my-orders", "archive"));
    }

    #[test]
    fn bad_answers_are_refused_with_nsqds_reasons() {
        for (json, why) in [
            (r#"{"ttl":0,"authorizations":[]}"#, "invalid TTL 0"),
            (
                r#"{"ttl":5,"authorizations":[{"topic":".*","channels":[".*"],"permissions":["admin"]}]}"#,
                "unknown permission admin",
            ),
            (
                r#"{"ttl":5,"authorizations":[{"topic":"(","channels":[],"permissions":[]}]}"#,
                "unable to compile",
            ),
            ("<html>", "not JSON"),
        ] {
            let err = parse_answer(json.as_bytes()).expect_err(json).to_string();
            assert!(err.contains(why), "{json}: {err}");
        }
    }

    #[test]
    fn an_answer_with_too_many_authorizations_is_refused() {
        let one = r#"{"topic":".*","channels":[".*"],"permissions":["publish"]}"#;
        let many = vec![one; MAX_AUTHORIZATIONS + 1].join(",");
        let json = format!(r#"{{"ttl":60,"authorizations":[{many}]}}"#);
        let err = parse_answer(json.as_bytes())
            .expect_err("too many")
            .to_string();
        assert!(err.contains("more than 1024"), "{err}");
        let at_limit = vec![one; MAX_AUTHORIZATIONS].join(",");
        let json = format!(r#"{{"ttl":60,"authorizations":[{at_limit}]}}"#);
        assert!(parse_answer(json.as_bytes()).is_ok());
    }

    #[test]
    fn no_authorizations_is_a_valid_answer_that_allows_nothing() {
        let s = state(r#"{"ttl":10,"identity":"nobody"}"#);
        assert!(s.authorizations.is_empty());
        assert!(!s.allows("t", ""));
    }
}
