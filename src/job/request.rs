//! The job request: decoding a JSON body into its wire type
//! ([`super::wire::JobRequest`], serde) and validating that into a
//! [`JobSpec`] within the server's caps, with every error naming the
//! offending field (`steps[1].limits.memory`).

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, Deserializer, IntoDeserializer, Visitor};
use serde_json::Value;

use super::wire::{Count, Encoding, JobRequest, LimitsRequest, StepRequest, TestRequest};
use crate::profile::Limits;

/// A request error: what is wrong and where (`files[2].path`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the field in the request, empty for the body itself.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Caps on the shape of a request and the engine's own maxima.
#[derive(Debug, Clone)]
pub struct Caps {
    pub max_files: usize,
    pub max_steps: usize,
    pub max_tests: usize,
    pub max_argv: usize,
    /// Bytes per argument, name, path.
    pub max_arg_len: usize,
    pub max_outputs: usize,
    /// Server maxima applied on top of the profile's limits (`None` = the
    /// profile decides). A step may only go lower than min(profile, server).
    pub max_limits: Limits,
    /// Workspace size limit, bytes (all files of the job, checked after each step).
    pub workspace_size: u64,
    /// Largest file returned by `outputs`, bytes.
    pub max_output_file: u64,
    /// Captured stdout+stderr kept for the whole job, bytes: once spent,
    /// later runs keep no output bodies (they are still compared).
    pub max_job_output: u64,
}

impl Default for Caps {
    fn default() -> Caps {
        Caps {
            max_files: 256,
            max_steps: 16,
            max_tests: 256,
            max_argv: 1024,
            max_arg_len: 64 * 1024,
            max_outputs: 64,
            max_limits: Limits {
                cpu_time: Some(Duration::from_secs(60)),
                wall_time: Some(Duration::from_secs(120)),
                output: Some(1 << 20),
                ..Default::default()
            },
            workspace_size: 256 << 20,
            max_output_file: 8 << 20,
            max_job_output: 16 << 20,
        }
    }
}

/// A validated job.
#[derive(Debug, Clone, Default)]
pub struct JobSpec {
    pub profile: String,
    /// `"image"`, normalized: the job's runs have it as their root.
    pub image: Option<String>,
    pub files: Vec<InputFile>,
    pub steps: Vec<StepSpec>,
    /// Workspace-relative paths returned after the last step.
    pub outputs: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct InputFile {
    /// Workspace-relative, normalised (`src/main.c`).
    pub path: String,
    pub content: Vec<u8>,
    pub executable: bool,
}

/// Per-step limit overrides: each may only tighten ([`Limits::tighten`]).
pub use crate::profile::LimitOverrides;

#[derive(Debug, Clone, Default)]
pub struct StepSpec {
    pub name: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Vec<u8>,
    pub limits: LimitOverrides,
    pub expected_stdout: Option<Vec<u8>>,
    pub continue_on_failure: bool,
    pub tests: Vec<TestSpec>,
}

#[derive(Debug, Clone, Default)]
pub struct TestSpec {
    pub stdin: Vec<u8>,
    pub expected_stdout: Option<Vec<u8>>,
}

/// `field.k`, or `k` at the top.
fn sub(field: &str, k: &str) -> String {
    if field.is_empty() {
        k.to_string()
    } else {
        format!("{field}.{k}")
    }
}

/// A string the sandbox passes on (argv, names, environment): no NUL (the
/// kernel would cut it there), at most `max_arg_len` bytes.
fn string(s: String, field: &str, caps: &Caps) -> Result<String, FieldError> {
    if s.contains('\0') {
        return Err(FieldError::new(field, "contains a NUL byte"));
    }
    if s.len() > caps.max_arg_len {
        return Err(FieldError::new(
            field,
            format!("longer than {} bytes", caps.max_arg_len),
        ));
    }
    Ok(s)
}

fn at_most<T>(v: &[T], field: &str, max: usize) -> Result<(), FieldError> {
    if v.len() > max {
        return Err(FieldError::new(field, format!("more than {max} entries")));
    }
    Ok(())
}

/// The bytes of `content` as `encoding` spells them (`field` names
/// `content`).
fn bytes(
    content: Option<String>,
    enc: Option<Encoding>,
    field: &str,
) -> Result<Vec<u8>, FieldError> {
    let Some(s) = content else {
        return Ok(Vec::new());
    };
    match enc.unwrap_or(Encoding::Utf8) {
        Encoding::Utf8 => Ok(s.into_bytes()),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| FieldError::new(field, format!("invalid base64: {e}"))),
    }
}

