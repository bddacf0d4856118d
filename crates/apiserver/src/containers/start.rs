//! Starting a container: each step records how to undo itself, and a failing step undoes
//! them all. The state is recorded as running, with what the sandbox built, before the
//! workload starts, so a crash from then on is cleaned up from the record.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use container_protocol::fault;
use container_protocol::network::{Allocation, Attachment};
use container_protocol::resources::IdRange;
use container_protocol::sandbox::{SandboxSpec, SetupReport, Stdio};
use container_store::container::{ContainerConfig, ContainerState, Status};
use container_store::unix_now;
use container_supervise::{Helper, SandboxProto};

use super::validate::{claims_of, net_device_specs, process_spec};
use super::Containers;
use crate::error::{bad, ApiError};
use crate::ops::Holds;
use crate::undo::Undo;
use container_network_helper::plugins;

impl Containers {
    /// Bootstraps and starts a container; returns the workload's pid and, for a tty, the
    /// pty master. Runs to its end or its undo even if the client goes away.
    pub async fn start(
        self: &Arc<Self>,
        id: &str,
        stdio: Stdio,
        fds: Vec<OwnedFd>,
    ) -> Result<(u32, Vec<OwnedFd>), ApiError> {
        self.start_as(id, stdio, fds, false)
            .await
            .map(|started| started.unwrap_or_default())
    }

