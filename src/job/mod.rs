//! Jobs: steps, tests, files, the shared workspace, results.
//!
//! A job is a profile, input files and ordered steps. [`run_job`] writes the
//! files into a [`Workspace`] (a host directory owned by the job's host
//! uid/gid, see [`Sandbox::job_ids`]), then runs every step — and every test of a step — in its own
//! fresh container ([`Sandbox::run`]) with the workspace bound read-write at
//! `/box`, the working directory. After each step the workspace size is
//! checked. Finally the files named in `outputs` are copied out without ever
//! following a symlink. [`queue`] holds jobs from their submission to their
//! end, behind the interface a front door uses ([`queue::JobBackend`]).

pub mod events;
pub mod instance;
pub mod queue;
pub mod request;
pub mod wire;
pub mod workspace;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::profile::{BindMount, Limits};
use crate::runner::{CancelOn, JobIds, OutputSpec, RunResult, RunSpec, Sandbox, Status, StdinSpec};
use events::{Event, EventLog, RunEnd, RunTap};
pub use request::{Caps, FieldError, InputFile, JobSpec, StepSpec, TestSpec, parse_request};
pub use workspace::{BOX, Workspace, WorkspaceError};

/// The verdict of one run, a step or a test: the runner's statuses plus
/// what only the job engine can decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Run(Status),
    /// Ran fine, stdout differs from `expected_stdout`.
    WrongAnswer,
    /// Killed (or never started) because the job was cancelled.
    Cancelled,
    /// Not run: an earlier step failed.
    Skipped,
    /// The step left the workspace over its size limit.
    WorkspaceLimit,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Run(s) => s.as_str(),
            Verdict::WrongAnswer => "wrong_answer",
            Verdict::Cancelled => "cancelled",
            Verdict::Skipped => "skipped",
            Verdict::WorkspaceLimit => "workspace_limit",
        }
    }

    pub fn is_ok(self) -> bool {
        self == Verdict::Run(Status::Ok)
    }
}

#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub verdict: Verdict,
    pub result: Option<RunResult>,
}

#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub name: String,
    /// For a step with tests: ok when every test is ok, else the first
    /// failing test's verdict.
    pub verdict: Verdict,
    /// The run of a step without tests.
    pub run: Option<RunOutcome>,
    pub tests: Vec<RunOutcome>,
    pub message: Option<String>,
}

/// A copied-out file or why it could not be.
#[derive(Debug, Clone)]
pub enum OutputFile {
    Data(Vec<u8>),
    Error(String),
}

#[derive(Debug, Clone, Default)]
pub struct JobOutcome {
    pub steps: Vec<StepOutcome>,
    pub outputs: BTreeMap<String, OutputFile>,
    pub cancelled: bool,
    /// A failure of the engine itself (workspace creation, ...).
    pub error: Option<String>,
}

/// Normalise for comparison: split on `\n`, strip trailing whitespace
/// (space, `\t`, `\r`, `\x0b`, `\x0c`) from each line, drop trailing empty
/// lines. Everything else (leading spaces, inner spaces, case) must match.
pub fn normalize_output(b: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = b
        .split(|&c| c == b'\n')
        .map(|l| {
            let end = l
                .iter()
                .rposition(|c| !matches!(c, b' ' | b'\t' | b'\r' | 0x0b | 0x0c))
                .map_or(0, |i| i + 1);
            &l[..end]
        })
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// Whether `actual` matches `expected` under [`normalize_output`].
pub fn output_matches(expected: &[u8], actual: &[u8]) -> bool {
    normalize_output(expected) == normalize_output(actual)
}

/// Everything a run needs besides the sandbox.
pub struct JobContext<'a> {
    pub sandbox: &'a Sandbox,
    pub workspace: &'a Workspace,
    /// Per-step effective limits (see [`request::effective_limits`]).
    pub limits: &'a [Limits],
    pub caps: &'a Caps,
    /// When set, running steps are killed and no more start.
    pub cancel: Option<CancelOn>,
    /// The job's host ids ([`Sandbox::job_ids`]), which own the workspace:
    /// every step and test runs as them.
    pub ids: Arc<JobIds>,
    /// The job's live log: steps, tests, their output as it comes, their
    /// verdicts (`None`: nobody follows the job).
    pub events: Option<Arc<EventLog>>,
}

