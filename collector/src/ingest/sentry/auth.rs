//! Which project a request may write to, from its DSN key.

use super::{projects::Projects, Reject};
use crate::config::ProjectConfig;
use axum::http::{HeaderMap, StatusCode};
use calm_wire::sentry::{auth, ids};

/// Checks the request's DSN key against the project in the path. `envelope_dsn` is
/// the envelope header's `dsn`, consulted when the request carries no key itself.
pub fn authenticate(
    projects: &Projects,
    path_project: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    envelope_dsn: Option<&str>,
) -> Result<ProjectConfig, Reject> {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let a = auth::find(h, query, envelope_dsn)
        .map_err(|e| Reject::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let Some(owner) = projects.by_key(a.public_key()) else {
        return Err(Reject::new(
            StatusCode::UNAUTHORIZED,
            "invalid DSN key: no project has this public key",
        ));
    };
    let id = ids::project_id(path_project)
        .map_err(|e| Reject::new(StatusCode::NOT_FOUND, e.to_string()))?;
    if projects.get(id).is_none() {
        return Err(Reject::new(
            StatusCode::NOT_FOUND,
            format!("unknown project {id}"),
        ));
    }
    if owner.id != id {
        return Err(Reject::new(
            StatusCode::FORBIDDEN,
            format!("this DSN key belongs to project {}, not {id}", owner.id),
        ));
    }
    Ok(owner.clone())
}

/// The client's address as proxies report it (`X-Forwarded-For`, `X-Real-IP`).
pub fn client_ip(headers: &HeaderMap) -> Option<String> {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    h("x-forwarded-for")
        .and_then(|v| v.split(',').next())
        .or_else(|| h("x-real-ip"))
        .map(str::trim)
        .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_string)
}
