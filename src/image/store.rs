//! The store on disk: opening it, where everything lives, looking images
//! up, and [`Store::resolve`], what a run calls. Writing is in
//! [`super::ingest`], removal and the size report in [`super::gc`].
//!
//! ```text
//! STORE/                      0700, root's (no other user reaches a layer's set-id files)
//!   refs.json                 names → manifest digests
//!   images/sha256/HEX.json    one record per image (HEX = manifest digest)
//!   blobs/sha256/HEX          manifests, indexes, configs (verified; layer blobs are not kept)
//!   layers/sha256/HEX/        one per layer, HEX = its diff_id (sha256 of the uncompressed tar)
//!     rootfs/                 the layer's files: an overlayfs lower directory
//!     layer.json              sizes, entries, the blob it came from
//!   locks/store               see lock.rs
//!   locks/{blob,layer}/HEX[.w]
//!   tmp/w-*/                  writes in progress (flocked); swept when abandoned
//! ```

use std::path::{Path, PathBuf};

use super::config::RunConfig;
use super::digest::Digest;
use super::error::{ImageError, Result};
use super::limits::Limits;
use super::lock::{self, Held, Lease, Mode};
use super::manifest::{Platform, host_platform};
use super::record::{ImageRecord, LayerMeta, Refs, read_json};
use super::reference::Reference;

/// The default store directory.
pub const DEFAULT_STORE: &str = "/var/lib/sandbox";

/// The store directory: `flag` (the CLI's `--store`), else `$SANDBOX_STORE`,
/// else [`DEFAULT_STORE`].
pub fn store_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os("SANDBOX_STORE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE))
}

/// An open image store.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    limits: Limits,
    platform: Platform,
    privileged: bool,
}

/// An image ready to run: its layers, its run config and the lease that
/// keeps the layers in the store while it lives.
#[derive(Debug)]
pub struct Resolved {
    /// The reference asked for, normalized (or the digest).
    pub reference: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// The layers' unpacked directories, lowest first, each an overlayfs
    /// lower directory (whiteouts and opaque directories in overlay form).
    /// A layer that occurs twice is kept at its highest place only (the
    /// view is the same; overlayfs refuses a directory twice).
    pub layers: Vec<PathBuf>,
    pub config: RunConfig,
    /// Drop it when the run's root is gone.
    pub lease: Lease,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Blob,
    Layer,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Blob => "blob",
            Kind::Layer => "layer",
        }
    }
}