    /// A restart the policy decided on: `None` when there is nothing to do any more
    /// (the user started, stopped or removed it meanwhile, or the apiserver is
    /// shutting down and leaves it to the next one).
    pub(super) async fn start_by_policy(
        self: &Arc<Self>,
        id: &str,
        stdio: Stdio,
        fds: Vec<OwnedFd>,
    ) -> Result<Option<u32>, ApiError> {
        if self.ops.is_closed() {
            return Ok(None);
        }
        match self.start_as(id, stdio, fds, true).await {
            Ok(started) => Ok(started.map(|(pid, _)| pid)),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn start_as(
        self: &Arc<Self>,
        id: &str,
        stdio: Stdio,
        fds: Vec<OwnedFd>,
        by_policy: bool,
    ) -> Result<Option<(u32, Vec<OwnedFd>)>, ApiError> {
        let what = if by_policy { "restart" } else { "start" };
        let op = self
            .ops
            .begin(&format!("{what} {id}"), Holds::container(id))?;
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        let (config, mut state) = self.load(id)?;
        if by_policy {
            if state.status == Status::Running || !state.restart_pending || state.stopped_by_user {
                return Ok(None);
            }
            state.restart_pending = false;
            state.restart_count = state.restart_count.saturating_add(1);
        } else if state.status != Status::Running {
            // A user's start: the policy starts counting again.
            state.restart_pending = false;
            state.restart_count = 0;
            state.restart_backoff = 0;
            state.stopped_by_user = false;
        }
        if state.status == Status::Running {
            return Err(ApiError::Conflict(format!(
                "container {id} is already running"
            )));
        }
        if stdio == Stdio::Inherit && fds.len() != 3 {
            return Err(bad(format!(
                "container {id}: attaching needs stdin, stdout and stderr, got {} descriptors",
                fds.len()
            )));
        }
        // Live for GC from now on, before any address is allocated; and no GC computes
        // its live set while these attachments are being allocated.
        let networks: Vec<String> = config.networks.iter().map(|n| n.network.clone()).collect();
        let _gates = self.networks.gc_gates_shared(&networks).await;
        op.hold(Holds {
            attachments: config
                .networks
                .iter()
                .map(|n| {
                    (
                        n.network.clone(),
                        id.to_string(),
                        n.ifname.clone().unwrap_or_default(),
                    )
                })
                .collect(),
            ..Holds::default()
        });
        let mut undo = Undo::new();
        match self.bootstrap(&config, &state, stdio, fds, &mut undo).await {
            Ok((pid, fds, helper)) => {
                undo.commit();
                let mut attrs = vec![("pid", pid.to_string())];
                if by_policy {
                    attrs.push(("restartCount", state.restart_count.to_string()));
                }
                self.publish(what, id, &attrs);
                if let Some(check) = config.healthcheck.clone() {
                    self.begin_health(id, check);
                }
                let containers = self.clone();
                let id = id.to_string();
                tokio::spawn(async move { containers.watch(id, helper).await });
                Ok(Some((pid, fds)))
            }
            Err(e) => {
                let e = undo.rollback(e).await;
                let mut stopped = state.clone();
                stopped.allocations.clear();
                stopped.interfaces.clear();
                stopped.net_devices.clear();
                stopped.pid = None;
                stopped.helper_pid = None;
                stopped.netns = None;
                stopped.cgroup = None;
                stopped.userns = None;
                if stopped.status == Status::Running {
                    stopped.status = Status::Stopped;
                }
                if let Err(w) = self.persist(id, &stopped) {
                    tracing::warn!("{w}");
                }
                // A start undone after its names were sent takes them back.
                self.sync_names_of(&config, false).await;
                Err(e.context(format!("container {id}: start")))
            }
        }
    }

    /// `run`: create and start as one operation, so that a client gone half way leaves
    /// no created container behind; a start that fails removes what was created.
    pub async fn run(
        self: &Arc<Self>,
        config: ContainerConfig,
        stdio: Stdio,
        fds: Vec<OwnedFd>,
    ) -> Result<(String, u32, Vec<OwnedFd>), ApiError> {
        let _op = self.ops.begin("run", Holds::default())?;
        let id = self.create(config).await?;
        match self.start(&id, stdio, fds).await {
            Ok((pid, fds)) => Ok((id, pid, fds)),
            Err(e) => {
                if let Err(undo) = self.records.remove_container(&id) {
                    tracing::warn!("container {id}: remove after a failed run: {undo}");
                }
                self.sandboxes
                    .spawner()
                    .remove_log(container_protocol::HelperKind::Sandbox, &id);
                self.forget(&id);
                Err(e)
            }
        }
    }

    /// The steps of a start, each with its undo pushed before it: claims, a fresh
    /// sandbox helper, an allocation per network, the sandbox's set-up, the record, the
    /// workload. The helper's start and the allocations that need no namespace (all but
    /// CNI's) run at once; the undo order stays that of the serial steps.
    async fn bootstrap<'a>(
        self: &'a Arc<Self>,
        config: &ContainerConfig,
        previous: &ContainerState,
        stdio: Stdio,
        fds: Vec<OwnedFd>,
        undo: &mut Undo<'a>,
    ) -> Result<(u32, Vec<OwnedFd>, Helper<SandboxProto>), ApiError> {
        let id = config.id.clone();
        self.claims.claim(&id, claims_of(config))?;
        {
            let containers = self.clone();
            let id = id.clone();
            undo.push(format!("release what container {id} claimed"), async move {
                containers.claims.release(&id);
                Ok(())
            });
        }
        // Before the sandbox that uses it: a range on disk (see docs/crash-safety.md).
        let userns = self.reserve_userns(config, undo)?;
        // Which allocations act inside the container (after the sandbox made it).
        let mut early = Vec::new();
        let mut late = Vec::new();
        for (i, att) in config.networks.iter().enumerate() {
            let plugin = self.networks.config(&att.network)?.plugin;
            if plugins::needs_netns(plugin) {
                late.push(i);
            } else {
                early.push(i);
            }
        }
        // A netns is bind-mounted only where something opens it by path (a CNI
        // plugin) or it must outlive a helper that dies (devices go back to the host
        // from it): see the sandbox helper's namespaces.
        let bound = !late.is_empty() || !config.net_devices.is_empty();
        let netns = match bound {
            true => Some(self.paths.netns(&id)?.display().to_string()),
            false => None,
        };
        self.push_start_undo(config, netns.as_deref(), undo);
        let (helper, early) = if self.serial_start {
            let helper = self.spawn_sandbox(config, userns, bound).await?;
            (Ok(helper), self.allocate(config, None, &early).await)
        } else {
            tokio::join!(
                self.spawn_sandbox(config, userns, bound),
                self.allocate(config, None, &early)
            )
        };
        let helper = helper?;
        let mut allocations = early?;
        allocations.extend(self.allocate(config, netns.as_deref(), &late).await?);
        allocations.sort_by_key(|(i, _)| *i);
        let allocations: Vec<Allocation> = allocations.into_iter().map(|(_, a)| a).collect();

        let overlay = self.images.overlay_for(config)?;
        let spec = SandboxSpec {
            overlay,
            id: id.clone(),
            hostname: config.hostname.clone().unwrap_or_else(|| id.clone()),
            rootfs: config.rootfs.clone(),
            dns: config.dns.clone(),
            hosts: vec![],
            allocations: allocations.clone(),
            net_devices: net_device_specs(config),
            process: process_spec(config, &config.process.args, &[]),
            log_path: self.log_path(&id)?.display().to_string(),
            log: config.log,
            labels: config.labels.clone(),
            confinement: self.confinement(config)?,
            resources: config.resources.clone(),
            cgroup: Some(self.resources.cgroup_of(&id)),
            cgroup_mounts: self.resources.cgroup_mounts(),
            userns,
            all_devices: config.security.privileged,
            mounts: crate::volumes::sandbox_mounts(&self.volumes, config)?,
        };
        let report = helper.setup(spec).await?;
        let cgroup = Some(self.resources.cgroup_of(&id));
        let mut state = self.record_running(
            &id,
            previous,
            allocations,
            report,
            &helper,
            (cgroup, userns),
        )?;
        fault::point("apiserver:after-setup");
        fault::pause("apiserver:after-setup").await;
        // Its names answer before its workload runs: it may look itself up at once.
        self.sync_names_of(config, false).await;

        let (pid, out_fds) = helper.start(stdio, fds).await?;
        state.pid = Some(pid);
        if let Err(e) = self.persist(&id, &state) {
            // The workload runs and the record says so; only its pid waits to be written.
            tracing::warn!("{e}");
        }
        fault::point("apiserver:after-start");
        tracing::info!("container {id} started (pid {pid})");
        Ok((pid, out_fds, helper))
    }

    /// The undo of the sandbox and of every allocation, pushed before any of them is
    /// tried (each is idempotent: shutting down no helper, releasing what is not held),
    /// in the order a serial start would have pushed them: releases run first.
    fn push_start_undo<'a>(
        self: &'a Arc<Self>,
        config: &ContainerConfig,
        netns: Option<&str>,
        undo: &mut Undo<'a>,
    ) {
        let id = config.id.clone();
        let ifnames: Vec<String> = config
            .networks
            .iter()
            .filter_map(|n| n.ifname.clone())
            .collect();
        {
            let containers = self.clone();
            let id = id.clone();
            let deadline = self.sandboxes.deadlines().grace + self.sandboxes.deadlines().quick;
            undo.push(format!("shut down sandbox helper {id}"), async move {
                // A helper that died or was killed mid-setup tore nothing down: do it
                // from what we know.
                if !containers.sandboxes.shutdown(&id, deadline).await {
                    containers.remove_sandbox_remains(&id, &ifnames).await;
                    let cgroup = containers.resources.cgroup_of(&id);
                    containers.remove_dead_cgroup(&id, Some(cgroup)).await;
                }
                Ok(())
            });
        }
        for att in &config.networks {
            let containers = self.clone();
            let network = att.network.clone();
            let ifname = att.ifname.clone().unwrap_or_default();
            let (id, netns) = (id.clone(), netns.map(str::to_string));
            undo.push(format!("release {network} {ifname}"), async move {
                containers.release(&network, &id, &ifname, netns).await
            });
        }
    }

