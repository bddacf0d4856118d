//! Containers: the whole lifecycle, driven step by step from here (seed 002). Create
//! persists the configuration; start bootstraps the sandbox (helper, allocations,
//! interfaces), starts the workload and waits for it in the background; when it exits
//! the helper is shut down and every allocation released. Any failing step undoes the
//! earlier ones.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use container_protocol::api::ContainerSummary;
use container_protocol::network::{
    Allocation, Attachment, NetworkRequest, NetworkResponse, PortMap,
};
use container_protocol::sandbox::{
    ExitStatus, NetDeviceSpec, ProcessSpec, SandboxRequest, SandboxResponse, SandboxSpec, Stdio,
};
use container_protocol::{fault, ProtocolError};
use container_store::container::{
    list_containers, load_config, load_state, remove_container, save_config, save_state,
    ContainerConfig, ContainerState, Status,
};
use container_store::{validate_id, NameKind};
use tokio::sync::watch;

use crate::daemon::{unix_now, ApiServer};
use crate::error::ApiError;
use crate::helpers::{Helper, SandboxProto};
use crate::undo::Undo;

/// Exit notifications: a sequence number and the status, so a waiter that subscribed
/// before a start sees the exit that follows it.
pub type ExitWatch = watch::Sender<(u64, Option<ExitStatus>)>;

#[derive(Default)]
pub struct ContainerLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    exits: Mutex<HashMap<String, ExitWatch>>,
}

impl ContainerLocks {
    pub fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_string()).or_default().clone()
    }

    pub fn exit_watch(&self, id: &str) -> ExitWatch {
        let mut map = self.exits.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_string())
            .or_insert_with(|| watch::Sender::new((0, None)))
            .clone()
    }

    /// Drops a removed container's entries, so the tables do not grow with every
    /// container ever run. A waiter still subscribed keeps its receiver, which already
    /// holds the last exit.
    pub fn forget(&self, id: &str) {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::Invalid(msg.into())
}

/// Networks a configuration attaches to, in order (eth0 first).
pub fn attachment_networks(config: &ContainerConfig) -> Vec<String> {
    config.networks.iter().map(|n| n.network.clone()).collect()
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        mac[i] = u8::from_str_radix(p, 16).ok()?;
    }
    // Multicast (and broadcast) MACs cannot be given to an interface, nor all zeros.
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return None;
    }
    Some(mac)
}

/// `KEY=VALUE` entries with a non-empty key.
fn check_env(env: &[String]) -> Result<(), String> {
    match env.iter().find(|e| !e.contains('=') || e.starts_with('=')) {
        Some(e) => Err(format!(
            "invalid environment entry {e:?}: expected KEY=VALUE"
        )),
        None => Ok(()),
    }
}

fn random_id() -> String {
    let mut bytes = [0u8; 6];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !h.starts_with('-')
}