impl JobContext<'_> {
    fn event(&self, e: Event) {
        if let Some(log) = &self.events {
            log.push(e);
        }
    }
}

fn cancelled(c: &Option<CancelOn>) -> bool {
    c.as_ref().is_some_and(CancelOn::is_set)
}

/// Keep output bodies while the job's budget lasts; past it, drop them
/// (marked truncated, with a message) so a job cannot hold unbounded memory.
fn charge_output(r: &mut RunOutcome, left: &mut u64) {
    let Some(res) = r.result.as_mut() else { return };
    let n = (res.stdout.len() + res.stderr.len()) as u64;
    if n <= *left {
        *left -= n;
        return;
    }
    *left = 0;
    if !res.stdout.is_empty() {
        res.stdout.clear();
        res.stdout_truncated = true;
    }
    if !res.stderr.is_empty() {
        res.stderr.clear();
        res.stderr_truncated = true;
    }
    if res.message.is_none() {
        res.message = Some("output not kept: the job's output budget is spent".into());
    }
}

/// Which run of the job: step `.0`, test `.1` of it if any.
type RunAt = (usize, Option<usize>);

fn run_one(
    ctx: &JobContext<'_>,
    at: RunAt,
    step: &StepSpec,
    limits: &Limits,
    stdin: &[u8],
    expected: Option<&[u8]>,
) -> RunOutcome {
    if cancelled(&ctx.cancel) {
        return RunOutcome {
            verdict: Verdict::Cancelled,
            result: None,
        };
    }
    let mut limits = limits.clone();
    // One file can never be bigger than the whole workspace.
    limits.file_size = Some(
        limits
            .file_size
            .map_or(ctx.caps.workspace_size, |f| f.min(ctx.caps.workspace_size)),
    );
    let spec = RunSpec {
        argv: step.argv.clone(),
        binds: vec![BindMount {
            source: ctx.workspace.path().to_path_buf(),
            dest: PathBuf::from(BOX),
            writable: true,
            optional: false,
        }],
        // A profile's "." is the job's workspace (ci's /workspace).
        base_dir: Some(ctx.workspace.path().to_path_buf()),
        env: step.env.clone(),
        cwd: Some(PathBuf::from(BOX)),
        limits,
        stdin: StdinSpec::Bytes(stdin.to_vec()),
        stdout: OutputSpec::Capture,
        stderr: OutputSpec::Capture,
        cancel: ctx.cancel.clone(),
        job: Some(ctx.ids.clone()),
        ..RunSpec::default()
    };
    let tap = ctx
        .events
        .as_ref()
        .map(|log| Arc::new(RunTap::new(log.clone(), at.0, at.1)));
    let spec = RunSpec {
        tap: tap.clone().map(|t| t as Arc<dyn crate::runner::OutputTap>),
        ..spec
    };
    let r = ctx.sandbox.run(&spec);
    if let Some(t) = tap {
        t.flush();
    }
    let was_cancelled = r.cancelled && cancelled(&ctx.cancel);
    let verdict = if was_cancelled {
        Verdict::Cancelled
    } else if r.status() == Status::Ok
        && let Some(exp) = expected
        && !output_matches(exp, &r.stdout)
    {
        Verdict::WrongAnswer
    } else {
        Verdict::Run(r.status())
    };
    RunOutcome {
        verdict,
        result: Some(r),
    }
}

