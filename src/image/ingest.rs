//! Writing into the store: blobs verified as they are written, layers
//! unpacked once, and the image recorded under its names. An [`Ingest`]
//! leases everything it writes or finds present until it is dropped, so a
//! concurrent `prune` cannot remove a layer between its unpacking and the
//! record that refers to it. Import and pull both go through it:
//!
//! ```no_run
//! # fn f(store: &sandbox::image::Store, manifest: &[u8], config: &[u8],
//! #      mut fetch: impl FnMut(&sandbox::image::Descriptor) -> std::fs::File)
//! # -> Result<(), sandbox::image::ImageError> {
//! use sandbox::image::{BlobSpec, Document, LayerSource, Reference};
//! let mut ing = store.ingest();
//! let (digest, Document::Manifest(m)) = ing.put_manifest(manifest, None, None)? else { todo!() };
//! let cfg = ing.put_config(config, &m.config.digest)?;
//! for (desc, diff_id) in m.layers.iter().zip(&cfg.rootfs.diff_ids) {
//!     if ing.has_layer(diff_id)? {
//!         continue; // present: not fetched again
//!     }
//!     let src = LayerSource {
//!         diff_id: diff_id.clone(),
//!         blob: Some(BlobSpec { digest: desc.digest.clone(), size: desc.size, media_type: desc.media_type.clone() }),
//!     };
//!     ing.unpack_layer(fetch(desc), &src)?;
//! }
//! ing.commit(&[Reference::parse("busybox")?], &digest, None)?;
//! # Ok(()) }
//! ```

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::config::{ImageConfig, RunConfig, decode_config};
use super::digest::{Digest, HashReader};
use super::error::{ImageError, Result};
use super::layer::{LayerSource, unpack_layer};
use super::lock::{self, Lease, Mode, Scratch};
use super::manifest::{Document, decode};
use super::record::{ImageRecord, LayerMeta, LayerRef, sync_dir, write_json};
use super::reference::Reference;
use super::store::{Kind, Store};
use super::users::resolve_user;

/// One import or pull in progress. Dropping it without [`Ingest::commit`]
/// leaves what it wrote unreferenced (removed by the next `prune`).
pub struct Ingest<'s> {
    store: &'s Store,
    lease: Lease,
    /// What this ingest wrote (removed again if it is not committed).
    created: Vec<(Kind, Digest)>,
    /// Unpacked bytes and entries of the layers it unpacked, against the
    /// per-image caps.
    used: (u64, u64),
    committed: bool,
}

impl Store {
    /// Starts writing into the store.
    pub fn ingest(&self) -> Ingest<'_> {
        Ingest {
            store: self,
            lease: Lease::default(),
            created: Vec::new(),
            used: (0, 0),
            committed: false,
        }
    }
}

impl Drop for Ingest<'_> {
    /// An ingest that did not commit removes what it wrote, unless another
    /// image uses it or someone holds it.
    fn drop(&mut self) {
        if self.committed || self.created.is_empty() {
            return;
        }
        self.lease = Lease::default();
        let created = std::mem::take(&mut self.created);
        if let Err(e) = self.store.remove_unused(&created) {
            tracing::warn!(error = %e, "cleaning up after a failed import");
        }
    }
}

