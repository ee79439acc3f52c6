//! The API's answers as typed wire structs: jobs, errors, health, the
//! profile list, the resolved profile. They are serialized as they are
//! (serde derive) and their OpenAPI schemas are derived from them (utoipa),
//! so the document and the bytes on the wire cannot drift apart.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;
use utoipa::ToSchema;

use crate::job::events::Encoding;
use crate::job::queue::JobSnapshot;
use crate::job::{OutputFile, RunOutcome, StepOutcome, verdict_message};
use crate::profile::{Limits, Profile, RootSource, SeccompAction};
use crate::runner::{RunResult, Usage};

/// An error: what is wrong, and for a refused request the offending field
/// (or header, or query parameter).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// The offending field, spelt as a path into the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "files[2].path")]
    pub field: Option<String>,
}

/// A job's status.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Spelt by `JobStatus::as_str`; here for the schema.
pub enum JobStatusName {
    Queued,
    Running,
    Completed,
    Cancelled,
    Failed,
}

/// A run's or a step's verdict.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Spelt by `Verdict::as_str`; here for the schema.
pub enum VerdictName {
    Ok,
    RuntimeError,
    TimeLimit,
    WallTimeLimit,
    MemoryLimit,
    OutputLimit,
    SandboxError,
    WrongAnswer,
    Cancelled,
    Skipped,
    WorkspaceLimit,
}

/// The answer to a job submitted without `wait`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Queued {
    pub id: String,
    /// Always `queued`.
    #[schema(value_type = String, example = "queued")]
    pub status: &'static str,
}

/// `GET /healthz`: `ok`, `shutting_down`, or `unhealthy` with what failed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
    /// What jobs need and is missing (`work directory: ...`, `cgroups: ...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<Vec<String>>,
}

/// The profiles the server offers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProfileList {
    pub profiles: Vec<ProfileEntry>,
}

/// A profile by name: its description, or why it does not load.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProfileEntry {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A job as `GET /v1/jobs/{id}` shows it: its state and results so far.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    #[schema(value_type = JobStatusName)]
    pub status: &'static str,
    pub profile: String,
    /// The job's image, normalized; null when it runs on the profile's root.
    pub image: Option<String>,
    /// Unix time, seconds.
    pub created_at: Option<f64>,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub steps: Vec<StepView>,
    /// The requested `outputs`, by path.
    pub outputs: BTreeMap<String, OutputView>,
    /// From start to finish, once finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// Time spent queued.
    pub queue_ms: f64,
    /// A failure of the engine itself (workspace, host ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a finished run reports (the `sandbox exec --json` fields but the
/// verdict and message).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunFields {
    pub exit_code: Option<i32>,
    /// The signal that killed the program (`SIGKILL`).
    pub signal: Option<String>,
    pub usage: Usage,
    /// The captured stdout, as `stdout_encoding` says.
    pub stdout: String,
    pub stdout_encoding: Encoding,
    pub stderr: String,
    pub stderr_encoding: Encoding,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

/// A run's fields, flattened into its step or test: all of them when it
/// ran, none when it did not (skipped, cancelled before it started).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct IfRan(pub Option<RunFields>);

// RunFields' schema with nothing required: derived on `Option<RunFields>`
// it would say the step itself may be null.
impl utoipa::PartialSchema for IfRan {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{RefOr, schema::Schema};
        let mut s = <RunFields as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(o)) = &mut s {
            o.required.clear();
            o.description =
                Some("The figures of a run: all present when it ran, none when it did not".into());
        }
        s
    }
}

impl ToSchema for IfRan {
    fn name() -> std::borrow::Cow<'static, str> {
        "RunFieldsIfRan".into()
    }
    fn schemas(
        out: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <RunFields as ToSchema>::schemas(out);
    }
}

/// One run: a test of a step. Its figures are absent when it did not run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunView {
    #[schema(value_type = VerdictName)]
    pub status: &'static str,
    #[serde(flatten)]
    pub run: IfRan,
    /// Why it ended so, when there is more to say (null when a run that
    /// ran has nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub message: Option<Option<String>>,
}

/// A step's results: the fields of its run, or its `tests`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepView {
    pub name: String,
    /// For a step with tests: ok when every test is ok, else the first
    /// failing test's verdict.
    #[schema(value_type = VerdictName)]
    pub status: &'static str,
    #[serde(flatten)]
    pub run: IfRan,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub message: Option<Option<String>>,
    /// A step with tests: each test's run, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tests: Option<Vec<RunView>>,
}

/// A copied-out file, or why it could not be.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum OutputView {
    Data {
        content: String,
        encoding: Encoding,
        /// Bytes.
        size: usize,
    },
    Error {
        error: String,
    },
}

fn ts(t: Option<SystemTime>) -> Option<f64> {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
}

fn encoding(e: &str) -> Encoding {
    if e == "base64" {
        Encoding::Base64
    } else {
        Encoding::Utf8
    }
}

