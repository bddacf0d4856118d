//! The containers' part of issue 10's resources: user-namespace ranges reserved before
//! a sandbox starts and released at its end, the cgroup a dead sandbox left, and
//! `stats`.

use std::sync::Arc;

use container_protocol::api::ContainerStats;
use container_protocol::resources::{IdRange, UsernsMode};
use container_store::container::{list_containers, ContainerConfig, Status};

use super::Containers;
use crate::error::ApiError;
use crate::undo::Undo;

impl Containers {
    /// For `--userns=auto`: a range on disk before the sandbox that uses it starts,
    /// with its release as the step's undo.
    pub(super) fn reserve_userns<'a>(
        self: &'a Arc<Self>,
        config: &ContainerConfig,
        undo: &mut Undo<'a>,
    ) -> Result<Option<IdRange>, ApiError> {
        if config.userns != Some(UsernsMode::Auto) {
            return Ok(None);
        }
        let id = config.id.clone();
        let range = self.resources.ranges.reserve(&id).map_err(|e| match e {
            container_idranges::Error::Exhausted { .. } => ApiError::Conflict(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        })?;
        let containers = self.clone();
        undo.push(
            format!("release user namespace range of {id}"),
            async move {
                containers.release_userns(&id);
                Ok(())
            },
        );
        Ok(Some(range))
    }

    pub(super) fn release_userns(&self, id: &str) {
        if let Err(e) = self.resources.ranges.release(id) {
            // Not live any more: the next GC releases it.
            tracing::warn!("container {id}: {e}");
        }
    }

    /// At start: ranges of containers that are not running, and not being started.
    pub fn gc_userns_ranges(&self) {
        let live = |id: &str| {
            self.ops.holds_container(id)
                || self
                    .load(id)
                    .is_ok_and(|(_, s)| s.status == Status::Running && s.userns.is_some())
        };
        match self.resources.ranges.gc(live) {
            Ok(stale) => {
                for (range, owner) in stale {
                    tracing::info!(
                        "released user namespace range {}:{} of {owner:?}: it does not run",
                        range.start,
                        range.size
                    );
                }
            }
            Err(e) => tracing::warn!("user namespace GC: {e}"),
        }
    }

    /// The cgroup a sandbox that died left: killed and removed, from the record.
    pub(super) async fn remove_dead_cgroup(&self, id: &str, rel: Option<String>) {
        let Some(rel) = rel else { return };
        match tokio::task::spawn_blocking(move || crate::resources::remove_cgroup(&rel)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("container {id}: {e}"),
            Err(e) => tracing::warn!("container {id}: cgroup: {e}"),
        }
    }

    /// One reading of each named running container (every running one when none is
    /// named).
    pub fn stats(&self, ids: Vec<String>) -> Result<Vec<ContainerStats>, ApiError> {
        let named = !ids.is_empty();
        let ids = if named {
            ids
        } else {
            list_containers(&self.paths)
        };
        let mut out = Vec::new();
        for id in ids {
            let (_, state) = self.load(&id)?;
            let cgroup = match (&state.cgroup, state.status) {
                (Some(c), Status::Running) => c.clone(),
                _ if named => {
                    return Err(ApiError::Conflict(format!("container {id} is not running")))
                }
                _ => continue,
            };
            match crate::resources::read_stats(&id, &cgroup, state.pid) {
                Ok(s) => out.push(s),
                Err(e) if named => return Err(ApiError::Internal(e)),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Ok(out)
    }
}
