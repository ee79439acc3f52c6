//! One layer from its blob to an unpacked directory: the blob is hashed
//! and counted as it is read, decompressed (gzip, zstd or none, told by the
//! magic bytes; the media type must be a known layer type), the tar stream
//! hashed again (its digest is the layer's `diff_id`) and capped, then
//! unpacked. Any mismatch or cap is an error; the caller discards the
//! directory.

use std::io::{self, Read};
use std::path::Path;

use super::digest::{Digest, HashReader};
use super::error::{ImageError, Result};
use super::limits::Limits;
use super::manifest::{Compression, layer_compression};
use super::unpack::{UnpackOptions, UnpackStats, unpack_tar};

/// What is known of a layer before reading it.
#[derive(Clone, Debug)]
pub struct LayerSource {
    /// The digest of the uncompressed tar (the image config's
    /// `rootfs.diff_ids[i]`): the layer's name in the store.
    pub diff_id: Digest,
    /// The blob as the manifest describes it (digest, size, media type);
    /// `None` when only the tar's own digest is known (a `docker save`
    /// archive).
    pub blob: Option<BlobSpec>,
}

/// A layer blob as a manifest describes it.
#[derive(Clone, Debug)]
pub struct BlobSpec {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// What unpacking a layer found.
#[derive(Clone, Debug)]
pub struct Unpacked {
    pub stats: UnpackStats,
    /// Bytes of the uncompressed tar stream.
    pub tar_bytes: u64,
    /// The blob as read: its digest, size and compression.
    pub blob_digest: Digest,
    pub blob_bytes: u64,
    pub compression: Compression,
}

/// Detects the compression of `r` by its first bytes and returns a reader
/// of the decompressed stream.
pub fn decompress<'a, R: Read + 'a>(
    mut r: R,
    what: &str,
) -> Result<(Box<dyn Read + 'a>, Compression)> {
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < magic.len() {
        match r.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(ImageError::Layer {
                    layer: what.to_string(),
                    reason: super::error::one_line(&e.to_string()),
                });
            }
        }
    }
    let head = io::Cursor::new(magic[..n].to_vec());
    let whole = head.chain(r);
    if magic[..n].starts_with(&[0x1f, 0x8b]) {
        return Ok((
            Box::new(flate2::read::MultiGzDecoder::new(whole)),
            Compression::Gzip,
        ));
    }
    if magic[..n] == [0x28, 0xb5, 0x2f, 0xfd] {
        #[cfg(feature = "zstd")]
        {
            let d = zstd::stream::read::Decoder::new(whole).map_err(|e| ImageError::Layer {
                layer: what.to_string(),
                reason: format!("zstd: {e}"),
            })?;
            return Ok((Box::new(d), Compression::Zstd));
        }
        #[cfg(not(feature = "zstd"))]
        return Err(ImageError::MediaType {
            what: format!("layer {what} (this build has no zstd)"),
            media_type: "zstd".into(),
        });
    }
    Ok((Box::new(whole), Compression::None))
}

/// Reads the layer blob `r` and unpacks it into `dest` (an existing empty
/// directory), checking everything `src` announces.
pub fn unpack_layer(
    r: impl Read,
    src: &LayerSource,
    dest: &Path,
    limits: &Limits,
    privileged: bool,
) -> Result<Unpacked> {
    let name = src.diff_id.to_string();
    if let Some(b) = &src.blob {
        layer_compression(&b.media_type).map_err(|_| ImageError::MediaType {
            what: format!("layer {name}"),
            media_type: b.media_type.clone(),
        })?;
        if b.size > limits.blob_bytes {
            return Err(ImageError::TooLarge {
                what: format!("layer blob {}", b.digest),
                limit: limits.blob_bytes,
                unit: "bytes",
            });
        }
    }
    let blob_cap = src.blob.as_ref().map_or(limits.blob_bytes, |b| b.size);
    let mut blob = HashReader::new(r, blob_cap);
    let opts = UnpackOptions {
        max_entries: limits.layer_inodes,
        privileged,
        layer: name.clone(),
    };
    let inner = (|| {
        let (dec, compression) = decompress(&mut blob, &name)?;
        let mut tar = HashReader::new(dec, limits.layer_bytes);
        let res = unpack_tar(&mut tar, dest, &opts).and_then(|stats| {
            // What follows the end-of-archive marker counts in the diff_id.
            tar.drain().map_err(|e| ImageError::Layer {
                layer: name.clone(),
                reason: super::error::one_line(&format!("after the end of the archive: {e}")),
            })?;
            Ok(stats)
        });
        if tar.over_limit() {
            return Err(ImageError::TooLarge {
                what: format!("layer {name} unpacked"),
                limit: limits.layer_bytes,
                unit: "bytes",
            });
        }
        let stats = res.map_err(|e| stream_error(e, &name, compression))?;
        let (diff, tar_bytes) = tar.finish();
        Ok((stats, diff, tar_bytes, compression))
    })();
    let drained = inner.as_ref().ok().map(|_| blob.drain());
    if blob.over_limit() {
        return Err(over_blob(src, limits));
    }
    let (stats, diff, tar_bytes, compression) = inner?;
    if let Some(Err(e)) = drained {
        return Err(ImageError::Layer {
            layer: name,
            reason: super::error::one_line(&format!("after the compressed stream: {e}")),
        });
    }
    let (blob_digest, blob_bytes) = blob.finish();
    if let Some(b) = &src.blob {
        if blob_bytes != b.size {
            return Err(ImageError::SizeMismatch {
                what: format!("layer blob {}", b.digest),
                expected: b.size,
                actual: blob_bytes,
            });
        }
        if blob_digest != b.digest {
            return Err(ImageError::DigestMismatch {
                what: "layer blob".into(),
                expected: b.digest.clone(),
                actual: blob_digest,
            });
        }
    }
    if diff != src.diff_id {
        return Err(ImageError::DigestMismatch {
            what: "layer (uncompressed, the config's diff_id)".into(),
            expected: src.diff_id.clone(),
            actual: diff,
        });
    }
    Ok(Unpacked {
        stats,
        tar_bytes,
        blob_digest,
        blob_bytes,
        compression,
    })
}

fn over_blob(src: &LayerSource, limits: &Limits) -> ImageError {
    match &src.blob {
        Some(b) => ImageError::TooLarge {
            what: format!("layer blob {} (its announced size)", b.digest),
            limit: b.size,
            unit: "bytes",
        },
        None => ImageError::TooLarge {
            what: format!("layer {} blob", src.diff_id),
            limit: limits.blob_bytes,
            unit: "bytes",
        },
    }
}

/// A failure while unpacking: a corrupt compressed stream is named as such.
fn stream_error(e: ImageError, name: &str, c: Compression) -> ImageError {
    let what = match c {
        Compression::None => return e,
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    };
    match e {
        ImageError::Layer { reason, .. } => ImageError::Layer {
            layer: name.to_string(),
            reason: super::error::one_line(&format!("{what} stream: {reason}")),
        },
        e => e,
    }
}
