//! The collector's built-in UI: a small Preact + uPlot app, bundled by esbuild from
//! `collector/ui/src` into `collector/ui/dist` (committed, so a build needs only cargo)
//! and embedded in the binary here.
//!
//! ```text
//! GET /  /fleet  /explore  /graph  /hosts/{host}  /issues  /issues/{id}  /alerts  /rules
//!                         the app's page (one HTML shell; the app reads the path)
//! GET /ui/app.js  /ui/app.css  /favicon.ico
//! GET /ui/editor.js      the explorer's CodeMirror PromQL editor, loaded on first use
//! GET /ui/issues/{id} → 308 /issues/{id}   (the issue links error alerts send); /ui → /
//! ```
//!
//! Every answer carries a strict Content-Security-Policy (`default-src 'self'`, no inline
//! script or style element), `X-Content-Type-Options: nosniff`, an ETag (304 on
//! `If-None-Match`) and `Cache-Control: no-cache` (revalidate; a new binary serves new
//! bytes under a new ETag). Assets are gzip-compressed once, on first use, and served
//! compressed to clients that accept it. The shell holds no data: the pages fetch the
//! API (with its own token checks), and render text only through Preact's escaping.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
pub mod session;

use std::io::Write;
use std::sync::OnceLock;

/// The Content-Security-Policy of every UI answer. `style-src 'self'` still lets the
/// app set `element.style` from script (CSSOM), which uPlot and Preact do, and build
/// constructed stylesheets (`adoptedStyleSheets`), which is how CodeMirror styles the
/// explorer's editor: it lives in a shadow root, where CodeMirror adds no `<style>`
/// element, so neither a nonce nor `'unsafe-inline'` is needed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
    gzip: OnceLock<Option<Vec<u8>>>,
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(bytes: &'static [u8], content_type: &'static str) -> Asset {
        Asset {
            bytes,
            content_type,
            gzip: OnceLock::new(),
            etag: OnceLock::new(),
        }
    }

    fn etag(&self) -> &str {
        self.etag
            .get_or_init(|| format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(self.bytes)))
    }

    /// The gzip form, when it is smaller.
    fn gzip(&self) -> Option<&[u8]> {
        self.gzip
            .get_or_init(|| {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                enc.write_all(self.bytes).ok()?;
                let out = enc.finish().ok()?;
                (out.len() < self.bytes.len()).then_some(out)
            })
            .as_deref()
    }
}

static INDEX: Asset = Asset::new(
    include_bytes!("../../ui/dist/index.html"),
    "text/html; charset=utf-8",
);
static APP_JS: Asset = Asset::new(
    include_bytes!("../../ui/dist/app.js"),
    "text/javascript; charset=utf-8",
);
static EDITOR_JS: Asset = Asset::new(
    include_bytes!("../../ui/dist/editor.js"),
    "text/javascript; charset=utf-8",
);
static APP_CSS: Asset = Asset::new(
    include_bytes!("../../ui/dist/app.css"),
    "text/css; charset=utf-8",
);
static FAVICON: Asset = Asset::new(include_bytes!("../../ui/dist/favicon.svg"), "image/svg+xml");

/// The page routes (served the app's shell), its assets, and the login endpoint
/// ([`session`]) that takes a read or admin token.
pub fn routes(auth: &crate::auth::AuthConfig) -> Router {
    let tokens = auth
        .read_tokens
        .iter()
        .chain(&auth.admin_tokens)
        .cloned()
        .collect();
    let mut r = session::routes(tokens)
        .route(
            "/ui/app.js",
            get(|h: HeaderMap| async move { serve(&APP_JS, &h) }),
        )
        .route(
            "/ui/editor.js",
            get(|h: HeaderMap| async move { serve(&EDITOR_JS, &h) }),
        )
        .route(
            "/ui/app.css",
            get(|h: HeaderMap| async move { serve(&APP_CSS, &h) }),
        )
        .route(
            "/favicon.ico",
            get(|h: HeaderMap| async move { serve(&FAVICON, &h) }),
        );
    for page in PAGES {
        r = r.route(page, get(|h: HeaderMap| async move { serve(&INDEX, &h) }));
    }
    // Issue links in error alerts (`<external_url>/ui/issues/<id>`) and `/ui`.
    r.route(
        "/ui/issues/{id}",
        get(|Path(id): Path<String>| async move {
            Redirect::permanent(&format!("/issues/{}", path_segment(&id)))
        }),
    )
    .route("/ui", get(|| async { Redirect::permanent("/") }))
    .route("/ui/", get(|| async { Redirect::permanent("/") }))
}