/// A serde error as a [`FieldError`]: serde_path_to_error's path is
/// spelt as this module's fields are (`steps[0].command[1]`, `.` for the
/// body itself; an unknown field's path ends with its name). A missing
/// field is reported at its object: the field itself is named instead, as
/// a client needs to know which one.
fn decode_error(e: serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let msg = e.into_inner().to_string();
    // serde's wording, fixed by `de::Error::missing_field`.
    if let Some(name) = msg
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return FieldError::new(sub(&path, name), "required");
    }
    FieldError::new(path, msg)
}

/// A workspace-relative path: non-empty, relative, no `.`/`..`/empty
/// components, no NUL. Returned normalised.
pub fn check_rel_path(s: &str, field: &str) -> Result<String, FieldError> {
    if s.is_empty() {
        return Err(FieldError::new(field, "empty path"));
    }
    if s.contains('\0') {
        return Err(FieldError::new(field, "contains a NUL byte"));
    }
    if s.starts_with('/') {
        return Err(FieldError::new(
            field,
            "absolute paths are not allowed (paths are relative to the workspace /box)",
        ));
    }
    if s.len() > 4096 {
        return Err(FieldError::new(field, "path longer than 4096 bytes"));
    }
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" => {} // "a//b" and a trailing slash
            "." | ".." => {
                return Err(FieldError::new(
                    field,
                    "'.' and '..' components are not allowed",
                ));
            }
            c if c.len() > 255 => {
                return Err(FieldError::new(
                    field,
                    "a path component is longer than 255 bytes",
                ));
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(FieldError::new(field, "empty path"));
    }
    Ok(parts.join("/"))
}

fn limit_overrides(l: Option<LimitsRequest>, field: &str) -> Result<LimitOverrides, FieldError> {
    let Some(l) = l else {
        return Ok(LimitOverrides::default());
    };
    if let Some(Count(n)) = l.pids
        && n < 2
    {
        return Err(FieldError::new(
            sub(field, "pids"),
            "must be at least 2 (the sandbox's init and the program)",
        ));
    }
    Ok(LimitOverrides {
        cpu_time: l.cpu_time.map(|d| d.0),
        wall_time: l.wall_time.map(|d| d.0),
        memory: l.memory.map(|s| s.0),
        pids: l.pids.map(|c| c.0),
        output: l.output.map(|s| s.0),
        file_size: l.file_size.map(|s| s.0),
        open_files: l.open_files.map(|c| c.0),
        stack: l.stack.map(|s| s.0),
    })
}

/// The limits a step runs with: min(profile, server maxima), then the
/// step's overrides, each of which must not exceed that ceiling.
/// `field` is the step's limits field (`steps[1].limits`).
pub fn effective_limits(
    profile: &Limits,
    server: &Limits,
    o: &LimitOverrides,
    field: &str,
) -> Result<Limits, FieldError> {
    let mut l = profile.clone();
    l.cap(server);
    l.tighten(o)
        .map_err(|e| FieldError::new(sub(field, e.key), e.to_string()))?;
    Ok(l)
}

fn test_spec(t: TestRequest, field: &str) -> Result<TestSpec, FieldError> {
    let stdin = bytes(t.stdin, t.stdin_encoding, &sub(field, "stdin"))?;
    let expected_stdout = match t.expected_stdout {
        None => None,
        e => Some(bytes(
            e,
            t.expected_stdout_encoding,
            &sub(field, "expected_stdout"),
        )?),
    };
    Ok(TestSpec {
        stdin,
        expected_stdout,
    })
}