impl Store {
    /// Opens the store at `path`, making it (mode 0700) if missing. It must
    /// be a directory of the caller's, writable by no one else. Sweeps what
    /// interrupted writes left.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        let err = |reason: String| ImageError::Store {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_absolute() {
            return Err(err("must be an absolute path".into()));
        }
        if let Err(e) = std::fs::create_dir(path) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(ImageError::io(path, e));
            }
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| ImageError::io(path, e))?;
        }
        let root = path.canonicalize().map_err(|e| ImageError::io(path, e))?;
        let md = std::fs::metadata(&root).map_err(|e| ImageError::io(&root, e))?;
        use std::os::unix::fs::MetadataExt;
        if !md.is_dir() {
            return Err(err("not a directory".into()));
        }
        let euid = nix::unistd::geteuid().as_raw();
        if md.uid() != euid {
            return Err(err(format!(
                "owned by uid {}, not by this user ({euid})",
                md.uid()
            )));
        }
        if md.mode() & 0o022 != 0 {
            return Err(err(format!(
                "mode {:o}: writable by group or others",
                md.mode() & 0o7777
            )));
        }
        for d in [
            "blobs/sha256",
            "layers/sha256",
            "images/sha256",
            "locks/blob",
            "locks/layer",
            "tmp",
        ] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(|e| ImageError::io(&p, e))?;
        }
        lock::sweep(&root.join("tmp"));
        Ok(Store {
            root,
            limits: Limits::default(),
            platform: host_platform(),
            privileged: euid == 0,
        })
    }

    /// The same store with other caps.
    pub fn with_limits(mut self, limits: Limits) -> Store {
        self.limits = limits;
        self
    }

    /// The same store choosing images of another platform from an index.
    pub fn with_platform(mut self, platform: Platform) -> Store {
        self.platform = platform;
        self
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    pub(crate) fn privileged(&self) -> bool {
        self.privileged
    }

    pub(crate) fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// A layer's directory (`rootfs/` and `layer.json` inside).
    pub(crate) fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers/sha256").join(diff_id.hex())
    }

    /// A layer's unpacked files: the overlayfs lower directory.
    pub fn layer_rootfs(&self, diff_id: &Digest) -> PathBuf {
        self.layer_dir(diff_id).join("rootfs")
    }

    pub(crate) fn record_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("images/sha256")
            .join(format!("{}.json", d.hex()))
    }

    pub(crate) fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    pub(crate) fn lock_path(&self, kind: Kind, d: &Digest, write: bool) -> PathBuf {
        let name = if write {
            format!("{}.w", d.hex())
        } else {
            d.hex().to_string()
        };
        self.root.join("locks").join(kind.dir()).join(name)
    }

    /// The lease lock of a blob or layer, shared (waits while `rm` or
    /// `prune` removes it).
    pub(crate) fn lease_lock(&self, kind: Kind, d: &Digest) -> Result<Held> {
        let p = self.lock_path(kind, d, false);
        lock::lock(&p, Mode::Shared, true)?.ok_or_else(|| ImageError::Store {
            path: p,
            reason: "lock not granted".into(),
        })
    }

    /// The store-wide lock (names, records, removal).
    pub(crate) fn store_lock(&self) -> Result<Held> {
        let p = self.root.join("locks/store");
        lock::lock(&p, Mode::Exclusive, true)?.ok_or_else(|| ImageError::Store {
            path: p,
            reason: "lock not granted".into(),
        })
    }

    /// Whether a blob (manifest, index, config) is in the store.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Whether a layer (by diff_id) is unpacked in the store. Use
    /// [`super::Ingest::has_layer`] to also keep it there.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).join("layer.json").is_file()
    }

    /// A stored blob's bytes (capped at `max`).
    pub fn read_blob(&self, d: &Digest, max: u64) -> Result<Vec<u8>> {
        use std::io::Read;
        let p = self.blob_path(d);
        let f = std::fs::File::open(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ImageError::NotFound {
                reference: d.to_string(),
            },
            _ => ImageError::io(&p, e),
        })?;
        let mut v = Vec::new();
        f.take(max + 1)
            .read_to_end(&mut v)
            .map_err(|e| ImageError::io(&p, e))?;
        if v.len() as u64 > max {
            return Err(ImageError::TooLarge {
                what: format!("blob {d}"),
                limit: max,
                unit: "bytes",
            });
        }
        Ok(v)
    }

    pub(crate) fn layer_meta(&self, diff_id: &Digest) -> Result<LayerMeta> {
        read_json(&self.layer_dir(diff_id).join("layer.json"))
    }

    /// The names in the store.
    pub fn refs(&self) -> Result<Refs> {
        let p = self.refs_path();
        if !p.exists() {
            return Ok(Refs::default());
        }
        read_json(&p)
    }

    /// Every image record, sorted by digest.
    pub fn records(&self) -> Result<Vec<ImageRecord>> {
        let dir = self.root.join("images/sha256");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(|e| ImageError::io(&dir, e))? {
            let e = e.map_err(|e| ImageError::io(&dir, e))?;
            let name = e.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if Digest::from_hex(hex).is_some() {
                out.push(read_json::<ImageRecord>(&e.path())?);
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// The record of an image by name (`busybox`, normalized first), by
    /// `name@sha256:...` or by a bare `sha256:...` (its manifest digest or
    /// the digest of the index it came from).
    pub fn find(&self, reference: &str) -> Result<ImageRecord> {
        let not_found = || ImageError::NotFound {
            reference: reference.to_string(),
        };
        let digest = if reference.starts_with("sha256:") {
            Digest::parse(reference)?
        } else {
            let r = Reference::parse(reference)?;
            match (r.digest(), r.store_name()) {
                (Some(d), _) => d.clone(),
                (None, Some(name)) => {
                    let d = self
                        .refs()?
                        .names
                        .get(&name)
                        .cloned()
                        .ok_or_else(not_found)?;
                    return self.record(&d)?.ok_or_else(not_found);
                }
                (None, None) => return Err(not_found()),
            }
        };
        if let Some(r) = self.record(&digest)? {
            return Ok(r);
        }
        self.records()?
            .into_iter()
            .find(|r| r.index.as_ref() == Some(&digest))
            .ok_or_else(not_found)
    }

    pub(crate) fn record(&self, d: &Digest) -> Result<Option<ImageRecord>> {
        let p = self.record_path(d);
        match read_json(&p) {
            Ok(r) => Ok(Some(r)),
            Err(ImageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The image `reference` ready to run: its unpacked layers (lowest
    /// first), its run config with the user resolved to numeric ids, and a
    /// lease that keeps the layers from `rm` and `prune` until dropped.
    /// Reads only the store (no registry); a missing image is
    /// [`ImageError::NotFound`].
    pub fn resolve(&self, reference: &str) -> Result<Resolved> {
        let rec = self.find(reference)?;
        let mut lease = Lease::default();
        let mut layers: Vec<PathBuf> = Vec::with_capacity(rec.layers.len());
        let mut seen = std::collections::HashSet::new();
        for l in rec.layers.iter().rev() {
            if !seen.insert(&l.diff_id) {
                continue;
            }
            lease.push(self.lease_lock(Kind::Layer, &l.diff_id)?);
            if !self.has_layer(&l.diff_id) {
                return Err(ImageError::LayerMissing {
                    image: reference.to_string(),
                    layer: l.diff_id.clone(),
                });
            }
            layers.push(self.layer_rootfs(&l.diff_id));
        }
        layers.reverse();
        if let Some(reason) = &rec.user_error {
            return Err(ImageError::User {
                image: reference.to_string(),
                user: rec.run.user.clone(),
                reason: reason.clone(),
            });
        }
        let shown = match Reference::parse(reference) {
            Ok(r) if Digest::parse(reference).is_err() => r.to_string(),
            _ => reference.to_string(),
        };
        Ok(Resolved {
            reference: shown,
            digest: rec.digest,
            layers,
            config: rec.run,
            lease,
        })
    }
}
