//! Routes and handlers.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{AppState, BUCKETS, Job, JobState, JobStatus, lock, new_id, profile_names, views};
use crate::job::{self, request::effective_limits};
use crate::profile;

/// An error response: `{"error": "...", "field": "files[2].path"}`.
pub(crate) struct ApiError {
    status: StatusCode,
    error: String,
    field: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            field: None,
            retry_after: None,
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

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let max_body = state.cfg.max_body;
    Router::new()
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
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = given.is_some_and(|g| ct_eq(g.as_bytes(), token.as_bytes()));
        if !ok {
            let msg = if given.is_none() {
                "missing bearer token (Authorization: Bearer <token>)"
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
    if st.shutting_down.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    axum::Json(json!({"status": "ok"})).into_response()
}

fn ts(t: Option<SystemTime>) -> Value {
    match t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        Some(d) => json!(d.as_secs_f64()),
        None => Value::Null,
    }
}

fn job_json(job: &Job) -> Value {
    let st = lock(&job.state);
    let mut v = json!({
        "id": job.id,
        "status": st.status.as_str(),
        "profile": job.profile,
        "created_at": ts(Some(job.created_at)),
        "started_at": ts(st.started_at),
        "finished_at": ts(st.finished_at),
        "steps": st.outcome.steps_json(),
        "outputs": st.outcome.outputs_json(),
    });
    if let (Some(s), Some(f)) = (st.started, st.finished) {
        v["duration_ms"] = json!(f.duration_since(s).as_secs_f64() * 1e3);
    }
    v["queue_ms"] = json!(
        st.started
            .unwrap_or_else(Instant::now)
            .duration_since(job.created)
            .as_secs_f64()
            * 1e3
    );
    if let Some(e) = &st.error {
        v["error"] = json!(e);
    }
    v
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
    if st.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        ));
    }
    let spec = parse_body(body, &st.cfg.caps)?;
    if !profile_names().contains(&spec.profile) {
        return Err(ApiError::field(job::FieldError::new(
            "profile",
            format!("unknown profile {:?} (see GET /v1/profiles)", spec.profile),
        )));
    }
    let sb = st
        .sandbox(&spec.profile)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let limits = spec
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            effective_limits(
                &sb.profile.limits,
                &st.cfg.caps.max_limits,
                &s.limits,
                &format!("steps[{i}].limits"),
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::field)?;
    let (cr, cw) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("pipe: {e}")))?;
    let id = new_id();
    let (done, mut done_rx) = watch::channel(false);
    let job = Arc::new(Job {
        span: tracing::info_span!("job", id = %id),
        id: id.clone(),
        profile: spec.profile.clone(),
        limits,
        created: Instant::now(),
        created_at: SystemTime::now(),
        state: Mutex::new(JobState {
            spec: Some(spec),
            status: JobStatus::Queued,
            outcome: Default::default(),
            started: None,
            finished: None,
            started_at: None,
            finished_at: None,
            error: None,
            cancel_r: Some(cr),
            cancel_w: Some(cw),
        }),
        done,
    });
    // Registered before it can run, so a fast job is never missing.
    lock(&st.jobs).insert(id.clone(), job.clone());
    st.metrics.queued.fetch_add(1, Ordering::Relaxed);
    let sent = match lock(&st.tx).as_ref() {
        Some(tx) => tx.try_send(job.clone()).is_ok(),
        None => false,
    };
    if !sent {
        st.metrics.queued.fetch_sub(1, Ordering::Relaxed);
        st.metrics.rejected.fetch_add(1, Ordering::Relaxed);
        lock(&st.jobs).remove(&id);
        tracing::info!(parent: &job.span, "rejected: queue full");
        return Err(ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "the queue is full ({} jobs waiting); retry later",
                    st.cfg.queue
                ),
            )
        });
    }
    st.metrics.submitted.fetch_add(1, Ordering::Relaxed);
    tracing::info!(parent: &job.span, wait, "job queued");
    if !wait {
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
    let _ = done_rx.wait_for(|d| *d).await;
    Ok(axum::Json(job_json(&job)).into_response())
}

/// The job `id`; 410 if its results were evicted (so a client can tell
/// that from a typo), 404 if it is unknown or expired.
fn lookup(st: &AppState, id: &str) -> Result<Arc<Job>, ApiError> {
    if let Some(job) = st.get(id) {
        return Ok(job);
    }
    let results = lock(&st.results);
    if results.was_evicted(id) {
        return Err(ApiError::new(
            StatusCode::GONE,
            format!(
                "job {id:?} has finished, but its results were evicted because the server's \
                 results budget (--results-budget {}) was full; fetch results sooner, submit \
                 with ?wait=true, or ask the operator to raise --results-budget",
                profile::units::format_size(results.budget())
            ),
        ));
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no job {id:?} (unknown or expired)"),
    ))
}

