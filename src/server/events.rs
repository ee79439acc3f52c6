//! `GET /v1/jobs/{id}/events`: a job's live log as Server-Sent Events.
//!
//! Each stream is a task of its own (`pump`) that follows the job's
//! [`EventLog`] from the client's `Last-Event-ID` (0: from the start) and
//! hands hyper one batch at a time through a channel of one slot: a client
//! that reads slowly slows only its own task, which falls behind in the
//! log (then it is told of a gap) and never holds more than a batch. The
//! job's run never waits on it. An idle stream gets a `: keep-alive`
//! comment every `--event-keepalive`; a client that takes nothing for
//! `--write-timeout` loses its connection (`conn`), and with it its stream
//! and its slot. Streams open at once are capped (`--max-event-streams`,
//! 429 beyond).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::AppState;
use super::api::{ApiError, lookup_error};
use crate::job::events::EventLog;

/// Bytes of events sent in one piece at most (about: at least one event).
const BATCH: usize = 64 << 10;

/// The response body: whatever the stream's task hands over.
struct EventBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// The id a client resumes after: its `Last-Event-ID` header, else 0.
fn last_event_id(h: &HeaderMap) -> Result<u64, ApiError> {
    let Some(v) = h.get("last-event-id") else {
        return Ok(0);
    };
    let s = v.to_str().unwrap_or("").trim();
    if s.is_empty() {
        return Ok(0);
    }
    s.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Last-Event-ID {s:?}: expected an event id (a number) of this job's stream"),
        )
        .with_field("Last-Event-ID")
    })
}

/// The route: `GET /v1/jobs/{id}/events`.
pub(super) fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new().route("/v1/jobs/{id}/events", axum::routing::get(job_events))
}

/// A job's live events (Server-Sent Events).
///
/// A text/event-stream: each event is `id:` (1, 2, ... per job), `event:`
/// (its name) and one `data:` line of JSON (the Event schema): job.started,
/// step.started, test.started, output, output.truncated, test.ended,
/// step.ended, job.ended (always last; the stream closes after it), and gap
/// (events the reader had not read were dropped from the job's
/// --events-buffer). Idle streams get `: keep-alive` comments. See
/// docs/api.md.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The job's id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id (what an EventSource sends when it reconnects)"),
    ),
    responses(
        (status = 200, description = "The event stream; each `data:` line is an Event", content_type = "text/event-stream", body = String,
            example = "id: 3\nevent: output\ndata: {\"id\":3,\"at\":1796690300.93,\"event\":\"output\",\"step\":0,\"stream\":\"stdout\",\"data\":\"compiling part 1\\n\",\"encoding\":\"utf8\"}\n\n"),
        (status = 204, description = "The job has ended and Last-Event-ID is its last event: nothing follows"),
        (status = 400, description = "Last-Event-ID is not a number (field Last-Event-ID)", body = super::views::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = super::views::ErrorBody),
        (status = 404, description = "Unknown or expired job", body = super::views::ErrorBody),
        (status = 410, description = super::api::EVICTED, body = super::views::ErrorBody),
        (status = 429, description = "--max-event-streams streams are open; retry after the Retry-After seconds", body = super::views::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
    )
)]
pub(super) async fn job_events(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let log = st.jobs.events(&id).map_err(|e| lookup_error(&id, e))?;
    let after = last_event_id(&headers)?;
    if log.is_closed() && after >= log.last_id() {
        // Nothing will follow: 204 also stops an EventSource from
        // reconnecting.
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let permit = st.event_streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many event streams open (--max-event-streams {}); retry later",
                st.cfg.max_event_streams
            ),
        )
        .with_retry_after(1)
    })?;
    let (tx, rx) = mpsc::channel(1);
    tracing::debug!(job = %id, after, "event stream opened");
    tokio::spawn(pump(log, after, tx, permit, st.cfg.event_keepalive));
    let mut r = Body::new(EventBody(rx)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx and the like: pass every piece on as it comes.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// Follows `log` after id `after` and sends it to the client until the
/// job's end has gone out, the client has gone, or it stopped reading.
async fn pump(
    log: Arc<EventLog>,
    mut after: u64,
    tx: mpsc::Sender<Bytes>,
    _permit: OwnedSemaphorePermit,
    keepalive: Duration,
) {
    let mut tick = log.subscribe();
    // Waits while the client is slow; fails once it is gone (hyper drops
    // the body with the connection).
    let send = |b: Bytes| {
        let tx = tx.clone();
        async move { tx.send(b).await.is_ok() }
    };
    loop {
        // Marked seen before reading: what is pushed after wakes us.
        tick.borrow_and_update();
        let b = log.read_after(after, BATCH);
        if b.gap.is_some() || !b.frames.is_empty() {
            let mut out = Vec::with_capacity(b.frames.iter().map(|f| f.len()).sum::<usize>() + 256);
            if let Some(g) = &b.gap {
                tracing::debug!(after, gap = ?g.event, "event stream: reader fell behind");
                out.extend_from_slice(g.frame().as_bytes());
            }
            for f in &b.frames {
                out.extend_from_slice(f.as_bytes());
            }
            after = b.last;
            if !send(Bytes::from(out)).await {
                return;
            }
        }
        if b.done {
            return;
        }
        if b.frames.is_empty() {
            tokio::select! {
                r = tick.changed() => {
                    if r.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep(keepalive) => {
                    if !send(Bytes::from_static(b": keep-alive\n\n")).await {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    }
}