fn run_fields(r: &RunResult) -> RunFields {
    let j = r.to_json(true);
    RunFields {
        exit_code: j.exit_code,
        signal: j.signal,
        usage: j.usage,
        stdout: j.stdout.unwrap_or_default(),
        stdout_encoding: encoding(j.stdout_encoding.as_deref().unwrap_or("")),
        stderr: j.stderr.unwrap_or_default(),
        stderr_encoding: encoding(j.stderr_encoding.as_deref().unwrap_or("")),
        stdout_truncated: j.stdout_truncated,
        stderr_truncated: j.stderr_truncated,
    }
}

impl RunView {
    /// A run that ran has a message, null or not; one that did not has
    /// the engine's own, if any.
    pub fn of(r: &RunOutcome) -> RunView {
        let verdict = verdict_message(r.verdict).map(String::from);
        let message = match &r.result {
            Some(res) => Some(verdict.or_else(|| res.message.clone())),
            None => verdict.map(Some),
        };
        RunView {
            status: r.verdict.as_str(),
            run: IfRan(r.result.as_ref().map(run_fields)),
            message,
        }
    }
}

impl StepView {
    pub fn of(s: &StepOutcome) -> StepView {
        let run = s.run.as_ref().map(RunView::of);
        let (fields, run_message) = match run {
            Some(r) => (r.run, r.message),
            None => (IfRan(None), None),
        };
        StepView {
            name: s.name.clone(),
            status: s.verdict.as_str(),
            run: fields,
            message: s.message.clone().map(Some).or(run_message),
            tests: (s.run.is_none() && !s.tests.is_empty())
                .then(|| s.tests.iter().map(RunView::of).collect()),
        }
    }
}

impl OutputView {
    pub fn of(f: &OutputFile) -> OutputView {
        match f {
            OutputFile::Data(b) => {
                let (content, enc) = crate::runner::result::encode_output(b);
                OutputView::Data {
                    content,
                    encoding: encoding(enc),
                    size: b.len(),
                }
            }
            OutputFile::Error(e) => OutputView::Error { error: e.clone() },
        }
    }
}

impl JobView {
    pub fn of(j: &JobSnapshot) -> JobView {
        JobView {
            id: j.id.clone(),
            status: j.status.as_str(),
            profile: j.profile.clone(),
            image: j.image.clone(),
            created_at: ts(Some(j.created_at)),
            started_at: ts(j.started_at),
            finished_at: ts(j.finished_at),
            steps: j.outcome.steps.iter().map(StepView::of).collect(),
            outputs: j
                .outcome
                .outputs
                .iter()
                .map(|(k, v)| (k.clone(), OutputView::of(v)))
                .collect(),
            duration_ms: j.duration().map(|d| d.as_secs_f64() * 1e3),
            queue_ms: j.queue_time().as_secs_f64() * 1e3,
            error: j.error.clone(),
        }
    }
}