impl ApiServer {
    /// Checks a configuration and fills in what defaults to something; changes nothing.
    async fn validate_container(
        &self,
        mut config: ContainerConfig,
    ) -> Result<ContainerConfig, ApiError> {
        if config.id.is_empty() {
            config.id = random_id();
        }
        validate_id(NameKind::Container, &config.id)?;
        let id = config.id.clone();
        if self.paths.container_dir(&id)?.join("config.json").exists() {
            return Err(ApiError::Conflict(format!("container {id} already exists")));
        }
        if config.process.args.is_empty() || config.process.args[0].is_empty() {
            return Err(bad(format!("container {id}: no command given")));
        }
        check_env(&config.process.env).map_err(|e| bad(format!("container {id}: {e}")))?;
        if let Some(rootfs) = &config.rootfs {
            let meta = std::fs::metadata(rootfs)
                .map_err(|e| bad(format!("container {id}: rootfs {rootfs}: {e}")))?;
            if !meta.is_dir() {
                return Err(bad(format!(
                    "container {id}: rootfs {rootfs} is not a directory"
                )));
            }
        }
        if let Some(cwd) = &config.process.cwd {
            if !cwd.starts_with('/') {
                return Err(bad(format!(
                    "container {id}: working directory {cwd:?} must be absolute"
                )));
            }
        }
        let hostname = config
            .hostname
            .clone()
            .unwrap_or_else(|| id.chars().take(63).collect());
        if !valid_hostname(&hostname) {
            return Err(bad(format!(
                "container {id}: invalid hostname {hostname:?}"
            )));
        }
        config.hostname = Some(hostname);

        let mut ifnames: Vec<String> = Vec::new();
        for (i, att) in config.networks.iter_mut().enumerate() {
            validate_id(NameKind::Network, &att.network)?;
            let net = self.network_config(&att.network)?;
            let ifname = att.ifname.clone().unwrap_or_else(|| format!("eth{i}"));
            container_netlink::valid_ifname(&ifname)
                .map_err(|e| bad(format!("container {id}: network {}: {e}", att.network)))?;
            if ifnames.contains(&ifname) {
                return Err(bad(format!(
                    "container {id}: interface name {ifname} is used twice"
                )));
            }
            ifnames.push(ifname.clone());
            att.ifname = Some(ifname);
            if let Some(ip) = att.ip {
                if !crate::networks::in_network(&net, IpAddr::V4(ip)) {
                    return Err(bad(format!(
                        "container {id}: address {ip} is not in network {} ({})",
                        att.network,
                        net.subnet
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "no IPv4 subnet".into())
                    )));
                }
            }
            if let Some(ip) = att.ip6 {
                if !crate::networks::in_network(&net, IpAddr::V6(ip)) {
                    return Err(bad(format!(
                        "container {id}: address {ip} is not in network {}",
                        att.network
                    )));
                }
            }
            if let Some(mac) = &att.mac {
                if parse_mac(mac).is_none() {
                    return Err(bad(format!("container {id}: invalid MAC address {mac:?}")));
                }
            }
        }
        if !config.ports.is_empty() {
            self.check_ports(&config)?;
        }
        for (host, dev) in &config.net_devices {
            let target = dev.name.clone().unwrap_or_else(|| host.clone());
            if ifnames.contains(&target) {
                return Err(bad(format!("container {id}: net device {host}: name {target} is already an interface of the container")));
            }
            ifnames.push(target);
            for other in list_containers(&self.paths) {
                if let Ok(c) = load_config(&self.paths, &other) {
                    if c.net_devices.contains_key(host) {
                        return Err(ApiError::Conflict(format!(
                            "container {id}: net device {host} is already given to container {other}"
                        )));
                    }
                }
            }
        }
        if !config.net_devices.is_empty() {
            let specs = net_device_specs(&config);
            let networks_ifnames: Vec<String> = config
                .networks
                .iter()
                .filter_map(|n| n.ifname.clone())
                .collect();
            container_sandbox_helper::netdev::check(&self.host_netlink, &specs, &networks_ifnames)
                .await
                .map_err(|e| bad(format!("container {id}: {e}")))?;
        }
        config.created = unix_now();
        Ok(config)
    }

    pub async fn container_create(self: &Arc<Self>, json: &str) -> Result<String, ApiError> {
        let config: ContainerConfig = serde_json::from_str(json)
            .map_err(|e| bad(format!("invalid container configuration: {e}")))?;
        if config.version > container_store::container::CONTAINER_RECORD_VERSION {
            return Err(bad(format!(
                "invalid container configuration: version {} is newer than this build understands ({})",
                config.version,
                container_store::container::CONTAINER_RECORD_VERSION
            )));
        }
        let _ops = self.container_ops.lock().await;
        let config = self.validate_container(config).await?;
        save_config(&self.paths, &config)?;
        if let Err(e) = save_state(&self.paths, &config.id, &ContainerState::default()) {
            let _ = remove_container(&self.paths, &config.id);
            return Err(e.into());
        }
        tracing::info!("container {} created", config.id);
        Ok(config.id)
    }

    fn load(&self, id: &str) -> Result<(ContainerConfig, ContainerState), ApiError> {
        validate_id(NameKind::Container, id)?;
        let config = load_config(&self.paths, id).map_err(|e| match e {
            container_store::StoreError::Io { ref source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ApiError::NotFound {
                    kind: "container",
                    name: id.to_string(),
                }
            }
            other => other.into(),
        })?;
        let state = load_state(&self.paths, id)?;
        Ok((config, state))
    }

    /// Bootstraps and starts a container; returns the workload's pid and, for a tty, the
    /// pty master.
    pub async fn container_start(
        self: &Arc<Self>,
        id: &str,
        stdio: Stdio,
        fds: Vec<OwnedFd>,
    ) -> Result<(u32, Vec<OwnedFd>), ApiError> {
        let lock = self.containers.lock_for(id);
        let _guard = lock.lock().await;
        let (config, state) = self.load(id)?;
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
        let mut undo = Undo::new();
        match self.bootstrap(&config, &state, stdio, fds, &mut undo).await {
            Ok((pid, fds, helper)) => {
                undo.commit();
                let server = self.clone();
                let id = id.to_string();
                tokio::spawn(async move { server.watch_container(id, helper).await });
                Ok((pid, fds))
            }
            Err(e) => {
                undo.rollback().await;
                let mut stopped = state.clone();
                stopped.allocations.clear();
                stopped.interfaces.clear();
                stopped.net_devices.clear();
                stopped.pid = None;
                stopped.helper_pid = None;
                stopped.netns = None;
                let _ = save_state(&self.paths, id, &stopped);
                Err(e.context(format!("container {id}: start")))
            }
        }
    }

    async fn bootstrap<'a>(
        self: &'a Arc<Self>,
        config: &ContainerConfig,
        previous: &ContainerState,
        stdio: Stdio,
        fds: Vec<OwnedFd>,
        undo: &mut Undo<'a>,
    ) -> Result<(u32, Vec<OwnedFd>, Helper<SandboxProto>), ApiError> {
        let id = config.id.clone();
        // A leftover helper of an earlier run (dead or not) is not reused: seed 002.
        let _ = self.sandboxes.shutdown(&id).await;
        let helper = self.sandboxes.start(&self.spawner, &id, &[]).await?;
        fault::point("apiserver:after-sandbox-spawn");
        {
            let server = self.clone();
            let id = id.clone();
            let ifnames: Vec<String> = config
                .networks
                .iter()
                .filter_map(|n| n.ifname.clone())
                .collect();
            undo.push(format!("shut down sandbox helper {id}"), async move {
                let result = server.sandboxes.shutdown(&id).await;
                // A helper that died mid-setup tore nothing down: do it from what we know.
                if !matches!(result, Ok(true)) {
                    server.remove_sandbox_remains(&id, &ifnames).await;
                }
                result.map(|_| ()).map_err(|e| e.to_string())
            });
        }
        let netns = self.paths.netns(&id).display().to_string();

        let mut allocations: Vec<Allocation> = Vec::new();
        for att in &config.networks {
            let network = att.network.clone();
            let ifname = att.ifname.clone().unwrap_or_default();
            let nh = self.network_helper(&network).await?;
            let reply = nh
                .client
                .call(NetworkRequest::Allocate(Attachment {
                    network: network.clone(),
                    container_id: id.clone(),
                    ifname: ifname.clone(),
                    ipv4: att.ip,
                    ipv6: att.ip6,
                    mac: att.mac.as_deref().and_then(parse_mac),
                    netns: Some(netns.clone()),
                    // Published ports go to the first network, as eth0 is the
                    // container's address for the outside.
                    ports: if allocations.is_empty() {
                        config.ports.clone()
                    } else {
                        vec![]
                    },
                }))
                .await?;
            let NetworkResponse::Allocated(alloc) = reply else {
                return Err(bad(format!(
                    "network {network}: unexpected answer to allocate"
                )));
            };
            {
                let server = self.clone();
                let (network, id, ifname, netns) =
                    (network.clone(), id.clone(), ifname.clone(), netns.clone());
                undo.push(format!("release {network} {ifname}"), async move {
                    server
                        .release(&network, &id, &ifname, Some(netns))
                        .await
                        .map_err(|e| e.to_string())
                });
            }
            allocations.push(alloc);
            fault::point("apiserver:after-allocate");
        }

        let mut dns = config.dns.clone();
        if dns.is_empty() {
            dns = allocations
                .iter()
                .flat_map(|a| a.dns.iter().copied())
                .collect();
        }
        let spec = SandboxSpec {
            id: id.clone(),
            hostname: config.hostname.clone().unwrap_or_else(|| id.clone()),
            rootfs: config.rootfs.clone(),
            dns,
            hosts: vec![],
            allocations: allocations.clone(),
            net_devices: net_device_specs(config),
            process: process_spec(config, &config.process.args, &[]),
            log_path: self.log_path(&id)?.display().to_string(),
            labels: config.labels.clone(),
        };
        let report = match helper
            .client
            .call(SandboxRequest::Setup(Box::new(spec)))
            .await?
        {
            SandboxResponse::SetUp(r) => r,
            _ => return Err(bad("unexpected answer to setup")),
        };

        // Recorded before the workload starts: a crash from here on is cleaned up from
        // this record (interfaces, devices, netns) and IPAM GC sees these as live.
        let mut state = previous.clone();
        state.status = Status::Running;
        state.allocations = allocations;
        state.interfaces = report.interfaces.clone();
        state.net_devices = report.net_devices.clone();
        state.netns = Some(report.netns_path.clone());
        state.helper_pid = Some(helper.info.pid);
        state.pid = None;
        state.exit_code = None;
        state.reason = None;
        state.finished_at = None;
        state.started_at = Some(unix_now());
        save_state(&self.paths, &id, &state)?;
        fault::point("apiserver:after-setup");

        let (reply, out_fds) = helper
            .client
            .call_with_fds(SandboxRequest::Start { stdio }, fds)
            .await?;
        let SandboxResponse::Started { pid } = reply else {
            return Err(bad("unexpected answer to start"));
        };
        state.pid = Some(pid);
        save_state(&self.paths, &id, &state)?;
        fault::point("apiserver:after-start");
        tracing::info!("container {id} started (pid {pid})");
        Ok((pid, out_fds, helper))
    }

    pub fn log_path(&self, id: &str) -> Result<std::path::PathBuf, ApiError> {
        Ok(self.paths.container_dir(id)?.join("container.log"))
    }

    async fn release(
        self: &Arc<Self>,
        network: &str,
        id: &str,
        ifname: &str,
        netns: Option<String>,
    ) -> Result<(), ApiError> {
        let nh = self.network_helper(network).await?;
        nh.client
            .call(NetworkRequest::Release {
                container_id: id.to_string(),
                ifname: ifname.to_string(),
                netns,
            })
            .await?;
        Ok(())
    }

    /// Waits for the workload in the background, then finishes the container.
    pub async fn watch_container(self: Arc<Self>, id: String, helper: Helper<SandboxProto>) {
        let result = helper.client.call(SandboxRequest::Wait).await;
        let (exit, reason) = match result {
            Ok(SandboxResponse::Exited(status)) => (Some(status), None),
            Ok(_) => (None, Some("unexpected answer to wait".to_string())),
            Err(ProtocolError::Gone { .. }) => {
                (None, Some("sandbox helper exited unexpectedly".to_string()))
            }
            Err(e) => (None, Some(format!("wait: {e}"))),
        };
        self.finish(&id, exit, reason).await;
    }

    /// After the workload is gone: record how it ended, shut the sandbox down, release
    /// every allocation, and remove the container if it asked for that.
    pub async fn finish(
        self: &Arc<Self>,
        id: &str,
        exit: Option<ExitStatus>,
        reason: Option<String>,
    ) {
        let lock = self.containers.lock_for(id);
        let _guard = lock.lock().await;
        let Ok((config, mut state)) = self.load(id) else {
            return;
        };
        if state.status != Status::Running {
            return;
        }
        let helper_alive = self
            .sandboxes
            .get(id)
            .is_some_and(|h| !h.client.is_closed());
        let clean = if helper_alive {
            match self.sandboxes.shutdown(id).await {
                Ok(clean) => clean,
                Err(e) => {
                    tracing::warn!("container {id}: shut down sandbox: {e}");
                    false
                }
            }
        } else {
            self.sandboxes.forget(id);
            false
        };
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
                tracing::warn!("container {id}: release {} {}: {e}", a.network, a.ifname);
            }
        }
        fault::point("apiserver:finish-after-release");
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
        if let Err(e) = save_state(&self.paths, id, &state) {
            tracing::error!("container {id}: record stop: {e}");
        }
        match (&exit, &reason) {
            (Some(s), _) => tracing::info!("container {id} exited with {}", s.code),
            (None, Some(r)) => tracing::warn!("container {id} stopped: {r}"),
            _ => {}
        }
        let status = exit.unwrap_or(ExitStatus {
            code: 137,
            signal: None,
        });
        let watch = self.containers.exit_watch(id);
        watch.send_modify(|(seq, last)| {
            *seq += 1;
            *last = Some(status);
        });
        if config.auto_remove {
            if let Err(e) = remove_container(&self.paths, id) {
                tracing::warn!("container {id}: remove: {e}");
            }
            self.spawner
                .remove_log(container_protocol::HelperKind::Sandbox, id);
            self.containers.forget(id);
        }
    }

    /// The sandbox died, so its own teardown never ran. From the record: delete the
    /// host ends of its interfaces, drop its netns mount (which frees the namespace and
    /// destroys what is left in it), and restore net devices the kernel handed back.
    pub async fn clean_after_dead_sandbox(&self, id: &str, state: &ContainerState) {
        // The recorded host ends are the names `remove_sandbox_remains` derives from
        // (container, ifname): one delete each.
        let ifnames: Vec<String> = state.allocations.iter().map(|a| a.ifname.clone()).collect();
        self.remove_sandbox_remains(id, &ifnames).await;
        if !state.net_devices.is_empty() {
            self.restore_net_devices(id, &state.net_devices).await;
        }
    }

    /// What a sandbox leaves on the host if it dies before tearing down: host veth ends
    /// (named deterministically from the container and interface), the netns mount
    /// (whose removal frees the namespace and what is left in it), its socket and pid
    /// files. Idempotent.
    pub async fn remove_sandbox_remains(&self, id: &str, ifnames: &[String]) {
        for ifname in ifnames {
            let host = container_sandbox_helper::interfaces::veth_host_name(id, ifname);
            if let Err(e) = self.host_netlink.delete_link_by_name(&host).await {
                tracing::warn!("container {id}: delete {host}: {e}");
            }
        }
        let netns = self.paths.netns(id);
        if let Err(e) = container_netlink::NetNs::remove_bound(&netns) {
            tracing::warn!("container {id}: remove {}: {e}", netns.display());
        }
        self.spawner
            .remove_leftovers(container_protocol::HelperKind::Sandbox, id);
    }

    /// The kernel returns a physical device from a dead namespace asynchronously, so
    /// look for the devices a few times before giving up on the missing ones (virtual
    /// devices never come back: the kernel destroyed them).
    async fn restore_net_devices(
        &self,
        id: &str,
        records: &[container_protocol::sandbox::NetDeviceRecord],
    ) {
        let mut pending: Vec<_> = records.to_vec();
        for _ in 0..20 {
            match container_sandbox_helper::netdev::restore_returned(&self.host_netlink, &pending)
                .await
            {
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
                let home = self
                    .host_netlink
                    .link_by_name(&r.host_name)
                    .await
                    .ok()
                    .flatten();
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

    pub async fn container_wait(self: &Arc<Self>, id: &str) -> Result<ExitStatus, ApiError> {
        let mut rx = {
            let lock = self.containers.lock_for(id);
            let _guard = lock.lock().await;
            let (_, state) = self.load(id)?;
            let watch = self.containers.exit_watch(id);
            if state.status == Status::Stopped {
                return Ok(ExitStatus {
                    code: state.exit_code.unwrap_or(137),
                    signal: None,
                });
            }
            watch.subscribe()
        };
        let seen = rx.borrow_and_update().0;
        let (_, status) = rx
            .wait_for(|(seq, _)| *seq > seen)
            .await
            .map(|v| *v)
            .map_err(|_| bad(format!("container {id}: wait abandoned")))?;
        status.ok_or_else(|| bad(format!("container {id}: no exit status")))
    }

    fn running_helper(&self, id: &str) -> Result<Helper<SandboxProto>, ApiError> {
        let (_, state) = self.load(id)?;
        if state.status != Status::Running {
            return Err(ApiError::Conflict(format!("container {id} is not running")));
        }
        self.sandboxes.get(id).ok_or_else(|| {
            ApiError::Conflict(format!("container {id}: its sandbox helper is gone"))
        })
    }

    pub async fn container_kill(self: &Arc<Self>, id: &str, signal: i32) -> Result<(), ApiError> {
        let helper = self.running_helper(id)?;
        helper.client.call(SandboxRequest::Kill { signal }).await?;
        Ok(())
    }

    pub async fn container_stop(
        self: &Arc<Self>,
        id: &str,
        signal: i32,
        timeout_secs: u64,
    ) -> Result<(), ApiError> {
        let helper = self.running_helper(id)?;
        let waiter = {
            let server = self.clone();
            let id = id.to_string();
            tokio::spawn(async move { server.container_wait(&id).await })
        };
        helper
            .client
            .call(SandboxRequest::Stop {
                signal,
                timeout_secs,
            })
            .await?;
        let _ = waiter.await;
        Ok(())
    }

    pub async fn container_remove(self: &Arc<Self>, id: &str, force: bool) -> Result<(), ApiError> {
        let state = match self.load(id) {
            Ok((_, state)) => state,
            // An unreadable record can still be removed by force, with whatever of it
            // may be left on the host.
            Err(ApiError::Store(e)) if force => {
                tracing::warn!("container {id}: removing an unreadable record: {e}");
                let _ = self.sandboxes.shutdown(id).await;
                self.remove_sandbox_remains(id, &[]).await;
                remove_container(&self.paths, id)?;
                self.spawner
                    .remove_log(container_protocol::HelperKind::Sandbox, id);
                self.containers.forget(id);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if state.status == Status::Running {
            if !force {
                return Err(ApiError::Conflict(format!(
                    "container {id} is running: stop it first or use rm -f"
                )));
            }
            match self
                .container_stop(id, nix::sys::signal::Signal::SIGKILL as i32, 0)
                .await
            {
                Ok(()) => {}
                Err(ApiError::Conflict(_)) => {
                    // Its helper is gone: finish it from the record.
                    self.finish(id, None, Some("removed while its sandbox was gone".into()))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
        let lock = self.containers.lock_for(id);
        let _guard = lock.lock().await;
        if let Ok((_, state)) = self.load(id) {
            if state.status == Status::Running {
                return Err(ApiError::Conflict(format!(
                    "container {id} started again while being removed"
                )));
            }
        }
        remove_container(&self.paths, id)?;
        self.spawner
            .remove_log(container_protocol::HelperKind::Sandbox, id);
        self.containers.forget(id);
        tracing::info!("container {id} removed");
        Ok(())
    }

    pub fn container_list(&self, all: bool) -> Vec<ContainerSummary> {
        let mut out = Vec::new();
        for id in list_containers(&self.paths) {
            let (config, state) = match self.load(&id) {
                Ok(loaded) => loaded,
                Err(e) => {
                    tracing::warn!("container {id}: not listed: {e}");
                    continue;
                }
            };
            if !all && state.status != Status::Running {
                continue;
            }
            out.push(ContainerSummary {
                command: config.process.args.join(" "),
                status: state.status.as_str().to_string(),
                exit_code: state.exit_code,
                created: config.created,
                networks: attachment_networks(&config),
                addresses: state
                    .allocations
                    .iter()
                    .flat_map(|a| a.addresses.iter().map(|n| n.addr()))
                    .collect(),
                pid: state.pid,
                id,
            });
        }
        out
    }

    pub fn container_inspect(&self, ids: Vec<String>) -> Result<String, ApiError> {
        let mut out = Vec::new();
        for id in ids {
            let (config, state) = self.load(&id)?;
            out.push(serde_json::json!({ "config": config, "state": state }));
        }
        serde_json::to_string_pretty(&out).map_err(|e| bad(format!("encode: {e}")))
    }

    pub fn container_logs(&self, id: &str) -> Result<(bool, OwnedFd), ApiError> {
        let (_, state) = self.load(id)?;
        let path = self.log_path(id)?;
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::File::open("/dev/null").map_err(ApiError::io("open /dev/null"))?
            }
            Err(e) => return Err(ApiError::io(format!("open {}", path.display()))(e)),
        };
        Ok((state.status == Status::Running, OwnedFd::from(file)))
    }

    pub async fn container_exec(
        self: &Arc<Self>,
        id: &str,
        args: Vec<String>,
        env: Vec<String>,
        tty: bool,
        fds: Vec<OwnedFd>,
    ) -> Result<(SandboxResponse, Vec<OwnedFd>), ApiError> {
        if args.is_empty() {
            return Err(bad(format!("container {id}: exec needs a command")));
        }
        check_env(&env).map_err(|e| bad(format!("container {id}: exec: {e}")))?;
        let (config, _) = self.load(id)?;
        let helper = self.running_helper(id)?;
        let stdio = match (tty, fds.len()) {
            (true, _) => Stdio::Tty,
            (false, 3) => Stdio::Inherit,
            (false, _) => Stdio::Log,
        };
        let mut process = process_spec(&config, &args, &env);
        process.tty = tty;
        let (reply, fds) = helper
            .client
            .call_with_fds(SandboxRequest::Exec { process, stdio }, fds)
            .await?;
        match reply {
            SandboxResponse::Exited(_) | SandboxResponse::Started { .. } => Ok((reply, fds)),
            _ => Err(bad("unexpected answer to exec")),
        }
    }

    pub async fn container_exec_wait(&self, id: &str, pid: u32) -> Result<ExitStatus, ApiError> {
        let helper = self.running_helper(id)?;
        match helper.client.call(SandboxRequest::ExecWait { pid }).await? {
            SandboxResponse::Exited(s) => Ok(s),
            _ => Err(bad("unexpected answer to exec wait")),
        }
    }

    pub async fn container_exec_resize(
        &self,
        id: &str,
        pid: u32,
        rows: u16,
        cols: u16,
    ) -> Result<(), ApiError> {
        let helper = self.running_helper(id)?;
        helper
            .client
            .call(SandboxRequest::ExecResize { pid, rows, cols })
            .await?;
        Ok(())
    }

    pub async fn container_resize(&self, id: &str, rows: u16, cols: u16) -> Result<(), ApiError> {
        let helper = self.running_helper(id)?;
        helper
            .client
            .call(SandboxRequest::Resize { rows, cols })
            .await?;
        Ok(())
    }

    /// A container that was running (or starting) when the apiserver went away and whose
    /// helper is alive: if its workload was started, record its pid and watch it again;
    /// if the start never got that far, finish it — nobody is waiting for it any more.
    async fn resume(
        self: Arc<Self>,
        id: String,
        mut state: ContainerState,
        helper: Helper<SandboxProto>,
    ) {
        let pid = match helper.client.call(SandboxRequest::State).await {
            Ok(SandboxResponse::State(s)) if s.exit.is_none() => s.pid,
            Ok(SandboxResponse::State(s)) => s.pid.or(Some(0)),
            _ => None,
        };
        match pid {
            Some(pid) => {
                tracing::info!(
                    "container {id} is still running (helper pid {})",
                    helper.info.pid
                );
                if state.pid.is_none() && pid != 0 {
                    state.pid = Some(pid);
                    if let Err(e) = save_state(&self.paths, &id, &state) {
                        tracing::warn!("container {id}: record pid: {e}");
                    }
                }
                tokio::spawn(async move { self.watch_container(id, helper).await });
            }
            None => {
                self.finish(
                    &id,
                    None,
                    Some("start interrupted by an apiserver restart".into()),
                )
                .await;
            }
        }
    }

    /// After a restart: containers whose helper is alive are watched again; the others
    /// are finished with a reason. Sandbox helpers with no container are shut down.
    pub async fn reconcile_containers(self: &Arc<Self>, dead_sandboxes: &[String]) {
        let ids = list_containers(&self.paths);
        // A sandbox that died with nobody watching leaves its netns mount (which keeps
        // its veth pairs alive) and maybe host veth ends.
        for id in dead_sandboxes {
            let ifnames: Vec<String> = load_config(&self.paths, id)
                .map(|c| c.networks.iter().filter_map(|n| n.ifname.clone()).collect())
                .unwrap_or_default();
            self.remove_sandbox_remains(id, &ifnames).await;
        }
        // Logs of containers whose record is gone (a crash between removing the record
        // and the log).
        if let Ok(entries) = std::fs::read_dir(self.paths.helper_dir("sandbox")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(id) = name.strip_suffix(".log") {
                    if !ids.iter().any(|i| i == id) && self.sandboxes.get(id).is_none() {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        for helper in self.sandboxes.list() {
            let id = &helper.info.id;
            let running = ids.contains(id)
                && load_state(&self.paths, id).is_ok_and(|s| s.status == Status::Running);
            if !running {
                // A start that died before it was recorded: what it built goes with the
                // helper, and its addresses with the GC that follows.
                tracing::warn!(
                    "sandbox helper {id} belongs to no running container; shutting it down"
                );
                let _ = self.sandboxes.shutdown(id).await;
            }
        }
        for id in ids {
            let Ok((_, state)) = self.load(&id) else {
                tracing::error!("container {id}: unreadable record, skipped");
                continue;
            };
            if state.status != Status::Running {
                continue;
            }
            match self.sandboxes.get(&id) {
                Some(helper) => self.clone().resume(id, state, helper).await,
                None => {
                    self.finish(
                        &id,
                        None,
                        Some("sandbox helper exited while the apiserver was away".into()),
                    )
                    .await;
                }
            }
        }
    }
}

impl ApiServer {
    /// Published ports need a bridge network first, distinct non-zero ports, and no
    /// host port another container already publishes.
    fn check_ports(&self, config: &ContainerConfig) -> Result<(), ApiError> {
        let id = &config.id;
        let Some(first) = config.networks.first() else {
            return Err(bad(format!(
                "container {id}: publishing ports needs a network"
            )));
        };
        let net = self.network_config(&first.network)?;
        if net.plugin != "bridge" {
            return Err(bad(format!(
                "container {id}: ports are published on the first network, and {} is a {} network (use a bridge network first)",
                first.network, net.plugin
            )));
        }
        let clash = |a: &PortMap, b: &PortMap| {
            a.host_port == b.host_port
                && a.protocol == b.protocol
                && (a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip)
        };
        for (i, p) in config.ports.iter().enumerate() {
            if p.host_port == 0 || p.container_port == 0 {
                return Err(bad(format!("container {id}: port 0 cannot be published")));
            }
            if config.ports[..i].iter().any(|q| clash(p, q)) {
                return Err(bad(format!(
                    "container {id}: host port {} is published twice",
                    p.host_port
                )));
            }
        }
        for other in list_containers(&self.paths) {
            let Ok(c) = load_config(&self.paths, &other) else {
                continue;
            };
            if let Some(p) = config
                .ports
                .iter()
                .find(|p| c.ports.iter().any(|q| clash(p, q)))
            {
                return Err(ApiError::Conflict(format!(
                    "container {id}: host port {} is already published by container {other}",
                    p.host_port
                )));
            }
        }
        Ok(())
    }
}

fn net_device_specs(config: &ContainerConfig) -> Vec<NetDeviceSpec> {
    config
        .net_devices
        .iter()
        .map(|(host, dev)| NetDeviceSpec {
            host_name: host.clone(),
            name: dev.name.clone(),
        })
        .collect()
}

fn process_spec(config: &ContainerConfig, args: &[String], extra_env: &[String]) -> ProcessSpec {
    let mut env = config.process.env.clone();
    env.extend(extra_env.iter().cloned());
    ProcessSpec {
        args: args.to_vec(),
        env,
        cwd: config.process.cwd.clone(),
        uid: config.process.uid,
        gid: config.process.gid,
        tty: config.process.tty,
    }
}
