//! Who may call what: scopes, bearer tokens, and the browser protections, in one
//! middleware ([`guard`]) in front of every route, and the start-up rules
//! ([`listen_address`]).
//!
//! Auth is either **off** (no token of any kind configured: the collector listens on
//! loopback only) or **on** (any token configured): then every route except the
//! probes, `/metrics`, `/` and the Sentry ingest routes (DSN key) needs a token of its
//! scope, whatever the listen address — a scope without tokens is closed, never open.
//!
//! ```text
//! scope   routes                                                   tokens accepted
//! write   POST /api/v1/write, /v1/metrics, /api/calm/v1/agents/heartbeat   agent, admin
//!         GET /api/calm/v1/agent/projects (DSN keys for agents' relays)
//! read    the Prometheus API, GET issues/agents/projects (keys masked),    read, admin
//!         /api/v1/rules, /api/v1/alerts                (or none: allow_anonymous_reads)
//! admin   PUT /api/calm/v1/issues[/{id}], /-/reload, DSN keys in projects  admin
//! public  /healthz, /readyz, /metrics, /, the built-in UI's shell, assets and login
//!         (crate::ui::is_public; the cookie it sets stands in for a bearer token)
//! sentry  /api/{project}/envelope/, /api/{project}/store/                  DSN key
//! ```
//! Missing or unknown token: 401 (with `WWW-Authenticate: Bearer`); a known token of
//! another scope: 403. `Bearer` is matched case-insensitively (RFC 7235) and tokens are
//! compared in constant time.
//!
//! Browsers: the `Host` header must be `localhost` (or `*.localhost`), an IP literal or
//! one of `allowed_hosts` — always on a loopback address, elsewhere when
//! `allowed_hosts` is set — so a DNS-rebound name cannot reach the API (403). Writes and
//! admin calls from another site (`Origin` not this host, `Sec-Fetch-Site` other than
//! `same-origin`/`none`) are refused (403), and writes must carry their real content
//! type (415), so a CORS-simple `text/plain` POST from a web page never lands. The
//! Sentry routes stay open to cross-site browser SDKs: the DSN key authenticates them.

use anyhow::bail;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Probes and the collector's own metrics: anyone.
    Public,
    /// Sentry ingest: the handler checks the DSN key.
    Sentry,
    /// Ingest: an agent (or admin) token.
    Write,
    /// Queries and listings: a read (or admin) token.
    Read,
    /// Changes and secrets: an admin token.
    Admin,
}

/// The scope and required content types of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Who may call it.
    pub scope: Scope,
    /// Media types its body must have (empty: any).
    pub content_types: &'static [&'static str],
}

const PROTOBUF: &[&str] = &["application/x-protobuf"];
const OTLP: &[&str] = &["application/x-protobuf", "application/json"];
const JSON: &[&str] = &["application/json"];

/// Whether `method` changes nothing (and carries no body to check).
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `/api/{project}/envelope[/]` or `/api/{project}/store[/]` (the Sentry routes).
fn is_sentry(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/") else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    match rest.split_once('/') {
        // Any project segment, as the router's `{project_id}` matches: the handler
        // answers a bad one (404) after checking the key.
        Some((project, what)) => !project.is_empty() && (what == "envelope" || what == "store"),
        None => false,
    }
}

/// The policy of a request, from its method and path (the routes' paths, matched as
/// the router matches them: exactly). Anything not named is a read.
pub fn classify(method: &Method, path: &str) -> Policy {
    let p = |scope, content_types| Policy {
        scope,
        content_types,
    };
    match path {
        "/healthz" | "/readyz" | "/metrics" | "/" => p(Scope::Public, &[]),
        "/api/v1/write" => p(Scope::Write, PROTOBUF),
        "/v1/metrics" => p(Scope::Write, OTLP),
        "/api/calm/v1/agents/heartbeat" => p(Scope::Write, JSON),
        // DSN keys for the agents' Sentry relays: agent (or admin) tokens only, never
        // a read token (the projects API masks keys to non-admins).
        "/api/calm/v1/agent/projects" => p(Scope::Write, &[]),
        "/-/reload" => p(Scope::Admin, &[]),
        _ if is_sentry(path) => p(Scope::Sentry, &[]),
        _ if crate::ui::is_public(method, path) => p(Scope::Public, &[]),
        _ if (path == "/api/calm/v1/issues" || path.starts_with("/api/calm/v1/issues/"))
            && !is_safe(method) =>
        {
            p(Scope::Admin, JSON)
        }
        _ => p(Scope::Read, &[]),
    }
}

