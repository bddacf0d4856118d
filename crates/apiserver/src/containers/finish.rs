//! The exit path: the workload is gone (or its sandbox is), so record how it ended,
//! shut the sandbox down, release what it held, and remove it if it asked to be.

use std::sync::Arc;

use container_protocol::sandbox::{ExitStatus, NetDeviceRecord};
use container_protocol::{fault, HelperKind, ProtocolError};
use container_store::container::{ContainerState, Status};
use container_store::unix_now;
use container_supervise::{Helper, SandboxProto};

use super::{Containers, Finished};
use crate::error::ApiError;
use crate::ops::Holds;

impl Containers {
    /// Waits for the workload in the background, then finishes the container.
    pub(super) async fn watch(self: Arc<Self>, id: String, helper: Helper<SandboxProto>) {
        let (exit, reason) = match helper.wait().await {
            Ok(status) => (Some(status), None),
            Err(ProtocolError::Gone { .. }) => {
                (None, Some("sandbox helper exited unexpectedly".to_string()))
            }
            Err(e) => (None, Some(format!("wait: {e}"))),
        };
        // Boxed: this task waits out the container's whole life, and the finish's state
        // machine inline would make every waiting one as large (7.4 KiB of 22 per
        // container, with 1,000 of them).
        if let Err(e) = Box::pin(self.finish(&id, exit, reason)).await {
            tracing::error!("{e}");
        }
    }

    /// After the workload is gone: record how it ended, shut the sandbox down, release
    /// every allocation, and remove the container if it asked for that. Fails only when
    /// the stopped state could not be written (it is then kept in memory, and written
    /// as soon as it can be).
    pub async fn finish(
        self: &Arc<Self>,
        id: &str,
        exit: Option<ExitStatus>,
        reason: Option<String>,
    ) -> Result<(), ApiError> {
        let _op = self
            .ops
            .track(&format!("finish {id}"), Holds::container(id));
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        let Ok((config, mut state)) = self.load(id) else {
            return Ok(());
        };
        if state.status != Status::Running {
            return Ok(());
        }
        // No process of the sandbox is left when this returns, answering or not.
        let deadline = self.sandboxes.deadlines().grace + self.sandboxes.deadlines().quick;
        let clean = self.sandboxes.shutdown(id, deadline).await;
        // A helper that died, before or during its shutdown, tore down only part of
        // what it owned: clean the rest from the record.
        if !clean {
            self.clean_after_dead_sandbox(id, &state).await;
            self.remove_dead_cgroup(id, state.cgroup.clone()).await;
        }
        if state.userns.is_some() {
            self.release_userns(id);
        }
        if state.pending.is_some() {
            // A connect or disconnect cut short: settled in the record before the rest.
            self.settle_pending(id, None).await;
            if let Ok((_, settled)) = self.load(id) {
                state = settled;
            }
        }
        // Its names go before its addresses can be handed to someone else.
        self.sync_names_of(&config, true).await;
        fault::point("apiserver:finish-before-release");
        for a in &state.allocations {
            if let Err(e) = self
                .release(&a.network, id, &a.ifname, state.netns.clone())
                .await
            {
                // Not live any more: the next GC releases it.
                tracing::warn!("container {id}: release {} {}: {e}", a.network, a.ifname);
            }
        }
        fault::point("apiserver:finish-after-release");
        self.claims.release(id);
        state.status = Status::Stopped;
        state.exit_code = exit.map(|e| e.code);
        state.reason = reason.clone();
        state.finished_at = Some(unix_now());
        state.pid = None;
        state.helper_pid = None;
        state.allocations.clear();
        state.interfaces.clear();
        state.net_devices.clear();
        state.netns = None;
        state.cgroup = None;
        state.userns = None;
        state.oom_killed = exit.is_some_and(|e| e.oom_killed);
        state.stopped_by_user = self.take_user_stop(id);
        state.restart_pending = false;
        let saved = self.persist(id, &state);
        // Again from the record: a send that raced the first one saw it running.
        self.sync_names_of(&config, false).await;
        match (&exit, &reason) {
            (Some(s), _) => tracing::info!("container {id} exited with {}", s.code),
            (None, Some(r)) => tracing::warn!("container {id} stopped: {r}"),
            _ => {}
        }
        let status = exit.unwrap_or(ExitStatus::new(137, None));
        let finished = Finished {
            status,
            unsaved: saved.as_ref().err().map(|e| e.to_string()),
        };
        let mut attrs = vec![("exitCode", status.code.to_string())];
        if let Some(r) = &reason {
            attrs.push(("reason", r.clone()));
        }
        if state.oom_killed {
            self.publish("oom", id, &[]);
        }
        self.publish("die", id, &attrs);
        self.exit_watch(id).send_modify(|(seq, last)| {
            *seq += 1;
            *last = Some(finished);
        });
        if config.auto_remove {
            match self.records.remove_container(id) {
                Ok(()) => {
                    self.sandboxes.spawner().remove_log(HelperKind::Sandbox, id);
                    self.forget(id);
                    self.remember_removed(id, status);
                    self.remove_anonymous_volumes(&config).await;
                    self.publish("destroy", id, &[]);
                }
                Err(e) => tracing::warn!("container {id}: remove: {e}"),
            }
        } else if saved.is_ok() {
            self.consider_restart(id, config.restart);
        }
        saved
    }

    /// The sandbox died, so its own teardown never ran. From the record: delete the
    /// host ends of its interfaces, drop its netns mount (which frees the namespace and
    /// destroys what is left in it), and restore net devices the kernel handed back.
    pub(super) async fn clean_after_dead_sandbox(&self, id: &str, state: &ContainerState) {
        // A connect cut short may have made its interface already.
        let ifnames: Vec<String> = state
            .allocations
            .iter()
            .map(|a| a.ifname.clone())
            .chain(state.pending.iter().map(|p| p.ifname.clone()))
            .collect();
        self.remove_sandbox_remains(id, &ifnames).await;
        if !state.net_devices.is_empty() {
            self.restore_net_devices(id, &state.net_devices).await;
        }
    }

    /// What a sandbox leaves on the host if it dies before tearing down: host veth ends,
    /// the netns mount, its socket and pid files, removed by the sandbox helper's own
    /// `cleanup` mode (which knows how they are named). Idempotent. Only called once no
    /// process of the sandbox is left.
    pub(crate) async fn remove_sandbox_remains(&self, id: &str, ifnames: &[String]) {
        let spawner = self.sandboxes.spawner();
        crate::sandbox_cleanup::run(spawner, &self.paths, id, ifnames, &[]).await;
    }

    /// Net devices the kernel handed back from a dead namespace, restored by the
    /// sandbox helper's `cleanup` mode (it looks for them a few times: the kernel
    /// returns them asynchronously).
    async fn restore_net_devices(&self, id: &str, records: &[NetDeviceRecord]) {
        let spawner = self.sandboxes.spawner();
        crate::sandbox_cleanup::run(spawner, &self.paths, id, &[], records).await;
    }
}
