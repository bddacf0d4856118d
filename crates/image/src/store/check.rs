//! `system check` of the store: references point at images that exist, images have
//! their manifest, config and complete layers, nothing half-made lies about, and (on
//! request) every blob still hashes to its name. `fix` repairs with the same moves GC
//! makes: a reference to nothing is dropped, an image missing content is removed (a
//! pull brings it back), stray files go.

use serde::{Deserialize, Serialize};

use super::{remove_any, Store};
use crate::digest::Digest;
use crate::error::Result;
use crate::store::gc::InUse;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `image`, `reference`, `layer`, `blob`.
    pub kind: String,
    pub object: String,
    pub detail: String,
    pub fixed: bool,
}

impl Store {
    /// Findings about the store; with `fix`, repaired. `digests`: hash every blob.
    /// `in_use`: what containers hold (layers they need must be here).
    pub async fn check(&self, fix: bool, digests: bool, in_use: &InUse) -> Result<Vec<Problem>> {
        // Content being added is not a problem; while any is, tmp/ is not looked at.
        let exclusive = if fix {
            Some(self.exclusive().await)
        } else {
            self.try_exclusive()
        };
        let mut out = Vec::new();
        let mut push = |kind: &str, object: String, detail: String, fixed: bool| {
            out.push(Problem {
                kind: kind.to_string(),
                object,
                detail,
                fixed,
            })
        };
        let records: Vec<Digest> = self.record_ids();
        let mut dangling_refs = Vec::new();
        for (name, id) in self.all_refs()? {
            if !records.contains(&id) {
                dangling_refs.push(name.clone());
                push(
                    "reference",
                    name,
                    format!("points at image {} which is not in the store", id.short()),
                    fix,
                );
            }
        }
        if fix && !dangling_refs.is_empty() {
            self.drop_refs(&dangling_refs)?;
        }
        for id in &records {
            let record = match self.load_record(id) {
                Ok(r) => r,
                Err(e) => {
                    if fix {
                        self.remove_record(id)?;
                    }
                    push(
                        "image",
                        id.to_string(),
                        format!("unreadable record: {e}"),
                        fix,
                    );
                    continue;
                }
            };
            let mut missing = Vec::new();
            for b in record.blobs() {
                if !self.has_blob(&b) {
                    missing.push(format!("blob {b} is missing"));
                } else if digests {
                    if let Err(e) = self.verify_blob(&b) {
                        missing.push(e.to_string());
                        if fix {
                            let _ = remove_any(&self.blob_path(&b));
                        }
                    }
                }
            }
            for l in &record.layers {
                if self.layer(&l.chain_id).is_none() {
                    missing.push(format!(
                        "layer {} is missing or incomplete",
                        l.chain_id.short()
                    ));
                }
            }
            if !missing.is_empty() {
                let in_use_now = in_use.images.contains(id);
                let fixed = fix && !in_use_now;
                if fixed {
                    let names: Vec<String> =
                        self.tags_of(id)?.iter().map(|r| r.to_string()).collect();
                    self.drop_refs(&names)?;
                    self.remove_record(id)?;
                }
                push("image", id.to_string(), missing.join("; "), fixed);
            }
        }
        for chain in &in_use.layers {
            if self.layer(chain).is_none() {
                push(
                    "layer",
                    chain.to_string(),
                    "a container's layer is missing or incomplete".into(),
                    false,
                );
            }
        }
        for name in self.list_layers() {
            let bad = Digest::parse(&format!("sha256:{name}"))
                .ok()
                .and_then(|d| self.layer(&d))
                .is_none();
            if bad {
                let path = self.dir.join("layers").join(&name);
                let fixed = fix && remove_any(&path).is_ok();
                push("layer", name, "incomplete layer directory".into(), fixed);
            }
        }
        for (name, _) in self.list_blobs() {
            if Digest::parse(&format!("sha256:{name}")).is_err() {
                let fixed = fix && remove_any(&self.dir.join("blobs/sha256").join(&name)).is_ok();
                push("blob", name, "not named by a digest".into(), fixed);
            }
        }
        if exclusive.is_some() {
            if let Ok(entries) = std::fs::read_dir(self.tmp()) {
                for e in entries.flatten() {
                    let fixed = fix && remove_any(&e.path()).is_ok();
                    push(
                        "blob",
                        e.path().display().to_string(),
                        "left by interrupted work".into(),
                        fixed,
                    );
                }
            }
        }
        Ok(out)
    }
}