/// Who the caller is, put in the request's extensions for handlers that show secrets
/// (`GET /api/calm/v1/projects` shows DSN keys to admins only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// May see secrets: an admin token, or auth is off.
    pub admin: bool,
}

/// The guard's state: the tokens and the browser rules.
#[derive(Debug)]
pub struct Guard {
    on: bool,
    agent: Vec<Vec<u8>>,
    read: Vec<Vec<u8>>,
    admin: Vec<Vec<u8>>,
    anonymous_reads: bool,
    host_check: bool,
    allowed_hosts: Vec<String>,
}

fn bytes(list: &[String]) -> Vec<Vec<u8>> {
    list.iter().map(|t| t.as_bytes().to_vec()).collect()
}

/// Whether `given` is one of `list`, comparing every entry in constant time (no early
/// exit on the first match or the first differing byte; only a length differs in time).
fn contains(list: &[Vec<u8>], given: &[u8]) -> bool {
    let mut found = subtle::Choice::from(0u8);
    for t in list {
        found |= t.as_slice().ct_eq(given);
    }
    found.into()
}

impl Guard {
    /// The guard for `auth` on `listen` (the address actually bound).
    pub fn new(auth: &AuthConfig, listen: SocketAddr) -> Guard {
        let on = !(auth.agent_tokens.is_empty()
            && auth.read_tokens.is_empty()
            && auth.admin_tokens.is_empty());
        Guard {
            on,
            agent: bytes(&auth.agent_tokens),
            read: bytes(&auth.read_tokens),
            admin: bytes(&auth.admin_tokens),
            anonymous_reads: auth.allow_anonymous_reads,
            host_check: listen.ip().is_loopback() || !auth.allowed_hosts.is_empty(),
            allowed_hosts: auth
                .allowed_hosts
                .iter()
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Checks the `Host` header: `None` when it may pass, else the refusal.
    fn check_host(&self, headers: &HeaderMap, uri_host: Option<&str>) -> Option<Response> {
        if !self.host_check {
            return None;
        }
        let raw = match headers.get(header::HOST) {
            Some(v) => match v.to_str() {
                Ok(s) => s,
                Err(_) => {
                    return Some(refuse(
                        StatusCode::BAD_REQUEST,
                        "the Host header is not text",
                    ))
                }
            },
            // HTTP/1.0 clients send none; browsers always do.
            None => uri_host?,
        };
        let name = host_name(raw);
        if host_is_safe(&name) || self.allowed_hosts.contains(&name) {
            return None;
        }
        Some(refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "the Host header {raw:?} does not name this collector (a DNS rebinding \
                 guard): use localhost or an IP address, or add {name:?} to [auth] allowed_hosts"
            ),
        ))
    }

    /// The caller's rights for `scope`: `Ok(caller)` or the refusal.
    fn authorize(&self, scope: Scope, headers: &HeaderMap) -> Result<Caller, Denied> {
        if !self.on {
            return Ok(Caller { admin: true });
        }
        // The built-in UI's login cookie stands in for a missing bearer header.
        let cookie = crate::ui::session::cookie_token(headers);
        let token = match bearer(headers) {
            Ok(Some(t)) => t,
            Ok(None) if cookie.is_some() => cookie.as_deref().unwrap_or(""),
            Ok(None) => {
                if scope == Scope::Read && self.anonymous_reads {
                    return Ok(Caller { admin: false });
                }
                return Err(Denied::Unauthorized(
                    "missing bearer token: send Authorization: Bearer <token>",
                ));
            }
            Err(msg) => return Err(Denied::Unauthorized(msg)),
        };
        let t = token.as_bytes();
        // Every list is compared, so the time does not say which one matched.
        let (admin, agent, read) = (
            contains(&self.admin, t),
            contains(&self.agent, t),
            contains(&self.read, t),
        );
        if !(admin || agent || read) {
            return Err(Denied::Unauthorized("invalid bearer token"));
        }
        let ok = admin || (scope == Scope::Write && agent) || (scope == Scope::Read && read);
        if ok {
            return Ok(Caller { admin });
        }
        let is = if agent {
            "an agent token"
        } else {
            "a read token"
        };
        let needs = match scope {
            Scope::Write => "an agent token (agent_tokens) or an admin token".to_string(),
            Scope::Read => "a read token (read_tokens) or an admin token".to_string(),
            _ if self.admin.is_empty() => {
                "an admin token, and no [auth] admin_tokens are configured: add one".to_string()
            }
            _ => "an admin token (admin_tokens)".to_string(),
        };
        Err(Denied::Forbidden(format!(
            "this is {is}; this call needs {needs}"
        )))
    }
}

