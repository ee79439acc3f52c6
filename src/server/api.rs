//! Routes and handlers. Each handler carries its OpenAPI operation
//! (`#[utoipa::path]`: parameters, every status it answers and its body
//! type), gathered into the document by `openapi.rs`.

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
use serde_json::Value;

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
        let body = views::ErrorBody {
            error: self.error,
            field: self.field,
        };
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

/// A 410's description: the results of a finished job were evicted.
pub(super) const EVICTED: &str = "The job finished, but its results were evicted to stay within --results-budget (the error names the flag and its value)";

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

/// Liveness and readiness (no authentication).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "server",
    responses(
        (status = 200, description = "Healthy: `{\"status\":\"ok\"}`", body = views::Health),
        (status = 503, description = "Shutting down (`shutting_down`), or something jobs need is missing (`unhealthy`, with `failed`)", body = views::Health),
    )
)]
pub(super) async fn healthz(State(st): State<Arc<AppState>>) -> Response {
    if !st.jobs.accepting() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(views::Health {
                status: "shutting_down",
                failed: None,
            }),
        )
            .into_response();
    }
    // A few stats: what jobs need (work directory, cgroups) is still there.
    let failed = st.jobs.health();
    if !failed.is_empty() {
        tracing::warn!(failed = ?failed, "health check failed");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(views::Health {
                status: "unhealthy",
                failed: Some(failed),
            }),
        )
            .into_response();
    }
    axum::Json(views::Health {
        status: "ok",
        failed: None,
    })
    .into_response()
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

/// Submit a job.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    params(("wait" = Option<bool>, Query, description = "true: answer when the job has finished (200 with the job)")),
    request_body = job::wire::JobRequest,
    responses(
        (status = 200, description = "wait=true: the finished job", body = views::JobView),
        (status = 202, description = "Queued", body = views::Queued,
            headers(("Location" = String, description = "The job's URL: /v1/jobs/{id}"))),
        (status = 400, description = "Invalid request; `field` names the offending field (`steps[0].command[1]`), or `wait`", body = views::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = views::ErrorBody),
        (status = 408, description = "Body not received within --body-timeout", body = views::ErrorBody),
        (status = 413, description = "Body larger than --max-body", body = views::ErrorBody),
        (status = 429, description = "Queue full; retry after the Retry-After seconds", body = views::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 503, description = "Shutting down", body = views::ErrorBody),
    )
)]
pub(super) async fn submit(
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
            axum::Json(views::Queued {
                id: id.clone(),
                status: "queued",
            }),
        )
            .into_response();
        if let Some(l) = loc {
            r.headers_mut().insert(header::LOCATION, l);
        }
        return Ok(r);
    }
    let j = job.watch.finished().await;
    Ok(axum::Json(views::JobView::of(&j)).into_response())
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

/// A job with its results so far.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = views::JobView),
        (status = 401, description = "Missing or wrong bearer token", body = views::ErrorBody),
        (status = 404, description = "Unknown or expired job", body = views::ErrorBody),
        (status = 410, description = EVICTED, body = views::ErrorBody),
    )
)]
pub(super) async fn get_job(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let j = st.jobs.get(&id).map_err(|e| lookup_error(&id, e))?;
    Ok(axum::Json(views::JobView::of(&j)).into_response())
}

/// Cancel a job (kills its running step).
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job after cancellation (status cancelled, or completed if it had already finished)", body = views::JobView),
        (status = 401, description = "Missing or wrong bearer token", body = views::ErrorBody),
        (status = 404, description = "Unknown or expired job", body = views::ErrorBody),
        (status = 410, description = EVICTED, body = views::ErrorBody),
    )
)]
pub(super) async fn cancel_job(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut w = st.jobs.cancel(&id).map_err(|e| lookup_error(&id, e))?;
    // A running job ends within moments: wait briefly so the answer is final.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), w.finished()).await;
    Ok(axum::Json(views::JobView::of(&w.snapshot())).into_response())
}

/// The profiles jobs may name.
#[utoipa::path(
    get,
    path = "/v1/profiles",
    tag = "profiles",
    responses(
        (status = 200, description = "Profiles", body = views::ProfileList),
        (status = 401, description = "Missing or wrong bearer token", body = views::ErrorBody),
    )
)]
pub(super) async fn list_profiles() -> Response {
    let profiles = profile_names()
        .into_iter()
        .map(|name| match profile::load(&name) {
            Ok(p) => views::ProfileEntry {
                name,
                description: Some(p.description),
                error: None,
            },
            Err(e) => views::ProfileEntry {
                name,
                description: None,
                error: Some(e.to_string()),
            },
        })
        .collect();
    axum::Json(views::ProfileList { profiles }).into_response()
}

/// A resolved profile.
#[utoipa::path(
    get,
    path = "/v1/profiles/{name}",
    tag = "profiles",
    params(("name" = String, Path, description = "The profile's name")),
    responses(
        (status = 200, description = "The resolved profile: namespaces, filesystem, process, capabilities, seccomp, limits", body = views::ProfileView),
        (status = 401, description = "Missing or wrong bearer token", body = views::ErrorBody),
        (status = 404, description = "Unknown profile", body = views::ErrorBody),
    )
)]
pub(super) async fn get_profile(Path(name): Path<String>) -> Result<Response, ApiError> {
    if !profile_names().contains(&name) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no profile {name:?}"),
        ));
    }
    let p = profile::load(&name)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(axum::Json(views::ProfileView::of(&p)).into_response())
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "server",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object),
        (status = 401, description = "Missing or wrong bearer token", body = views::ErrorBody),
    )
)]
pub(super) async fn openapi() -> Response {
    axum::Json(super::openapi::document()).into_response()
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "server",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or wrong bearer token", body = views::ErrorBody),
    )
)]
pub(super) async fn metrics(State(st): State<Arc<AppState>>) -> Response {
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
