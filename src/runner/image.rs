//! A run's root from an image ([`RunImage`]): the unpacked layers, lowest
//! first, and what the image's config decides for its runs, as `docker run`
//! lets it: the user (numeric, inside), the environment, the working
//! directory, and the entrypoint and command. The image store makes it;
//! the runner only reads it.

use std::path::PathBuf;
use std::sync::Arc;

/// An image, ready to be a run's root.
#[derive(Clone)]
pub struct RunImage {
    /// How messages name it (`docker.io/library/busybox:latest`).
    pub name: String,
    /// The manifest's digest (`sha256:...`; empty for an image made by
    /// hand): a cached sandbox whose name now resolves to another digest is
    /// made again.
    pub digest: String,
    /// Unpacked layer directories, lowest first.
    pub layers: Vec<PathBuf>,
    /// The image's user and group, inside (no `User`: 0).
    pub uid: u32,
    pub gid: u32,
    /// `Env`: replaces the profile's variables.
    pub env: Vec<(String, String)>,
    /// `WorkingDir` (none: `/`).
    pub workdir: Option<PathBuf>,
    pub entrypoint: Vec<String>,
    /// `Cmd`: the command when the run gives none (after the entrypoint).
    pub cmd: Vec<String>,
    /// Kept alive as long as the sandbox: the store's hold on the layers,
    /// so that no removal deletes them while runs use them.
    pub hold: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for RunImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunImage")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("layers", &self.layers)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .finish_non_exhaustive()
    }
}

impl RunImage {
    /// The program a run executes: the entrypoint, then the run's own
    /// arguments or else the image's command (Docker's rule).
    pub fn argv(&self, given: &[String]) -> Vec<String> {
        let rest = if given.is_empty() { &self.cmd } else { given };
        self.entrypoint.iter().chain(rest).cloned().collect()
    }
}

impl RunImage {
    /// The run image of a resolved store image: its layers, and its config
    /// as Docker applies it. The store's lease becomes the hold.
    pub fn from_resolved(r: crate::image::Resolved) -> RunImage {
        let c = r.config;
        let env = c
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                // Docker keeps a bare name as an empty variable.
                None => (kv.clone(), String::new()),
            })
            .filter(|(k, _)| !k.is_empty())
            .collect();
        RunImage {
            name: r.reference,
            digest: r.digest.to_string(),
            layers: r.layers,
            uid: c.uid,
            gid: c.gid,
            env,
            workdir: (!c.working_dir.is_empty()).then(|| PathBuf::from(c.working_dir)),
            entrypoint: c.entrypoint,
            cmd: c.cmd,
            hold: Some(Arc::new(r.lease)),
        }
    }
}
