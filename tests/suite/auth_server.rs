//! A real HTTP auth server for the auth tests, per nsqd's
//! `--auth-http-address` contract: `GET /auth?remote_ip=&tls=&secret=&
//! common_name=` answered with the JSON the test set for that secret (or a
//! status, or a delay). It records every query it gets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// How the server answers one secret.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Answer {
    /// A 200 with `ttl`, `identity` and authorizations given as
    /// `(topic, channels, permissions)`.
    pub fn grant(ttl: i64, identity: &str, auths: &[(&str, &[&str], &[&str])]) -> Answer {
        let authorizations: Vec<_> = auths
            .iter()
            .map(|(t, c, p)| serde_json::json!({"topic": t, "channels": c, "permissions": p}))
            .collect();
        Answer {
            status: 200,
            body: serde_json::json!({
                "ttl": ttl,
                "identity": identity,
                "identity_url": format!("https://id.example/{identity}"),
                "authorizations": authorizations,
            })
            .to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            body: "denied".into(),
            delay: Duration::ZERO,
        }
    }

    pub fn delayed(mut self, d: Duration) -> Answer {
        self.delay = d;
        self
    }
}

#[derive(Default)]
struct Shared {
    answers: Mutex<HashMap<String, Answer>>,
    queries: Mutex<Vec<HashMap<String, String>>>,
}

/// The running server; it stops when dropped.
pub struct AuthServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl AuthServer {
    pub async fn start() -> AuthServer {
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .route("/auth", get(auth))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind auth server");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        AuthServer { addr, shared, task }
    }

    pub fn set(&self, secret: &str, answer: Answer) {
        self.shared
            .answers
            .lock()
            .expect("lock")
            .insert(secret.to_owned(), answer);
    }

    /// Every query so far, as its query-string pairs.
    pub fn queries(&self) -> Vec<HashMap<String, String>> {
        self.shared.queries.lock().expect("lock").clone()
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn auth(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    shared.queries.lock().expect("lock").push(q.clone());
    let secret = q.get("secret").cloned().unwrap_or_default();
    let answer = shared.answers.lock().expect("lock").get(&secret).cloned();
    let Some(a) = answer else {
        return (StatusCode::FORBIDDEN, "unknown secret").into_response();
    };
    if !a.delay.is_zero() {
        tokio::time::sleep(a.delay).await;
    }
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", "application/json")], a.body).into_response()
}
