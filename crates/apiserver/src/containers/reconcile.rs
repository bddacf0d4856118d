//! After an apiserver restart, and whenever a helper's fate changes without a call:
//! containers whose helper is alive are watched again, the others are finished with a
//! reason, and sandbox helpers that belong to no running container are shut down.

use std::sync::Arc;

use container_protocol::HelperKind;
use container_store::container::Status;
use container_supervise::table::Adoption;
use container_supervise::{Helper, SandboxProto};

use super::validate::claims_of;
use super::Containers;

impl Containers {
    /// A running container whose helper answers: if its workload was started, record
    /// its pid and watch it again; if the start never got that far, finish it (nobody
    /// is waiting for it any more).
    async fn resume(self: &Arc<Self>, id: String, helper: Helper<SandboxProto>) {
        let Ok((_, mut state)) = self.load(&id) else {
            return;
        };
        let pid = match helper.state().await {
            Ok(s) if s.exit.is_none() => s.pid,
            Ok(s) => s.pid.or(Some(0)),
            Err(e) => {
                tracing::warn!("container {id}: state: {e}");
                None
            }
        };
        match pid {
            Some(pid) => {
                tracing::info!(
                    "container {id} is still running (helper pid {})",
                    helper.info.pid
                );
                if state.pid.is_none() && pid != 0 {
                    state.pid = Some(pid);
                    if let Err(e) = self.persist(&id, &state) {
                        tracing::warn!("{e}");
                    }
                }
                let containers = self.clone();
                tokio::spawn(async move { containers.watch(id, helper).await });
            }
            None => {
                let reason = "start interrupted by an apiserver restart";
                if let Err(e) = self.finish(&id, None, Some(reason.into())).await {
                    tracing::error!("{e}");
                }
            }
        }
    }

    fn is_running(&self, id: &str) -> bool {
        self.load(id)
            .is_ok_and(|(_, s)| s.status == Status::Running)
    }

    fn ifnames(&self, id: &str) -> Vec<String> {
        self.records
            .container(id)
            .map(|r| {
                r.config
                    .networks
                    .iter()
                    .filter_map(|n| n.ifname.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// At start, after every helper was adopted (or found dead, or stuck).
    pub async fn reconcile(self: &Arc<Self>, adoption: &Adoption) {
        let ids = self.records.container_ids();
        // A sandbox that died with nobody watching leaves its netns mount (which keeps
        // its veth pairs alive) and maybe host veth ends.
        for id in &adoption.dead {
            self.remove_sandbox_remains(id, &self.ifnames(id)).await;
        }
        // Logs of containers whose record is gone (a crash between removing the record
        // and the log).
        if let Ok(entries) = std::fs::read_dir(self.paths.helper_dir(HelperKind::Sandbox)) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(id) = name.strip_suffix(".log") {
                    if !ids.iter().any(|i| i == id)
                        && self.sandboxes.get(id).is_none()
                        && self.sandboxes.stuck(id).is_none()
                    {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        for helper in self.sandboxes.list() {
            let id = helper.info.id.clone();
            if !self.is_running(&id) {
                // A start that died before it was recorded: what it built goes with the
                // helper, and its addresses with the GC that follows.
                tracing::warn!(
                    "sandbox helper {id} belongs to no running container; shutting it down"
                );
                if !self
                    .sandboxes
                    .shutdown(&id, helper.shutdown_deadline())
                    .await
                {
                    self.remove_sandbox_remains(&id, &self.ifnames(&id)).await;
                }
            }
        }
        for id in ids {
            let Ok((config, state)) = self.load(&id) else {
                tracing::error!("container {id}: unreadable record, skipped");
                continue;
            };
            if state.status != Status::Running {
                continue;
            }
            if let Err(e) = self.claims.claim(&id, claims_of(&config)) {
                tracing::error!("{e}");
            }
            if let Some(helper) = self.sandboxes.get(&id) {
                if state.pending.is_some() {
                    // A connect or disconnect the crash cut short: settled before GC.
                    let lock = self.locks.get(&id);
                    let _guard = lock.lock().await;
                    self.settle_pending(&id, Some(&helper)).await;
                }
                self.resume(id, helper).await;
            } else if self.sandboxes.stuck(&id).is_some() {
                // Alive: left running, and watched again once it answers.
                tracing::warn!("container {id}: its sandbox helper does not answer yet");
            } else {
                let reason = "sandbox helper exited while the apiserver was away";
                if let Err(e) = self.finish(&id, None, Some(reason.into())).await {
                    tracing::error!("{e}");
                }
            }
        }
    }

    /// A stuck helper answers again.
    pub async fn helper_adopted(self: &Arc<Self>, id: &str) {
        let Some(helper) = self.sandboxes.get(id) else {
            return;
        };
        if self.is_running(id) {
            if self.load(id).is_ok_and(|(_, s)| s.pending.is_some()) {
                // A change of networks cut short while it did not answer.
                let lock = self.locks.get(id);
                let _guard = lock.lock().await;
                self.settle_pending(id, Some(&helper)).await;
            }
            self.resume(id.to_string(), helper).await;
        } else if !self.ops.holds_container(id)
            && !self
                .sandboxes
                .shutdown(id, helper.shutdown_deadline())
                .await
        {
            self.remove_sandbox_remains(id, &self.ifnames(id)).await;
        }
    }

    /// A sandbox helper's process is gone and nobody asked it to go. A running container
    /// is finished (a watcher may be doing the same: finishing is idempotent); an
    /// orphan's remains are removed.
    pub async fn helper_gone(self: &Arc<Self>, id: &str) {
        if self.ops.holds_container(id) {
            return; // the operation that holds it deals with it
        }
        if self.is_running(id) {
            let reason = "sandbox helper exited unexpectedly";
            if let Err(e) = self.finish(id, None, Some(reason.into())).await {
                tracing::error!("{e}");
            }
        } else {
            self.remove_sandbox_remains(id, &self.ifnames(id)).await;
        }
    }
}