fn step_spec(s: StepRequest, i: usize, field: &str, caps: &Caps) -> Result<StepSpec, FieldError> {
    let name = match s.name {
        None => format!("step{}", i + 1),
        Some(n) => string(n, &sub(field, "name"), caps)?,
    };
    let cf = sub(field, "command");
    at_most(&s.command, &cf, caps.max_argv)?;
    if s.command.is_empty() {
        return Err(FieldError::new(&cf, "must name a program"));
    }
    let argv = s
        .command
        .into_iter()
        .enumerate()
        .map(|(j, a)| string(a, &format!("{cf}[{j}]"), caps))
        .collect::<Result<Vec<_>, _>>()?;
    if argv[0].is_empty() {
        return Err(FieldError::new(format!("{cf}[0]"), "empty program name"));
    }
    let mut env = Vec::new();
    if let Some(em) = s.env {
        let ef = sub(field, "env");
        if em.len() > caps.max_argv {
            return Err(FieldError::new(
                &ef,
                format!("more than {} entries", caps.max_argv),
            ));
        }
        for (k, v) in em {
            let f = sub(&ef, &k);
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(FieldError::new(
                    &f,
                    "variable names must be non-empty, without '=' or NUL",
                ));
            }
            let v = string(v, &f, caps)?;
            env.push((k, v));
        }
    }
    let has_stdin = s.stdin.is_some();
    let stdin = bytes(s.stdin, s.stdin_encoding, &sub(field, "stdin"))?;
    let expected_stdout = match s.expected_stdout {
        None => None,
        e => Some(bytes(
            e,
            s.expected_stdout_encoding,
            &sub(field, "expected_stdout"),
        )?),
    };
    let limits = limit_overrides(s.limits, &sub(field, "limits"))?;
    let mut tests = Vec::new();
    if let Some(ts) = s.tests {
        let tf = sub(field, "tests");
        at_most(&ts, &tf, caps.max_tests)?;
        for (j, t) in ts.into_iter().enumerate() {
            tests.push(test_spec(t, &format!("{tf}[{j}]"))?);
        }
        if !tests.is_empty() && (expected_stdout.is_some() || has_stdin) {
            return Err(FieldError::new(
                &tf,
                "a step with tests takes stdin and expected_stdout from each test, not from the step",
            ));
        }
    }
    Ok(StepSpec {
        name,
        argv,
        env,
        stdin,
        limits,
        expected_stdout,
        continue_on_failure: s.continue_on_failure.unwrap_or(false),
        tests,
    })
}

/// A JSON value as serde input, as strict as the request's documentation:
/// `serde_json::Value`'s own deserializer would also take an array for an
/// object (serde's derived structs accept their fields by position),
/// so `["strict", null, null, [...]]` would be a job. This one gives an
/// object's fields only from a JSON object; everything else is the value
/// as it is.
struct Strict<'a>(&'a Value);

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => de::Unexpected::Unsigned(u),
            (_, Some(i)) => de::Unexpected::Signed(i),
            _ => de::Unexpected::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

