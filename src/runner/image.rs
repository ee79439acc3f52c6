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