    /// A new sandbox helper, never a leftover one (seed 002): an earlier run's goes first.
    async fn spawn_sandbox(
        self: &Arc<Self>,
        config: &ContainerConfig,
        userns: Option<IdRange>,
        bound: bool,
    ) -> Result<Helper<SandboxProto>, ApiError> {
        let id = &config.id;
        if self.sandboxes.get(id).is_some() || self.sandboxes.stuck(id).is_some() {
            let deadline = self.sandboxes.deadlines().grace + self.sandboxes.deadlines().quick;
            if !self.sandboxes.shutdown(id, deadline).await {
                self.remove_sandbox_remains(id, &[]).await;
            }
        }
        // `--userns=auto`: the helper makes the namespace as it starts (sandbox's userns).
        let mut args: Vec<String> = match userns {
            Some(r) => vec!["--userns".into(), format!("{}:{}", r.start, r.size)],
            None => vec![],
        };
        args.push(
            if bound {
                "--netns-bound"
            } else {
                "--netns-held"
            }
            .into(),
        );
        let helper = self.sandboxes.start(id, &args).await?;
        fault::point("apiserver:after-sandbox-spawn");
        Ok(helper)
    }

    /// The allocations of `config.networks[which]`, one after another, tagged with
    /// their index (eth0 is 0). Published ports go to the first network, as eth0 is
    /// the container's address for the outside.
    async fn allocate(
        self: &Arc<Self>,
        config: &ContainerConfig,
        netns: Option<&str>,
        which: &[usize],
    ) -> Result<Vec<(usize, Allocation)>, ApiError> {
        let id = &config.id;
        let mut allocations = Vec::new();
        for &i in which {
            let att = &config.networks[i];
            let network = att.network.clone();
            let ifname = att.ifname.clone().unwrap_or_default();
            let nh = self.networks.helper(&network).await?;
            let ports = if i == 0 { config.ports.clone() } else { vec![] };
            let alloc = nh
                .allocate(attachment(id, att, netns.map(str::to_string), ports))
                .await
                .map_err(|e| ApiError::from(e).context(format!("network {network}: {ifname}")))?;
            allocations.push((i, alloc));
            fault::point("apiserver:after-allocate");
        }
        Ok(allocations)
    }

