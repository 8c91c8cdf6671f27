//! A plugin connection's authentication, the same contract as V2's AUTH:
//! the guest hands the host a secret (`broker.authenticate`), the event loop
//! asks the auth server without blocking other connections and reports the
//! answer (`on-authenticated`), and every later broker call on a topic or
//! channel is checked here against the grant, which is asked for again
//! when its `ttl` passes. The guest cannot bypass it: the checks sit in the
//! host imports.

use std::sync::Arc;

use crate::auth::{self, AuthConfig, AuthState, Credentials};

use super::bindings::nsq::gateway::types::{AuthError, BrokerError as WitError, Identity};

/// One connection's auth state.
#[derive(Default)]
pub(crate) struct ConnAuth {
    /// The auth servers; `None` when auth is disabled (nothing is checked).
    config: Option<Arc<AuthConfig>>,
    /// Who is asking, as nsqd tells the auth server.
    who: Credentials,
    /// The current grant, after a successful `authenticate`.
    grant: Option<AuthState>,
    /// A query the guest asked for and the event loop has not run yet.
    pending: bool,
}

impl ConnAuth {
    pub(crate) fn new(config: Option<Arc<AuthConfig>>, who: Credentials) -> ConnAuth {
        ConnAuth {
            config,
            who,
            grant: None,
            pending: false,
        }
    }

    pub(crate) fn required(&self) -> bool {
        self.config.is_some()
    }

    /// `broker.authenticate`: records the secret for the event loop.
    pub(crate) fn start(&mut self, secret: String) -> Result<(), WitError> {
        if self.config.is_none() {
            return Err(WitError::AuthDisabled);
        }
        if self.pending {
            return Err(WitError::InvalidArgument(
                "an authentication is already pending".into(),
            ));
        }
        if self
            .grant
            .as_ref()
            .is_some_and(|g| !g.authorizations.is_empty())
        {
            return Err(WitError::InvalidArgument("already authenticated".into()));
        }
        self.who.secret = secret;
        self.pending = true;
        Ok(())
    }

    /// Whether the event loop has a query to run.
    pub(crate) fn pending(&self) -> bool {
        self.pending
    }

    /// Runs the pending query: the answer for `on-authenticated`.
    pub(crate) async fn run_pending(&mut self) -> Result<Identity, AuthError> {
        self.pending = false;
        self.query().await.map_err(|()| AuthError::Failed)?;
        match self.grant.as_ref() {
            Some(g) if !g.authorizations.is_empty() => Ok(Identity {
                identity: g.identity.clone(),
                identity_url: g.identity_url.clone(),
                permission_count: u32::try_from(g.authorizations.len()).unwrap_or(u32::MAX),
            }),
            _ => Err(AuthError::NoAuthorizations),
        }
    }

    /// Asks again when the grant has expired (before the guest runs, so a
    /// call never waits inside the guest). A failed refresh drops the
    /// grant: later calls are refused until the guest authenticates again.
    pub(crate) async fn refresh_if_expired(&mut self) {
        if self.grant.as_ref().is_some_and(AuthState::is_expired) && self.query().await.is_err() {
            self.grant = None;
        }
    }

    async fn query(&mut self) -> Result<(), ()> {
        let Some(cfg) = self.config.clone() else {
            return Err(());
        };
        // Boxed: the query's state (HTTP, maybe TLS) would otherwise be
        // part of every connection's future, idle ones included.
        match Box::pin(auth::query_any(&cfg, &self.who)).await {
            Ok(state) => {
                self.grant = Some(state);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(peer = %self.who.remote_ip, error = %e, "plugin AUTH failed");
                self.grant = None;
                Err(())
            }
        }
    }

    /// nsqd's `CheckAuth` for one call: `channel` empty means a publish.
    pub(crate) fn check(&mut self, call: &str, topic: &str, channel: &str) -> Result<(), WitError> {
        if self.config.is_none() {
            return Ok(());
        }
        let Some(grant) = self.grant.as_mut().filter(|g| !g.authorizations.is_empty()) else {
            return Err(WitError::AuthRequired);
        };
        // Memoised: a stream of publishes to one topic matches the
        // grant's patterns once.
        if grant.allows_memo(topic, channel) {
            return Ok(());
        }
        Err(WitError::Unauthorized(format!(
            "{call} on {topic:?} {channel:?} is outside the grant of {:?}",
            grant.identity
        )))
    }

    /// Whether `stats` may list `topic`: always without auth, else when the
    /// grant names it.
    pub(crate) fn may_see(&self, topic: &str) -> bool {
        match (&self.config, &self.grant) {
            (None, _) => true,
            (Some(_), Some(g)) => g.names_topic(topic),
            (Some(_), None) => false,
        }
    }
}
