//! The Judge0-compatible API (Judge0 CE 1.13.1), mounted at `/judge0`:
//! submissions (single and batch), languages, statuses, `/about` and
//! `/config_info`, with Judge0's field names, units and status ids. This
//! module owns the translation both ways: a submission becomes an ordinary
//! job (the language preset's compile step, then one run fed `stdin` and
//! compared with `expected_output`) on the same [`JobBackend`] as `/v1`,
//! and a job snapshot becomes a Judge0 result. It owns the token → job id
//! map (Judge0 tokens are UUID v4s, our ids are not) and nothing else:
//! queueing, limits, auth and body limits are the server's.
//!
//! [`JobBackend`]: crate::job::queue::JobBackend

pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine;
use serde_json::{Value, json};

use super::AppState;
use crate::job::queue::{JobSnapshot, JobStatus, SubmitError};
use crate::job::{InputFile, JobSpec, StepSpec, Verdict};
use crate::preset::Preset;
use crate::profile::LimitOverrides;
use crate::profile::Limits;
use crate::runner::{RunResult, Status};
use wire::{Ceilings, Errors, Submission};

/// Longest a `wait=true` request waits; then it answers the submission as
/// it is (In Queue / Processing), as Judge0 does past its own wait.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// Judge0 CE ids that are aliases of a language we ship under another id
/// (CE lists several versions of one language).
const ALIASES: &[(u32, &str)] = &[
    (52, "cpp17"),
    (54, "cpp17"),
    (91, "java"),
    (92, "python3"),
    (93, "javascript"),
    (95, "go"),
];

/// Judge0's statuses, by id.
pub const STATUSES: &[(u32, &str)] = &[
    (1, "In Queue"),
    (2, "Processing"),
    (3, "Accepted"),
    (4, "Wrong Answer"),
    (5, "Time Limit Exceeded"),
    (6, "Compilation Error"),
    (7, "Runtime Error (SIGSEGV)"),
    (8, "Runtime Error (SIGXFSZ)"),
    (9, "Runtime Error (SIGFPE)"),
    (10, "Runtime Error (SIGABRT)"),
    (11, "Runtime Error (NZEC)"),
    (12, "Runtime Error (Other)"),
    (13, "Internal Error"),
    (14, "Exec Format Error"),
];

/// Languages for which `compiler_options` are appended to the compiler's
/// argv (gcc/g++ take any option after the source; others' argv would break).
const COMPILE_OPTIONS_LANGS: &[&str] = &["c", "cpp17", "cpp20"];

/// SHA-256 of an `expected_output` as Judge0 compares it ([`judge0_strip`]).
type Digest = [u8; 32];

/// Judge0's comparison form (`isolate_job.rb`: each line `rstrip`ped, then
/// the whole `strip`ped, Ruby's whitespace including NUL), fed to `out` in
/// one pass. The job engine's own rule ([`crate::job::output_matches`])
/// only ignores trailing whitespace, so whatever it accepts Judge0 accepts
/// too; a wrong answer whose output has only leading whitespace or NULs
/// more is accepted here as Judge0 would.
///
/// Streaming, not split-and-join: a body of newlines would otherwise cost
/// a slice per line (16 bytes per input byte). Only the whitespace after
/// the last newline of a run is held back (at most the input's size).
fn judge0_strip_into(b: &[u8], out: &mut impl FnMut(&[u8])) {
    const NL: [u8; 256] = [b'\n'; 256];
    let ws = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0);
    let mut started = false;
    // Since the last non-whitespace byte: newlines, then what follows the last.
    let mut newlines = 0usize;
    let mut tail: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if ws(c) {
            if c == b'\n' {
                newlines += 1;
                tail.clear();
            } else {
                tail.push(c);
            }
            i += 1;
            continue;
        }
        if started {
            while newlines > 0 {
                let n = newlines.min(NL.len());
                out(&NL[..n]);
                newlines -= n;
            }
            out(&tail);
        }
        newlines = 0;
        tail.clear();
        started = true;
        // The run of non-whitespace bytes, at once.
        let end = b[i..]
            .iter()
            .position(|&c| ws(c))
            .map_or(b.len(), |n| i + n);
        out(&b[i..end]);
        i = end;
    }
}

#[cfg(test)]
fn judge0_strip(b: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    judge0_strip_into(b, &mut |s| v.extend_from_slice(s));
    v
}

fn digest(expected: Option<&[u8]>) -> Option<Digest> {
    use sha2::Digest as _;
    expected.map(|e| {
        let mut h = sha2::Sha256::new();
        judge0_strip_into(e, &mut |s| h.update(s));
        h.finalize().into()
    })
}

/// What a token keeps of its submission besides the job id.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Meta {
    expected: Option<Digest>,
    language_id: Option<u32>,
}

impl Meta {
    fn of(s: &Submission) -> Meta {
        Meta {
            expected: digest(s.expected_output.as_deref()),
            language_id: Some(s.language_id),
        }
    }
}

/// Token → (job id, [`Meta`]), and the tokens oldest first.
type TokenMap = (HashMap<String, (String, Meta)>, VecDeque<String>);

/// The token → (job id, digest of the expected output) map, bounded
/// (oldest forgotten first: by then the job itself is long expired). The
/// digest, not the output, is kept: 32 bytes a submission.
pub(crate) struct Tokens {
    map: Mutex<TokenMap>,
    cap: usize,
}

