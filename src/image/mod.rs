//! OCI images: the content-addressed store (`/var/lib/sandbox`, or
//! `$SANDBOX_STORE`), unpacking layers into it (hostile input in mind),
//! importing `docker save` archives and OCI layouts, removal, and the size
//! report. Depends on nothing of the sandbox but `std` and crates; the CLI
//! (`sandbox image`) and the runner use it.
//!
//! # For a run
//!
//! ```no_run
//! # fn f() -> Result<(), sandbox::image::ImageError> {
//! use sandbox::image::{Store, store_path};
//! let store = Store::open(store_path(None))?;
//! let img = store.resolve("busybox")?;      // docker.io/library/busybox:latest
//! // img.layers: the overlay's lower directories, lowest first;
//! // img.config: uid/gid (resolved in the image's /etc/passwd), env,
//! //             working_dir, entrypoint, cmd;
//! // img.lease: keeps the layers from `rm`/`prune`; drop it after the run.
//! # Ok(()) }
//! ```
//!
//! # For a pull
//!
//! [`Store::ingest`] gives an [`Ingest`]: `put_manifest` (exact bytes,
//! decoded and checked under the manifest cap; an index too), `put_config`,
//! `has_layer` (by diff_id: a present layer is not fetched again, and is
//! leased), `unpack_layer` (from any `Read` of the blob: digest, size,
//! diff_id and caps checked while streaming), `put_blob` (any blob, hashed
//! while written), then `commit` (names, manifest digest, index digest).
//! [`select_platform`] picks an index's entry. An ingest dropped before
//! `commit` removes what it wrote.
//!
//! # Layout and rules
//!
//! The on-disk layout is in [`store`]; the locks in [`lock`]; the
//! unpacking rules (traversal, symlinks, hard links, devices, set-id bits,
//! xattrs, whiteouts) in [`unpack`]; the caps in [`Limits`]. Layers are
//! named by diff_id (the uncompressed tar's digest), so a layer is stored
//! once whatever compression its images ship it in; layer blobs are not
//! kept once unpacked and verified.

pub mod allow;
mod archive;
pub mod beneath;
pub mod config;
pub mod digest;
pub mod error;
pub mod gc;
pub mod import;
pub mod ingest;
pub mod layer;
pub mod limits;
pub mod lock;
pub mod manifest;
pub mod pull;
pub mod record;
pub mod reference;
pub mod report;
pub mod store;
pub mod tarstream;
pub mod unpack;
pub mod users;

pub use allow::AllowList;
pub use config::{ImageConfig, RunConfig};
pub use digest::Digest;
pub use error::ImageError;
pub use gc::RemoveReport;
pub use import::Imported;
pub use ingest::Ingest;
pub use layer::{BlobSpec, LayerSource};
pub use limits::Limits;
pub use lock::Lease;
pub use manifest::{
    Descriptor, Document, Index, Manifest, Platform, host_platform, select_platform,
};
pub use record::{ImageRecord, LayerMeta};
pub use reference::Reference;
pub use report::{ImageSummary, LayerUsage, Usage};
pub use store::{DEFAULT_STORE, Resolved, Store, store_path};
pub use unpack::{UnpackOptions, UnpackStats, unpack_tar};

#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod unpack_tests;