/// Run a job whose files are already in the workspace. `progress` is called
/// with the outcome so far after every step and test.
pub fn run_job(
    ctx: &JobContext<'_>,
    spec: &JobSpec,
    progress: &mut dyn FnMut(&JobOutcome),
) -> JobOutcome {
    let mut out = JobOutcome::default();
    let mut stop = false;
    let mut budget = ctx.caps.max_job_output;
    for (i, step) in spec.steps.iter().enumerate() {
        let limits = ctx.limits.get(i).cloned().unwrap_or_default();
        let mut so = StepOutcome {
            name: step.name.clone(),
            verdict: Verdict::Skipped,
            run: None,
            tests: Vec::new(),
            message: None,
        };
        if stop {
            so.message = Some(if out.cancelled {
                "not run: the job was cancelled".into()
            } else {
                "not run: an earlier step failed".into()
            });
            step_ended(ctx, i, &so);
            out.steps.push(so);
            continue;
        }
        // A cancel that lands between steps (or before the first) marks the
        // step that would have run, as one landing during it does; the steps
        // after it are skipped either way, whatever the timing.
        if cancelled(&ctx.cancel) {
            so.verdict = Verdict::Cancelled;
            step_ended(ctx, i, &so);
            out.steps.push(so);
            out.cancelled = true;
            stop = true;
            continue;
        }
        let span = tracing::info_span!("step", n = i, name = %step.name);
        let _g = span.enter();
        ctx.event(Event::StepStarted {
            step: i,
            name: step.name.clone(),
            tests: step.tests.len(),
        });
        if step.tests.is_empty() {
            let mut r = run_one(
                ctx,
                (i, None),
                step,
                &limits,
                &step.stdin,
                step.expected_stdout.as_deref(),
            );
            // Charged like a test's: 16 steps of 2 × --max-output each
            // would otherwise add up past the job's budget.
            charge_output(&mut r, &mut budget);
            so.verdict = r.verdict;
            so.run = Some(r);
            out.steps.push(so);
        } else {
            so.verdict = Verdict::Run(Status::Ok);
            out.steps.push(so);
            for (k, t) in step.tests.iter().enumerate() {
                ctx.event(Event::TestStarted { step: i, test: k });
                let mut r = run_one(
                    ctx,
                    (i, Some(k)),
                    step,
                    &limits,
                    &t.stdin,
                    t.expected_stdout.as_deref(),
                );
                charge_output(&mut r, &mut budget);
                ctx.event(Event::TestEnded {
                    step: i,
                    test: k,
                    end: run_end(&r),
                });
                let last = out.steps.len() - 1;
                let s = &mut out.steps[last];
                if s.verdict.is_ok() && !r.verdict.is_ok() {
                    s.verdict = r.verdict;
                }
                s.tests.push(r);
                progress(&out);
            }
        }
        let last = out.steps.len() - 1;
        let used = ctx.workspace.usage(ctx.caps.workspace_size);
        if used > ctx.caps.workspace_size {
            let s = &mut out.steps[last];
            s.verdict = Verdict::WorkspaceLimit;
            s.message = Some(format!(
                "the workspace holds more than its limit of {} bytes",
                ctx.caps.workspace_size
            ));
        }
        let v = out.steps[last].verdict;
        tracing::info!(verdict = v.as_str(), "step finished");
        step_ended(ctx, i, &out.steps[last]);
        if v == Verdict::Cancelled || cancelled(&ctx.cancel) {
            out.cancelled = true;
        }
        if !v.is_ok() && (!step.continue_on_failure || v == Verdict::WorkspaceLimit) {
            stop = true;
        }
        progress(&out);
    }
    if !out.cancelled {
        // Copied-out files draw on the same per-job byte budget as captured
        // output: results are held in memory until the job is forgotten, so
        // (say) one big file hard-linked under many names must not multiply.
        for p in &spec.outputs {
            let cap = ctx.caps.max_output_file.min(budget);
            let f = match ctx.workspace.read_file(p, cap) {
                Ok(b) => {
                    budget = budget.saturating_sub(b.len() as u64);
                    OutputFile::Data(b)
                }
                Err(e) => OutputFile::Error(e),
            };
            out.outputs.insert(p.clone(), f);
        }
    }
    out
}

/// A run's end as events show it: its verdict and figures, and the
/// message its JSON result would carry.
fn run_end(r: &RunOutcome) -> RunEnd {
    let message = verdict_message(r.verdict).map(String::from);
    RunEnd::new(r.verdict.as_str(), r.result.as_ref(), message)
}

