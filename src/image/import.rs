//! `sandbox image import PATH`: an OCI image layout (a directory or a tar
//! of one, as skopeo, umoci, buildah and `docker save` since Docker 25
//! write it) or a `docker save` archive (`manifest.json`, one config and
//! tar per layer). An index or manifest list is resolved to the store's
//! platform. A `docker save` archive has no manifest: one (Docker schema 2)
//! is made from its config and layers, so the image has a digest like any.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::archive::Source;
use super::digest::{Digest, HashReader};
use super::error::{ImageError, Result};
use super::ingest::Ingest;
use super::layer::{BlobSpec, LayerSource, decompress};
use super::lock::Scratch;
use super::manifest::{
    CONTAINERD_NAME, Compression, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_MANIFEST,
    Descriptor, Document, Manifest, REF_NAME, select_platform,
};
use super::record::ImageRecord;
use super::reference::Reference;
use super::store::Store;

/// Nested indexes followed at most.
const MAX_INDEX_DEPTH: usize = 4;

/// One image an import recorded.
#[derive(Clone, Debug, Serialize)]
pub struct Imported {
    pub digest: Digest,
    pub names: Vec<String>,
    pub layers: usize,
    /// Layers that were not in the store before.
    pub new_layers: usize,
}

/// An entry of a `docker save` archive's manifest.json.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl Store {
    /// Imports every image of the layout or archive at `path`. `name`
    /// names the image (an archive or layout of one image; in a layout of
    /// several, the one whose `ref.name` is `name`'s tag), replacing the
    /// names the source gives.
    pub fn import(&self, path: &Path, name: Option<&Reference>) -> Result<Vec<Imported>> {
        let scratch = Scratch::new(&self.tmp())?;
        let src = Source::open(path, &scratch, self.limits().image_bytes)?;
        let has = |p: &str| src.exists(p);
        if has("oci-layout") && has("index.json") {
            self.import_oci(&src, name)
        } else if has("manifest.json") {
            self.import_docker(&src, name)
        } else {
            Err(ImageError::invalid(
                path.display().to_string(),
                "neither an OCI image layout (oci-layout, index.json) nor a docker save archive (manifest.json)",
            ))
        }
    }

    fn import_oci(&self, src: &Source, name: Option<&Reference>) -> Result<Vec<Imported>> {
        let what = |p: &str| format!("{}: {p}", src.path().display());
        #[derive(Deserialize)]
        struct Layout {
            #[serde(rename = "imageLayoutVersion")]
            version: String,
        }
        let l: Layout = serde_json::from_slice(&src.read("oci-layout", 4096)?)
            .map_err(|e| ImageError::invalid(what("oci-layout"), e.to_string()))?;
        if !l.version.starts_with("1.") {
            return Err(ImageError::invalid(
                what("oci-layout"),
                format!("layout version {:?}", l.version),
            ));
        }
        let bytes = src.read("index.json", self.limits().manifest_bytes)?;
        let Document::Index(index) = super::manifest::decode(
            &bytes,
            self.limits().manifest_bytes,
            &what("index.json"),
            None,
        )?
        else {
            return Err(ImageError::invalid(what("index.json"), "not an index"));
        };
        // Which entries, under which names.
        let mut picks: Vec<(&Descriptor, Vec<Reference>)> = Vec::new();
        for d in &index.manifests {
            let full = d
                .annotations
                .get(CONTAINERD_NAME)
                .and_then(|n| Reference::parse(n).ok());
            let tag = d.annotations.get(REF_NAME);
            let from_ref = tag
                .filter(|t| t.contains('/'))
                .and_then(|t| Reference::parse(t).ok());
            let names: Vec<Reference> = full.or(from_ref).into_iter().collect();
            picks.push((d, names));
        }
        if let Some(n) = name {
            if picks.len() > 1 {
                let want = n.tag().unwrap_or("latest");
                picks.retain(|(d, names)| {
                    d.annotations
                        .get(REF_NAME)
                        .is_some_and(|t| t == want || Reference::parse(t).is_ok_and(|r| r == *n))
                        || names.contains(n)
                });
                if picks.is_empty() {
                    return Err(ImageError::invalid(
                        what("index.json"),
                        format!("no image named {want:?} (org.opencontainers.image.ref.name)"),
                    ));
                }
            }
            for p in &mut picks {
                p.1 = vec![n.clone()];
            }
        }
        let mut out = Vec::new();
        for (d, names) in picks {
            let mut ing = self.ingest();
            let (manifest, parent) = self.oci_manifest(&mut ing, src, d, None, 0)?;
            out.push(self.oci_image(ing, src, &manifest, parent.as_ref(), &names)?);
        }
        Ok(out)
    }

    /// Stores the manifest `d` points at, following indexes to this
    /// platform's manifest. Returns its digest and the index it came from.
    fn oci_manifest(
        &self,
        ing: &mut Ingest<'_>,
        src: &Source,
        d: &Descriptor,
        parent: Option<Digest>,
        depth: usize,
    ) -> Result<(Digest, Option<Digest>)> {
        let bytes = src.read(&blob_path(&d.digest), self.limits().manifest_bytes)?;
        let (digest, doc) = ing.put_manifest(&bytes, Some(&d.digest), Some(&d.media_type))?;
        match doc {
            Document::Manifest(_) => Ok((digest, parent)),
            Document::Index(i) => {
                if depth >= MAX_INDEX_DEPTH {
                    return Err(ImageError::invalid(
                        format!("index {digest}"),
                        "indexes nested too deep",
                    ));
                }
                let next =
                    select_platform(&i, self.platform()).ok_or_else(|| ImageError::Platform {
                        what: format!("index {digest}"),
                        platform: self.platform().to_string(),
                    })?;
                self.oci_manifest(ing, src, next, Some(digest), depth + 1)
            }
        }
    }

    fn oci_image(
        &self,
        mut ing: Ingest<'_>,
        src: &Source,
        manifest: &Digest,
        index: Option<&Digest>,
        names: &[Reference],
    ) -> Result<Imported> {
        let bytes = self.read_blob(manifest, self.limits().manifest_bytes)?;
        let Document::Manifest(m) =
            super::manifest::decode(&bytes, self.limits().manifest_bytes, "manifest", None)?
        else {
            return Err(ImageError::invalid(
                format!("manifest {manifest}"),
                "not a manifest",
            ));
        };
        let cfg_bytes = src.read(&blob_path(&m.config.digest), self.limits().config_bytes)?;
        let cfg = ing.put_config(&cfg_bytes, &m.config.digest)?;
        check_layers(&m, cfg.rootfs.diff_ids.len(), manifest)?;
        for (desc, id) in m.layers.iter().zip(&cfg.rootfs.diff_ids) {
            if ing.has_layer(id)? {
                continue;
            }
            let (r, _) = src.open_file(&blob_path(&desc.digest))?;
            let spec = BlobSpec {
                digest: desc.digest.clone(),
                size: desc.size,
                media_type: desc.media_type.clone(),
            };
            ing.unpack_layer(
                r,
                &LayerSource {
                    diff_id: id.clone(),
                    blob: Some(spec),
                },
            )?;
        }
        let new_layers = ing.unpacked_layers();
        let rec = ing.commit(names, manifest, index)?;
        Ok(imported(&rec, names, new_layers))
    }

    fn import_docker(&self, src: &Source, name: Option<&Reference>) -> Result<Vec<Imported>> {
        let what = format!("{}: manifest.json", src.path().display());
        let entries: Vec<SaveEntry> =
            serde_json::from_slice(&src.read("manifest.json", self.limits().manifest_bytes)?)
                .map_err(|e| ImageError::invalid(&what, e.to_string()))?;
        if name.is_some() && entries.len() != 1 {
            return Err(ImageError::invalid(
                &what,
                format!(
                    "--name needs an archive of one image, this one has {}",
                    entries.len()
                ),
            ));
        }
        let mut out = Vec::new();
        for e in entries {
            let names: Vec<Reference> = match name {
                Some(n) => vec![n.clone()],
                None => e
                    .repo_tags
                    .iter()
                    .flatten()
                    .map(|t| Reference::parse(t))
                    .collect::<Result<_>>()?,
            };
            let mut ing = self.ingest();
            let cfg_bytes = src.read(&e.config, self.limits().config_bytes)?;
            let cfg_digest = Digest::of(&cfg_bytes);
            let cfg = ing.put_config(&cfg_bytes, &cfg_digest)?;
            if cfg.rootfs.diff_ids.len() != e.layers.len() {
                return Err(ImageError::invalid(
                    &what,
                    format!(
                        "{} layers, {} diff_ids in {}",
                        e.layers.len(),
                        cfg.rootfs.diff_ids.len(),
                        e.config
                    ),
                ));
            }
            let mut layers = Vec::new();
            for (file, id) in e.layers.iter().zip(&cfg.rootfs.diff_ids) {
                let (r, _) = src.open_file(file)?;
                let before = ing.unpacked_layers();
                let meta = if ing.has_layer(id)? {
                    None
                } else {
                    let src = LayerSource {
                        diff_id: id.clone(),
                        blob: None,
                    };
                    Some(ing.unpack_layer(r, &src)?)
                };
                // This archive's file, as read while unpacking it, or read
                // now (another import may have unpacked it from another blob).
                let (digest, size, c) = match meta {
                    Some(m) if ing.unpacked_layers() > before => {
                        (m.blob, m.blob_bytes, m.compression)
                    }
                    _ => sniff_and_hash(src.open_file(file)?.0, self.limits().blob_bytes)?,
                };
                let media_type = match c {
                    Compression::None => DOCKER_LAYER,
                    Compression::Gzip => DOCKER_LAYER_GZIP,
                    Compression::Zstd => "application/vnd.docker.image.rootfs.diff.tar.zstd",
                };
                layers.push(Descriptor {
                    media_type: media_type.into(),
                    digest,
                    size,
                    platform: None,
                    annotations: Default::default(),
                    urls: Vec::new(),
                });
            }
            let m = Manifest {
                schema_version: 2,
                media_type: Some(DOCKER_MANIFEST.into()),
                config: Descriptor {
                    media_type: DOCKER_CONFIG.into(),
                    digest: cfg_digest,
                    size: cfg_bytes.len() as u64,
                    platform: None,
                    annotations: Default::default(),
                    urls: Vec::new(),
                },
                layers,
                annotations: Default::default(),
            };
            let bytes =
                serde_json::to_vec(&m).map_err(|e| ImageError::invalid(&what, e.to_string()))?;
            let (digest, _) = ing.put_manifest(&bytes, None, Some(DOCKER_MANIFEST))?;
            let new_layers = ing.unpacked_layers();
            let rec = ing.commit(&names, &digest, None)?;
            out.push(imported(&rec, &names, new_layers));
        }
        Ok(out)
    }
}

pub(crate) fn check_layers(m: &Manifest, diff_ids: usize, manifest: &Digest) -> Result<()> {
    if m.layers.len() != diff_ids {
        return Err(ImageError::invalid(
            format!("image {manifest}"),
            format!(
                "{} layers in the manifest, {diff_ids} diff_ids in the config",
                m.layers.len()
            ),
        ));
    }
    Ok(())
}

fn imported(rec: &ImageRecord, names: &[Reference], new_layers: usize) -> Imported {
    Imported {
        digest: rec.digest.clone(),
        names: names.iter().filter_map(Reference::store_name).collect(),
        layers: rec.layers.len(),
        new_layers,
    }
}

/// `blobs/sha256/HEX` of an OCI layout.
fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// The digest, size and compression of a layer file already unpacked.
fn sniff_and_hash(r: Box<dyn Read + '_>, max: u64) -> Result<(Digest, u64, Compression)> {
    let mut h = HashReader::new(r, max);
    let (_, c) = decompress(&mut h, "layer")?;
    h.drain()
        .map_err(|e| ImageError::invalid("layer", e.to_string()))?;
    let (d, n) = h.finish();
    Ok((d, n, c))
}
