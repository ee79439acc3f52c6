//! The Judge0 request decoder: a submission's JSON body (Judge0 CE 1.13.1
//! field names and units) checked against the server's ceilings into a
//! [`Submission`], with every problem collected as Judge0 reports it
//! (`422 {"field": ["message", ...]}`). Pure (no I/O, no presets), so the
//! fuzz target `judge0_request` drives it directly.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde_json::{Map, Value};

/// Judge0's own maxima (config_info, 1.13.1 defaults); the server's
/// ceilings may be lower ([`Ceilings`]).
pub const J0_MAX_CPU_S: f64 = 15.0;
pub const J0_MAX_WALL_S: f64 = 20.0;
pub const J0_MAX_MEMORY_KB: u64 = 512_000;
pub const J0_MAX_PROCESSES: u64 = 120;
pub const J0_MAX_FILE_SIZE_KB: u64 = 4096;
pub const J0_MAX_STACK_KB: u64 = 128_000;
pub const J0_MAX_NUMBER_OF_RUNS: u64 = 20;
/// Judge0 refuses memory limits below this (KB).
pub const J0_MIN_MEMORY_KB: u64 = 2048;
/// Submissions in one batch (Judge0's `max_submission_batch_size`).
pub const MAX_BATCH: usize = 20;

/// The highest value each Judge0 limit may take here: Judge0's maximum or
/// the server's (profile capped by `--max-*`), whichever is lower.
#[derive(Debug, Clone, PartialEq)]
pub struct Ceilings {
    pub cpu_s: f64,
    pub wall_s: f64,
    pub memory_kb: u64,
    pub processes: u64,
    pub file_size_kb: u64,
    pub stack_kb: u64,
}

impl Default for Ceilings {
    fn default() -> Ceilings {
        Ceilings {
            cpu_s: J0_MAX_CPU_S,
            wall_s: J0_MAX_WALL_S,
            memory_kb: J0_MAX_MEMORY_KB,
            processes: J0_MAX_PROCESSES,
            file_size_kb: J0_MAX_FILE_SIZE_KB,
            stack_kb: J0_MAX_STACK_KB,
        }
    }
}

/// A decoded submission. Limits are `None` when the client left them to
/// the language's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Submission {
    pub language_id: u32,
    pub source_code: Vec<u8>,
    pub stdin: Vec<u8>,
    pub expected_output: Option<Vec<u8>>,
    /// Extra compiler arguments, split on whitespace.
    pub compiler_options: Vec<String>,
    /// Extra program arguments, split on whitespace.
    pub command_line_arguments: Vec<String>,
    pub cpu_time_limit: Option<Duration>,
    pub wall_time_limit: Option<Duration>,
    /// Bytes (Judge0 gives KB).
    pub memory_limit: Option<u64>,
    /// Bytes.
    pub stack_limit: Option<u64>,
    pub max_processes_and_or_threads: Option<u64>,
    /// Bytes.
    pub max_file_size: Option<u64>,
    pub redirect_stderr_to_stdout: bool,
}

/// Judge0's validation errors: field → messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Errors(pub BTreeMap<String, Vec<String>>);

impl Errors {
    fn add(&mut self, field: &str, msg: impl Into<String>) {
        self.0
            .entry(field.to_string())
            .or_default()
            .push(msg.into());
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect(),
        )
    }
}

/// Fields a submission may carry; any other is refused (a typo must not
/// silently run with defaults).
const KNOWN: &[&str] = &[
    "source_code",
    "language_id",
    "compiler_options",
    "command_line_arguments",
    "stdin",
    "expected_output",
    "cpu_time_limit",
    "cpu_extra_time",
    "wall_time_limit",
    "memory_limit",
    "stack_limit",
    "max_processes_and_or_threads",
    "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "max_file_size",
    "redirect_stderr_to_stdout",
    "enable_network",
    "number_of_runs",
    "callback_url",
    "additional_files",
];

/// Longest `compiler_options` / `command_line_arguments` (Judge0: 512).
const MAX_ARGS_LEN: usize = 512;

/// Decodes Judge0's base64: standard alphabet, line breaks allowed (Ruby's
/// `Base64.encode64` wraps at 60 columns).
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let clean: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

/// A Judge0 number: a JSON number or a numeric string (Rails casts both).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

fn present<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    m.get(k).filter(|v| !v.is_null())
}

/// A text field, decoded from base64 if asked. `None` when absent or null.
fn text(m: &Map<String, Value>, k: &str, b64: bool, e: &mut Errors) -> Option<Vec<u8>> {
    let v = present(m, k)?;
    let Some(s) = v.as_str() else {
        e.add(k, "must be a string");
        return None;
    };
    if b64 {
        match decode_base64(s) {
            Some(b) => Some(b),
            None => {
                e.add(k, "is not valid base64 (base64_encoded=true)");
                None
            }
        }
    } else {
        Some(s.as_bytes().to_vec())
    }
}

