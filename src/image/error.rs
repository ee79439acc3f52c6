//! The one error type of the image store. Every message is one line and
//! names what failed (the reference, digest, layer entry, field or path);
//! text that comes from an image (entry names, fields) is quoted with
//! `{:?}`, so a hostile name cannot add lines or terminal escapes.

use std::io;
use std::path::PathBuf;

use super::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A reference (`busybox`, `host:5000/a/b:tag@sha256:...`) that does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },
    /// A digest string that does not parse, or an algorithm other than sha256.
    #[error("invalid digest {digest:?}: {reason}")]
    Digest { digest: String, reason: String },
    /// Content whose sha256 is not the one it was announced with.
    #[error("{what}: expected digest {expected}, content has {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    /// Content whose size is not the one it was announced with.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    /// Content over a cap (a manifest, a config, a layer's bytes or inodes,
    /// an image's): what, and the cap.
    #[error("{what}: more than {limit} {unit} (the limit)")]
    TooLarge {
        what: String,
        limit: u64,
        unit: &'static str,
    },
    /// A manifest, index, config or archive that is not what it says.
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    /// A media type the store does not handle.
    #[error("{what}: unsupported media type {media_type:?}")]
    MediaType { what: String, media_type: String },
    /// A layer entry refused while unpacking (traversal, a symlink on the
    /// way, a hard link out of the layer, a bad whiteout, ...).
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    Entry {
        layer: String,
        entry: String,
        reason: String,
    },
    /// A layer that cannot be read as a tar stream (truncated, corrupt).
    #[error("layer {layer}: {reason}")]
    Layer { layer: String, reason: String },
    /// No image of that name or digest in the store.
    #[error("image {reference:?}: not in the store")]
    NotFound { reference: String },
    /// An image index with nothing for this host's platform.
    #[error("{what}: no image for platform {platform}")]
    Platform { what: String, platform: String },
    /// The image's `User` cannot be resolved to numeric ids.
    #[error("image {image}: user {user:?}: {reason}")]
    User {
        image: String,
        user: String,
        reason: String,
    },
    /// An image in the store whose layer was removed (or never finished).
    #[error("image {image}: layer {layer} is missing from the store")]
    LayerMissing { image: String, layer: Digest },
    /// The store itself (permissions, layout).
    #[error("store {path}: {reason}")]
    Store { path: PathBuf, reason: String },
    /// An I/O error on a path of the store or of an import.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl ImageError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        ImageError::Invalid {
            what: one_line(&what.into()),
            reason: one_line(&reason.into()),
        }
    }

    /// True when the store or the machine failed (I/O, permissions), false
    /// when the request or the image was at fault (a bad reference, an
    /// unknown image, a hostile or broken image). The CLI exits 125 for
    /// both (docs/exec.md, "One exit-code contract").
    pub fn is_store_failure(&self) -> bool {
        matches!(self, ImageError::Io { .. } | ImageError::Store { .. })
    }
}

/// Text from elsewhere (a parser's message quoting the input, a name)
/// with control characters and line separators escaped, so an error stays
/// one line and prints no terminal escape.
pub fn one_line(s: &str) -> String {
    if !s
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `Result` with [`ImageError`].
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    #[test]
    fn foreign_text_stays_on_one_line() {
        assert_eq!(
            super::one_line("a\nb\u{1b}[31m\u{2028}"),
            "a\\nb\\u{1b}[31m\\u{2028}"
        );
        assert_eq!(super::one_line("plain"), "plain");
        // A tar header whose numeric field holds newlines (a fuzzing
        // finding: the tar crate quotes the bytes in its message).
        let mut h = [0u8; 512];
        h[..5].copy_from_slice(b"a.txt");
        h[148..156].copy_from_slice(b"\n\n\n\n\n\n\n\n");
        let mut tar = h.to_vec();
        tar.extend_from_slice(&[0u8; 1024]);
        let d = tempfile::tempdir().unwrap();
        let opts = crate::image::UnpackOptions {
            max_entries: 10,
            privileged: false,
            layer: "l".into(),
        };
        let e = crate::image::unpack_tar(&tar[..], d.path(), &opts)
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "{e}");
    }
}
