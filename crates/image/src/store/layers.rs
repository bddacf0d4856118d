//! Unpacked layers, keyed by chain ID. A layer is unpacked into a fresh directory
//! under `tmp/`, its `layer.json` written there, and the whole directory renamed into
//! `layers/`: a layer directory that exists is complete.

use serde::{Deserialize, Serialize};

use super::{remove_any, sync_dir, Store};
use crate::digest::Digest;
use crate::error::{invalid, ImageError, Result};
use crate::unpack::{Limits, Report};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub chain_id: Digest,
    pub diff_id: Digest,
    #[serde(default)]
    pub parent: Option<Digest>,
    /// Bytes of uncompressed tar.
    pub size: u64,
    pub report: Report,
}

impl Store {
    /// The layer's record, when the layer is complete.
    pub fn layer(&self, chain: &Digest) -> Option<LayerMeta> {
        let path = self.layer_dir(chain).join("layer.json");
        let meta: LayerMeta = container_store::read_json(&path).ok()?;
        (meta.chain_id == *chain && self.layer_diff(chain).is_dir()).then_some(meta)
    }

    /// Unpacks blob `blob` as layer `chain` (whose uncompressed digest must be
    /// `diff_id`), unless it is here already. Concurrent calls for one layer unpack it
    /// once. `limits` may be tighter than the store's (what is left of an image's).
    pub async fn unpack_layer(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        chain: &Digest,
        parent: Option<&Digest>,
        limits: Limits,
    ) -> Result<LayerMeta> {
        let _one = self.lock_key(&format!("layer {chain}")).await;
        if let Some(meta) = self.layer(chain) {
            return Ok(meta);
        }
        let file = self.open_blob(blob)?;
        let staging = self.tmp_path("layer");
        let diff = staging.join("diff");
        std::fs::create_dir_all(&diff)
            .map_err(ImageError::io(format!("create {}", diff.display())))?;
        let program = self.unpack.program.clone();
        let d = diff.clone();
        let run = tokio::task::spawn_blocking(move || match program {
            Some(p) => crate::unpack::child::unpack_in_child(&p, file, &d, &limits),
            None => {
                let root = container_rootfs::Root::open(&d).map_err(|e| invalid(e.to_string()))?;
                crate::unpack::apply(&root, file, limits)
            }
        })
        .await
        .map_err(|e| invalid(format!("unpack task: {e}")));
        let result = run.and_then(|r| r).and_then(|report| {
            if report.diff_id.as_ref() != Some(diff_id) {
                return Err(invalid(format!(
                    "layer {blob}: its uncompressed content hashes to {}, the image config says {diff_id}",
                    report.diff_id.as_ref().map(|d| d.to_string()).unwrap_or_default()
                )));
            }
            let meta = LayerMeta {
                chain_id: chain.clone(),
                diff_id: diff_id.clone(),
                parent: parent.cloned(),
                size: report.tar_bytes,
                report,
            };
            container_store::write_json(&staging.join("layer.json"), &meta)
                .map_err(|e| invalid(e.to_string()))?;
            container_protocol::fault::point("apiserver:image-before-layer-commit");
            let dest = self.layer_dir(chain);
            std::fs::rename(&staging, &dest)
                .map_err(ImageError::io(format!("move layer into {}", dest.display())))?;
            sync_dir(&self.dir.join("layers"))?;
            Ok(meta)
        });
        if result.is_err() {
            let _ = remove_any(&staging);
        }
        result.map_err(|e| e.context(format!("layer {}", blob.short())))
    }

    /// Every layer directory: chain hex names.
    pub fn list_layers(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("layers")) else {
            return vec![];
        };
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}