fn args(m: &Map<String, Value>, k: &str, e: &mut Errors) -> Vec<String> {
    let Some(v) = present(m, k) else {
        return Vec::new();
    };
    let Some(s) = v.as_str() else {
        e.add(k, "must be a string");
        return Vec::new();
    };
    if s.len() > MAX_ARGS_LEN {
        e.add(
            k,
            format!("is too long (maximum is {MAX_ARGS_LEN} characters)"),
        );
        return Vec::new();
    }
    if s.contains('\0') {
        e.add(k, "contains a NUL byte");
        return Vec::new();
    }
    s.split_ascii_whitespace().map(str::to_string).collect()
}

/// A limit in `[min, max]` (Judge0's numericality checks), or `None`.
fn limit(m: &Map<String, Value>, k: &str, min: f64, max: f64, e: &mut Errors) -> Option<f64> {
    let v = present(m, k)?;
    let Some(n) = number(v) else {
        e.add(k, "is not a number");
        return None;
    };
    if n < min {
        e.add(k, format!("must be greater than or equal to {min}"));
        return None;
    }
    if n > max {
        e.add(k, format!("must be less than or equal to {max}"));
        return None;
    }
    Some(n)
}

fn secs(n: Option<f64>, e: &mut Errors, k: &str) -> Option<Duration> {
    let n = n?;
    if n <= 0.0 {
        e.add(k, "must be greater than 0");
        return None;
    }
    Duration::try_from_secs_f64(n).ok()
}

/// Decodes one submission object (`v`) with base64 `b64` against `ceil`.
pub fn decode_submission(v: &Value, b64: bool, ceil: &Ceilings) -> Result<Submission, Errors> {
    let mut e = Errors::default();
    let Some(m) = v.as_object() else {
        e.add("submission", "must be a JSON object");
        return Err(e);
    };
    for k in m.keys() {
        if !KNOWN.contains(&k.as_str()) {
            e.add(k, "is not a Judge0 submission field");
        }
    }
    let language_id = match present(m, "language_id").map(number) {
        None => {
            e.add("language_id", "can't be blank");
            0
        }
        Some(Some(n)) if n >= 0.0 && n.fract() == 0.0 && n <= f64::from(u32::MAX) => n as u32,
        Some(_) => {
            e.add("language_id", "is not an integer");
            0
        }
    };
    let source_code = text(m, "source_code", b64, &mut e);
    if source_code.as_ref().is_none_or(Vec::is_empty) && !e.0.contains_key("source_code") {
        e.add("source_code", "can't be blank");
    }
    let stdin = text(m, "stdin", b64, &mut e).unwrap_or_default();
    let expected_output = text(m, "expected_output", b64, &mut e);
    let compiler_options = args(m, "compiler_options", &mut e);
    let command_line_arguments = args(m, "command_line_arguments", &mut e);
    let cpu = limit(m, "cpu_time_limit", 0.0, ceil.cpu_s, &mut e);
    let cpu_time_limit = secs(cpu, &mut e, "cpu_time_limit");
    // Accepted and not applied: the CPU limit is exact here (no grace).
    let _ = limit(m, "cpu_extra_time", 0.0, 5.0, &mut e);
    let wall = limit(m, "wall_time_limit", 0.0, ceil.wall_s, &mut e);
    let wall_time_limit = secs(wall, &mut e, "wall_time_limit");
    let kb = |n: Option<f64>| n.map(|n| (n as u64).saturating_mul(1024));
    let memory_limit = kb(limit(
        m,
        "memory_limit",
        J0_MIN_MEMORY_KB as f64,
        ceil.memory_kb as f64,
        &mut e,
    ));
    let stack_limit = kb(limit(m, "stack_limit", 0.0, ceil.stack_kb as f64, &mut e));
    let max_processes_and_or_threads = limit(
        m,
        "max_processes_and_or_threads",
        1.0,
        ceil.processes as f64,
        &mut e,
    )
    .map(|n| n as u64);
    let max_file_size = kb(limit(
        m,
        "max_file_size",
        0.0,
        ceil.file_size_kb as f64,
        &mut e,
    ));
    // Accepted, run once (documented): one run is what is reported anyway.
    let _ = limit(
        m,
        "number_of_runs",
        1.0,
        J0_MAX_NUMBER_OF_RUNS as f64,
        &mut e,
    );
    let flag = |k: &str, e: &mut Errors| match present(m, k).map(boolean) {
        None => false,
        Some(Some(b)) => b,
        Some(None) => {
            e.add(k, "must be true or false");
            false
        }
    };
    let redirect_stderr_to_stdout = flag("redirect_stderr_to_stdout", &mut e);
    if flag("enable_network", &mut e) {
        e.add("enable_network", "network is not allowed on this server");
    }
    for k in [
        "enable_per_process_and_thread_time_limit",
        "enable_per_process_and_thread_memory_limit",
    ] {
        if flag(k, &mut e) {
            e.add(
                k,
                "per-process limits are not supported (limits cover the whole run)",
            );
        }
    }
    // A judge must not become a request forger: no callbacks at all.
    if present(m, "callback_url").is_some() {
        e.add(
            "callback_url",
            "callbacks are not supported by this server (poll GET /submissions/{token} or use wait=true)",
        );
    }
    if present(m, "additional_files").is_some() {
        e.add(
            "additional_files",
            "additional files are not supported by this server",
        );
    }
    if !e.is_empty() {
        return Err(e);
    }
    Ok(Submission {
        language_id,
        source_code: source_code.unwrap_or_default(),
        stdin,
        expected_output,
        compiler_options,
        command_line_arguments,
        cpu_time_limit,
        wall_time_limit,
        memory_limit,
        stack_limit,
        max_processes_and_or_threads,
        max_file_size,
        redirect_stderr_to_stdout,
    })
}