async fn get_job(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = lookup(&st, &id)?;
    Ok(axum::Json(job_json(&job)).into_response())
}

async fn cancel_job(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = lookup(&st, &id)?;
    job.cancel(&st);
    // A running job ends within moments: wait briefly so the answer is final.
    let mut rx = job.done.subscribe();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), rx.wait_for(|d| *d)).await;
    Ok(axum::Json(job_json(&job)).into_response())
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
    use std::fmt::Write;
    let m = &st.metrics;
    let mut counts = [0u64; 4];
    for j in lock(&st.jobs).values() {
        let s = lock(&j.state).status;
        counts[s as usize] += 1;
    }
    let mut o = String::new();
    let g = |o: &mut String, name: &str, help: &str, kind: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    g(
        &mut o,
        "sandbox_jobs",
        "Jobs currently known to the server, by status.",
        "gauge",
    );
    for s in [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Cancelled,
    ] {
        let _ = writeln!(
            o,
            "sandbox_jobs{{status=\"{}\"}} {}",
            s.as_str(),
            counts[s as usize]
        );
    }
    g(
        &mut o,
        "sandbox_jobs_finished_total",
        "Jobs finished since start, by final status.",
        "counter",
    );
    let _ = writeln!(
        o,
        "sandbox_jobs_finished_total{{status=\"completed\"}} {}",
        m.completed.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        o,
        "sandbox_jobs_finished_total{{status=\"cancelled\"}} {}",
        m.cancelled.load(Ordering::Relaxed)
    );
    g(
        &mut o,
        "sandbox_jobs_submitted_total",
        "Jobs accepted into the queue.",
        "counter",
    );
    let _ = writeln!(
        o,
        "sandbox_jobs_submitted_total {}",
        m.submitted.load(Ordering::Relaxed)
    );
    g(
        &mut o,
        "sandbox_jobs_rejected_total",
        "Jobs refused with 429 (queue full).",
        "counter",
    );
    let _ = writeln!(
        o,
        "sandbox_jobs_rejected_total {}",
        m.rejected.load(Ordering::Relaxed)
    );
    g(
        &mut o,
        "sandbox_queue_depth",
        "Jobs waiting for a worker.",
        "gauge",
    );
    let _ = writeln!(
        o,
        "sandbox_queue_depth {}",
        m.queued.load(Ordering::Relaxed)
    );
    g(
        &mut o,
        "sandbox_queue_capacity",
        "Maximum jobs waiting (--queue).",
        "gauge",
    );
    let _ = writeln!(o, "sandbox_queue_capacity {}", st.cfg.queue);
    g(
        &mut o,
        "sandbox_jobs_running",
        "Jobs being executed.",
        "gauge",
    );
    let _ = writeln!(
        o,
        "sandbox_jobs_running {}",
        m.running.load(Ordering::Relaxed)
    );
    g(
        &mut o,
        "sandbox_workers",
        "Concurrent job executors (--workers).",
        "gauge",
    );
    let _ = writeln!(o, "sandbox_workers {}", st.cfg.workers);
    let (held, budget, evicted) = {
        let r = lock(&st.results);
        (r.held(), r.budget(), r.evictions())
    };
    g(
        &mut o,
        "sandbox_results_bytes",
        "Bytes held by the results of finished jobs (captured output, copied-out files).",
        "gauge",
    );
    let _ = writeln!(o, "sandbox_results_bytes {held}");
    g(
        &mut o,
        "sandbox_results_budget_bytes",
        "Most bytes the results of finished jobs may hold (--results-budget).",
        "gauge",
    );
    let _ = writeln!(o, "sandbox_results_budget_bytes {budget}");
    g(
        &mut o,
        "sandbox_results_evicted_total",
        "Finished jobs whose results were evicted, oldest first, to stay within --results-budget.",
        "counter",
    );
    let _ = writeln!(o, "sandbox_results_evicted_total {evicted}");
    g(
        &mut o,
        "sandbox_job_duration_seconds",
        "Time from job start to finish.",
        "histogram",
    );
    for (i, b) in BUCKETS.iter().enumerate() {
        let _ = writeln!(
            o,
            "sandbox_job_duration_seconds_bucket{{le=\"{b}\"}} {}",
            m.buckets[i].load(Ordering::Relaxed)
        );
    }
    let count = m.dur_count.load(Ordering::Relaxed);
    let _ = writeln!(
        o,
        "sandbox_job_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        o,
        "sandbox_job_duration_seconds_sum {}",
        m.dur_sum_us.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(o, "sandbox_job_duration_seconds_count {count}");
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        o,
    )
        .into_response()
}
