//! What the store writes besides blobs and layer files: one record per
//! image (`images/sha256/HEX.json`, HEX its manifest digest), one
//! `layer.json` per layer, and `refs.json` (names to manifest digests).
//! All are small JSON files replaced atomically (written in a scratch
//! directory, fsynced, renamed into place).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::digest::Digest;
use super::error::{ImageError, Result};
use super::lock::Scratch;
use super::manifest::Compression;
use super::unpack::UnpackStats;

/// One image in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The manifest's digest: the image's identity.
    pub digest: Digest,
    /// The index (manifest list) it was chosen from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
    /// The config's digest (Docker's image ID).
    pub config: Digest,
    /// `os/architecture[/variant]` from the config.
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Lowest first.
    pub layers: Vec<LayerRef>,
    /// What a run takes from the image (the user resolved when recorded).
    pub run: RunConfig,
    /// Why the user could not be resolved (a run of the image fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_error: Option<String>,
    /// Unpacked content bytes and entries, all layers together.
    pub content_bytes: u64,
    pub entries: u64,
}

/// A layer of an image: its name in the store and its blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    pub diff_id: Digest,
    pub blob: Digest,
    pub blob_size: u64,
    pub media_type: String,
}

/// `layers/sha256/HEX/layer.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub diff_id: Digest,
    #[serde(flatten)]
    pub stats: UnpackStats,
    /// Bytes of the uncompressed tar.
    pub tar_bytes: u64,
    /// The blob it was unpacked from, as first seen.
    pub blob: Digest,
    pub blob_bytes: u64,
    pub compression: Compression,
    /// Unix time of the unpack.
    pub unpacked_at: u64,
}

/// `refs.json`: every name, normalized (`docker.io/library/busybox:latest`),
/// to the manifest digest of its image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refs {
    pub names: BTreeMap<String, Digest>,
}

impl Refs {
    /// The names of one image, sorted.
    pub fn names_of(&self, d: &Digest) -> Vec<String> {
        self.names
            .iter()
            .filter(|(_, v)| *v == d)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Reads a JSON file the store wrote (capped: they are small).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let f = std::fs::File::open(path).map_err(|e| ImageError::io(path, e))?;
    let mut buf = Vec::new();
    f.take(64 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| ImageError::io(path, e))?;
    serde_json::from_slice(&buf).map_err(|e| ImageError::Store {
        path: path.to_path_buf(),
        reason: format!("corrupt: {e}"),
    })
}

/// Writes `bytes` to `dest` atomically through `scratch`.
pub fn write_atomic(scratch: &Scratch, dest: &Path, bytes: &[u8]) -> Result<()> {
    let name = dest.file_name().unwrap_or_default();
    let tmp = scratch.path().join(name);
    let mut f = std::fs::File::create(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| ImageError::io(&tmp, e))?;
    std::fs::rename(&tmp, dest).map_err(|e| ImageError::io(dest, e))?;
    sync_dir(dest);
    Ok(())
}

/// Makes a rename durable (best effort).
pub fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Writes a value as JSON, atomically.
pub fn write_json<T: Serialize>(scratch: &Scratch, dest: &Path, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| ImageError::Store {
        path: dest.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(scratch, dest, &bytes)
}