/// The submissions of a batch body `{"submissions": [...]}`: each decoded
/// on its own (Judge0 answers per item), at most [`MAX_BATCH`].
pub fn decode_batch(
    v: &Value,
    b64: bool,
    ceil: &Ceilings,
) -> Result<Vec<Result<Submission, Errors>>, Errors> {
    let mut e = Errors::default();
    let Some(list) = v.get("submissions").and_then(Value::as_array) else {
        e.add("submissions", "must be an array of submissions");
        return Err(e);
    };
    if list.is_empty() {
        e.add("submissions", "can't be empty");
        return Err(e);
    }
    if list.len() > MAX_BATCH {
        e.add(
            "submissions",
            format!(
                "size of submissions batch is {}, which is bigger than maximum size of {MAX_BATCH}",
                list.len()
            ),
        );
        return Err(e);
    }
    Ok(list
        .iter()
        .map(|s| decode_submission(s, b64, ceil))
        .collect())
}

/// A Judge0 token (a UUID v4, which the SDK insists on) for a job id of
/// 32 hex digits: its bits with the version and variant set. The server
/// keeps the token → id map (the 6 overwritten bits are not recoverable).
pub fn token_for(id: &str) -> String {
    let mut h: Vec<u8> = id
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    h.resize(32, b'0');
    h[12] = b'4';
    h[16] = b"89ab"[usize::from(hex_val(h[16]) & 3)];
    let s = String::from_utf8_lossy(&h).into_owned();
    format!(
        "{}-{}-{}-{}-{}",
        &s[..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..]
    )
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    }
}

/// The result fields Judge0 answers when `fields` is not given.
pub const DEFAULT_FIELDS: &[&str] = &[
    "token",
    "stdout",
    "stderr",
    "compile_output",
    "message",
    "exit_code",
    "exit_signal",
    "status",
    "created_at",
    "finished_at",
    "time",
    "wall_time",
    "memory",
];

/// Every result field this server knows (`fields=*`).
pub const ALL_FIELDS: &[&str] = &[
    "token",
    "stdout",
    "stderr",
    "compile_output",
    "message",
    "exit_code",
    "exit_signal",
    "status",
    "status_id",
    "language_id",
    "created_at",
    "finished_at",
    "time",
    "wall_time",
    "memory",
];

/// The `fields` query: `None`/empty → the default set, `*` → all; an
/// unknown name is an error (Judge0: 400 `{"error": "invalid fields: [...]"}`).
pub fn select_fields(q: Option<&str>) -> Result<Vec<&'static str>, String> {
    let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) else {
        return Ok(DEFAULT_FIELDS.to_vec());
    };
    if q == "*" {
        return Ok(ALL_FIELDS.to_vec());
    }
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for f in q.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        match ALL_FIELDS.iter().find(|k| **k == f) {
            Some(k) if !out.contains(k) => out.push(*k),
            Some(_) => {}
            None => bad.push(f.to_string()),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(format!("invalid fields: [{}]", bad.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_and_refuses_like_judge0() {
        let c = Ceilings::default();
        let s = decode_submission(
            &json!({"language_id": 71, "source_code": "cHJpbnQoMSk=\n", "memory_limit": 128000.0}),
            true,
            &c,
        )
        .unwrap();
        assert_eq!(s.source_code, b"print(1)");
        assert_eq!(s.memory_limit, Some(128000 * 1024));
        let e = decode_submission(
            &json!({"source_code": "x", "cpu_time_limit": 99, "callback_url": "http://x/", "bogus": 1}),
            false,
            &c,
        )
        .unwrap_err();
        for k in ["language_id", "cpu_time_limit", "callback_url", "bogus"] {
            assert!(e.0.contains_key(k), "{k}: {e:?}");
        }
        assert!(decode_submission(&json!([]), false, &c).is_err());
    }

    #[test]
    fn tokens_are_uuid_v4() {
        let t = token_for("0123456789abcdef0123456789abcdef");
        assert_eq!(t.len(), 36);
        assert_eq!(&t[14..15], "4");
        assert!("89ab".contains(&t[19..20]));
    }

    #[test]
    fn fields() {
        assert_eq!(select_fields(None).unwrap(), DEFAULT_FIELDS);
        assert_eq!(select_fields(Some("*")).unwrap(), ALL_FIELDS);
        assert_eq!(
            select_fields(Some("status,token")).unwrap(),
            ["status", "token"]
        );
        assert!(select_fields(Some("nope")).is_err());
    }
}
