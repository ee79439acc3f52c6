//! The job request as it travels: the body of `POST /v1/jobs`, as serde
//! types. They are the one description of the request: serde decodes the
//! body into them (`request::parse_request`, which then applies the
//! server's caps and checks), and utoipa derives the OpenAPI schemas from
//! them (`server::openapi`), doc comments becoming the schemas'
//! descriptions. Unknown fields are refused (`deny_unknown_fields`), as a
//! misspelt optional field silently ignored would run a different job.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};

pub use super::events::Encoding;

/// A job: files written into the workspace `/box`, then steps run in order
/// in it, then `outputs` copied out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// The profile every run of the job uses (`GET /v1/profiles`); `strict`
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "strict")]
    pub profile: Option<String>,
    /// An OCI image (`alpine:3.20`, `name@sha256:...`) the runs have as
    /// their root instead of the profile's; must be in the server's store
    /// and allowed by `--allow-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Files written into `/box` before the first step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileRequest>>,
    /// The steps, run in order; a failing step stops the job unless it has
    /// `continue_on_failure`.
    #[schema(min_items = 1)]
    pub steps: Vec<StepRequest>,
    /// Workspace-relative files returned with the results after the last
    /// step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<String>>,
}

/// A file written into the workspace before the first step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRequest {
    /// Relative to `/box`; no `..`, `.`, NUL or leading `/`.
    #[schema(example = "src/main.c")]
    pub path: String,
    /// The file's bytes, spelt as `encoding` says; empty when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// How `content` is spelt (`utf8` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// Mode 0755 rather than 0644.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<bool>,
}

/// A program run in the workspace, once, or once per test.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// The step's name in results and events (`step1`, `step2`, ... when
    /// absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// argv: the program and its arguments; never a shell string.
    #[schema(min_items = 1, example = json!(["/usr/bin/gcc", "-O2", "main.c"]))]
    pub command: Vec<String>,
    /// Environment variables added to the profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// The program's stdin (empty when absent). Not with `tests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// How `stdin` is spelt (`utf8` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_encoding: Option<Encoding>,
    /// Limits for this step: each may only tighten min(profile, server
    /// maxima).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsRequest>,
    /// When set, the run's stdout is compared with it (trailing whitespace
    /// of lines and trailing blank lines ignored): `wrong_answer` if it
    /// differs. Not with `tests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_stdout: Option<String>,
    /// How `expected_stdout` is spelt (`utf8` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_stdout_encoding: Option<Encoding>,
    /// Run the next steps even if this one fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_on_failure: Option<bool>,
    /// Run the program once per test, each with its own stdin and expected
    /// stdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<Vec<TestRequest>>,
}

/// One run of a step's program.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// The run's stdin (empty when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// How `stdin` is spelt (`utf8` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_encoding: Option<Encoding>,
    /// Compared with the run's stdout, as a step's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_stdout: Option<String>,
    /// How `expected_stdout` is spelt (`utf8` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_stdout_encoding: Option<Encoding>,
}

/// A step's limits: each may only tighten min(profile, server maxima).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    /// CPU time of all the run's processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time: Option<DurationSpec>,
    /// Time from the program's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time: Option<DurationSpec>,
    /// Memory of the run's cgroup (its tmpfs pages included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// Processes and threads (at least 2: the sandbox's init and the
    /// program).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 2)]
    pub pids: Option<Count>,
    /// Captured stdout and stderr, each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Size>,
    /// Largest file the run may write (RLIMIT_FSIZE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<Size>,
    /// Open file descriptors (RLIMIT_NOFILE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<Count>,
    /// Stack size (RLIMIT_STACK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<Size>,
}

/// A size in bytes: a number, or a string with a unit (`"64M"`, `"1.5G"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

/// A duration, greater than zero: `"1s"`, `"500ms"`, `"1.5s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSpec(pub Duration);

/// A whole number greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub u64);

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

// The leaves' messages say what a client should send, in the words the
// API documentation uses, rather than serde's "invalid type: ...".

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = Size;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a size (\"64M\" or a number of bytes)")
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
        Ok(Size(n))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
        u64::try_from(n)
            .map(Size)
            .map_err(|_| E::custom("expected a non-negative whole number of bytes"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Size, E> {
        Err(E::custom("expected a non-negative whole number of bytes"))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
        crate::profile::units::parse_size(s)
            .map(Size)
            .map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        d.deserialize_any(SizeVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = DurationSpec;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration string (\"1s\", \"500ms\")")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<DurationSpec, E> {
        let d = crate::profile::units::parse_duration(s).map_err(E::custom)?;
        if d.is_zero() {
            return Err(E::custom("must be greater than zero"));
        }
        Ok(DurationSpec(d))
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DurationSpec, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

struct CountVisitor;

impl Visitor<'_> for CountVisitor {
    type Value = Count;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number greater than zero")
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Count, E> {
        if n == 0 {
            return Err(E::custom("expected a whole number greater than zero"));
        }
        Ok(Count(n))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Count, E> {
        match u64::try_from(n) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::custom("expected a whole number greater than zero")),
        }
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Count, E> {
        Err(E::custom("expected a whole number greater than zero"))
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        d.deserialize_any(CountVisitor)
    }
}

// Their schemas, by hand: the leaves' custom (de)serialization above is
// what they describe.

impl utoipa::PartialSchema for Size {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .examples([serde_json::json!("64M")]),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(0)),
            )
            .description(Some(
                "A size in bytes: a number, or a string with a unit (\"64M\", \"1.5G\")",
            ))
            .into()
    }
}

impl ToSchema for Size {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Size")
    }
}

impl utoipa::PartialSchema for DurationSpec {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A duration greater than zero: \"1s\", \"500ms\", \"1.5s\"",
            ))
            .examples([serde_json::json!("1s")])
            .into()
    }
}

impl ToSchema for DurationSpec {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Duration")
    }
}

impl utoipa::PartialSchema for Count {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1))
            .description(Some("A whole number greater than zero"))
            .into()
    }
}

impl ToSchema for Count {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Count")
    }
}