impl Tokens {
    pub(crate) fn new(cap: usize) -> Tokens {
        Tokens {
            map: Mutex::new((HashMap::new(), VecDeque::new())),
            cap: cap.max(16),
        }
    }
    fn insert(&self, id: &str, meta: Meta) -> String {
        let token = wire::token_for(id);
        let mut g = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *g;
        if map.insert(token.clone(), (id.to_string(), meta)).is_none() {
            order.push_back(token.clone());
        }
        while order.len() > self.cap {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
        token
    }
    fn get(&self, token: &str) -> Option<(String, Meta)> {
        let g = self.map.lock().unwrap_or_else(|e| e.into_inner());
        g.0.get(&token.trim().to_ascii_lowercase()).cloned()
    }
}

/// The toolchains' versions by preset id, found once (by running each
/// preset's version command as a job) for Judge0-style language names.
#[derive(Default)]
pub(crate) struct Versions(tokio::sync::Mutex<Option<Found>>);

/// What one discovery found, and when; an incomplete one (a job refused by
/// a full queue, or late) is tried again after [`RETRY_VERSIONS`], never
/// on every request: `/languages` must not become a way to queue jobs.
struct Found {
    at: std::time::Instant,
    complete: bool,
    versions: HashMap<String, String>,
}

/// How long an incomplete discovery is kept before a caller tries again.
const RETRY_VERSIONS: Duration = Duration::from_secs(300);

/// The Judge0 routes, to be nested under `/judge0`.
pub(crate) fn routes(tokens: Arc<Tokens>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/submissions", post(create))
        .route("/submissions/batch", post(create_batch).get(get_batch))
        .route("/submissions/{token}", get(get_one))
        .route("/languages", get(languages))
        .route("/languages/{id}", get(language))
        .route("/statuses", get(statuses))
        .route("/about", get(about))
        .route("/config_info", get(config_info))
        .fallback(|| async { j0_error(StatusCode::NOT_FOUND, "no such Judge0 endpoint") })
        .layer(Extension(tokens))
        .layer(Extension(Arc::new(Versions::default())))
}

fn j0_error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"error": msg.into()}))).into_response()
}

/// Why a Judge0 request is refused: `{"error"}` with a status, or 422 with
/// Judge0's per-field messages.
#[derive(Debug)]
enum J0Error {
    Status(StatusCode, String),
    Invalid(Errors),
}

impl IntoResponse for J0Error {
    fn into_response(self) -> Response {
        match self {
            J0Error::Status(s, m) => j0_error(s, m),
            J0Error::Invalid(e) => unprocessable(&e),
        }
    }
}

fn unprocessable(e: &Errors) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(e.to_json())).into_response()
}

/// A query flag: absent → `default`; Judge0 accepts true/false.
fn flag(q: &HashMap<String, String>, k: &str, default: bool) -> Result<bool, J0Error> {
    match q.get(k).map(String::as_str) {
        None => Ok(default),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(_) => Err(J0Error::Status(
            StatusCode::BAD_REQUEST,
            format!("{k}: expected true or false"),
        )),
    }
}

/// The preset a Judge0 language id names.
fn preset_for(id: u32) -> Option<Preset> {
    if let Some((_, p)) = ALIASES.iter().find(|(a, _)| *a == id) {
        return Preset::load(p).ok();
    }
    Preset::all()
        .into_iter()
        .filter_map(|(_, p)| p.ok())
        .find(|p| p.judge0_id == Some(id))
}