/// The message a verdict of the job engine's own puts on a run's result.
pub fn verdict_message(v: Verdict) -> Option<&'static str> {
    match v {
        Verdict::WrongAnswer => Some("stdout differs from expected_stdout"),
        Verdict::Cancelled => Some("cancelled"),
        _ => None,
    }
}

fn step_ended(ctx: &JobContext<'_>, i: usize, s: &StepOutcome) {
    ctx.event(Event::StepEnded {
        step: i,
        name: s.name.clone(),
        status: s.verdict.as_str().to_string(),
        message: s.message.clone(),
        run: s.run.as_ref().map(run_end),
    });
}

impl RunOutcome {
    fn shrink_to_fit(&mut self) {
        if let Some(r) = &mut self.result {
            r.stdout.shrink_to_fit();
            r.stderr.shrink_to_fit();
        }
    }

    fn heap_bytes(&self) -> u64 {
        let body = self.result.as_ref().map_or(0, |r| {
            r.stdout.capacity()
                + r.stderr.capacity()
                + r.message.as_ref().map_or(0, String::capacity)
        });
        (size_of::<RunOutcome>() + body) as u64
    }
}

impl JobOutcome {
    /// Give back the slack of the captured output buffers (they grow by
    /// doubling while a run is read): a finished job's results are kept
    /// for a while, and should hold only what they show.
    pub fn shrink_to_fit(&mut self) {
        for s in &mut self.steps {
            s.run.iter_mut().for_each(RunOutcome::shrink_to_fit);
            s.tests.iter_mut().for_each(RunOutcome::shrink_to_fit);
        }
    }

