//! `sandbox image pull`: fetching an image from a registry (the OCI
//! distribution protocol) into the store. This module owns the network side
//! only: which scheme a registry is reached with ([`transport`]: TLS, plain
//! HTTP only for loopback registries or ones the operator names), the
//! credentials ([`creds`]: Docker's `config.json`), the token dance and the
//! blob streams (the `oci-client` crate, in `registry.rs`), the manifest
//! requests (fetched here under the manifest cap, exact bytes kept), the
//! choice of an index's entry for the platform, and progress events.
//! Everything written goes through [`Store::ingest`]: digests, sizes,
//! diff_ids and caps are checked while streaming, a layer already present
//! (by diff_id) is not fetched, and a failed or killed pull leaves nothing
//! visible.
//!
//! ```no_run
//! # fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use sandbox::image::{Store, store_path};
//! use sandbox::image::pull::{PullOptions, pull};
//! let store = Store::open(store_path(None))?;
//! let p = pull(&store, "busybox", &PullOptions::default())?;
//! println!("{} {}", p.reference, p.digest);
//! # Ok(()) }
//! ```
//!
//! Without the `registry` cargo feature (the fuzz build) only the parts
//! that need no network exist: [`transport`], [`creds`] and the types.

pub mod creds;
#[cfg(feature = "registry")]
mod registry;
pub mod transport;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::digest::Digest;
use super::error::ImageError;
use super::manifest::Platform;
#[cfg(feature = "registry")]
use super::store::Store;

/// A progress callback: called from the pulling thread, in order.
pub type ProgressFn = Arc<dyn Fn(&PullEvent<'_>) + Send + Sync>;

/// What a pull is doing, for a progress display.
#[derive(Clone, Debug)]
pub enum PullEvent<'a> {
    /// The image manifest is known: its digest and its layers' blobs
    /// (digest, size), lowest first.
    Manifest {
        digest: &'a Digest,
        layers: &'a [(Digest, u64)],
    },
    /// Layer `index` is in the store already: not fetched.
    LayerPresent { index: usize, blob: &'a Digest },
    /// Layer `index` is being fetched.
    LayerStart {
        index: usize,
        blob: &'a Digest,
        size: u64,
    },
    /// Bytes of layer `index` received so far.
    LayerBytes { index: usize, done: u64 },
    /// Layer `index` is fetched, verified and unpacked (`fetched`: bytes
    /// received; 0 when another pull unpacked it meanwhile).
    LayerDone { index: usize, fetched: u64 },
}

/// How to pull.
#[derive(Clone, Default)]
pub struct PullOptions {
    /// A Docker `config.json` with credentials. `None`: the default
    /// ([`creds::default_path`]) when it exists, else anonymous.
    pub credentials: Option<PathBuf>,
    /// PEM certificates trusted in addition to the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Registries (`host[:port]`, or `host` for any port) that may be
    /// reached over plain HTTP, besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// The platform an index is resolved to (default: the store's, the
    /// host's).
    pub platform: Option<Platform>,
    /// Progress events.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("credentials", &self.credentials)
            .field("ca_file", &self.ca_file)
            .field("insecure_registries", &self.insecure_registries)
            .field("platform", &self.platform)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// A pulled image.
#[derive(Clone, Debug, Serialize)]
pub struct Pulled {
    /// The normalized reference asked for (`docker.io/library/busybox:latest`,
    /// `127.0.0.1:5000/app@sha256:...`).
    pub reference: String,
    /// The name it is recorded under (`None` for a digest-only reference).
    pub name: Option<String>,
    /// The image manifest's digest (the platform's, under an index).
    pub digest: Digest,
    /// The index (or manifest list) the reference named, if any.
    pub index: Option<Digest>,
    /// The image's platform, as its config says (`linux/amd64`).
    pub platform: String,
    pub layers: usize,
    /// Layers fetched and unpacked by this pull.
    pub layers_fetched: usize,
    /// Layers found in the store (by diff_id): not fetched.
    pub layers_present: usize,
    /// Bytes received: manifests, config and layer blobs.
    pub bytes_fetched: u64,
    /// Requests sent to the registry for content: manifests and blobs
    /// (the authentication exchange is not counted).
    pub requests: u32,
    /// Blobs (config and layers) requested, by digest, in order.
    pub blobs_fetched: Vec<Digest>,
}

/// Why a pull failed. Every message is one line naming the registry, the
/// repository and, where there is one, the digest.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Not a reference (`sandbox image pull 'Busy box'`).
    #[error(transparent)]
    Reference(Box<ImageError>),
    /// Plain HTTP asked for a registry that is neither loopback nor allowed.
    #[error(
        "{registry}: plain HTTP refused: only loopback registries (127.0.0.0/8, ::1, localhost) are reached without TLS, unless allowed with --insecure-registry {registry}"
    )]
    PlainHttpRefused { registry: String },
    /// The credentials file cannot be read or decoded.
    #[error("credentials file {path}: {reason}")]
    Credentials { path: PathBuf, reason: String },
    /// The CA file cannot be read or holds no certificate.
    #[error("CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    /// No connection (DNS, refused, timed out).
    #[error("{registry}: registry unreachable: {reason}")]
    Unreachable { registry: String, reason: String },
    /// The TLS handshake failed (an untrusted or invalid certificate, a
    /// server that does not speak TLS).
    #[error("{registry}: TLS: {reason}")]
    Tls { registry: String, reason: String },
    /// 401 (or a refused token): which credentials were used.
    #[error("{registry}/{repository}: unauthorized (401): {creds}")]
    Unauthorized {
        registry: String,
        repository: String,
        creds: String,
    },
    /// 403.
    #[error("{registry}/{repository}: access denied (403): {creds}")]
    Denied {
        registry: String,
        repository: String,
        creds: String,
    },
    /// 404 for the manifest: no such repository, tag or digest.
    #[error("{registry}/{repository}: manifest unknown: {reference}")]
    ManifestUnknown {
        registry: String,
        repository: String,
        reference: String,
    },
    /// 404 for a blob the manifest names.
    #[error("{registry}/{repository}: blob unknown: {digest}")]
    BlobUnknown {
        registry: String,
        repository: String,
        digest: Digest,
    },
    /// Any other answer that is not what the protocol says (a 5xx, a
    /// missing or wrong header, a body over its announced size).
    #[error("{registry}/{repository}: {what}: {reason}")]
    Registry {
        registry: String,
        repository: String,
        what: String,
        reason: String,
    },
    /// What the registry sent failed the store's checks (digest or size
    /// mismatch, a cap, a hostile layer), or the store failed.
    #[error("{registry}/{repository}: {source}")]
    Image {
        registry: String,
        repository: String,
        #[source]
        source: Box<ImageError>,
    },
    /// The pull could not run (no runtime, a thread that died).
    #[error("pull: {0}")]
    Internal(String),
}