impl<'de> IntoDeserializer<'de, serde_json::Error> for Strict<'_> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for Strict<'_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => v.visit_u64(u),
                (_, Some(i)) => v.visit_i64(i),
                _ => v.visit_f64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => v.visit_str(s),
            Value::Array(a) => {
                let mut d = SeqDeserializer::new(a.iter().map(Strict));
                let r = v.visit_seq(&mut d)?;
                d.end()?;
                Ok(r)
            }
            Value::Object(m) => {
                let mut d = MapDeserializer::new(m.iter().map(|(k, x)| (k.as_str(), Strict(x))));
                let r = v.visit_map(&mut d)?;
                d.end()?;
                Ok(r)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(v),
            other => Err(de::Error::invalid_type(unexpected(other), &v)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Self::Error> {
        // Only unit variants (`"utf8"`) are in the request.
        match self.0 {
            Value::String(s) => v.visit_enum(s.as_str().into_deserializer()),
            other => Err(de::Error::invalid_type(unexpected(other), &v)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Self::Error> {
        v.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
        ignored_any
    }
}

/// Decode a job request body (already parsed as JSON) into its wire type:
/// serde does the shapes and types, and an error names its field.
pub fn decode_request(v: &Value) -> Result<JobRequest, FieldError> {
    serde_path_to_error::deserialize(Strict(v)).map_err(decode_error)
}

/// Parse and validate a job request body (already parsed as JSON): decoded
/// by [`decode_request`], then checked against the caps and the rules
/// serde cannot say ([`validate`]). Profile-dependent checks (limits) are
/// done by [`effective_limits`].
pub fn parse_request(v: &Value, caps: &Caps) -> Result<JobSpec, FieldError> {
    validate(decode_request(v)?, caps)
}

/// The [`JobSpec`] a decoded request asks for, within `caps`: lengths and
/// counts, NUL-free strings, traversal-free unique paths, encodings.
pub fn validate(r: JobRequest, caps: &Caps) -> Result<JobSpec, FieldError> {
    let profile = match r.profile {
        None => "strict".to_string(),
        Some(p) => string(p, "profile", caps)?,
    };
    let image = match r.image {
        None => None,
        Some(s) => {
            let s = string(s, "image", caps)?;
            let r = crate::image::Reference::parse(&s)
                .map_err(|e| FieldError::new("image", e.to_string()))?;
            Some(r.to_string())
        }
    };
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    if let Some(fs) = r.files {
        at_most(&fs, "files", caps.max_files)?;
        for (i, f) in fs.into_iter().enumerate() {
            let field = format!("files[{i}]");
            let pf = sub(&field, "path");
            let path = check_rel_path(&f.path, &pf)?;
            if !seen.insert(path.clone()) {
                return Err(FieldError::new(&pf, format!("duplicate path {path:?}")));
            }
            let content = bytes(f.content, f.encoding, &sub(&field, "content"))?;
            files.push(InputFile {
                path,
                content,
                executable: f.executable.unwrap_or(false),
            });
        }
    }
    // A file may not also be a directory of another ("a" and "a/b").
    for (i, f) in files.iter().enumerate() {
        let prefix = format!("{}/", f.path);
        if seen
            .range(prefix.clone()..)
            .next()
            .is_some_and(|p| p.starts_with(&prefix))
        {
            return Err(FieldError::new(
                format!("files[{i}].path"),
                format!("{:?} is also used as a directory by another file", f.path),
            ));
        }
    }
    at_most(&r.steps, "steps", caps.max_steps)?;
    if r.steps.is_empty() {
        return Err(FieldError::new("steps", "at least one step is required"));
    }
    let steps = r
        .steps
        .into_iter()
        .enumerate()
        .map(|(i, s)| step_spec(s, i, &format!("steps[{i}]"), caps))
        .collect::<Result<Vec<_>, _>>()?;
    let mut outputs = Vec::new();
    if let Some(os) = r.outputs {
        at_most(&os, "outputs", caps.max_outputs)?;
        let mut seen = BTreeSet::new();
        for (i, p) in os.iter().enumerate() {
            let f = format!("outputs[{i}]");
            let path = check_rel_path(p, &f)?;
            if !seen.insert(path.clone()) {
                return Err(FieldError::new(f, format!("duplicate path {path:?}")));
            }
            outputs.push(path);
        }
    }
    Ok(JobSpec {
        profile,
        image,
        files,
        steps,
        outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> FieldError {
        parse_request(&v, &Caps::default()).unwrap_err()
    }

    #[test]
    fn fields_are_named() {
        let e = err(
            json!({"steps":[{"command":["a"]}],"files":[{"path":"a"},{"path":"b"},{"path":"../x"}]}),
        );
        assert_eq!(e.field, "files[2].path");
        let e = err(json!({"steps":[{"command":["a"]}],"files":[{"path":"a"},{"path":"a"}]}));
        assert_eq!(e.field, "files[1].path");
        let e = err(json!({"steps":[{"command":["a", 3]}]}));
        assert_eq!(e.field, "steps[0].command[1]");
        let e = err(json!({"steps":[{"command":["a\u{0}b"]}]}));
        assert_eq!(e.field, "steps[0].command[0]");
        let e = err(json!({"steps":[{"command":["a"], "bogus": 1}]}));
        assert_eq!(e.field, "steps[0].bogus");
        let e = err(json!({"steps":[{"command":["a"],"limits":{"memory":"x"}}]}));
        assert_eq!(e.field, "steps[0].limits.memory");
        let e = err(json!({"steps":[]}));
        assert_eq!(e.field, "steps");
        let e = err(json!({"steps":[{"command":["a"]}],"files":[{"path":"/etc/x"}]}));
        assert_eq!(e.field, "files[0].path");
        let e = err(json!({"steps":[{"command":["a"]}],"files":[{"path":"d"},{"path":"d/x"}]}));
        assert_eq!(e.field, "files[0].path");
    }

    #[test]
    fn decode_errors_name_their_field() {
        for (v, field) in [
            (json!([1]), ""),
            (json!(["strict", null, null, [{"command": ["a"]}]]), ""),
            (json!({"steps": [["x", ["a"]]]}), "steps[0]"),
            (json!({}), "steps"),
            (json!({"steps": "x"}), "steps"),
            (json!({"bogus": 1, "steps": [{"command": ["a"]}]}), "bogus"),
            (
                json!({"steps": [{"command": ["a"], "limits": {"limits": 1}}]}),
                "steps[0].limits.limits",
            ),
            (json!({"steps": [{}]}), "steps[0].command"),
            (
                json!({"steps": [{"command": "/bin/true"}]}),
                "steps[0].command",
            ),
            (
                json!({"steps": [{"command": ["a"], "env": {"A": 1}}]}),
                "steps[0].env.A",
            ),
            (
                json!({"steps": [{"command": ["a"], "limits": {"bogus": 1}}]}),
                "steps[0].limits.bogus",
            ),
            (
                json!({"steps": [{"command": ["a"], "limits": {"pids": 1}}]}),
                "steps[0].limits.pids",
            ),
            (
                json!({"steps": [{"command": ["a"], "limits": {"pids": 1.5}}]}),
                "steps[0].limits.pids",
            ),
            (
                json!({"steps": [{"command": ["a"], "limits": {"memory": 1e30}}]}),
                "steps[0].limits.memory",
            ),
            (
                json!({"steps": [{"command": ["a"], "limits": {"cpu_time": "0s"}}]}),
                "steps[0].limits.cpu_time",
            ),
            (
                json!({"steps": [{"command": ["a"], "limits": {"wall_time": 5}}]}),
                "steps[0].limits.wall_time",
            ),
            (
                json!({"steps": [{"command": ["a"], "stdin_encoding": "hex"}]}),
                "steps[0].stdin_encoding",
            ),
            (
                json!({"steps": [{"command": ["a"], "stdin": "!", "stdin_encoding": "base64"}]}),
                "steps[0].stdin",
            ),
            (
                json!({"steps": [{"command": ["a"], "tests": [{"x": 1}]}]}),
                "steps[0].tests[0].x",
            ),
            (
                json!({"steps": [{"command": ["a"]}], "files": [{}]}),
                "files[0].path",
            ),
            (
                json!({"steps": [{"command": ["a"]}], "files": [{"path": "a", "content": "!", "encoding": "base64"}]}),
                "files[0].content",
            ),
            (
                json!({"steps": [{"command": ["a"]}], "outputs": ["a", 1]}),
                "outputs[1]",
            ),
        ] {
            let e = err(v.clone());
            assert_eq!(e.field, field, "{v}: {e}");
            assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn limits_only_tighten() {
        let p = Limits {
            memory: Some(512 << 20),
            ..Default::default()
        };
        let s = Caps::default().max_limits;
        let o = LimitOverrides {
            memory: Some(1 << 30),
            ..Default::default()
        };
        let e = effective_limits(&p, &s, &o, "steps[0].limits").unwrap_err();
        assert_eq!(e.field, "steps[0].limits.memory");
        let o = LimitOverrides {
            memory: Some(64 << 20),
            cpu_time: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let l = effective_limits(&p, &s, &o, "x").unwrap();
        assert_eq!(l.memory, Some(64 << 20));
        assert_eq!(l.wall_time, s.wall_time);
        assert_eq!(l.cpu_time, Some(Duration::from_secs(1)));
    }
}
