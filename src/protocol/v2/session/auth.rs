//! AUTH and nsqd's `CheckAuth` for the V2 session: asks the auth server
//! (without blocking other clients: only this session waits), keeps the
//! grant, re-asks when its `ttl` has passed, and refuses PUB, MPUB, DPUB and
//! SUB outside it with nsqd's exact errors. Errors talking to the auth
//! server are logged, never shown to the client.

use super::*;
use crate::auth::{self, Credentials};
use crate::protocol::v2::error::go_quote;

impl Session {
    /// Runs AUTH, or checks a publish or subscribe against the grant.
    /// `Some` is the command's result when this answered or refused it;
    /// `None` lets `execute` run it.
    pub(super) async fn authorize(
        &mut self,
        cmd: &Command,
    ) -> Option<Result<Outcome, ProtocolError>> {
        let (verb, topic, channel) = match cmd {
            Command::Auth(a) => return Some(self.auth(&a.secret).await),
            Command::Pub(p) => ("PUB", p.topic.as_str(), ""),
            Command::Mpub(m) => ("MPUB", m.topic.as_str(), ""),
            Command::Dpub(d) => ("DPUB", d.topic.as_str(), ""),
            // nsqd checks the state and heartbeats before auth; those
            // errors come from `execute`.
            Command::Sub(s)
                if self.state == State::Init && self.settings.heartbeat_interval.is_some() =>
            {
                ("SUB", s.topic.as_str(), s.channel.as_str())
            }
            _ => return None,
        };
        self.env.auth.as_ref()?;
        self.check_auth(verb, topic, channel).await.err().map(Err)
    }

    async fn auth(&mut self, secret: &[u8]) -> Result<Outcome, ProtocolError> {
        if self.state != State::Init {
            return Err(ProtocolError::invalid("cannot AUTH in current state"));
        }
        if self.has_authorizations() {
            return Err(ProtocolError::invalid("AUTH already set"));
        }
        if self.env.auth.is_none() {
            return Err(ProtocolError::new(ErrorCode::AuthDisabled, "AUTH disabled"));
        }
        self.auth_secret = String::from_utf8_lossy(secret).into_owned();
        self.query_auth().await?;
        let Some(state) = self.auth.as_ref().filter(|a| !a.authorizations.is_empty()) else {
            return Err(ProtocolError::new(
                ErrorCode::Unauthorized,
                "AUTH no authorizations found",
            ));
        };
        let answer = serde_json::json!({
            "identity": state.identity,
            "identity_url": state.identity_url,
            "permission_count": state.authorizations.len(),
        });
        let mut meta = self.client.meta();
        meta.authed = true;
        meta.auth_identity = state.identity.clone();
        meta.auth_identity_url = state.identity_url.clone();
        self.client.set_meta(meta);
        codec::write_response(&mut self.out, answer.to_string().as_bytes());
        Ok(Outcome::Continue)
    }

    /// nsqd's `HasAuthorizations`.
    fn has_authorizations(&self) -> bool {
        self.auth
            .as_ref()
            .is_some_and(|a| !a.authorizations.is_empty())
    }

    /// nsqd's `CheckAuth`, for an auth-enabled server.
    async fn check_auth(
        &mut self,
        verb: &str,
        topic: &str,
        channel: &str,
    ) -> Result<(), ProtocolError> {
        if !self.has_authorizations() {
            return Err(ProtocolError::new(
                ErrorCode::AuthFirst,
                format!("AUTH required before {verb}"),
            ));
        }
        if self.auth.as_ref().is_some_and(AuthState::is_expired) {
            self.query_auth().await?;
        }
        if self
            .auth
            .as_mut()
            .is_some_and(|a| a.allows_memo(topic, channel))
        {
            return Ok(());
        }
        Err(ProtocolError::new(
            ErrorCode::Unauthorized,
            format!(
                "AUTH failed for {verb} on {} {}",
                go_quote(topic.as_bytes()),
                go_quote(channel.as_bytes())
            ),
        ))
    }

    /// Asks the auth servers about `auth_secret`; any failure is nsqd's
    /// opaque `E_AUTH_FAILED`.
    async fn query_auth(&mut self) -> Result<(), ProtocolError> {
        let Some(cfg) = self.env.auth.clone() else {
            return Err(ProtocolError::new(ErrorCode::AuthDisabled, "AUTH disabled"));
        };
        let (tls, common_name) = self.tls_identity();
        let who = Credentials {
            remote_ip: self.client.remote_address.ip().to_string(),
            tls,
            secret: self.auth_secret.clone(),
            common_name,
        };
        // Boxed: the query's state (HTTP, maybe TLS) would otherwise be
        // part of every session's future, idle ones included.
        match Box::pin(auth::query_any(&cfg, &who)).await {
            Ok(state) => {
                self.auth = Some(state);
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "AUTH failed");
                Err(ProtocolError::new(ErrorCode::AuthFailed, "AUTH failed"))
            }
        }
    }
}