impl PullError {
    /// True when the machine failed rather than the request or the image:
    /// the store (I/O, permissions), the network (unreachable, TLS, a 5xx).
    /// The CLI exits 1 for these, 2 for the rest (as `sandbox image`).
    pub fn is_local_failure(&self) -> bool {
        match self {
            PullError::Image { source, .. } => source.is_store_failure(),
            PullError::Unreachable { .. } | PullError::Tls { .. } | PullError::Internal(_) => true,
            PullError::Registry { reason, .. } => reason.starts_with("HTTP 5"),
            _ => false,
        }
    }
}

/// Pulls `reference` into `store` and records it under its normalized name;
/// blocking. Safe from any thread: from inside a tokio runtime it runs on a
/// thread of its own (prefer [`pull_async`] there). A reference may start
/// with `http://` or `https://` to ask for that scheme (plain HTTP still
/// only where allowed); without one, loopback and allowed registries are
/// reached over plain HTTP and the rest over TLS.
#[cfg(feature = "registry")]
pub fn pull(store: &Store, reference: &str, opts: &PullOptions) -> Result<Pulled, PullError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return std::thread::scope(|s| {
            s.spawn(|| registry::pull(store, reference, opts))
                .join()
                .unwrap_or_else(|_| Err(PullError::Internal("the pull thread panicked".into())))
        });
    }
    registry::pull(store, reference, opts)
}

/// [`pull`] for async callers (the server): runs on tokio's blocking pool.
/// Dropping the future does not stop the pull; it completes (or fails) and
/// its result is dropped.
#[cfg(feature = "registry")]
pub async fn pull_async(
    store: Store,
    reference: String,
    opts: PullOptions,
) -> Result<Pulled, PullError> {
    tokio::task::spawn_blocking(move || pull(&store, &reference, &opts))
        .await
        .map_err(|e| PullError::Internal(e.to_string()))?
}