/// The paths the app answers (its router knows the same list).
pub const PAGES: &[&str] = &[
    "/",
    "/fleet",
    "/explore",
    "/graph",
    "/hosts/{host}",
    "/issues",
    "/issues/{id}",
    "/alerts",
    "/rules",
];

/// `s` percent-encoded as one path segment (also the cookie value's encoding).
pub(super) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `path` is one of the UI's own routes, which hold no data and need no token
/// (the pages fetch the API, which checks its own scope): the shell, its assets, the
/// `/ui/…` redirects, and the login endpoint.
pub fn is_public(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    if path == "/api/calm/v1/session" {
        return true;
    }
    if *method != Method::GET && *method != Method::HEAD {
        return false;
    }
    let one_segment = |rest: &str| !rest.is_empty() && !rest.contains('/');
    matches!(
        path,
        "/" | "/fleet"
            | "/explore"
            | "/graph"
            | "/issues"
            | "/alerts"
            | "/rules"
            | "/favicon.ico"
            | "/ui"
            | "/ui/"
            | "/ui/app.js"
            | "/ui/editor.js"
            | "/ui/app.css"
    ) || path.strip_prefix("/hosts/").is_some_and(one_segment)
        || path.strip_prefix("/issues/").is_some_and(one_segment)
        || path.strip_prefix("/ui/issues/").is_some_and(one_segment)
}

fn accepts_gzip(h: &HeaderMap) -> bool {
    h.get_all(header::ACCEPT_ENCODING).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|part| {
                let mut it = part.split(';');
                let name = it.next().unwrap_or("").trim();
                let q_zero = it.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q == 0.0)
                });
                (name.eq_ignore_ascii_case("gzip") || name == "*") && !q_zero
            })
        })
    })
}

fn serve(a: &'static Asset, h: &HeaderMap) -> Response {
    let gz = if accepts_gzip(h) { a.gzip() } else { None };
    let etag = match gz {
        Some(_) => format!("{}-gz\"", a.etag().trim_end_matches('"')),
        None => a.etag().to_string(),
    };
    let mut headers = HeaderMap::new();
    let set = |hm: &mut HeaderMap, k: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            hm.insert(k, v);
        }
    };
    set(&mut headers, header::CONTENT_TYPE, a.content_type);
    set(&mut headers, header::ETAG, &etag);
    set(&mut headers, header::CACHE_CONTROL, "no-cache");
    set(&mut headers, header::VARY, "Accept-Encoding");
    set(&mut headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(&mut headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut headers, header::REFERRER_POLICY, "same-origin");
    set(&mut headers, header::X_FRAME_OPTIONS, "DENY");
    let matches = h
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    match gz {
        Some(body) => {
            set(&mut headers, header::CONTENT_ENCODING, "gzip");
            (headers, body).into_response()
        }
        None => (headers, a.bytes).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_paths_are_the_ui_only() {
        use axum::http::Method;
        for p in [
            "/",
            "/fleet",
            "/hosts/web-1",
            "/issues/12",
            "/ui/app.js",
            "/ui/editor.js",
            "/ui/issues/3",
        ] {
            assert!(is_public(&Method::GET, p), "{p}");
        }
        for p in [
            "/api/v1/query",
            "/api/calm/v1/issues/1",
            "/hosts/a/b",
            "/issues/",
            "/metricsx",
        ] {
            assert!(!is_public(&Method::GET, p), "{p}");
        }
        assert!(!is_public(&Method::PUT, "/issues/1"));
        assert!(is_public(&Method::POST, "/api/calm/v1/session"));
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("12"), "12");
        assert_eq!(path_segment("a/b c?<"), "a%2Fb%20c%3F%3C");
    }

    #[test]
    fn gzip_negotiation() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0.8"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0, br"),
        );
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn assets_compress_and_have_stable_etags() {
        assert!(APP_JS.gzip().is_some_and(|g| g.len() < APP_JS.bytes.len()));
        assert_eq!(APP_JS.etag(), APP_JS.etag());
        assert_ne!(APP_JS.etag(), APP_CSS.etag());
    }
}
