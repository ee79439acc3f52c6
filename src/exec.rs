//! One `sandbox exec` request: what the command line asked for, checked
//! once (by `cli::exec`), run in-process or carried across the resident
//! helper's socket (`helper`), and turned into the runner's [`RunSpec`] in
//! one place, [`ExecRequest::spec`], whichever side runs it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::profile::{BindMount, LimitOverrides, Profile};
use crate::runner::{OutputSpec, PullPolicy, RunSpec, StdinSpec};

/// One `sandbox exec`, as its flags said.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecRequest {
    /// `--profile`: a bundled name or a path (relative to the caller's
    /// working directory).
    pub profile: String,
    pub argv: Vec<String>,
    /// `--ro-bind` and `--bind`, in that order. Not carried to the helper:
    /// the client opens them and passes them as descriptors.
    #[serde(skip)]
    pub binds: Vec<BindMount>,
    /// `--env` pairs.
    pub env: Vec<(String, String)>,
    /// `--cwd`: the working directory inside the sandbox.
    pub workdir: Option<PathBuf>,
    /// `--time-limit`, `--memory-limit`, ...: they replace the profile's.
    pub limits: LimitOverrides,
    /// `--stdin FILE` (otherwise the caller's own stdin).
    pub stdin: Option<PathBuf>,
    /// `--json`: capture the output instead of passing it through.
    pub capture: bool,
    /// `--image`, normalized: the run's root instead of the profile's.
    pub image: Option<String>,
    /// `--pull`.
    pub pull: PullPolicy,
    /// The image store (the global `--store`, else `$SANDBOX_STORE`, else
    /// the default), resolved by the caller.
    pub store: PathBuf,
}

impl ExecRequest {
    /// The run under `profile`: its limits with this request's on top.
    pub fn spec(&self, profile: &Profile) -> RunSpec {
        let mut limits = profile.limits.clone();
        limits.overlay(&self.limits);
        let out = if self.capture {
            OutputSpec::Capture
        } else {
            OutputSpec::PassThrough
        };
        RunSpec {
            argv: self.argv.clone(),
            binds: self.binds.clone(),
            env: self.env.clone(),
            cwd: self.workdir.clone(),
            limits,
            stdin: match &self.stdin {
                Some(p) => StdinSpec::File(p.clone()),
                None => StdinSpec::Inherit,
            },
            stdout: out,
            stderr: out,
            ..RunSpec::default()
        }
    }
}
