//! GC: images nothing names (or, with `all`, that no container uses), then every
//! blob and layer no remaining image or container needs. It holds the store
//! exclusively, so content a pull is adding is never taken.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{disk_usage, remove_any, Store};
use crate::digest::Digest;
use crate::error::Result;

/// What a container holds in the store: its image and the layers under its rootfs.
#[derive(Debug, Clone, Default)]
pub struct InUse {
    pub images: HashSet<Digest>,
    pub layers: HashSet<Digest>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pruned {
    /// Image ids deleted.
    pub images: Vec<String>,
    pub blobs: usize,
    pub layers: usize,
    pub reclaimed: u64,
}

impl Store {
    /// `image prune [-a]`. Without `all`, only images without a tag go.
    pub async fn prune(&self, all: bool, in_use: &InUse) -> Result<Pruned> {
        let _x = self.exclusive().await;
        let mut pruned = Pruned::default();
        let tagged: HashSet<Digest> = self.all_refs()?.into_iter().map(|(_, d)| d).collect();
        for id in self.record_ids() {
            if in_use.images.contains(&id) || (!all && tagged.contains(&id)) {
                continue;
            }
            if all {
                let names: Vec<String> = self
                    .all_refs()?
                    .into_iter()
                    .filter(|(_, d)| *d == id)
                    .map(|(n, _)| n)
                    .collect();
                self.drop_refs(&names)?;
            }
            self.remove_record(&id)?;
            pruned.images.push(id.to_string());
        }
        let (blobs, layers, bytes) = self.collect(in_use)?;
        pruned.blobs = blobs;
        pruned.layers = layers;
        pruned.reclaimed = bytes;
        Ok(pruned)
    }

    /// Removes every blob and layer no image record and no container needs, and what
    /// is under `tmp/`. The caller holds the store exclusively.
    fn collect(&self, in_use: &InUse) -> Result<(usize, usize, u64)> {
        let mut blobs: HashSet<String> = HashSet::new();
        let mut layers: HashSet<String> =
            in_use.layers.iter().map(|d| d.hex().to_string()).collect();
        for id in self.record_ids() {
            match self.load_record(&id) {
                Ok(r) => {
                    blobs.extend(r.blobs().iter().map(|d| d.hex().to_string()));
                    layers.extend(r.chain_ids().iter().map(|d| d.hex().to_string()));
                }
                // An unreadable record keeps its config; `check` reports it.
                Err(_) => {
                    blobs.insert(id.hex().to_string());
                }
            }
        }
        let (mut nb, mut nl, mut bytes) = (0, 0, 0);
        for (name, size) in self.list_blobs() {
            if !blobs.contains(&name) {
                let path = self.dir.join("blobs/sha256").join(&name);
                if remove_any(&path).is_ok() {
                    nb += 1;
                    bytes += size;
                }
            }
        }
        for name in self.list_layers() {
            if !layers.contains(&name) {
                let path = self.dir.join("layers").join(&name);
                let size = disk_usage(&path);
                if remove_any(&path).is_ok() {
                    nl += 1;
                    bytes += size;
                }
            }
        }
        for left in self.clear_tmp() {
            tracing::info!("images: removed {}", left.display());
        }
        Ok((nb, nl, bytes))
    }

    /// Space used: blobs, layers, and how much of it images no container uses hold.
    pub fn usage(&self) -> Usage {
        let blobs: u64 = self.list_blobs().iter().map(|(_, s)| s).sum();
        let layers = disk_usage(&self.dir.join("layers"));
        Usage {
            images: self.record_ids().len(),
            blobs,
            layers,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Usage {
    pub images: usize,
    pub blobs: u64,
    pub layers: u64,
}

impl Digest {
    /// For sets keyed by hex.
    pub fn hex_owned(&self) -> String {
        self.hex().to_string()
    }
}
