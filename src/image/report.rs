//! What is in the store and what it costs: `ls` (one row per image) and
//! `du` (each layer once, with the images sharing it; totals of unique and
//! shared content, and the bytes on disk).

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use super::digest::Digest;
use super::error::{ImageError, Result};
use super::record::ImageRecord;
use super::store::Store;

/// One image, for `ls`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageSummary {
    /// Its names (none: found by digest only).
    pub names: Vec<String>,
    pub digest: Digest,
    /// The config digest (Docker's image ID).
    pub id: Digest,
    pub platform: String,
    pub created: Option<String>,
    pub layers: usize,
    /// Unpacked bytes of all its layers (the uncompressed tar streams).
    pub size: u64,
    /// Of which in layers no other image uses.
    pub unique_size: u64,
}

/// One layer, for `du`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerUsage {
    pub diff_id: Digest,
    /// Bytes of its files' content, and its entries.
    pub content_bytes: u64,
    pub entries: u64,
    /// The images using it (a name each, or the digest).
    pub images: Vec<String>,
}

/// The store's size report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub layers: Vec<LayerUsage>,
    /// Content bytes of every layer, each counted once (what is stored).
    pub unique_bytes: u64,
    /// Content bytes the images would hold without sharing (each image
    /// counting all its layers).
    pub logical_bytes: u64,
    /// Of the unique bytes, in layers used by more than one image.
    pub shared_bytes: u64,
    /// Layers no image uses (removed by `prune`).
    pub unreferenced_bytes: u64,
    /// Blobs kept (manifests, indexes, configs, any layer blob).
    pub blob_bytes: u64,
    /// Disk space of `layers/` and `blobs/` (allocated blocks, each inode once).
    pub disk_bytes: u64,
}

fn label(r: &ImageRecord, names: &[String]) -> String {
    names
        .first()
        .cloned()
        .unwrap_or_else(|| r.digest.to_string())
}

impl Store {
    /// Every image, by name (unnamed ones last).
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let refs = self.refs()?;
        let records = self.records()?;
        let mut users: BTreeMap<&Digest, usize> = BTreeMap::new();
        for r in &records {
            let distinct: HashSet<&Digest> = r.layers.iter().map(|l| &l.diff_id).collect();
            for d in distinct {
                *users.entry(d).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        for r in &records {
            let mut seen = HashSet::new();
            let mut unique = 0;
            for l in &r.layers {
                if seen.insert(&l.diff_id) && users.get(&l.diff_id) == Some(&1) {
                    unique += self.layer_meta(&l.diff_id).map_or(0, |m| m.tar_bytes);
                }
            }
            out.push(ImageSummary {
                names: refs.names_of(&r.digest),
                digest: r.digest.clone(),
                id: r.config.clone(),
                platform: r.platform.clone(),
                created: r.created.clone(),
                layers: r.layers.len(),
                size: r.content_bytes,
                unique_size: unique,
            });
        }
        out.sort_by(|a, b| {
            (a.names.is_empty(), &a.names, &a.digest).cmp(&(
                b.names.is_empty(),
                &b.names,
                &b.digest,
            ))
        });
        Ok(out)
    }

    /// The size report of `sandbox image du`.
    pub fn usage(&self) -> Result<Usage> {
        let refs = self.refs()?;
        let records = self.records()?;
        let mut users: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        let mut u = Usage::default();
        for r in &records {
            let names = refs.names_of(&r.digest);
            let distinct: HashSet<&Digest> = r.layers.iter().map(|l| &l.diff_id).collect();
            for d in distinct {
                users.entry(d.clone()).or_default().push(label(r, &names));
            }
        }
        let dir = self.path().join("layers/sha256");
        for e in std::fs::read_dir(&dir).map_err(|e| ImageError::io(&dir, e))? {
            let e = e.map_err(|e| ImageError::io(&dir, e))?;
            let Some(d) = e.file_name().to_str().and_then(Digest::from_hex) else {
                continue;
            };
            let Ok(meta) = self.layer_meta(&d) else {
                continue;
            };
            let images = users.remove(&d).unwrap_or_default();
            let bytes = meta.stats.content_bytes;
            u.unique_bytes += bytes;
            u.logical_bytes += bytes * images.len() as u64;
            match images.len() {
                0 => u.unreferenced_bytes += bytes,
                1 => {}
                _ => u.shared_bytes += bytes,
            }
            u.layers.push(LayerUsage {
                diff_id: d,
                content_bytes: bytes,
                entries: meta.stats.entries,
                images,
            });
        }
        u.layers.sort_by(|a, b| {
            b.content_bytes
                .cmp(&a.content_bytes)
                .then(a.diff_id.cmp(&b.diff_id))
        });
        let blobs = self.path().join("blobs/sha256");
        for e in std::fs::read_dir(&blobs)
            .map_err(|e| ImageError::io(&blobs, e))?
            .flatten()
        {
            u.blob_bytes += e.metadata().map_or(0, |m| m.len());
        }
        let mut seen = HashSet::new();
        u.disk_bytes =
            disk_usage(&self.path().join("layers"), &mut seen) + disk_usage(&blobs, &mut seen);
        Ok(u)
    }
}

/// Allocated bytes under `path`, each inode once, not following symlinks.
pub fn disk_usage(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !seen.insert((md.dev(), md.ino())) {
        return 0;
    }
    let mut total = md.blocks() * 512;
    if md.is_dir()
        && let Ok(rd) = std::fs::read_dir(path)
    {
        for e in rd.flatten() {
            total += disk_usage(&e.path(), seen);
        }
    }
    total
}
