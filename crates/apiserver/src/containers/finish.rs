//! The exit path: the workload is gone (or its sandbox is), so record how it ended,
//! shut the sandbox down, release what it held, and remove it if it asked to be.

use std::sync::Arc;

use container_protocol::sandbox::{ExitStatus, NetDeviceRecord};
use container_protocol::{fault, HelperKind, ProtocolError};
use container_store::container::{remove_container, ContainerState, Status};
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
        if let Err(e) = self.finish(&id, exit, reason).await {
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
        }
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
        let saved = self.persist(id, &state);
        match (&exit, &reason) {
            (Some(s), _) => tracing::info!("container {id} exited with {}", s.code),
            (None, Some(r)) => tracing::warn!("container {id} stopped: {r}"),
            _ => {}
        }
        let status = exit.unwrap_or(ExitStatus {
            code: 137,
            signal: None,
        });
        let finished = Finished {
            status,
            unsaved: saved.as_ref().err().map(|e| e.to_string()),
        };
        self.exit_watch(id).send_modify(|(seq, last)| {
            *seq += 1;
            *last = Some(finished);
        });
        if config.auto_remove {
            match remove_container(&self.paths, id) {
                Ok(()) => {
                    self.sandboxes.spawner().remove_log(HelperKind::Sandbox, id);
                    self.forget(id);
                    self.remember_removed(id, status);
                }
                Err(e) => tracing::warn!("container {id}: remove: {e}"),
            }
        }
        saved
    }

    /// The sandbox died, so its own teardown never ran. From the record: delete the
    /// host ends of its interfaces, drop its netns mount (which frees the namespace and
    /// destroys what is left in it), and restore net devices the kernel handed back.
    pub(super) async fn clean_after_dead_sandbox(&self, id: &str, state: &ContainerState) {
        let ifnames: Vec<String> = state.allocations.iter().map(|a| a.ifname.clone()).collect();
        self.remove_sandbox_remains(id, &ifnames).await;
        if !state.net_devices.is_empty() {
            self.restore_net_devices(id, &state.net_devices).await;
        }
    }

    /// What a sandbox leaves on the host if it dies before tearing down: host veth ends
    /// (named deterministically from the container and interface), the netns mount
    /// (whose removal frees the namespace and what is left in it), its socket and pid
    /// files. Idempotent. Only called once no process of the sandbox is left.
    pub(crate) async fn remove_sandbox_remains(&self, id: &str, ifnames: &[String]) {
        let netlink = self.networks.host_netlink();
        for ifname in ifnames {
            let host = container_sandbox_helper::interfaces::veth_host_name(id, ifname);
            if let Err(e) = netlink.delete_link_by_name(&host).await {
                tracing::warn!("container {id}: delete {host}: {e}");
            }
        }
        match self.paths.netns(id) {
            Ok(netns) => {
                if let Err(e) = container_netlink::NetNs::remove_bound(&netns) {
                    tracing::warn!("container {id}: remove {}: {e}", netns.display());
                }
            }
            Err(e) => tracing::warn!("container {id}: {e}"),
        }
        self.sandboxes
            .spawner()
            .remove_leftovers(HelperKind::Sandbox, id);
    }

    /// The kernel returns a physical device from a dead namespace asynchronously, so
    /// look for the devices a few times before giving up on the missing ones (virtual
    /// devices never come back: the kernel destroyed them).
    async fn restore_net_devices(&self, id: &str, records: &[NetDeviceRecord]) {
        let netlink = self.networks.host_netlink();
        let mut pending: Vec<_> = records.to_vec();
        for _ in 0..20 {
            match container_sandbox_helper::netdev::restore_returned(netlink, &pending).await {
                Ok(restored) => {
                    for name in &restored {
                        tracing::info!("container {id}: net device {name} restored on the host");
                    }
                    pending.retain(|r| !restored.contains(&r.host_name));
                }
                Err(e) => tracing::warn!("container {id}: restore net devices: {e}"),
            }
            // Back under its host name with its MAC (restored now, or given back by the
            // helper before it died): done.
            let mut still = Vec::new();
            for r in pending {
                let home = netlink.link_by_name(&r.host_name).await.ok().flatten();
                if !home.is_some_and(|l| r.mac.is_none() || l.mac == r.mac) {
                    still.push(r);
                }
            }
            pending = still;
            if pending.is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        for r in pending {
            tracing::warn!(
                "container {id}: net device {} did not come back (a virtual device dies with its namespace)",
                r.host_name
            );
        }
    }
}