/// A profile as `GET /v1/profiles/{name}` shows it, resolved (`extends`
/// applied): what a job's runs get.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProfileView {
    pub name: String,
    pub description: String,
    /// The namespaces a run gets of its own.
    pub namespaces: NamespacesView,
    pub filesystem: FilesystemView,
    pub process: ProcessView,
    pub capabilities: CapabilitiesView,
    pub seccomp: SeccompView,
    /// The profile's limits (a job's steps may only tighten them).
    pub limits: LimitsView,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NamespacesView {
    pub user: bool,
    pub pid: bool,
    pub mount: bool,
    pub network: bool,
    pub ipc: bool,
    pub uts: bool,
    pub cgroup: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FilesystemView {
    /// `host`, `image`, or the directory used as the root.
    pub root: String,
    /// The image of an `image` root.
    pub image: Option<String>,
    pub system_dirs: Vec<String>,
    pub binds: Vec<BindView>,
    pub tmpfs: Vec<TmpfsView>,
    /// Bytes.
    pub writable_layer_size: u64,
    /// Bytes.
    pub dev_shm_size: u64,
    pub workdir: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BindView {
    pub source: String,
    pub dest: String,
    pub writable: bool,
    pub optional: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TmpfsView {
    pub dest: String,
    /// Bytes.
    pub size: u64,
    /// Octal (`1777`).
    pub mode: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProcessView {
    pub uid: u32,
    pub gid: u32,
    /// The host uid a run's user is: one id, or the range runs take theirs
    /// from.
    pub host_uid: crate::profile::view::HostUidView,
    pub host_gid: Option<u32>,
    pub hostname: String,
    pub env: BTreeMap<String, String>,
    pub env_passthrough: Vec<String>,
    pub no_new_privs: bool,
    pub run_as_checkout_owner: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CapabilitiesView {
    /// Capabilities kept (`CAP_NET_BIND_SERVICE`).
    pub keep: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SeccompView {
    pub enabled: bool,
    pub default_action: ActionView,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub deny_action: ActionView,
    pub rules: Vec<RuleView>,
}

/// A seccomp action: its name, or an errno with its number.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ActionView {
    /// `kill_process`, `kill_thread`, `trap`, `log`, `allow`.
    Name(&'static str),
    Errno {
        /// `EPERM`, ...
        errno: String,
        value: i32,
    },
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RuleView {
    pub syscall: String,
    pub args: Vec<ArgView>,
    pub action: ActionView,
}

/// A condition on a syscall argument.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ArgView {
    pub index: u8,
    /// `Eq`, `Ne`, `Lt`, `Le`, `Gt`, `Ge`, `MaskedEq`.
    pub op: String,
    pub value: u64,
}

/// Limits as the request spells them: durations as `"1500ms"`, sizes in
/// bytes; null when unset.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LimitsView {
    pub cpu_time: Option<String>,
    pub wall_time: Option<String>,
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub output: Option<u64>,
    pub file_size: Option<u64>,
    pub open_files: Option<u64>,
    pub stack: Option<u64>,
    /// CPUs' worth of time per period (cgroup `cpu.max`).
    pub cpu_quota: Option<f64>,
}

fn action(a: &SeccompAction) -> ActionView {
    match a {
        SeccompAction::KillProcess => ActionView::Name("kill_process"),
        SeccompAction::KillThread => ActionView::Name("kill_thread"),
        SeccompAction::Trap => ActionView::Name("trap"),
        SeccompAction::Errno(n, name) => ActionView::Errno {
            errno: name.clone(),
            value: *n,
        },
        SeccompAction::Log => ActionView::Name("log"),
        SeccompAction::Allow => ActionView::Name("allow"),
    }
}

fn path(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

impl LimitsView {
    pub fn of(l: &Limits) -> LimitsView {
        let d = |d: Option<std::time::Duration>| d.map(|d| format!("{}ms", d.as_millis()));
        LimitsView {
            cpu_time: d(l.cpu_time),
            wall_time: d(l.wall_time),
            memory: l.memory,
            pids: l.pids,
            output: l.output,
            file_size: l.file_size,
            open_files: l.open_files,
            stack: l.stack,
            cpu_quota: l.cpu_quota,
        }
    }
}

impl ProfileView {
    pub fn of(p: &Profile) -> ProfileView {
        let ns = &p.namespaces;
        let fs = &p.filesystem;
        let pr = &p.process;
        let (host_uid, host_gid) = crate::profile::view::HostUidView::of(&pr.host_ids);
        ProfileView {
            name: p.name.clone(),
            description: p.description.clone(),
            namespaces: NamespacesView {
                user: ns.user,
                pid: ns.pid,
                mount: ns.mount,
                network: ns.network,
                ipc: ns.ipc,
                uts: ns.uts,
                cgroup: ns.cgroup,
            },
            filesystem: FilesystemView {
                root: match &fs.root {
                    RootSource::Host => "host".to_string(),
                    RootSource::Dir(d) => path(d),
                    RootSource::Image(_) => "image".to_string(),
                },
                image: match &fs.root {
                    RootSource::Image(r) => Some(r.clone()),
                    _ => None,
                },
                system_dirs: fs.system_dirs.iter().map(|d| path(d)).collect(),
                binds: fs
                    .binds
                    .iter()
                    .map(|b| BindView {
                        source: path(&b.source),
                        dest: path(&b.dest),
                        writable: b.writable,
                        optional: b.optional,
                    })
                    .collect(),
                tmpfs: fs
                    .tmpfs
                    .iter()
                    .map(|t| TmpfsView {
                        dest: path(&t.dest),
                        size: t.size,
                        mode: format!("{:o}", t.mode),
                    })
                    .collect(),
                writable_layer_size: fs.writable_layer_size,
                dev_shm_size: fs.dev_shm_size,
                workdir: path(&fs.workdir),
            },
            process: ProcessView {
                uid: pr.uid,
                gid: pr.gid,
                host_uid,
                host_gid,
                hostname: pr.hostname.clone(),
                env: pr.env.clone(),
                env_passthrough: pr.env_passthrough.clone(),
                no_new_privs: pr.no_new_privs,
                run_as_checkout_owner: pr.run_as_checkout_owner,
            },
            capabilities: CapabilitiesView {
                keep: p.capabilities.keep.iter().map(|c| c.to_string()).collect(),
            },
            seccomp: SeccompView {
                enabled: p.seccomp.enabled,
                default_action: action(&p.seccomp.default_action),
                allow: p.seccomp.allow.clone(),
                deny: p.seccomp.deny.clone(),
                deny_action: action(&p.seccomp.deny_action),
                rules: p
                    .seccomp
                    .rules
                    .iter()
                    .map(|r| RuleView {
                        syscall: r.syscall.clone(),
                        args: r
                            .args
                            .iter()
                            .map(|a| ArgView {
                                index: a.index,
                                op: format!("{:?}", a.op),
                                value: a.value,
                            })
                            .collect(),
                        action: action(&r.action),
                    })
                    .collect(),
            },
            limits: LimitsView::of(&p.limits),
        }
    }
}
