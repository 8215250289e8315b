//! The projects' DSN keys for agents, so their Sentry relays refuse a wrong key
//! themselves (as Sentry's Relay does with the project configs it fetches upstream)
//! instead of answering 200 and having the collector drop the event later.
//!
//! ```text
//! GET /api/calm/v1/agent/projects      (agent token when configured)
//! 200 {"projects": [{"id": 1, "public_key": "0123…", "rate_limit": 50.0}, …]}
//! ```
//! `rate_limit` (events per second) only when the project sets one. An agent token can
//! already write events to every project, so the keys tell it nothing it could not do.

use crate::storage::projects::Projects;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::sync::Arc;

async fn list(State(projects): State<Arc<Projects>>) -> Response {
    let list: Vec<_> = projects
        .list()
        .iter()
        .map(|p| match p.rate_limit {
            Some(r) => json!({ "id": p.id, "public_key": p.public_key, "rate_limit": r }),
            None => json!({ "id": p.id, "public_key": p.public_key }),
        })
        .collect();
    axum::Json(json!({ "projects": list })).into_response()
}

/// The route; the caller puts the agent-token check around it.
pub fn routes(projects: Arc<Projects>) -> Router {
    Router::new()
        .route("/api/calm/v1/agent/projects", get(list))
        .with_state(projects)
}
