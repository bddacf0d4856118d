//! The store under `<root>/images` (mode 0700: layers hold setuid files and device
//! nodes that only containers may reach):
//!
//! ```text
//! blobs/sha256/<hex>            content, verified as written (manifests, configs, layers)
//! layers/<chain-hex>/diff/      an unpacked layer: an overlayfs lower directory
//! layers/<chain-hex>/layer.json what it is; written before the directory is renamed in
//! images/<config-hex>.json      an image: its manifest, config and layers
//! refs.json                     name:tag → image id
//! tmp/                          downloads and unpacks under way; emptied at open
//! ```
//!
//! Everything appears by one rename: a blob once its digest matched, a layer once its
//! unpack finished (its `layer.json` inside), an image record once its layers are
//! there, a reference once its record is. A process killed at any moment leaves at
//! most files under `tmp/` and unreferenced content, which `open` and GC remove: never a
//! reference to a half layer.

pub mod blobs;
pub mod check;
pub mod gc;
pub mod layers;
pub mod records;

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::unpack::Limits;

pub use records::{ImageRecord, LayerRef, Platform};

/// How layers are unpacked: by which program, within which limits.
#[derive(Debug, Clone)]
pub struct UnpackConfig {
    /// `container-unpack`; `None`: in this process (tests of the rules themselves).
    pub program: Option<PathBuf>,
    pub limits: Limits,
}

pub struct Store {
    dir: PathBuf,
    unpack: UnpackConfig,
    /// Reads and writes of `refs.json` and image records.
    meta: Mutex<()>,
    /// Pulls and loads hold it shared while their content is not yet referenced; GC
    /// and repairs hold it exclusively, so they never take what is being added.
    content: tokio::sync::RwLock<()>,
    /// One fetch or unpack per blob or layer at a time: the second waits and finds it.
    keyed: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Store {
    /// Opens (and creates) the store in `dir`, removing what interrupted work left in
    /// `tmp/`. Only one process may have a store open: the apiserver, under its lock.
    pub fn open(dir: &Path, unpack: UnpackConfig) -> Result<Arc<Store>> {
        for sub in ["", "blobs", "blobs/sha256", "layers", "images", "tmp"] {
            let path = dir.join(sub);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(ImageError::io(format!("create {}", path.display())))?;
        }
        let store = Store {
            dir: dir.to_path_buf(),
            unpack,
            meta: Mutex::new(()),
            content: tokio::sync::RwLock::new(()),
            keyed: Mutex::new(HashMap::new()),
        };
        for left in store.clear_tmp() {
            tracing::info!(
                "images: removed {} left by interrupted work",
                left.display()
            );
        }
        Ok(Arc::new(store))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn limits(&self) -> &Limits {
        &self.unpack.limits
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    pub fn layer_dir(&self, chain: &Digest) -> PathBuf {
        self.dir.join("layers").join(chain.hex())
    }

    /// The directory overlayfs takes as a lower layer.
    pub fn layer_diff(&self, chain: &Digest) -> PathBuf {
        self.layer_dir(chain).join("diff")
    }

    fn record_path(&self, id: &Digest) -> PathBuf {
        self.dir.join("images").join(format!("{}.json", id.hex()))
    }

    fn refs_path(&self) -> PathBuf {
        self.dir.join("refs.json")
    }

    pub(crate) fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// A fresh name under `tmp/`.
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        let r: String = b.iter().map(|x| format!("{x:02x}")).collect();
        self.tmp().join(format!("{what}-{r}"))
    }

    /// Held while content is added and not yet referenced.
    pub async fn adding(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.content.read().await
    }

    /// Held by GC and repairs.
    pub async fn exclusive(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.content.write().await
    }

    pub(crate) fn try_exclusive(&self) -> Option<tokio::sync::RwLockWriteGuard<'_, ()>> {
        self.content.try_write().ok()
    }

    /// The lock of one blob or layer: concurrent pulls sharing it fetch it once.
    pub async fn lock_key(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.keyed.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, m| Arc::strong_count(m) > 1 || m.try_lock().is_err());
            map.entry(key.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }

    fn meta(&self) -> std::sync::MutexGuard<'_, ()> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn clear_tmp(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.tmp()) {
            for e in entries.flatten() {
                if remove_any(&e.path()).is_ok() {
                    removed.push(e.path());
                }
            }
        }
        removed
    }
}

/// Removes a file or a whole tree, whatever modes the tree's directories have (a layer
/// may hold read-only directories).
pub(crate) fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => match std::fs::remove_dir_all(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                make_writable(path);
                std::fs::remove_dir_all(path)
            }
            Err(e) => Err(e),
        },
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&e.path());
            }
        }
    }
}

/// fsync of a directory, so a rename into it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ImageError::io(format!("fsync {}", dir.display())))
}

/// Bytes used under `path`, counted by blocks, each inode once.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut todo = vec![path.to_path_buf()];
    while let Some(p) = todo.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if seen.insert((m.dev(), m.ino())) {
            total += m.blocks() * 512;
        }
        if m.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                todo.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    total
}