impl Ingest<'_> {
    pub fn store(&self) -> &Store {
        self.store
    }

    /// Layers this ingest unpacked (not found present).
    pub fn unpacked_layers(&self) -> usize {
        self.created
            .iter()
            .filter(|(k, _)| *k == Kind::Layer)
            .count()
    }

    fn lease(&mut self, kind: Kind, d: &Digest) -> Result<()> {
        let h = self.store.lease_lock(kind, d)?;
        self.lease.push(h);
        Ok(())
    }

    /// Whether the blob is present; if it is, it stays until this ingest
    /// is dropped.
    pub fn has_blob(&mut self, d: &Digest) -> Result<bool> {
        self.lease(Kind::Blob, d)?;
        Ok(self.store.has_blob(d))
    }

    /// Whether the layer (by diff_id) is unpacked; if it is, it stays
    /// until this ingest is dropped. A pull skips fetching such a layer.
    pub fn has_layer(&mut self, diff_id: &Digest) -> Result<bool> {
        self.lease(Kind::Layer, diff_id)?;
        Ok(self.store.has_layer(diff_id))
    }

    /// Writes the blob read from `r`, which must hash to `expected` and
    /// hold at most `max` bytes (a mismatch or more bytes: an error, and
    /// nothing stored). A blob already present is not read again. Returns
    /// its size.
    pub fn put_blob(&mut self, r: impl Read, expected: &Digest, max: u64) -> Result<u64> {
        let dest = self.store.blob_path(expected);
        let size = |p: &std::path::Path| {
            std::fs::metadata(p)
                .map(|m| m.len())
                .map_err(|e| ImageError::io(p, e))
        };
        if self.has_blob(expected)? {
            return size(&dest);
        }
        let _w = lock::lock(
            &self.store.lock_path(Kind::Blob, expected, true),
            Mode::Exclusive,
            true,
        )?;
        if self.store.has_blob(expected) {
            return size(&dest);
        }
        let scratch = Scratch::new(&self.store.tmp())?;
        let tmp = scratch.path().join("blob");
        let mut f = std::fs::File::create(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
        let mut r = HashReader::new(r, max);
        let copied = std::io::copy(&mut r, &mut f);
        if r.over_limit() {
            return Err(ImageError::TooLarge {
                what: format!("blob {expected}"),
                limit: max,
                unit: "bytes",
            });
        }
        copied.map_err(|e| ImageError::Invalid {
            what: format!("blob {expected}"),
            reason: super::error::one_line(&format!("reading: {e}")),
        })?;
        let (actual, n) = r.finish();
        if actual != *expected {
            return Err(ImageError::DigestMismatch {
                what: "blob".into(),
                expected: expected.clone(),
                actual,
            });
        }
        f.flush()
            .and_then(|()| f.sync_all())
            .map_err(|e| ImageError::io(&tmp, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o444))
            .map_err(|e| ImageError::io(&tmp, e))?;
        std::fs::rename(&tmp, &dest).map_err(|e| ImageError::io(&dest, e))?;
        sync_dir(&dest);
        self.created.push((Kind::Blob, expected.clone()));
        Ok(n)
    }

    /// Stores a manifest or index (exact bytes: they are what the digest
    /// covers), decoded and checked first under the manifest cap.
    /// `expected`: the digest it was asked for; `media_type`: what the
    /// sender announced. Returns its digest and the decoded document.
    pub fn put_manifest(
        &mut self,
        bytes: &[u8],
        expected: Option<&Digest>,
        media_type: Option<&str>,
    ) -> Result<(Digest, Document)> {
        let actual = Digest::of(bytes);
        let what = format!("manifest {}", expected.unwrap_or(&actual));
        let limits = self.store.limits();
        let doc = decode(bytes, limits.manifest_bytes, &what, media_type)?;
        if let Document::Manifest(m) = &doc
            && m.layers.len() > limits.layers
        {
            return Err(ImageError::TooLarge {
                what,
                limit: limits.layers as u64,
                unit: "layers",
            });
        }
        if let Some(e) = expected
            && *e != actual
        {
            return Err(ImageError::DigestMismatch {
                what: "manifest".into(),
                expected: e.clone(),
                actual,
            });
        }
        self.put_blob(bytes, &actual, bytes.len() as u64)?;
        Ok((actual, doc))
    }

    /// Stores an image config, decoded and checked first under the config
    /// cap; it must hash to `expected` (the manifest's `config.digest`).
    pub fn put_config(&mut self, bytes: &[u8], expected: &Digest) -> Result<ImageConfig> {
        let cfg = decode_config(
            bytes,
            self.store.limits().config_bytes,
            &format!("config {expected}"),
        )?;
        self.put_blob(bytes, expected, bytes.len() as u64)?;
        Ok(cfg)
    }

    /// Unpacks a layer read from `r` (its blob: compressed or not) into the
    /// store, checking the blob's digest and size, the diff_id and the
    /// caps. A layer already present is not read again (nor is `r`); a
    /// second process unpacking the same layer waits for the first and
    /// then finds it present. On any error nothing of it is left.
    pub fn unpack_layer(&mut self, r: impl Read, src: &LayerSource) -> Result<LayerMeta> {
        let id = &src.diff_id;
        if self.has_layer(id)? {
            return self.store.layer_meta(id);
        }
        let _w = lock::lock(
            &self.store.lock_path(Kind::Layer, id, true),
            Mode::Exclusive,
            true,
        )?;
        if self.store.has_layer(id) {
            return self.store.layer_meta(id);
        }
        let scratch = Scratch::new(&self.store.tmp())?;
        let dir = scratch.path().join("layer");
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(|e| ImageError::io(&rootfs, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rootfs, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| ImageError::io(&rootfs, e))?;
        let started = std::time::Instant::now();
        // This layer may use what the image's caps leave.
        let mut limits = self.store.limits().clone();
        let left_bytes = limits.image_bytes.saturating_sub(self.used.0);
        let left_entries = limits.image_inodes.saturating_sub(self.used.1);
        let image_bound = left_bytes < limits.layer_bytes || left_entries < limits.layer_inodes;
        limits.layer_bytes = limits.layer_bytes.min(left_bytes);
        limits.layer_inodes = limits.layer_inodes.min(left_entries);
        let u = match unpack_layer(r, src, &rootfs, &limits, self.store.privileged()) {
            Err(ImageError::TooLarge { what, limit, unit }) if image_bound => {
                return Err(ImageError::TooLarge {
                    what: format!("{what} (what the image's cap left for it)"),
                    limit,
                    unit,
                });
            }
            r => r?,
        };
        self.used.0 += u.tar_bytes;
        self.used.1 += u.stats.entries;
        let meta = LayerMeta {
            diff_id: id.clone(),
            stats: u.stats,
            tar_bytes: u.tar_bytes,
            blob: u.blob_digest,
            blob_bytes: u.blob_bytes,
            compression: u.compression,
            unpacked_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let bytes = serde_json::to_vec_pretty(&meta)
            .map_err(|e| ImageError::invalid("layer.json", e.to_string()))?;
        let mp = dir.join("layer.json");
        std::fs::write(&mp, bytes).map_err(|e| ImageError::io(&mp, e))?;
        let dest = self.store.layer_dir(id);
        std::fs::rename(&dir, &dest).map_err(|e| ImageError::io(&dest, e))?;
        sync_dir(&dest);
        self.created.push((Kind::Layer, id.clone()));
        tracing::info!(
            layer = %id,
            entries = meta.stats.entries,
            bytes = meta.tar_bytes,
            ms = started.elapsed().as_millis() as u64,
            "layer unpacked"
        );
        Ok(meta)
    }

    /// Records the image whose manifest (already stored) is `manifest`,
    /// chosen from the index `index` if any, under `names` (normalized;
    /// digest-only references add no name). Its config and every layer
    /// must be in the store. Checks the per-image caps and resolves the
    /// image's user. A name that pointed at another image moves to this one.
    pub fn commit(
        mut self,
        names: &[Reference],
        manifest: &Digest,
        index: Option<&Digest>,
    ) -> Result<ImageRecord> {
        let store = self.store;
        let limits = store.limits().clone();
        let doc = decode(
            &store.read_blob(manifest, limits.manifest_bytes)?,
            limits.manifest_bytes,
            &format!("manifest {manifest}"),
            None,
        )?;
        let Document::Manifest(m) = doc else {
            return Err(ImageError::invalid(
                format!("manifest {manifest}"),
                "an index, not an image manifest",
            ));
        };
        let cfg = decode_config(
            &store.read_blob(&m.config.digest, limits.config_bytes)?,
            limits.config_bytes,
            &format!("config {}", m.config.digest),
        )?;
        let diff_ids = &cfg.rootfs.diff_ids;
        if diff_ids.len() != m.layers.len() {
            return Err(ImageError::invalid(
                format!("image {manifest}"),
                format!(
                    "{} layers in the manifest, {} diff_ids in the config",
                    m.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        if m.layers.len() > limits.layers {
            return Err(ImageError::TooLarge {
                what: format!("image {manifest}"),
                limit: limits.layers as u64,
                unit: "layers",
            });
        }
        let (mut bytes, mut entries) = (0u64, 0u64);
        let mut layers = Vec::new();
        let mut roots: Vec<PathBuf> = Vec::new();
        for (desc, id) in m.layers.iter().zip(diff_ids) {
            if !self.has_layer(id)? {
                return Err(ImageError::LayerMissing {
                    image: manifest.to_string(),
                    layer: id.clone(),
                });
            }
            let meta = store.layer_meta(id)?;
            bytes += meta.tar_bytes;
            entries += meta.stats.entries;
            layers.push(LayerRef {
                diff_id: id.clone(),
                blob: desc.digest.clone(),
                blob_size: desc.size,
                media_type: desc.media_type.clone(),
            });
            roots.push(store.layer_rootfs(id));
            content_check(bytes, entries, &limits, manifest)?;
        }
        let _ = self.has_blob(&m.config.digest)?;
        let _ = self.has_blob(manifest)?;
        let mut run = RunConfig::unresolved(&cfg);
        let user_error = match resolve_user(&run.user, &roots) {
            Ok(ids) => {
                run.uid = ids.uid;
                run.gid = ids.gid;
                run.additional_gids = ids.additional_gids;
                None
            }
            Err(reason) => {
                tracing::warn!(image = %manifest, user = %run.user, %reason, "user not resolved");
                Some(reason)
            }
        };
        let platform = match &cfg.variant {
            Some(v) => format!("{}/{}/{v}", cfg.os, cfg.architecture),
            None => format!("{}/{}", cfg.os, cfg.architecture),
        };
        let rec = ImageRecord {
            digest: manifest.clone(),
            index: index.cloned(),
            config: m.config.digest.clone(),
            platform,
            created: cfg.created.clone(),
            layers,
            run,
            user_error,
            content_bytes: bytes,
            entries,
        };
        let scratch = Scratch::new(&store.tmp())?;
        let _g = store.store_lock()?;
        write_json(&scratch, &store.record_path(manifest), &rec)?;
        let named: Vec<String> = names.iter().filter_map(Reference::store_name).collect();
        if !named.is_empty() {
            let mut refs = store.refs()?;
            for n in named {
                refs.names.insert(n, manifest.clone());
            }
            write_json(&scratch, &store.refs_path(), &refs)?;
        }
        self.committed = true;
        Ok(rec)
    }
}

fn content_check(
    bytes: u64,
    entries: u64,
    l: &super::limits::Limits,
    image: &Digest,
) -> Result<()> {
    if bytes > l.image_bytes {
        return Err(ImageError::TooLarge {
            what: format!("image {image} unpacked"),
            limit: l.image_bytes,
            unit: "bytes",
        });
    }
    if entries > l.image_inodes {
        return Err(ImageError::TooLarge {
            what: format!("image {image}"),
            limit: l.image_inodes,
            unit: "entries",
        });
    }
    Ok(())
}
