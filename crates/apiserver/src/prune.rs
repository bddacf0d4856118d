//! `system prune`: what nothing uses, removed kind by kind, containers first (so the
//! networks and images they held are unused by the time those are pruned). Each
//! removal is the ordinary one (`rm`, `network prune`, `image prune`) with its own
//! locks and undo; a container that cannot be removed is reported and skipped.

use container_store::container::Status;

use crate::daemon::ApiServer;
use crate::error::ApiError;

impl ApiServer {
    pub(crate) async fn prune(&self, all: bool, volumes: bool) -> Result<String, ApiError> {
        let mut removed = Vec::new();
        let mut failed = Vec::new();
        for (id, record) in self.containers.records().containers() {
            let state = &record.state;
            if state.status == Status::Running || state.restart_pending {
                continue;
            }
            match self.containers.remove(&id, false, false).await {
                Ok(()) => removed.push(id),
                // Started (or removed) meanwhile: not ours to prune any more.
                Err(ApiError::Conflict(_)) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => failed.push(format!("container {id}: {e}")),
            }
        }
        let networks = self.networks.prune().await?;
        let images: serde_json::Value = serde_json::from_str(&self.images.prune(all).await?)
            .map_err(|e| ApiError::Internal(format!("image prune: {e}")))?;
        // `--volumes`: the anonymous volumes nothing uses now, as Docker 23's.
        let volumes: serde_json::Value = if volumes {
            let pruned: serde_json::Value = serde_json::from_str(&self.volumes.prune(false).await?)
                .map_err(|e| ApiError::Internal(format!("volume prune: {e}")))?;
            pruned["removed"].clone()
        } else {
            serde_json::json!([])
        };
        serde_json::to_string(&serde_json::json!({
            "containers": removed,
            "networks": networks,
            "images": images,
            "volumes": volumes,
            "failed": failed,
        }))
        .map_err(|e| ApiError::Internal(format!("encode: {e}")))
    }
}