    /// Bytes this outcome holds on the heap: the output bodies and
    /// copied-out files exactly (their capacity), the names, messages and
    /// fixed-size parts near enough.
    pub fn heap_bytes(&self) -> u64 {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity) as u64;
        let steps: u64 = self
            .steps
            .iter()
            .map(|s| {
                (size_of::<StepOutcome>() + s.name.capacity()) as u64
                    + opt(&s.message)
                    + s.run.as_ref().map_or(0, RunOutcome::heap_bytes)
                    + s.tests.iter().map(RunOutcome::heap_bytes).sum::<u64>()
            })
            .sum();
        // A B-tree entry: the key, the value, about as much again of node.
        let outputs: u64 = self
            .outputs
            .iter()
            .map(|(k, v)| {
                let body = match v {
                    OutputFile::Data(b) => b.capacity(),
                    OutputFile::Error(e) => e.capacity(),
                };
                (2 * (size_of::<String>() + size_of::<OutputFile>()) + k.capacity() + body) as u64
            })
            .sum();
        size_of::<JobOutcome>() as u64 + steps + outputs + opt(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_rule() {
        assert!(output_matches(b"3\n", b"3"));
        assert!(output_matches(b"3\n", b"3  \r\n\n\n"));
        assert!(output_matches(b"a b\nc\n", b"a b \t\nc"));
        assert!(!output_matches(b"a b\n", b"a  b\n"));
        assert!(!output_matches(b"3\n", b" 3\n"));
        assert!(!output_matches(b"1\n\n2\n", b"1\n2\n"));
        assert!(output_matches(b"", b"\n\n"));
    }

    /// The bytes charged to the results budget are the output bodies and
    /// copied-out files as held (capacity, slack given back first), plus a
    /// little for the fixed parts.
    #[test]
    fn heap_bytes_counts_the_bodies() {
        let mut stdout = Vec::with_capacity(64 << 10);
        stdout.extend_from_slice(&[b'a'; 1000]);
        let run = RunOutcome {
            verdict: Verdict::Run(Status::Ok),
            result: Some(RunResult {
                stdout,
                stderr: vec![b'e'; 500],
                ..RunResult::default()
            }),
        };
        let mut out = JobOutcome {
            steps: vec![StepOutcome {
                name: "run".into(),
                verdict: Verdict::Run(Status::Ok),
                run: None,
                tests: vec![run.clone(), run],
                message: None,
            }],
            ..JobOutcome::default()
        };
        out.outputs
            .insert("out".into(), OutputFile::Data(vec![0; 5000]));
        assert!(out.heap_bytes() > 64 << 10, "the slack counts while held");
        out.shrink_to_fit();
        let bodies = 2 * (1000 + 500) + 5000;
        let n = out.heap_bytes();
        assert!(
            n >= bodies && n < bodies + 2048,
            "{n} for {bodies} bytes of bodies"
        );
    }

    /// Steps without tests draw on the job's output budget as tests do:
    /// once it is spent, later steps keep no output bodies.
    #[test]
    fn step_output_is_charged_to_the_job_budget() {
        let profile = crate::profile::load("strict").expect("bundled profile");
        let sandbox = Sandbox::new(profile).expect("sandbox");
        let dir = tempfile::tempdir().expect("tempdir");
        // The program runs as the job's host ids: its workspace is theirs.
        let ids = sandbox.job_ids().expect("host ids (needs root)");
        let ws =
            Workspace::create(dir.path(), "ws", ids.uid(), ids.gid(), 4 << 20).expect("workspace");
        let step = StepSpec {
            name: "out".into(),
            argv: vec![
                "/usr/bin/head".into(),
                "-c".into(),
                "600000".into(),
                "/dev/zero".into(),
            ],
            ..StepSpec::default()
        };
        let spec = JobSpec {
            profile: "strict".into(),
            steps: vec![step.clone(), step],
            ..JobSpec::default()
        };
        let caps = Caps {
            max_job_output: 1 << 20,
            ..Caps::default()
        };
        let ctx = JobContext {
            sandbox: &sandbox,
            workspace: &ws,
            limits: &[],
            caps: &caps,
            cancel: None,
            ids,
            events: None,
        };
        let out = run_job(&ctx, &spec, &mut |_| {});
        let res = |i: usize| out.steps[i].run.as_ref().and_then(|r| r.result.as_ref());
        assert!(
            out.steps.iter().all(|s| s.verdict.is_ok()),
            "{:?}",
            out.steps
        );
        assert_eq!(res(0).map(|r| r.stdout.len()), Some(600_000));
        assert_eq!(
            res(1).map(|r| (r.stdout.len(), r.stdout_truncated)),
            Some((0, true))
        );
    }

    /// A cancel that lands before the first step starts gives the same
    /// statuses as one that lands during it: that step cancelled, the rest
    /// skipped (the server's cancel can race the job's start either way).
    #[test]
    fn cancel_before_first_step() {
        let profile = crate::profile::load("strict").expect("bundled profile");
        let sandbox = Sandbox::new(profile).expect("sandbox");
        let dir = tempfile::tempdir().expect("tempdir");
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let ws = Workspace::create(dir.path(), "ws", uid, gid, 1 << 20).expect("workspace");
        let (on, canceller) = CancelOn::pair().expect("pipe");
        canceller.cancel();
        let step = |n: &str| StepSpec {
            name: n.into(),
            argv: vec!["/bin/true".into()],
            ..StepSpec::default()
        };
        let spec = JobSpec {
            profile: "strict".into(),
            steps: vec![step("a"), step("b"), step("c")],
            ..JobSpec::default()
        };
        let caps = Caps::default();
        let ctx = JobContext {
            sandbox: &sandbox,
            workspace: &ws,
            limits: &[],
            caps: &caps,
            cancel: Some(on),
            ids: JobIds::fixed(uid, gid),
            events: None,
        };
        let out = run_job(&ctx, &spec, &mut |_| {});
        let got: Vec<_> = out.steps.iter().map(|s| s.verdict.as_str()).collect();
        assert_eq!(got, ["cancelled", "skipped", "skipped"]);
        assert!(out.cancelled);
        assert!(out.steps.iter().all(|s| s.run.is_none()), "nothing ran");
        assert_eq!(
            out.steps[1].message.as_deref(),
            Some("not run: the job was cancelled")
        );
    }
}
