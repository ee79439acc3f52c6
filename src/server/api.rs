//! Routes and handlers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::{AppState, profile_names, views};
use crate::job;
use crate::job::queue::{LookupError, SubmitError};
use crate::profile;

/// An error response: `{"error": "...", "field": "files[2].path"}`.
pub(crate) struct ApiError {
    status: StatusCode,
    error: String,
    field: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            field: None,
            retry_after: None,
        }
    }
    /// Names the offending field (or header).
    pub(super) fn with_field(self, field: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field.into()),
            ..self
        }
    }
    /// Adds `Retry-After: secs`.
    pub(super) fn with_retry_after(self, secs: u64) -> ApiError {
        ApiError {
            retry_after: Some(secs),
            ..self
        }
    }
    fn field(e: job::FieldError) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: e.message,
            field: Some(e.field),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.error});
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// The API's routes, with `more` (routes of other files, under the same
/// authentication) merged in.
pub(crate) fn router(state: Arc<AppState>, more: Router<Arc<AppState>>) -> Router {
    let max_body = state.cfg.max_body;
    Router::new()
        .merge(more)
        .route("/v1/jobs", axum::routing::post(submit))
        .route("/v1/jobs/{id}", get(get_job).delete(cancel_job))
        .route("/v1/profiles", get(list_profiles))
        .route("/v1/profiles/{name}", get(get_profile))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(max_body))
        // Last, so outermost: every answer gets an id and a log line.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::access::access,
        ))
        .with_state(state)
}

/// Constant-time equality (length is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut d = 0u8;
    for (x, y) in a.iter().zip(b) {
        d |= x ^ y;
    }
    // Keep the optimiser from short-circuiting the fold.
    std::hint::black_box(d) == 0
}

async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.cfg.token {
        // Judge0 clients send the token as `X-Auth-Token`.
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| {
                req.headers()
                    .get("x-auth-token")
                    .and_then(|v| v.to_str().ok())
            })
            .map(str::trim);
        let ok = given.is_some_and(|g| ct_eq(g.as_bytes(), token.as_bytes()));
        if !ok {
            let msg = if given.is_none() {
                "missing bearer token (Authorization: Bearer <token>, or X-Auth-Token: <token>)"
            } else {
                "invalid token"
            };
            return ApiError::new(StatusCode::UNAUTHORIZED, msg).into_response();
        }
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn healthz(State(st): State<Arc<AppState>>) -> Response {
    if !st.jobs.accepting() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    // A few stats: what jobs need (work directory, cgroups) is still there.
    let failed = st.jobs.health();
    if !failed.is_empty() {
        tracing::warn!(failed = ?failed, "health check failed");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unhealthy", "failed": failed})),
        )
            .into_response();
    }
    axum::Json(json!({"status": "ok"})).into_response()
}

/// The job request in `body`. The body and its JSON tree (each as large as
/// the request) are freed on return, not held by a `wait=true` client's
/// task until its job has run.
fn parse_body(body: Bytes, caps: &job::Caps) -> Result<job::JobSpec, ApiError> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))?;
    drop(body);
    job::parse_request(&v, caps).map_err(ApiError::field)
}

