//! The outermost layer of every request: its request id (a client's sane
//! `X-Request-Id`, else a new one, returned on every answer), the span the
//! rest of its handling logs in, the one access log line (target
//! `sandbox::access`) and the count of answers by status code for
//! `/metrics`.
//!
//! Outermost so that every answer goes through it: 401 (authentication),
//! 404/405 (routing), 413 and 429 (handlers) alike. Answers hyper gives on
//! its own (a malformed request line, a header timeout) never reach a
//! service and are not logged here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::AppState;

/// The request id header, in and out.
pub(crate) const X_REQUEST_ID: &str = "x-request-id";

/// Longest client request id kept.
const MAX_ID: usize = 128;

/// Longest path written to the log (a long one is cut: the log line stays
/// one line of bounded size whatever a client sends).
const MAX_PATH: usize = 256;

/// A client's request id, if it is one we can log and echo as it is: 1 to
/// 128 characters of `[A-Za-z0-9._:-]` (nothing that could forge a log
/// field or split a header).
pub(crate) fn sane_id(v: &HeaderValue) -> Option<&str> {
    let b = v.as_bytes();
    let ok = (1..=MAX_ID).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'));
    // All ASCII, so the conversion cannot fail.
    ok.then(|| v.to_str().ok()).flatten()
}

/// The path as logged: no query string (it may carry secrets), cut at
/// [`MAX_PATH`] bytes (a URI path is ASCII, so any cut is a char boundary,
/// but the check costs nothing).
fn logged_path(path: &str) -> &str {
    if path.len() <= MAX_PATH {
        return path;
    }
    let mut end = MAX_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// Answers given since start, by status code.
#[derive(Default)]
pub(crate) struct HttpCounters {
    codes: Mutex<BTreeMap<u16, u64>>,
}

impl HttpCounters {
    fn count(&self, code: u16) {
        let mut m = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(code).or_default() += 1;
    }

    /// (code, answers) in code order.
    pub(crate) fn snapshot(&self) -> Vec<(u16, u64)> {
        let m = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(c, n)| (*c, *n)).collect()
    }
}

/// The middleware (see the module docs).
pub(crate) async fn access(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(sane_id)
        .map_or_else(crate::job::queue::new_id, String::from);
    let method = req.method().clone();
    let path = logged_path(req.uri().path()).to_string();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    // Every line logged while handling the request (a job's span made in
    // it too) carries its id.
    let span = tracing::info_span!("request", request_id = %id);
    let mut res = next.run(req).instrument(span).await;
    let status = res.status().as_u16();
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(X_REQUEST_ID, v);
    }
    st.http.count(status);
    let ms = (t0.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    let peer = peer.map_or_else(|| "-".to_string(), |p| p.to_string());
    tracing::info!(
        target: "sandbox::access",
        request_id = %id,
        method = %method,
        path = %path,
        status,
        ms,
        peer = %peer,
        "request"
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_ids_are_kept() {
        let ok = |s: &str| sane_id(&HeaderValue::from_str(s).expect("header")).is_some();
        assert!(ok("a"));
        assert!(ok("Req-1.2_3:4"));
        assert!(ok(&"x".repeat(128)));
        assert!(!ok(""));
        assert!(!ok(&"x".repeat(129)));
        assert!(!ok("has space"));
        assert!(!ok("quote\"d"));
        assert!(!ok("a=b"));
        assert!(!ok("ünïcode"));
        let raw = HeaderValue::from_bytes(b"caf\xc3\xa9").expect("header");
        assert!(sane_id(&raw).is_none());
    }

    #[test]
    fn logged_paths_are_bounded() {
        assert_eq!(logged_path("/v1/jobs"), "/v1/jobs");
        let long = format!("/{}", "a".repeat(1000));
        assert_eq!(logged_path(&long).len(), MAX_PATH);
    }

    #[test]
    fn counters_by_code() {
        let c = HttpCounters::default();
        for code in [404, 200, 200, 429] {
            c.count(code);
        }
        assert_eq!(c.snapshot(), vec![(200, 2), (404, 1), (429, 1)]);
    }
}
