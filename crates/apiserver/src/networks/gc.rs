//! IPAM GC on demand (`network gc`, `system check --fix`) and at start (seed 004).

use std::sync::Arc;

use container_protocol::network::ReservationInfo;

use super::Networks;
use crate::error::ApiError;

impl Networks {
    /// Collects one network, or every network whose record is valid.
    pub async fn gc(
        self: &Arc<Self>,
        name: Option<String>,
    ) -> Result<Vec<(String, ReservationInfo)>, ApiError> {
        let names = match name {
            Some(n) => {
                self.config(&n)?;
                vec![n]
            }
            // The others are reported by name at start and by any command naming them.
            None => self
                .records
                .networks()
                .into_iter()
                .filter(|c| match self.config(&c.id) {
                    Ok(config) if config.removing => false,
                    Ok(config) => match self.older_overlapping(&config) {
                        None => true,
                        Some(other) => {
                            tracing::warn!(
                                "gc skips network {}: it overlaps network {other}",
                                c.id
                            );
                            false
                        }
                    },
                    Err(e) => {
                        tracing::warn!("gc skips {e}");
                        false
                    }
                })
                .map(|c| c.id)
                .collect(),
        };
        let mut released = Vec::new();
        let mut failed = Vec::new();
        // One broken network must not keep the others from being collected.
        for name in names {
            match self.gc_one(&name).await {
                Ok(list) => released.extend(list.into_iter().map(|r| (name.clone(), r))),
                Err(e) => failed.push(e.to_string()),
            }
        }
        for (network, r) in &released {
            tracing::info!(
                "network {network}: released {} ({} {})",
                r.ip,
                r.container_id,
                r.ifname
            );
        }
        if !failed.is_empty() {
            return Err(ApiError::Internal(format!(
                "gc released {} reservation(s) but failed on: {}",
                released.len(),
                failed.join("; ")
            )));
        }
        Ok(released)
    }

    /// One network: what no live attachment holds goes. Behind the GC gate, so the live
    /// set includes every attachment a start is making.
    pub(super) async fn gc_one(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Vec<ReservationInfo>, ApiError> {
        let helper = self.helper(name).await?;
        let _gate = self.gc_gate(name).await;
        let live = self.live_attachments(name);
        Ok(helper.gc(live).await?)
    }
}
