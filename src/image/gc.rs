//! Removing images, layers and blobs: `rm` (a name, or an image by digest
//! with all its names) and `prune` (images without a name, then every layer
//! and blob no image refers to). Nothing a lease holds is removed: each
//! layer or blob is taken with its lease lock exclusive, without waiting,
//! and skipped (reported in `in_use`) when a run or an import holds it.
//! A removed layer is first renamed out of `layers/` (it disappears at
//! once), then deleted outside the store lock.

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use super::digest::Digest;
use super::error::{ImageError, Result};
use super::lock::{self, Mode, Scratch};
use super::record::{ImageRecord, write_json};
use super::reference::Reference;
use super::store::{Kind, Store};

/// What `rm` or `prune` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RemoveReport {
    /// Names removed.
    pub untagged: Vec<String>,
    /// Image records removed (manifest digests).
    pub images: Vec<Digest>,
    /// Layers removed (diff_ids).
    pub layers: Vec<Digest>,
    /// Blobs removed.
    pub blobs: Vec<Digest>,
    /// Unreferenced layers and blobs kept because a run or an import
    /// holds them (removed by a later `prune`).
    pub in_use: Vec<Digest>,
    /// Bytes freed: layers' unpacked content and blobs.
    pub freed_bytes: u64,
}

impl Store {
    /// `sandbox image rm REF`: removes the name `REF`; when the image has
    /// no name left (or `REF` was a digest, which removes every name of
    /// it), its record, then its layers and blobs that no other image uses.
    pub fn remove(&self, reference: &str) -> Result<RemoveReport> {
        let scratch = Scratch::new(&self.tmp())?;
        let _g = self.store_lock()?;
        let rec = self.find(reference)?;
        let mut refs = self.refs()?;
        let mut report = RemoveReport::default();
        let by_name = Digest::parse(reference).is_err()
            && Reference::parse(reference).is_ok_and(|r| r.digest().is_none());
        let names: Vec<String> = if by_name {
            Reference::parse(reference)?
                .store_name()
                .into_iter()
                .collect()
        } else {
            refs.names_of(&rec.digest)
        };
        for n in &names {
            refs.names.remove(n);
        }
        report.untagged = names;
        write_json(&scratch, &self.refs_path(), &refs)?;
        if !refs.names_of(&rec.digest).is_empty() {
            return Ok(report);
        }
        self.drop_record(&rec.digest)?;
        report.images.push(rec.digest.clone());
        let candidates = items_of(&rec);
        self.collect(&candidates, &scratch, &mut report)?;
        Ok(report)
    }

    /// `sandbox image prune`: removes images without a name, then every
    /// layer and blob that no image refers to (unless held), and stale
    /// lock files.
    pub fn prune(&self) -> Result<RemoveReport> {
        let scratch = Scratch::new(&self.tmp())?;
        let _g = self.store_lock()?;
        let refs = self.refs()?;
        let mut report = RemoveReport::default();
        for r in self.records()? {
            if refs.names_of(&r.digest).is_empty() {
                self.drop_record(&r.digest)?;
                report.images.push(r.digest);
            }
        }
        let mut candidates = Vec::new();
        for (kind, dir) in [(Kind::Layer, "layers/sha256"), (Kind::Blob, "blobs/sha256")] {
            for hex in list_hex(&self.path().join(dir))? {
                candidates.push((kind, hex));
            }
        }
        self.collect(&candidates, &scratch, &mut report)?;
        self.sweep_locks();
        Ok(report)
    }

    /// Removes what an interrupted ingest wrote, if nothing uses it.
    pub(crate) fn remove_unused(&self, items: &[(Kind, Digest)]) -> Result<RemoveReport> {
        let scratch = Scratch::new(&self.tmp())?;
        let _g = self.store_lock()?;
        let mut report = RemoveReport::default();
        self.collect(items, &scratch, &mut report)?;
        Ok(report)
    }

    fn drop_record(&self, d: &Digest) -> Result<()> {
        let p = self.record_path(d);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ImageError::io(&p, e)),
            _ => Ok(()),
        }
    }

    /// Removes each candidate that no remaining record refers to and that
    /// nobody holds. Called under the store lock.
    fn collect(
        &self,
        candidates: &[(Kind, Digest)],
        scratch: &Scratch,
        report: &mut RemoveReport,
    ) -> Result<()> {
        let mut used: HashSet<(Kind, Digest)> = HashSet::new();
        for r in self.records()? {
            used.extend(items_of(&r));
        }
        for (kind, d) in candidates {
            if used.contains(&(*kind, d.clone())) {
                continue;
            }
            self.delete(*kind, d, scratch, report)?;
        }
        Ok(())
    }

    fn delete(
        &self,
        kind: Kind,
        d: &Digest,
        scratch: &Scratch,
        report: &mut RemoveReport,
    ) -> Result<()> {
        let lease = self.lock_path(kind, d, false);
        let Some(held) = lock::lock(&lease, Mode::Exclusive, false)? else {
            tracing::info!(digest = %d, "in use: kept");
            report.in_use.push(d.clone());
            return Ok(());
        };
        let path = match kind {
            Kind::Layer => self.layer_dir(d),
            Kind::Blob => self.blob_path(d),
        };
        if path.exists() {
            let size = match kind {
                Kind::Layer => self.layer_meta(d).map_or(0, |m| m.stats.content_bytes),
                Kind::Blob => std::fs::metadata(&path).map_or(0, |m| m.len()),
            };
            let gone = scratch.path().join(format!("gone-{}", d.hex()));
            std::fs::rename(&path, &gone).map_err(|e| ImageError::io(&path, e))?;
            report.freed_bytes += size;
            match kind {
                Kind::Layer => report.layers.push(d.clone()),
                Kind::Blob => report.blobs.push(d.clone()),
            }
        }
        for p in [self.lock_path(kind, d, true), lease] {
            let _ = std::fs::remove_file(p);
        }
        drop(held);
        Ok(())
    }

    /// Lock files of blobs and layers that are not in the store, nobody
    /// holding them.
    fn sweep_locks(&self) {
        for (kind, dir) in [(Kind::Layer, "locks/layer"), (Kind::Blob, "locks/blob")] {
            let Ok(rd) = std::fs::read_dir(self.path().join(dir)) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name();
                let Some(d) = name
                    .to_str()
                    .and_then(|n| Digest::from_hex(n.trim_end_matches(".w")))
                else {
                    continue;
                };
                let present = match kind {
                    Kind::Layer => self.layer_dir(&d).exists(),
                    Kind::Blob => self.has_blob(&d),
                };
                if present {
                    continue;
                }
                if let Ok(Some(_h)) = lock::lock(&e.path(), Mode::Exclusive, false) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// The layers and blobs an image refers to.
pub(crate) fn items_of(r: &ImageRecord) -> Vec<(Kind, Digest)> {
    let mut v: Vec<(Kind, Digest)> = r
        .layers
        .iter()
        .map(|l| (Kind::Layer, l.diff_id.clone()))
        .collect();
    v.push((Kind::Blob, r.digest.clone()));
    v.push((Kind::Blob, r.config.clone()));
    if let Some(i) = &r.index {
        v.push((Kind::Blob, i.clone()));
    }
    v
}

/// The digests named by the entries of a `sha256/` directory.
fn list_hex(dir: &Path) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| ImageError::io(dir, e))? {
        let e = e.map_err(|e| ImageError::io(dir, e))?;
        if let Some(d) = e.file_name().to_str().and_then(Digest::from_hex) {
            out.push(d);
        }
    }
    out.sort();
    Ok(out)
}