/// Why a caller may not in: 401 (no or unknown credentials) or 403 (wrong scope).
#[derive(Debug)]
enum Denied {
    Unauthorized(&'static str),
    Forbidden(String),
}

impl Denied {
    #[cfg(test)]
    fn code(&self) -> StatusCode {
        match self {
            Denied::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Denied::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    fn response(self) -> Response {
        match self {
            Denied::Unauthorized(msg) => unauthorized(msg),
            Denied::Forbidden(msg) => refuse(StatusCode::FORBIDDEN, &msg),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme in any case):
/// `Ok(None)` when there is no header, `Err` when it is not a bearer token.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, &'static str> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| "the Authorization header is not text")?
        .trim();
    match v.split_once([' ', '\t']) {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err("the Authorization header must carry a bearer token: \"Bearer <token>\""),
    }
}

/// The host part of a `Host` value (`name`, `name:port`, `[v6]:port`), lower case,
/// without a trailing dot.
fn host_name(raw: &str) -> String {
    let raw = raw.trim();
    let name = if let Some(rest) = raw.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Names no DNS rebinding can produce: `localhost`, `*.localhost` (browsers resolve
/// them to loopback themselves) and IP literals (a page's origin is then that address).
fn host_is_safe(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost") || name.parse::<IpAddr>().is_ok()
}

/// `Origin`'s `host[:port]` with the scheme's default port dropped.
fn origin_authority(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    let rest = rest.trim_end_matches('/').to_ascii_lowercase();
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => "",
    };
    Some(match rest.strip_suffix(default) {
        Some(r) if !default.is_empty() => r.to_string(),
        _ => rest,
    })
}

/// A browser request from another site: `Some(reason)`.
fn cross_site(headers: &HeaderMap) -> Option<String> {
    let h = |name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    if let Some(site) = h("sec-fetch-site") {
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return Some(format!("Sec-Fetch-Site is {site:?}"));
        }
    }
    let origin = h("origin")?;
    let host = h("host").map(|v| {
        let v = v.trim().to_ascii_lowercase();
        v.strip_suffix(":80").map(str::to_string).unwrap_or(v)
    });
    match (origin_authority(origin), host) {
        (Some(o), Some(host)) if o == host || o.strip_suffix(":443") == Some(host.as_str()) => None,
        _ => Some(format!("Origin {origin:?} is not this collector")),
    }
}

fn refuse(code: StatusCode, msg: &str) -> Response {
    (code, format!("{msg}\n")).into_response()
}

fn unauthorized(msg: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        format!("{msg}\n"),
    )
        .into_response()
}

/// The media type of `Content-Type` (before any parameter), lower case.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// The middleware: Host check, cross-site check, token, content type, in that order.
pub async fn guard(State(g): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path != "/healthz" && path != "/readyz" {
        if let Some(r) = g.check_host(req.headers(), req.uri().host()) {
            return r;
        }
    }
    let policy = classify(req.method(), path);
    let changes = !is_safe(req.method());
    if changes && matches!(policy.scope, Scope::Write | Scope::Admin) {
        if let Some(why) = cross_site(req.headers()) {
            return refuse(
                StatusCode::FORBIDDEN,
                &format!("cross-site request refused ({why}): writes and changes are not taken from web pages of other sites"),
            );
        }
    }
    let caller = match policy.scope {
        Scope::Public | Scope::Sentry => Caller { admin: false },
        s => match g.authorize(s, req.headers()) {
            Ok(c) => c,
            Err(d) => return d.response(),
        },
    };
    if changes && !policy.content_types.is_empty() {
        let got = media_type(req.headers());
        if !got
            .as_deref()
            .is_some_and(|m| policy.content_types.contains(&m))
        {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!(
                    "Content-Type must be {} (got {})",
                    policy.content_types.join(" or "),
                    got.map(|m| format!("{m:?}"))
                        .unwrap_or_else(|| "none".into())
                ),
            );
        }
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The `[auth]` section of the collector's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer tokens accepted on write endpoints.
    #[serde(default)]
    pub agent_tokens: Vec<String>,
    /// Bearer tokens accepted on read endpoints.
    #[serde(default)]
    pub read_tokens: Vec<String>,
    /// Bearer tokens for issue status changes, `/-/reload` and DSN keys; they may also
    /// read and write.
    #[serde(default)]
    pub admin_tokens: Vec<String>,
    /// Reads need no token (writes and admin calls still do); logged at WARN on every
    /// start.
    #[serde(default)]
    pub allow_anonymous_reads: bool,
    /// Host names (besides localhost and IP literals) that requests may be addressed to;
    /// checked on a loopback address always, elsewhere when set (DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl AuthConfig {
    /// True when no credential of any kind is configured (auth off).
    pub fn has_no_credentials(&self) -> bool {
        self.agent_tokens.is_empty() && self.read_tokens.is_empty() && self.admin_tokens.is_empty()
    }
}

/// Checks the `[auth]` section on its own (at load).
pub fn validate(auth: &AuthConfig) -> anyhow::Result<()> {
    for (name, list) in [
        ("agent_tokens", &auth.agent_tokens),
        ("read_tokens", &auth.read_tokens),
        ("admin_tokens", &auth.admin_tokens),
    ] {
        if list.iter().any(|t| t.trim().is_empty() || t.trim() != t) {
            bail!("[auth] {name}: a token is empty or has spaces around it");
        }
    }
    Ok(())
}

/// The address to bind, after the start-up rules, logging what they decided:
///
/// - no token at all: loopback only (a non-loopback address is replaced by
///   127.0.0.1, with a warning);
/// - a non-loopback address with tokens: needs `agent_tokens`, and `read_tokens` or
///   `allow_anonymous_reads = true`; else the start is refused, naming what to set.
pub fn listen_address(listen: SocketAddr, a: &AuthConfig) -> anyhow::Result<SocketAddr> {
    let mut addr = listen;
    if a.has_no_credentials() {
        if !addr.ip().is_loopback() {
            tracing::warn!(
                requested = %addr,
                "no agent_tokens or read_tokens configured: binding to loopback only; configure [auth] to listen on other interfaces"
            );
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        } else {
            tracing::info!(
                "no credentials configured: listening on loopback only, writes and reads need no token (Host and Origin are checked against web pages)"
            );
        }
        if a.allow_anonymous_reads {
            tracing::warn!("allow_anonymous_reads has no effect without tokens: auth is off");
        }
        return Ok(addr);
    }
    if !addr.ip().is_loopback() {
        let mut missing = Vec::new();
        if a.agent_tokens.is_empty() {
            missing.push("agent_tokens (writes)");
        }
        if a.read_tokens.is_empty() && !a.allow_anonymous_reads {
            missing.push("read_tokens (reads), or allow_anonymous_reads = true");
        }
        if !missing.is_empty() {
            bail!(
                "listen address {addr} is not loopback, and [auth] has no {}: a half-configured \
                 collector on a network address is refused. Set them in [auth], or listen on 127.0.0.1",
                missing.join(" and no ")
            );
        }
    }
    if a.allow_anonymous_reads {
        tracing::warn!(
            listen = %addr,
            "allow_anonymous_reads = true: anyone who can reach this address reads metrics, issues, agents and rules without a token"
        );
    }
    tracing::info!(
        agent_tokens = a.agent_tokens.len(),
        read_tokens = a.read_tokens.len(),
        admin_tokens = a.admin_tokens.len(),
        "auth on: every route but /healthz, /readyz, /metrics, / and Sentry ingest needs a token of its scope"
    );
    if a.admin_tokens.is_empty() {
        tracing::info!(
            "no admin_tokens: issue status changes, /-/reload and DSN keys over the API are closed"
        );
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn classify_names_every_scope() {
        let c = |m: Method, p: &str| classify(&m, p).scope;
        assert_eq!(c(Method::POST, "/api/v1/write"), Scope::Write);
        assert_eq!(c(Method::POST, "/v1/metrics"), Scope::Write);
        assert_eq!(
            c(Method::POST, "/api/calm/v1/agents/heartbeat"),
            Scope::Write
        );
        assert_eq!(c(Method::POST, "/-/reload"), Scope::Admin);
        assert_eq!(c(Method::PUT, "/api/calm/v1/issues/7"), Scope::Admin);
        assert_eq!(c(Method::PUT, "/api/calm/v1/issues"), Scope::Admin);
        assert_eq!(c(Method::GET, "/api/calm/v1/issues"), Scope::Read);
        assert_eq!(c(Method::GET, "/api/calm/v1/issues/7"), Scope::Read);
        assert_eq!(c(Method::POST, "/api/1/envelope/"), Scope::Sentry);
        assert_eq!(c(Method::POST, "/api/12/store"), Scope::Sentry);
        assert_eq!(c(Method::POST, "/api/web/envelope/"), Scope::Sentry);
        assert_eq!(c(Method::POST, "/api/1/2/envelope/"), Scope::Read);
        assert_eq!(c(Method::POST, "/api/v1/query"), Scope::Read);
        assert_eq!(c(Method::GET, "/nowhere"), Scope::Read);
        assert_eq!(c(Method::GET, "/healthz"), Scope::Public);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER  abc "] {
            assert_eq!(bearer(&headers(&[("authorization", v)])), Ok(Some("abc")));
        }
        assert!(bearer(&headers(&[("authorization", "Basic abc")])).is_err());
        assert!(bearer(&headers(&[("authorization", "Bearer")])).is_err());
        assert_eq!(bearer(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn hosts_and_origins() {
        assert_eq!(host_name("LocalHost.:9400"), "localhost");
        assert_eq!(host_name("[::1]:9400"), "::1");
        assert!(host_is_safe("127.0.0.1") && host_is_safe("::1") && host_is_safe("a.localhost"));
        assert!(!host_is_safe("evil.example") && !host_is_safe("localhost.evil.example"));
        let same = headers(&[
            ("origin", "http://127.0.0.1:9400"),
            ("host", "127.0.0.1:9400"),
        ]);
        assert_eq!(cross_site(&same), None);
        let dflt = headers(&[("origin", "http://localhost"), ("host", "localhost:80")]);
        assert_eq!(cross_site(&dflt), None);
        let evil = headers(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:9400"),
        ]);
        assert!(cross_site(&evil).is_some());
        assert!(cross_site(&headers(&[("origin", "null"), ("host", "x")])).is_some());
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])).is_some());
        assert_eq!(cross_site(&headers(&[("sec-fetch-site", "none")])), None);
        assert_eq!(cross_site(&HeaderMap::new()), None);
    }

    #[test]
    fn tokens_match_in_their_scope_only() {
        let cfg = AuthConfig {
            agent_tokens: vec!["w".into()],
            read_tokens: vec!["r".into()],
            admin_tokens: vec!["a".into()],
            ..Default::default()
        };
        let g = Guard::new(&cfg, "127.0.0.1:1".parse().unwrap());
        let with = |t: &str| headers(&[("authorization", &format!("Bearer {t}"))]);
        let status = |s: Scope, t: &str| match g.authorize(s, &with(t)) {
            Ok(_) => 200,
            Err(d) => d.code().as_u16(),
        };
        assert_eq!(status(Scope::Write, "w"), 200);
        assert_eq!(status(Scope::Write, "r"), 403);
        assert_eq!(status(Scope::Read, "w"), 403);
        assert_eq!(status(Scope::Read, "r"), 200);
        assert_eq!(status(Scope::Admin, "r"), 403);
        assert_eq!(status(Scope::Admin, "a"), 200);
        assert_eq!(status(Scope::Write, "a"), 200);
        assert_eq!(status(Scope::Read, "nope"), 401);
        assert_eq!(status(Scope::Read, "r "), 200, "trailing space trimmed");
        assert!(!contains(&g.read, b"rr"));
    }
}
