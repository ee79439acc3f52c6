//! Caps on what an image may make the store read, hold and write: the
//! defence against decompression bombs and oversized documents.

use serde::Serialize;

/// Caps applied while importing, pulling and unpacking. Every cap is an
/// error naming the cap when crossed; nothing of the layer or image that
/// crossed it stays in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// A manifest or index document (containerd: 4 MiB).
    pub manifest_bytes: u64,
    /// An image config document.
    pub config_bytes: u64,
    /// One layer's blob as stored or sent (compressed).
    pub blob_bytes: u64,
    /// One layer's unpacked bytes: the tar stream after decompression
    /// (headers and padding included), so a bomb stops here.
    pub layer_bytes: u64,
    /// One layer's entries (files, directories, links, whiteouts).
    pub layer_inodes: u64,
    /// An image's unpacked bytes, all layers together.
    pub image_bytes: u64,
    /// An image's entries, all layers together.
    pub image_inodes: u64,
    /// Layers of one image (overlayfs stacks at most 500 lower layers).
    pub layers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        const GIB: u64 = 1 << 30;
        Limits {
            manifest_bytes: 4 << 20,
            config_bytes: 8 << 20,
            blob_bytes: 16 * GIB,
            layer_bytes: 32 * GIB,
            layer_inodes: 2_000_000,
            image_bytes: 64 * GIB,
            image_inodes: 4_000_000,
            layers: 128,
        }
    }
}

/// Path names and extension headers inside a layer's tar stream: a GNU
/// long name or link, a PAX header (fixed, not configurable).
pub const MAX_TAR_NAME: u64 = 64 << 10;
pub const MAX_PAX_HEADER: u64 = 1 << 20;
/// `/etc/passwd` and `/etc/group` read from an image to resolve its user.
pub const MAX_ACCOUNT_FILE: u64 = 4 << 20;
