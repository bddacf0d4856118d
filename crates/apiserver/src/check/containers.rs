//! Containers and their sandbox helpers: a running container whose helper is gone or
//! does not answer, and helpers that belong to no running container.

use container_protocol::api::FindingKind;
use container_store::container::Status;

use super::Check;

impl Check<'_> {
    pub(super) async fn containers(&mut self) {
        let sandboxes = self.containers.sandboxes().clone();
        for id in self.containers.records().container_ids() {
            if self.ops.holds_container(&id) {
                continue;
            }
            let state = match self.containers.load(&id) {
                Ok((_, s)) => s,
                Err(e) => {
                    self.report(
                        FindingKind::Container,
                        &id,
                        format!("record unreadable: {e}"),
                        false,
                    );
                    continue;
                }
            };
            if state.status != Status::Running {
                continue;
            }
            // A stuck helper may answer by now: try it before calling it stuck (once it
            // does, the adoption event has it watched again).
            sandboxes.reach_stuck(&id).await;
            if let Some(stuck) = sandboxes.stuck(&id) {
                let fixed = self.fix && self.kill_and_finish(&id).await;
                self.report(
                    FindingKind::Helper,
                    format!("sandbox {id}"),
                    format!(
                        "running, but its sandbox helper (pid {}) is alive and does not answer",
                        stuck.pidfd.pid()
                    ),
                    fixed,
                );
            } else if let Some(helper) = sandboxes.get(&id) {
                // Alive: does it answer?
                if let Err(e) = helper.echo(0).await {
                    if e.is_gone() {
                        continue; // its watcher finishes it
                    }
                    let fixed = self.fix && self.kill_and_finish(&id).await;
                    self.report(
                        FindingKind::Helper,
                        format!("sandbox {id}"),
                        format!(
                            "running, but its sandbox helper (pid {}) does not answer: {e}",
                            helper.info.pid
                        ),
                        fixed,
                    );
                }
            } else {
                let mut fixed = false;
                if self.fix {
                    let reason = "sandbox helper gone (found by system check)";
                    fixed = self
                        .containers
                        .finish(&id, None, Some(reason.into()))
                        .await
                        .is_ok();
                }
                self.report(
                    FindingKind::Container,
                    &id,
                    "running, but its sandbox helper is gone",
                    fixed,
                );
            }
        }
        // Helpers of containers that are not running and that no operation holds: an
        // interrupted start's, or a removed container's.
        let live = self.live_containers();
        for helper in sandboxes.list() {
            let id = helper.info.id.clone();
            if live.contains(&id) {
                continue;
            }
            let mut fixed = false;
            if self.fix {
                if !sandboxes.shutdown(&id, helper.shutdown_deadline()).await {
                    self.containers.remove_sandbox_remains(&id, &[]).await;
                }
                fixed = true;
            }
            self.report(
                FindingKind::Helper,
                format!("sandbox {id}"),
                format!("pid {} belongs to no running container", helper.info.pid),
                fixed,
            );
        }
        for stuck in sandboxes.list_stuck() {
            if live.contains(&stuck.id) {
                continue;
            }
            let fixed = self.fix && sandboxes.kill(&stuck.id).await;
            if fixed {
                self.containers.remove_sandbox_remains(&stuck.id, &[]).await;
            }
            self.report(
                FindingKind::Helper,
                format!("sandbox {}", stuck.id),
                format!(
                    "pid {} does not answer and belongs to no running container",
                    stuck.pidfd.pid()
                ),
                fixed,
            );
        }
    }

    /// A running container whose helper does not answer: the helper goes (its whole
    /// process group), and the container is finished as after a dead helper.
    async fn kill_and_finish(&self, id: &str) -> bool {
        self.containers.sandboxes().kill(id).await;
        let reason = "its sandbox helper did not answer; killed by system check";
        self.containers
            .finish(id, None, Some(reason.into()))
            .await
            .is_ok()
    }
}