    /// Recorded before the workload starts: a crash from here on is cleaned up from this
    /// record (interfaces, devices, netns) and IPAM GC sees these as live. A record that
    /// can't be written undoes the start rather than leave it unrecorded.
    fn record_running(
        &self,
        id: &str,
        previous: &ContainerState,
        allocations: Vec<Allocation>,
        report: SetupReport,
        helper: &Helper<SandboxProto>,
        (cgroup, userns): (Option<String>, Option<IdRange>),
    ) -> Result<ContainerState, ApiError> {
        let mut state = previous.clone();
        state.status = Status::Running;
        state.cgroup = cgroup;
        state.userns = userns;
        state.oom_killed = false;
        state.allocations = allocations;
        state.interfaces = report.interfaces;
        state.net_devices = report.net_devices;
        state.netns = Some(report.netns_path);
        state.helper_pid = Some(helper.info.pid);
        state.pid = None;
        state.exit_code = None;
        state.reason = None;
        state.finished_at = None;
        state.started_at = Some(unix_now());
        if let Err(e) = self.persist(id, &state) {
            // The view goes back to what the disk says: the start is undone.
            let _ = self.records.set_state(id, previous.clone());
            return Err(e);
        }
        Ok(state)
    }

    /// Whether `path` is `id`'s netns mount. Only that is named to a network helper:
    /// a netns the sandbox helper holds by descriptor has a `/proc` path that dies
    /// with the helper, and a later process could reuse its pid.
    pub(super) fn netns_is_bound(&self, id: &str, path: &str) -> bool {
        self.paths
            .netns(id)
            .is_ok_and(|bound| bound.as_os_str() == std::ffi::OsStr::new(path))
    }

    /// Releases an attachment. A network helper that does not answer is replaced (the
    /// old one killed first: never two) and the release tried again on the new one, so
    /// an address is not left reserved behind a helper that stopped answering.
    pub(super) async fn release(
        self: &Arc<Self>,
        network: &str,
        id: &str,
        ifname: &str,
        netns: Option<String>,
    ) -> Result<(), ApiError> {
        let netns = netns.filter(|p| self.netns_is_bound(id, p));
        let nh = self.networks.helper(network).await?;
        match nh.release(id, ifname, netns.clone()).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e, container_protocol::ProtocolError::Timeout { .. }) => {
                tracing::warn!(
                    "network {network}: release {id} {ifname}: {e}; replacing the helper"
                );
                self.networks.table().kill(network).await;
                let nh = self.networks.helper(network).await?;
                nh.release(id, ifname, netns).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// What the network helper is asked for, for the container's attachment `att`: its
/// configured address, MAC and interface name, and the published `ports` (the first
/// network's only).
pub(super) fn attachment(
    id: &str,
    att: &container_protocol::container::NetworkAttachmentConfig,
    netns: Option<String>,
    ports: Vec<container_protocol::network::PortMap>,
) -> Attachment {
    Attachment {
        network: att.network.clone(),
        container_id: id.to_string(),
        ifname: att.ifname.clone().unwrap_or_default(),
        ipv4: att.ip,
        ipv6: att.ip6,
        mac: att.mac.map(|m| m.0),
        netns,
        ports,
    }
}
