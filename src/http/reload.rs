//! `POST /plugins/reload`: re-reads the config file's `plugins:` section and
//! swaps the plugin set (see `server::reload`). 200 with the new set, or
//! 500 with why it was refused (the old set stays).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::HttpState;

pub async fn reload(State(st): State<Arc<HttpState>>) -> Response {
    match crate::server::reload_plugins(&st.ctx).await {
        Ok(status) => (StatusCode::OK, axum::Json(status)).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({
                "message": "RELOAD_FAILED",
                "error": format!("{e:#}"),
            })),
        )
            .into_response(),
    }
}