/// Every language id offered: each preset's own, then the aliases.
fn language_list() -> Vec<(u32, Preset)> {
    let presets: Vec<Preset> = Preset::all()
        .into_iter()
        .filter_map(|(_, p)| p.ok())
        .collect();
    let mut out: Vec<(u32, Preset)> = presets
        .iter()
        .filter_map(|p| Some((p.judge0_id?, p.clone())))
        .collect();
    for (id, name) in ALIASES {
        if out.iter().all(|(i, _)| i != id)
            && let Some(p) = presets.iter().find(|p| p.id == *name)
        {
            out.push((*id, p.clone()));
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out
}

/// The limits a job of `profile` may have here: the profile's, capped by
/// the server's maxima.
fn ceiling_limits(st: &AppState, profile: &str) -> Result<Limits, J0Error> {
    let p = crate::profile::load(profile).map_err(|e| {
        J0Error::Status(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("profile {profile}: {e}"),
        )
    })?;
    let mut l = p.limits.clone();
    l.cap(&st.cfg.caps.max_limits);
    Ok(l)
}

fn ceilings(l: &Limits) -> Ceilings {
    let j = Ceilings::default();
    let kb = |b: Option<u64>, max: u64| b.map_or(max, |b| (b / 1024).min(max));
    Ceilings {
        cpu_s: l.cpu_time.map_or(j.cpu_s, |d| d.as_secs_f64().min(j.cpu_s)),
        wall_s: l
            .wall_time
            .map_or(j.wall_s, |d| d.as_secs_f64().min(j.wall_s)),
        memory_kb: kb(l.memory, j.memory_kb),
        processes: l.pids.map_or(j.processes, |p| p.min(j.processes)),
        file_size_kb: kb(l.file_size, j.file_size_kb),
        stack_kb: kb(l.stack, j.stack_kb),
    }
}

/// `o` with every value lowered to the ceiling `l` (a preset may ask more
/// than the server allows a job: the job API only tightens).
fn clamp(o: &LimitOverrides, l: &Limits) -> LimitOverrides {
    fn m<T: PartialOrd + Copy>(v: Option<T>, c: Option<T>) -> Option<T> {
        match (v, c) {
            (Some(v), Some(c)) if v > c => Some(c),
            (v, _) => v,
        }
    }
    LimitOverrides {
        cpu_time: m(o.cpu_time, l.cpu_time),
        wall_time: m(o.wall_time, l.wall_time),
        memory: m(o.memory, l.memory),
        pids: m(o.pids, l.pids),
        output: m(o.output, l.output),
        file_size: m(o.file_size, l.file_size),
        open_files: m(o.open_files, l.open_files),
        stack: m(o.stack, l.stack),
    }
}

/// The job for a decoded submission, or Judge0-style errors.
fn build_job(st: &AppState, s: Submission) -> Result<JobSpec, J0Error> {
    let mut e = Errors::default();
    let Some(preset) = preset_for(s.language_id) else {
        let mut e = Errors::default();
        e.0.insert(
            "language_id".into(),
            vec![format!("language with id {} doesn't exist", s.language_id)],
        );
        return Err(J0Error::Invalid(e));
    };
    let ceil = ceiling_limits(st, &preset.run_profile)?;
    let compile = preset.compile_step();
    if !s.compiler_options.is_empty() && !COMPILE_OPTIONS_LANGS.contains(&preset.id.as_str()) {
        e.0.insert(
            "compiler_options".into(),
            vec![format!(
                "setting compiler options is only allowed for {}",
                COMPILE_OPTIONS_LANGS.join(", ")
            )],
        );
        return Err(J0Error::Invalid(e));
    }
    let mut steps = Vec::new();
    if let Some(c) = &compile {
        let o = clamp(&c.limits, &ceil);
        let mut eff = ceil.clone();
        eff.overlay(&o);
        let mut argv = c.argv(&eff);
        argv.extend(s.compiler_options.iter().cloned());
        steps.push(StepSpec {
            name: "compile".into(),
            argv,
            env: c.env(&eff),
            limits: o,
            ..StepSpec::default()
        });
    }
    let r = preset.run_step();
    let mut o = r.limits.clone();
    let set = |cur: &mut Option<u64>, v: Option<u64>| {
        if v.is_some() {
            *cur = v;
        }
    };
    if s.cpu_time_limit.is_some() {
        o.cpu_time = s.cpu_time_limit;
    }
    if s.wall_time_limit.is_some() {
        o.wall_time = s.wall_time_limit;
    }
    set(&mut o.memory, s.memory_limit);
    set(&mut o.stack, s.stack_limit);
    set(&mut o.pids, s.max_processes_and_or_threads);
    set(&mut o.file_size, s.max_file_size);
    let o = clamp(&o, &ceil);
    let mut eff = ceil.clone();
    eff.overlay(&o);
    let mut argv = r.argv(&eff);
    argv.extend(s.command_line_arguments.iter().cloned());
    if s.redirect_stderr_to_stdout {
        // The shell only joins the two streams, then becomes the program.
        let mut w = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            "exec \"$0\" \"$@\" 2>&1".to_string(),
        ];
        w.extend(argv);
        argv = w;
    }
    steps.push(StepSpec {
        name: "run".into(),
        argv,
        env: r.env(&eff),
        stdin: s.stdin,
        expected_stdout: s.expected_output,
        limits: o,
        ..StepSpec::default()
    });
    Ok(JobSpec {
        profile: preset.run_profile.clone(),
        image: preset.image.clone(),
        files: vec![InputFile {
            path: preset.source.clone(),
            content: s.source_code,
            executable: false,
        }],
        steps,
        outputs: Vec::new(),
    })
}

fn submit_error(e: SubmitError) -> Response {
    match e {
        SubmitError::ShuttingDown => j0_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        ),
        SubmitError::QueueFull { .. } => j0_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("queue is full: {e}"),
        ),
        SubmitError::Invalid(f) => {
            let mut er = Errors::default();
            er.0.insert(f.field, vec![f.message]);
            unprocessable(&er)
        }
        e => j0_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Reads the body within the server's body timeout (as `/v1`).
async fn body(st: &AppState, req: Request) -> Result<Value, Response> {
    let b = match tokio::time::timeout(st.cfg.body_timeout, Bytes::from_request(req, &())).await {
        Err(_) => {
            return Err(j0_error(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            ));
        }
        Ok(Err(e)) => return Err(j0_error(e.status(), e.body_text())),
        Ok(Ok(b)) => b,
    };
    serde_json::from_slice(&b)
        .map_err(|e| j0_error(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))
}

type Q = Query<HashMap<String, String>>;

/// A submission's (or batch's) JSON body and the ceilings it is decoded
/// against (Judge0's maxima within the default profile's and the server's).
async fn body_and_ceilings(st: &AppState, req: Request) -> Result<(Value, Ceilings), Response> {
    let v = body(st, req).await?;
    let l =
        ceiling_limits(st, crate::preset::DEFAULT_PROFILE).map_err(IntoResponse::into_response)?;
    Ok((v, ceilings(&l)))
}

async fn create(
    State(st): State<Arc<AppState>>,
    Extension(tokens): Extension<Arc<Tokens>>,
    q: Result<Q, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Response {
    let Ok(Query(q)) = q else {
        return j0_error(StatusCode::BAD_REQUEST, "malformed query");
    };
    let (b64, wait) = match (flag(&q, "base64_encoded", false), flag(&q, "wait", false)) {
        (Ok(b), Ok(w)) => (b, w),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let fields = match wire::select_fields(q.get("fields").map(String::as_str)) {
        Ok(f) => f,
        Err(m) => return j0_error(StatusCode::BAD_REQUEST, m),
    };
    let (v, ceil) = match body_and_ceilings(&st, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let sub = match wire::decode_submission(&v, b64, &ceil) {
        Ok(s) => s,
        Err(e) => return unprocessable(&e),
    };
    drop(v);
    let meta = Meta::of(&sub);
    let spec = match build_job(&st, sub) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let mut job = match st.jobs.submit(spec) {
        Ok(j) => j,
        Err(e) => return submit_error(e),
    };
    let token = tokens.insert(&job.id, meta);
    job.span
        .in_scope(|| tracing::info!(wait, %token, "judge0 submission queued"));
    if !wait {
        return (StatusCode::CREATED, Json(json!({"token": token}))).into_response();
    }
    let snap = match tokio::time::timeout(MAX_WAIT, job.watch.finished()).await {
        Ok(s) => s,
        Err(_) => job.watch.snapshot(),
    };
    (
        StatusCode::CREATED,
        Json(result_json(&token, &snap, &fields, b64, &meta)),
    )
        .into_response()
}

async fn create_batch(
    State(st): State<Arc<AppState>>,
    Extension(tokens): Extension<Arc<Tokens>>,
    q: Result<Q, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Response {
    let Ok(Query(q)) = q else {
        return j0_error(StatusCode::BAD_REQUEST, "malformed query");
    };
    let b64 = match flag(&q, "base64_encoded", false) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let (v, ceil) = match body_and_ceilings(&st, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let list = match wire::decode_batch(&v, b64, &ceil) {
        Ok(l) => l,
        Err(e) => return unprocessable(&e),
    };
    drop(v);
    // Judge0 answers item by item: a token, or that item's errors.
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let spec = match item.map_err(J0Error::Invalid).and_then(|s| {
            let meta = Meta::of(&s);
            build_job(&st, s).map(|j| (j, meta))
        }) {
            Ok(s) => s,
            Err(J0Error::Invalid(e)) => {
                out.push(e.to_json());
                continue;
            }
            Err(J0Error::Status(_, m)) => {
                out.push(json!({"error": m}));
                continue;
            }
        };
        let (spec, meta) = spec;
        match st.jobs.submit(spec) {
            Ok(job) => out.push(json!({"token": tokens.insert(&job.id, meta)})),
            Err(e) => out.push(json!({"error": e.to_string()})),
        }
    }
    (StatusCode::CREATED, Json(Value::Array(out))).into_response()
}

fn lookup(st: &AppState, tokens: &Tokens, token: &str) -> Option<(JobSnapshot, Meta)> {
    let (id, meta) = tokens.get(token)?;
    Some((st.jobs.get(&id).ok()?, meta))
}

async fn get_one(
    State(st): State<Arc<AppState>>,
    Extension(tokens): Extension<Arc<Tokens>>,
    Path(token): Path<String>,
    q: Result<Q, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return j0_error(StatusCode::BAD_REQUEST, "malformed query");
    };
    let b64 = match flag(&q, "base64_encoded", false) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let fields = match wire::select_fields(q.get("fields").map(String::as_str)) {
        Ok(f) => f,
        Err(m) => return j0_error(StatusCode::BAD_REQUEST, m),
    };
    match lookup(&st, &tokens, &token) {
        Some((snap, exp)) => Json(result_json(&token, &snap, &fields, b64, &exp)).into_response(),
        None => j0_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn get_batch(
    State(st): State<Arc<AppState>>,
    Extension(tokens): Extension<Arc<Tokens>>,
    q: Result<Q, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return j0_error(StatusCode::BAD_REQUEST, "malformed query");
    };
    let b64 = match flag(&q, "base64_encoded", false) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let fields = match wire::select_fields(q.get("fields").map(String::as_str)) {
        Ok(f) => f,
        Err(m) => return j0_error(StatusCode::BAD_REQUEST, m),
    };
    let list: Vec<&str> = q
        .get("tokens")
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        return j0_error(
            StatusCode::BAD_REQUEST,
            "tokens: at least one token is required",
        );
    }
    if list.len() > wire::MAX_BATCH {
        return j0_error(
            StatusCode::BAD_REQUEST,
            format!(
                "number of tokens is {}, which is bigger than maximum size of {}",
                list.len(),
                wire::MAX_BATCH
            ),
        );
    }
    // An unknown token is null in its place (the answer stays aligned with
    // the request, as clients zip the two).
    let subs: Vec<Value> = list
        .iter()
        .map(|t| {
            lookup(&st, &tokens, t).map_or(Value::Null, |(s, exp)| {
                result_json(t, &s, &fields, b64, &exp)
            })
        })
        .collect();
    Json(json!({"submissions": subs})).into_response()
}

/// Judge0's status id for a snapshot, with a message when ours says more.
fn status_of(snap: &JobSnapshot, expected: Option<&Digest>) -> (u32, Option<String>) {
    match snap.status {
        JobStatus::Queued => return (1, None),
        JobStatus::Running => return (2, None),
        JobStatus::Failed => return (13, snap.error.clone()),
        JobStatus::Cancelled => return (13, Some("cancelled".into())),
        JobStatus::Completed => {}
    }
    let steps = &snap.outcome.steps;
    if let Some(c) = steps.iter().find(|s| s.name == "compile")
        && !c.verdict.is_ok()
    {
        return (6, c.message.clone());
    }
    let Some(run) = steps.iter().find(|s| s.name == "run") else {
        return (13, snap.outcome.error.clone());
    };
    let res = run.run.as_ref().and_then(|r| r.result.as_ref());
    let msg = res
        .and_then(|r| r.message.clone())
        .or_else(|| run.message.clone());
    let id = match run.verdict {
        Verdict::Run(Status::Ok) => 3,
        // Judge0's comparison is looser than ours (see judge0_strip).
        Verdict::WrongAnswer => match res {
            Some(r)
                if !r.stdout_truncated
                    && expected.is_some()
                    && digest(Some(&r.stdout)).as_ref() == expected =>
            {
                3
            }
            _ => 4,
        },
        Verdict::Run(Status::TimeLimit | Status::WallTimeLimit) => 5,
        Verdict::Run(Status::RuntimeError) => match res {
            Some(r) if r.exec_failed => 14,
            Some(RunResult {
                signal: Some(s), ..
            }) => match *s {
                libc::SIGSEGV => 7,
                libc::SIGXFSZ => 8,
                libc::SIGFPE => 9,
                libc::SIGABRT => 10,
                _ => 12,
            },
            _ => 11,
        },
        // A file over max_file_size / the workspace: Judge0's SIGXFSZ.
        Verdict::WorkspaceLimit => 8,
        Verdict::Run(Status::MemoryLimit | Status::OutputLimit) => 12,
        Verdict::Run(Status::SandboxError) | Verdict::Cancelled | Verdict::Skipped => 13,
    };
    let msg = match (id, &run.verdict) {
        (12, Verdict::Run(s)) => Some(msg.unwrap_or_else(|| s.as_str().replace('_', " "))),
        (11, _) => res
            .and_then(|r| r.exit_code)
            .map(|c| format!("Exited with error status {c}"))
            .or(msg),
        _ => msg,
    };
    (id, msg)
}

fn status_json(id: u32) -> Value {
    let d = STATUSES
        .iter()
        .find(|(i, _)| *i == id)
        .map_or("Unknown", |(_, d)| d);
    json!({"id": id, "description": d})
}

/// Output text as Judge0 sends it: base64 when asked, else UTF-8 (bytes
/// that are not UTF-8 replaced, with a message: Judge0 asks for base64).
fn out_text(b: &[u8], b64: bool, lossy: &mut bool) -> Value {
    if b.is_empty() {
        return Value::Null;
    }
    if b64 {
        return json!(base64::engine::general_purpose::STANDARD.encode(b));
    }
    match std::str::from_utf8(b) {
        Ok(s) => json!(s),
        Err(_) => {
            *lossy = true;
            json!(String::from_utf8_lossy(b))
        }
    }
}

/// A result as Judge0 shows it, with only `fields`.
pub(crate) fn result_json(
    token: &str,
    snap: &JobSnapshot,
    fields: &[&str],
    b64: bool,
    meta: &Meta,
) -> Value {
    let (sid, mut message) = status_of(snap, meta.expected.as_ref());
    let steps = &snap.outcome.steps;
    let res = |name: &str| {
        steps
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.run.as_ref())
            .and_then(|r| r.result.as_ref())
    };
    let run = res("run");
    let compile = res("compile");
    let mut lossy = false;
    let compile_output = compile.map(|c| {
        let mut b = c.stdout.clone();
        b.extend_from_slice(&c.stderr);
        b
    });
    let mut all = serde_json::Map::new();
    all.insert("token".into(), json!(token));
    all.insert(
        "stdout".into(),
        run.map_or(Value::Null, |r| out_text(&r.stdout, b64, &mut lossy)),
    );
    all.insert(
        "stderr".into(),
        run.map_or(Value::Null, |r| out_text(&r.stderr, b64, &mut lossy)),
    );
    all.insert(
        "compile_output".into(),
        compile_output.map_or(Value::Null, |b| out_text(&b, b64, &mut lossy)),
    );
    if lossy {
        let m = "some output is not valid UTF-8 and was altered: use base64_encoded=true";
        message = Some(message.map_or(m.to_string(), |x| format!("{x}; {m}")));
    }
    all.insert("message".into(), json!(message));
    all.insert("exit_code".into(), json!(run.and_then(|r| r.exit_code)));
    all.insert("exit_signal".into(), json!(run.and_then(|r| r.signal)));
    all.insert("status".into(), status_json(sid));
    all.insert("status_id".into(), json!(sid));
    all.insert("language_id".into(), json!(meta.language_id));
    all.insert("created_at".into(), json!(timestamp(snap.created_at)));
    all.insert("finished_at".into(), json!(snap.finished_at.map(timestamp)));
    let secs = |ms: f64| format!("{:.3}", ms / 1e3);
    all.insert("time".into(), json!(run.map(|r| secs(r.usage.cpu_ms))));
    all.insert(
        "wall_time".into(),
        json!(run.map(|r| secs(r.usage.wall_ms))),
    );
    all.insert(
        "memory".into(),
        json!(run.map(|r| r.usage.memory_peak_bytes / 1024)),
    );
    let mut out = serde_json::Map::new();
    for f in fields {
        if let Some(v) = all.remove(*f) {
            out.insert((*f).to_string(), v);
        }
    }
    Value::Object(out)
}

/// `2024-01-02T03:04:05.678Z` (UTC, milliseconds): what Judge0 sends and
/// the SDK parses with `%Y-%m-%dT%H:%M:%S.%fZ`.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// A version number in a version line: the first `N.N[.N...]` (`gcc (Debian
/// 12.2.0-14) 12.2.0` → 12.2.0, `go version go1.19.8` → 1.19.8).
fn version_number(line: &str) -> Option<String> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // A number starts after a non-alphanumeric, or right after the
        // `v` of `v18.19.0` or the `go` of `go1.19.8`.
        let starts = i == 0 || !b[i - 1].is_ascii_alphanumeric() || matches!(b[i - 1], b'o' | b'v');
        if b[i].is_ascii_digit() && starts {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
                j += 1;
            }
            let v = line[i..j].trim_end_matches('.');
            if v.contains('.') {
                return Some(v.to_string());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    None
}

/// Judge0's naming: the version inside the parentheses (`C (GCC 12.2.0)`),
/// or after the name in its own (`Python 3 (3.11.2)`).
fn judge0_name(name: &str, version: Option<&String>) -> String {
    match version {
        None => name.to_string(),
        Some(v) => match name.strip_suffix(')') {
            Some(head) => format!("{head} {v})"),
            None => format!("{name} ({v})"),
        },
    }
}

/// Runs every preset's version command as a job (at once, on the queue like
/// any job) and collects the versions. A job the queue refuses is skipped;
/// one still unfinished after 30 s is cancelled. Either leaves the result
/// incomplete (see [`Found`]).
async fn find_versions(st: &AppState) -> (HashMap<String, String>, bool) {
    let mut complete = true;
    let mut waits = Vec::new();
    for (_, p) in Preset::all() {
        let Ok(p) = p else { continue };
        let step = p.version_step();
        let Ok(ceil) = ceiling_limits(st, &step.profile) else {
            complete = false;
            continue;
        };
        let o = clamp(&step.limits, &ceil);
        let mut eff = ceil.clone();
        eff.overlay(&o);
        let spec = JobSpec {
            profile: step.profile.clone(),
            image: step.image.clone(),
            files: Vec::new(),
            steps: vec![StepSpec {
                name: "version".into(),
                argv: step.argv(&eff),
                env: step.env(&eff),
                limits: o,
                ..StepSpec::default()
            }],
            outputs: Vec::new(),
        };
        match st.jobs.submit(spec) {
            Ok(job) => waits.push((p.id.clone(), job.id, job.watch)),
            Err(_) => complete = false,
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut out = HashMap::new();
    for (id, job, mut w) in waits {
        let Ok(snap) = tokio::time::timeout_at(deadline, w.finished()).await else {
            // Not left running (or queued) for nobody.
            let _ = st.jobs.cancel(&job);
            complete = false;
            continue;
        };
        let r = snap
            .outcome
            .steps
            .first()
            .and_then(|s| s.run.as_ref())
            .and_then(|r| r.result.as_ref());
        if let Some(r) = r {
            let line = crate::preset::version_line(
                &String::from_utf8_lossy(&r.stdout),
                &String::from_utf8_lossy(&r.stderr),
            );
            if let Some(v) = line.as_deref().and_then(version_number) {
                out.insert(id, v);
            }
        }
    }
    (out, complete)
}

/// The versions, found on first use (a client's first `/languages` waits
/// for them: a second or so) and kept for the server's life; an incomplete
/// discovery is answered as it is and tried again at most every
/// [`RETRY_VERSIONS`]. One discovery at a time: concurrent callers wait
/// for it and share its result.
async fn versions(st: &AppState, v: &Versions) -> HashMap<String, String> {
    let mut g = v.0.lock().await;
    let stale = match &*g {
        None => true,
        Some(f) => !f.complete && f.at.elapsed() >= RETRY_VERSIONS,
    };
    if stale {
        let (versions, complete) = find_versions(st).await;
        *g = Some(Found {
            at: std::time::Instant::now(),
            complete,
            versions,
        });
    }
    g.as_ref().map(|f| f.versions.clone()).unwrap_or_default()
}

fn language_json(
    id: u32,
    p: &Preset,
    full: bool,
    versions: Option<&HashMap<String, String>>,
) -> Value {
    let name = judge0_name(&p.name, versions.and_then(|v| v.get(&p.id)));
    let mut v = json!({"id": id, "name": name});
    if full {
        let join = |a: &[String]| a.join(" ");
        v["is_archived"] = json!(false);
        v["source_file"] = json!(p.source);
        v["compile_cmd"] = json!(p.compile_step().map(|s| join(s.template())));
        v["run_cmd"] = json!(join(p.run_step().template()));
    }
    v
}

async fn languages(
    State(st): State<Arc<AppState>>,
    Extension(vers): Extension<Arc<Versions>>,
) -> Response {
    let v = versions(&st, &vers).await;
    let list: Vec<Value> = language_list()
        .iter()
        .map(|(id, p)| language_json(*id, p, false, Some(&v)))
        .collect();
    Json(list).into_response()
}

async fn language(
    State(st): State<Arc<AppState>>,
    Extension(vers): Extension<Arc<Versions>>,
    Path(id): Path<String>,
) -> Response {
    let v = versions(&st, &vers).await;
    match id
        .parse::<u32>()
        .ok()
        .and_then(|i| Some((i, preset_for(i)?)))
    {
        Some((i, p)) => Json(language_json(i, &p, true, Some(&v))).into_response(),
        None => j0_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn statuses() -> Response {
    let list: Vec<Value> = STATUSES.iter().map(|(i, _)| status_json(*i)).collect();
    Json(list).into_response()
}

async fn about() -> Response {
    // "1.13.1": the Judge0 API this one follows, and the key of the SDK's
    // language-alias table (so `judge0.C` means id 50 here as there).
    Json(json!({
        "version": "1.13.1",
        "homepage": "https://github.com/judge0/judge0",
        "source_code": "https://github.com/judge0/judge0",
        "maintainer": "sandbox (a Judge0-compatible front door, see docs/judge0.md)",
    }))
    .into_response()
}

async fn config_info(State(st): State<Arc<AppState>>) -> Response {
    let l = match ceiling_limits(&st, crate::preset::DEFAULT_PROFILE) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    let c = ceilings(&l);
    // Defaults: the C preset's run limits (each language's preset sets its
    // own; these are the common ones), within the ceilings.
    let c_run = Preset::load("c").ok().map(|p| p.run_step().limits);
    let kb = |b: Option<u64>| b.map(|b| b / 1024);
    let cpu = c_run
        .as_ref()
        .and_then(|o| o.cpu_time)
        .map_or(5.0, |d| d.as_secs_f64())
        .min(c.cpu_s);
    let wall = c_run
        .as_ref()
        .and_then(|o| o.wall_time)
        .map_or(10.0, |d| d.as_secs_f64())
        .min(c.wall_s);
    let mem = c_run
        .as_ref()
        .and_then(|o| kb(o.memory))
        .unwrap_or(c.memory_kb)
        .min(c.memory_kb);
    let compile_langs: Vec<String> = language_list()
        .into_iter()
        .filter(|(_, p)| COMPILE_OPTIONS_LANGS.contains(&p.id.as_str()))
        .map(|(_, p)| p.name)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Json(json!({
        "maintenance_mode": false,
        "enable_wait_result": true,
        "enable_compiler_options": true,
        "allowed_languages_for_compile_options": compile_langs,
        "enable_command_line_arguments": true,
        "enable_submission_delete": false,
        "enable_callbacks": false,
        "callbacks_max_tries": 0,
        "callbacks_timeout": 0.0,
        "enable_additional_files": false,
        "max_queue_size": st.cfg.queue,
        "cpu_time_limit": cpu,
        "max_cpu_time_limit": c.cpu_s,
        "cpu_extra_time": 0.0,
        "max_cpu_extra_time": 5.0,
        "wall_time_limit": wall,
        "max_wall_time_limit": c.wall_s,
        "memory_limit": mem,
        "max_memory_limit": c.memory_kb,
        "stack_limit": kb(l.stack).unwrap_or(c.stack_kb).min(c.stack_kb),
        "max_stack_limit": c.stack_kb,
        "max_processes_and_or_threads": l.pids.unwrap_or(c.processes).min(c.processes),
        "max_max_processes_and_or_threads": c.processes,
        "enable_per_process_and_thread_time_limit": false,
        "allow_enable_per_process_and_thread_time_limit": false,
        "enable_per_process_and_thread_memory_limit": false,
        "allow_enable_per_process_and_thread_memory_limit": false,
        "max_file_size": kb(l.file_size).unwrap_or(c.file_size_kb).min(c.file_size_kb),
        "max_max_file_size": c.file_size_kb,
        "number_of_runs": 1,
        "max_number_of_runs": wire::J0_MAX_NUMBER_OF_RUNS,
        "redirect_stderr_to_stdout": false,
        "max_extract_size": 0,
        "enable_batched_submissions": true,
        "max_submission_batch_size": wire::MAX_BATCH,
        "submission_cache_duration": st.cfg.keep_for.as_secs_f64(),
        "use_docs_as_homepage": false,
        "allow_enable_network": false,
        "enable_network": false,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::job::{JobOutcome, RunOutcome, StepOutcome};
    use std::time::Instant;

    fn snap(status: JobStatus, steps: Vec<StepOutcome>) -> JobSnapshot {
        JobSnapshot {
            id: "0123456789abcdef0123456789abcdef".into(),
            profile: "strict".into(),
            image: None,
            status,
            outcome: Arc::new(JobOutcome {
                steps,
                ..JobOutcome::default()
            }),
            created: Instant::now(),
            created_at: SystemTime::now(),
            started: None,
            started_at: None,
            finished: None,
            finished_at: None,
            error: Some("workspace: no space".into()),
        }
    }

    fn step(name: &str, verdict: Verdict, r: RunResult) -> StepOutcome {
        StepOutcome {
            name: name.into(),
            verdict,
            run: Some(RunOutcome {
                verdict,
                result: Some(r),
            }),
            tests: Vec::new(),
            message: None,
        }
    }

    #[test]
    fn statuses_map_from_our_verdicts() {
        let id = |s: &JobSnapshot| status_of(s, None).0;
        assert_eq!(id(&snap(JobStatus::Queued, vec![])), 1);
        assert_eq!(id(&snap(JobStatus::Running, vec![])), 2);
        let failed = snap(JobStatus::Failed, vec![]);
        assert_eq!(
            status_of(&failed, None),
            (13, Some("workspace: no space".into()))
        );
        assert_eq!(id(&snap(JobStatus::Cancelled, vec![])), 13);
        let rt = Verdict::Run(Status::RuntimeError);
        let sig = |s| RunResult {
            signal: Some(s),
            ..RunResult::default()
        };
        let ok = step("compile", Verdict::Run(Status::Ok), RunResult::default());
        for (v, r, want) in [
            (Verdict::Run(Status::Ok), RunResult::default(), 3),
            (Verdict::WrongAnswer, RunResult::default(), 4),
            (Verdict::Run(Status::WallTimeLimit), RunResult::default(), 5),
            (rt, sig(libc::SIGSEGV), 7),
            (rt, sig(libc::SIGXFSZ), 8),
            (rt, sig(libc::SIGFPE), 9),
            (rt, sig(libc::SIGABRT), 10),
            (
                rt,
                RunResult {
                    exit_code: Some(1),
                    ..RunResult::default()
                },
                11,
            ),
            (rt, sig(libc::SIGKILL), 12),
            (Verdict::Run(Status::MemoryLimit), RunResult::default(), 12),
            (Verdict::Run(Status::SandboxError), RunResult::default(), 13),
            (
                rt,
                RunResult {
                    exec_failed: true,
                    ..RunResult::default()
                },
                14,
            ),
        ] {
            let s = snap(JobStatus::Completed, vec![ok.clone(), step("run", v, r)]);
            assert_eq!(id(&s), want, "{v:?}");
        }
        let bad = step("compile", rt, RunResult::default());
        let skipped = step("run", Verdict::Skipped, RunResult::default());
        assert_eq!(id(&snap(JobStatus::Completed, vec![bad, skipped])), 6);
        let s = snap(JobStatus::Completed, vec![]);
        let v = result_json("t", &s, wire::ALL_FIELDS, false, &Meta::default());
        assert_eq!(v["status"]["description"], "Internal Error");
    }

    /// The one-pass form equals Judge0's rule written as it reads
    /// (split, rstrip each line, join, strip) on every short input over a
    /// small alphabet.
    #[test]
    fn streaming_strip_equals_split_and_join() {
        fn reference(b: &[u8]) -> Vec<u8> {
            let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0);
            let lines: Vec<&[u8]> = b
                .split(|&c| c == b'\n')
                .map(|l| &l[..l.iter().rposition(|c| !ws(c)).map_or(0, |i| i + 1)])
                .collect();
            let joined = lines.join(&b'\n');
            let start = joined.iter().position(|c| !ws(c)).unwrap_or(joined.len());
            let end = joined.iter().rposition(|c| !ws(c)).map_or(start, |i| i + 1);
            joined[start..end.max(start)].to_vec()
        }
        let alphabet = [b'a', b' ', b'\n', b'\r', 0u8, b'b'];
        for len in 0..=6u32 {
            for mut n in 0..alphabet.len().pow(len) {
                let mut v = Vec::new();
                for _ in 0..len {
                    v.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                assert_eq!(judge0_strip(&v), reference(&v), "{v:?}");
            }
        }
        let many = vec![b'\n'; 1000];
        let mut v = b"x".to_vec();
        v.extend_from_slice(&many);
        v.push(b'y');
        assert_eq!(judge0_strip(&v), reference(&v));
        assert_eq!(digest(Some(&many)), digest(Some(b"")));
    }

    #[test]
    fn judge0s_comparison() {
        assert_eq!(judge0_strip(b"\n  5 \t\r\n\n\0"), b"5");
        assert_eq!(judge0_strip(b"a  \nb\r\n"), b"a\nb");
        assert_eq!(judge0_strip(b" a\n b"), b"a\n b");
        assert_eq!(judge0_strip(b""), b"");
        assert_eq!(judge0_strip(b" \n\t"), b"");
        // Our wrong answer with only leading blank lines more: Judge0's Accepted.
        let exp = digest(Some(b"5"));
        let run = RunResult {
            stdout: b"\n5\n".to_vec(),
            ..RunResult::default()
        };
        let ok = step("run", Verdict::WrongAnswer, run);
        let s = snap(JobStatus::Completed, vec![ok]);
        assert_eq!(status_of(&s, exp.as_ref()).0, 3);
        assert_eq!(status_of(&s, digest(Some(b"6")).as_ref()).0, 4);
        assert_eq!(status_of(&s, None).0, 4);
    }

    #[test]
    fn versions_and_names() {
        for (line, v) in [
            ("gcc (Debian 12.2.0-14) 12.2.0", "12.2.0"),
            ("Python 3.11.2", "3.11.2"),
            ("go version go1.19.8 linux/amd64", "1.19.8"),
            ("v18.19.0", "18.19.0"),
            ("openjdk 17.0.13 2024-10-15", "17.0.13"),
            (
                "GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)",
                "5.2.15",
            ),
            (
                "ruby 3.1.2p20 (2022-04-12 revision 4491bb740a) [x86_64-linux-gnu]",
                "3.1.2",
            ),
            (
                "Free Pascal Compiler version 3.2.2+dfsg-20 [2023/03/30] for x86_64",
                "3.2.2",
            ),
        ] {
            assert_eq!(version_number(line).as_deref(), Some(v), "{line}");
        }
        assert_eq!(version_number("no digits here"), None);
        let v = "12.2.0".to_string();
        assert_eq!(judge0_name("C (GCC)", Some(&v)), "C (GCC 12.2.0)");
        assert_eq!(judge0_name("Bash", Some(&v)), "Bash (12.2.0)");
        assert_eq!(judge0_name("Bash", None), "Bash");
    }

    #[test]
    fn timestamps_are_judge0s() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_704_164_645_678);
        assert_eq!(timestamp(t), "2024-01-02T03:04:05.678Z");
        assert_eq!(
            timestamp(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