async fn submit(
    State(st): State<Arc<AppState>>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError {
        field: Some("query".into()),
        ..ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
    })?;
    // A body trickled in byte by byte must not hold a connection (and a
    // task) for ever: it has --body-timeout once the headers are in.
    let limit = st.cfg.max_body;
    let body = match tokio::time::timeout(st.cfg.body_timeout, Bytes::from_request(req, &())).await
    {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {:.1} s",
                    st.cfg.body_timeout.as_secs_f64()
                ),
            ));
        }
        Ok(b) => b.map_err(|e: BytesRejection| {
            let s = e.status();
            let msg = if s == StatusCode::PAYLOAD_TOO_LARGE {
                format!("request body larger than {limit} bytes")
            } else {
                e.body_text()
            };
            ApiError::new(s, msg)
        })?,
    };
    let wait = match q.get("wait").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(_) => {
            return Err(ApiError {
                field: Some("wait".into()),
                ..ApiError::new(StatusCode::BAD_REQUEST, "expected true or false")
            });
        }
    };
    if !st.jobs.accepting() {
        return Err(shutting_down());
    }
    let spec = parse_body(body, &st.cfg.caps)?;
    // Submitted inside the request's span: the job's span is its child, so
    // every line about the job carries the request id too.
    let mut job = st.jobs.submit(spec).map_err(|e| {
        if let SubmitError::QueueFull { capacity, .. } = &e {
            // No job id here: the job was never the client's.
            tracing::info!(capacity, "job refused (429): queue full");
        }
        submit_error(e)
    })?;
    // In the job's span as the current one (not just as the event's
    // parent): the JSON format lists the current spans.
    job.span.in_scope(|| tracing::info!(wait, "job queued"));
    if !wait {
        let id = &job.id;
        let loc = HeaderValue::from_str(&format!("/v1/jobs/{id}")).ok();
        let mut r = (
            StatusCode::ACCEPTED,
            axum::Json(json!({"id": id, "status": "queued"})),
        )
            .into_response();
        if let Some(l) = loc {
            r.headers_mut().insert(header::LOCATION, l);
        }
        return Ok(r);
    }
    let j = job.watch.finished().await;
    Ok(axum::Json(views::job_json(&j)).into_response())
}

fn shutting_down() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is shutting down",
    )
}

/// The answer to a job the backend did not take.
fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::ShuttingDown => shutting_down(),
        SubmitError::UnknownProfile(name) => ApiError::field(job::FieldError::new(
            "profile",
            format!("unknown profile {name:?} (see GET /v1/profiles)"),
        )),
        SubmitError::Invalid(e) => ApiError::field(e),
        SubmitError::QueueFull { retry_after, .. } => ApiError {
            retry_after: Some(retry_after.as_secs().max(1)),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
        },
        e @ (SubmitError::Profile(_) | SubmitError::Pipe(_)) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// The answer to an id the backend does not know: 410 if its results
/// were evicted (so a client can tell that from a typo), 404 if it is
/// unknown or expired.
pub(super) fn lookup_error(id: &str, e: LookupError) -> ApiError {
    match e {
        LookupError::Evicted { budget } => ApiError::new(
            StatusCode::GONE,
            format!(
                "job {id:?} has finished, but its results were evicted because the server's \
                 results budget (--results-budget {}) was full; fetch results sooner, submit \
                 with ?wait=true, or ask the operator to raise --results-budget",
                profile::units::format_size(budget)
            ),
        ),
        LookupError::NotFound => ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no job {id:?} (unknown or expired)"),
        ),
    }
}

async fn get_job(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let j = st.jobs.get(&id).map_err(|e| lookup_error(&id, e))?;
    Ok(axum::Json(views::job_json(&j)).into_response())
}

async fn cancel_job(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut w = st.jobs.cancel(&id).map_err(|e| lookup_error(&id, e))?;
    // A running job ends within moments: wait briefly so the answer is final.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), w.finished()).await;
    Ok(axum::Json(views::job_json(&w.snapshot())).into_response())
}

async fn list_profiles() -> Response {
    let list: Vec<Value> = profile_names()
        .into_iter()
        .map(|n| match profile::load(&n) {
            Ok(p) => json!({"name": n, "description": p.description}),
            Err(e) => json!({"name": n, "error": e.to_string()}),
        })
        .collect();
    axum::Json(json!({"profiles": list})).into_response()
}

async fn get_profile(Path(name): Path<String>) -> Result<Response, ApiError> {
    if !profile_names().contains(&name) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no profile {name:?}"),
        ));
    }
    let p = profile::load(&name)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(axum::Json(views::profile_json(&p)).into_response())
}

async fn openapi() -> Response {
    axum::Json(super::openapi::document()).into_response()
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let mut text = super::metrics::render(&st.jobs.metrics());
    let max = st.cfg.max_event_streams;
    let open = max.saturating_sub(st.event_streams.available_permits());
    super::metrics::render_streams(&mut text, open, max);
    super::metrics::render_http(&mut text, &st.http.snapshot());
    super::metrics::render_process(&mut text);
    super::metrics::render_build_info(&mut text);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
