//! Unpacking a layer: a tar stream from a stranger, written into an empty directory
//! that becomes an overlayfs lower layer. The rules (see `entries`) keep every write
//! inside that directory whatever the tar holds; the limits keep a small blob from
//! becoming a full disk. `child` runs it in a process of its own with few privileges.

pub mod child;
mod entries;
mod stream;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub use entries::apply;
pub use stream::{Compression, LimitError};

/// How much a layer and an image may unpack to. Configurable (the apiserver's
/// `--image-max-layer-size`, `--image-max-image-size`, `--image-max-ratio`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of uncompressed tar one layer may hold.
    pub layer_bytes: u64,
    /// Bytes all the layers of one image may hold together.
    pub image_bytes: u64,
    /// Uncompressed bytes per compressed byte, beyond a first [`RATIO_SLACK`]: a
    /// decompression bomb stops here long before the disk fills.
    pub ratio: u64,
    /// Entries one layer may hold (each is an inode).
    pub entries: u64,
}

/// Uncompressed bytes always allowed before the ratio counts: tar headers of a small
/// layer decompress at high ratios too.
pub const RATIO_SLACK: u64 = 8 << 20;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            layer_bytes: 16 << 30,
            image_bytes: 64 << 30,
            ratio: 250,
            entries: 2_000_000,
        }
    }
}

/// What an unpack did, as the child reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// sha256 of the uncompressed tar: must be the config's `diff_id`.
    pub diff_id: Option<Digest>,
    /// Bytes of uncompressed tar read.
    pub tar_bytes: u64,
    /// Bytes of file content written.
    pub content_bytes: u64,
    pub entries: u64,
    /// Device nodes not created: a runtime keeps them only where a device cgroup
    /// governs them, and nothing here does.
    pub skipped_devices: u64,
    /// Extended attributes not set (`trusted.*`, overlayfs's own, security labels).
    pub skipped_xattrs: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
}
