//! The network helper's calls: IPAM plus the network's plugin.

use std::collections::HashSet;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, OnceLock};

use container_ipam::{Allocated, Ipam};
use container_netlink::Netlink;
use container_protocol::network::{
    Allocation, Attachment, NameEntry, NetworkRequest, NetworkResponse, NetworkState,
    ReservationInfo,
};
use container_protocol::{HelperInfo, RemoteError, Service};
use container_store::{NetworkConfig, Paths};
use tokio::sync::{Mutex, Notify};

use crate::error::PluginError;
use crate::plugins::{range_sets, HostEnv, Plugin};

/// Failures before the helper can serve: its network cannot be loaded or set up.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("network {network}: load config: {source}")]
    Load {
        network: String,
        #[source]
        source: container_store::StoreError,
    },
    #[error("network {network}: {source}")]
    Plugin {
        network: String,
        #[source]
        source: Box<PluginError>,
    },
}

pub struct NetworkHelper {
    info: HelperInfo,
    shutdown: Arc<Notify>,
    paths: Paths,
    config: NetworkConfig,
    plugin: Plugin,
    netlink: Netlink,
    /// Serialises calls that change state. IPAM's directory lock already keeps
    /// addresses unique; this keeps a teardown from interleaving with an allocate, and
    /// a CNI ADD from racing the DEL of the same attachment.
    changes: Mutex<()>,
    /// The network's name server, once set-up has made its addresses.
    dns: std::sync::Mutex<Option<crate::dns::DnsServer>>,
    /// The names as the apiserver last gave them: the one table, which the name
    /// server answers from once it runs (and a server started later begins with).
    names: Arc<std::sync::RwLock<crate::dns::Table>>,
    /// Opened at the first call that needs it and kept for the helper's life: its
    /// index of the reservations is what makes a call cost the same at any count
    /// (crates/ipam keeps it true to the directory, whoever else writes there).
    ipam: OnceLock<Ipam>,
}

impl NetworkHelper {
    /// Builds the helper for `config`, whose options must be valid. Connects to
    /// rtnetlink in the calling thread's namespace: call inside a tokio runtime.
    pub fn new(
        info: HelperInfo,
        paths: Paths,
        config: NetworkConfig,
        shutdown: Arc<Notify>,
    ) -> Result<NetworkHelper, HelperError> {
        let plugin_err = |source| HelperError::Plugin {
            network: config.id.clone(),
            source: Box::new(source),
        };
        let plugin = Plugin::for_config(&config).map_err(plugin_err)?;
        let netlink = Netlink::connect().map_err(|e| plugin_err(e.into()))?;
        Ok(NetworkHelper {
            info,
            shutdown,
            paths,
            config,
            plugin,
            netlink,
            changes: Mutex::new(()),
            dns: std::sync::Mutex::new(None),
            names: Default::default(),
            ipam: OnceLock::new(),
        })
    }

    /// Loads `<root>/networks/<id>.json` and builds the helper for it.
    pub fn load(
        info: HelperInfo,
        paths: Paths,
        shutdown: Arc<Notify>,
    ) -> Result<NetworkHelper, HelperError> {
        let config =
            container_store::network::load_network(&paths, &info.id).map_err(|source| {
                HelperError::Load {
                    network: info.id.clone(),
                    source,
                }
            })?;
        NetworkHelper::new(info, paths, config, shutdown)
    }

    /// Replaces the plugin, e.g. a bridge whose firewall uses a test table.
    pub fn with_plugin(mut self, plugin: Plugin) -> Self {
        self.plugin = plugin;
        self
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    fn env(&self) -> HostEnv<'_> {
        HostEnv {
            netlink: &self.netlink,
            paths: &self.paths,
        }
    }

    /// Answers one request. Errors read `network <id>: <step>: <what failed>`.
    pub async fn dispatch(&self, req: NetworkRequest) -> Result<NetworkResponse, RemoteError> {
        match req {
            NetworkRequest::Info => Ok(NetworkResponse::Info(self.info.clone())),
            NetworkRequest::Echo(n) => Ok(NetworkResponse::Echo(n)),
            NetworkRequest::Setup => self
                .setup()
                .await
                .map(|()| NetworkResponse::Done)
                .map_err(|e| self.remote("setup", e)),
            NetworkRequest::Allocate(att) => self
                .allocate(&att)
                .await
                .map(NetworkResponse::Allocated)
                .map_err(|e| self.remote("allocate", e)),
            NetworkRequest::Release {
                container_id,
                ifname,
                netns,
            } => self
                .release(&container_id, &ifname, netns.as_deref())
                .await
                .map(NetworkResponse::Released)
                .map_err(|e| self.remote("release", e)),
            NetworkRequest::Gc { live } => self
                .gc(live.into_iter().collect())
                .await
                .map(NetworkResponse::Collected)
                .map_err(|e| self.remote("gc", e)),
            NetworkRequest::Restore {
                container_id,
                ifname,
                ips,
            } => self
                .restore(&container_id, &ifname, &ips)
                .await
                .map(NetworkResponse::Released)
                .map_err(|e| self.remote("restore", e)),
            NetworkRequest::State => self
                .state()
                .await
                .map(NetworkResponse::State)
                .map_err(|e| self.remote("state", e)),
            NetworkRequest::Names(entries) => {
                self.set_names(entries);
                Ok(NetworkResponse::Done)
            }
            NetworkRequest::NamesOf {
                container_id,
                entries,
            } => {
                self.set_names_of(container_id, entries);
                Ok(NetworkResponse::Done)
            }
            NetworkRequest::Teardown => self
                .teardown()
                .await
                .map(|()| NetworkResponse::Done)
                .map_err(|e| self.remote("teardown", e)),
            NetworkRequest::Shutdown => {
                // Resources stay: the next helper for this network picks them up.
                self.shutdown.notify_one();
                Ok(NetworkResponse::Done)
            }
        }
    }

    fn remote(&self, step: &str, err: PluginError) -> RemoteError {
        let message = format!("network {}: {step}: {err}", self.config.id);
        tracing::warn!("{message}");
        RemoteError::new(err.kind(), message)
    }

    fn ipam(&self) -> Result<&Ipam, PluginError> {
        if let Some(ipam) = self.ipam.get() {
            return Ok(ipam);
        }
        // A teardown may remove the directory later: the next call makes it again.
        let dir = self.paths.ipam_network(&self.config.id)?;
        let ipam = Ipam::open(&dir, range_sets(&self.config))?;
        Ok(self.ipam.get_or_init(|| ipam))
    }

    pub async fn setup(&self) -> Result<(), PluginError> {
        let _guard = self.changes.lock().await;
        self.plugin.setup(self.env()).await?;
        self.start_dns();
        Ok(())
    }

    /// The name server on the gateway addresses, if the plugin serves names and none
    /// runs yet. A port 53 taken on the host (a dnsmasq on every address) leaves the
    /// network without names rather than without set-up: logged, not fatal.
    fn start_dns(&self) {
        if !self.plugin.serves_dns() {
            return;
        }
        let mut dns = self.dns.lock().unwrap_or_else(|p| p.into_inner());
        if dns.is_some() {
            return;
        }
        let gateways: Vec<IpAddr> = crate::plugins::gateway_addresses(&self.config)
            .iter()
            .map(|n| n.addr())
            .collect();
        let subnets = crate::plugins::subnets(&self.config);
        match crate::dns::DnsServer::start(
            &gateways,
            self.dns_port(),
            subnets,
            !self.config.internal,
            self.names.clone(),
        ) {
            Ok(server) => {
                tracing::info!(network = %self.config.id, addresses = ?server.addresses, "name server up");
                *dns = Some(server);
            }
            Err(e) => {
                tracing::error!(network = %self.config.id, "name server: bind port {} on {gateways:?}: {e}", self.dns_port())
            }
        }
    }

    /// 53, or `CONTAINER_DNS_PORT` for a helper run beside a resolver on the host's
    /// port (the benchmark).
    fn dns_port(&self) -> u16 {
        std::env::var("CONTAINER_DNS_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(crate::dns::PORT)
    }

    pub fn set_names(&self, entries: Vec<NameEntry>) {
        tracing::debug!(network = %self.config.id, entries = entries.len(), "names replaced");
        self.names_mut().replace(entries);
    }

    pub fn set_names_of(&self, container_id: String, entries: Vec<NameEntry>) {
        tracing::debug!(network = %self.config.id, container = %container_id, entries = entries.len(), "names of one container replaced");
        self.names_mut().set(&container_id, entries);
    }

    fn names_mut(&self) -> std::sync::RwLockWriteGuard<'_, crate::dns::Table> {
        self.names.write().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn allocate(&self, att: &Attachment) -> Result<Allocation, PluginError> {
        if att.network != self.config.id {
            return Err(PluginError::Unsupported {
                plugin: self.plugin.kind(),
                reason: format!(
                    "attachment of container {} is for network {:?}, not this one",
                    att.container_id, att.network
                ),
            });
        }
        let _guard = self.changes.lock().await;
        let addrs: Vec<Allocated> = if self.plugin.uses_ipam() {
            let requested: Vec<IpAddr> = att
                .ipv4
                .map(IpAddr::V4)
                .into_iter()
                .chain(att.ipv6.map(IpAddr::V6))
                .collect();
            let reserved = self
                .ipam()?
                .allocate(&att.container_id, &att.ifname, &requested)?;
            container_protocol::fault::point("network-helper:after-reserve");
            reserved
        } else {
            Vec::new()
        };
        match self.plugin.allocate(self.env(), att, &addrs).await {
            Ok(alloc) => Ok(alloc),
            Err(e) if addrs.is_empty() => Err(e),
            Err(e) => {
                // The addresses were never handed out: give them back now rather than
                // leaving them to the next GC.
                if let Err(undo) = self
                    .ipam()
                    .and_then(|i| Ok(i.release(&att.container_id, &att.ifname)?))
                {
                    tracing::error!(network = %self.config.id, error = %undo,
                        "could not release addresses of a failed allocation; GC will");
                }
                Err(e)
            }
        }
    }

    /// Plugin release then IPAM release, both attempted whatever the other did.
    pub async fn release(
        &self,
        container_id: &str,
        ifname: &str,
        netns: Option<&str>,
    ) -> Result<Vec<IpAddr>, PluginError> {
        let _guard = self.changes.lock().await;
        let mut errors = Vec::new();
        let mut released = match self
            .plugin
            .release(self.env(), container_id, ifname, netns)
            .await
        {
            Ok(ips) => ips,
            Err(e) => {
                errors.push(e);
                Vec::new()
            }
        };
        container_protocol::fault::point("network-helper:during-release");
        if self.plugin.uses_ipam() {
            match self
                .ipam()
                .and_then(|i| Ok(i.release(container_id, ifname)?))
            {
                Ok(ips) => released.extend(ips),
                Err(e) => errors.push(e),
            }
        }
        PluginError::collect(errors).map(|()| released)
    }

    /// Seed 004: releases every reservation on disk not held by a live attachment. The
    /// caller's live set must include the attachments being made: the apiserver takes
    /// the network's GC gate, which allocations hold, to make it so.
    pub async fn gc(
        &self,
        live: HashSet<(String, String)>,
    ) -> Result<Vec<ReservationInfo>, PluginError> {
        let _guard = self.changes.lock().await;
        let mut released = self.plugin.gc(self.env(), &live).await?;
        if self.plugin.uses_ipam() {
            // The IPAM crate logs each release with its address and holder.
            let collected = self.ipam()?.gc(&live)?;
            // What the plugin holds for a dead attachment beyond its address (a
            // bridge's published ports) goes with it.
            for r in &collected {
                if let Err(e) = self
                    .plugin
                    .release(self.env(), &r.container_id, &r.ifname, None)
                    .await
                {
                    tracing::warn!(network = %self.config.id, container = %r.container_id, "gc: {e}");
                }
            }
            released.extend(collected.into_iter().map(|r| ReservationInfo {
                ip: r.ip,
                container_id: r.container_id,
                ifname: r.ifname,
            }));
        }
        // Each release was logged where it happened (IPAM, CNI) with its holder.
        tracing::info!(network = %self.config.id, released = released.len(), live = live.len(), "gc done");
        Ok(released)
    }

    /// `system check --fix`: a live attachment's reservation files went missing.
    pub async fn restore(
        &self,
        container_id: &str,
        ifname: &str,
        ips: &[IpAddr],
    ) -> Result<Vec<IpAddr>, PluginError> {
        if !self.plugin.uses_ipam() {
            return Err(PluginError::Unsupported {
                plugin: self.plugin.kind(),
                reason: "its addresses are not in this runtime's IPAM".into(),
            });
        }
        let _guard = self.changes.lock().await;
        Ok(self.ipam()?.restore(container_id, ifname, ips)?)
    }

    pub async fn state(&self) -> Result<NetworkState, PluginError> {
        let link = self.plugin.state(self.env()).await?;
        let mut reservations = self.plugin.reservations(self.env())?;
        if self.plugin.uses_ipam() {
            reservations.extend(self.reservations()?);
        }
        Ok(NetworkState {
            helper: self.info.clone(),
            plugin: self.plugin.kind(),
            link: link.link,
            link_up: link.up,
            reservations,
        })
    }

    /// Reservations as the files on disk say, without creating the directory.
    fn reservations(&self) -> Result<Vec<ReservationInfo>, PluginError> {
        let dir = self.paths.ipam_network(&self.config.id)?;
        if !dir.exists() {
            return Ok(Vec::new());
        }
        Ok(self
            .ipam()?
            .reservations()?
            .into_iter()
            .map(|r| ReservationInfo {
                ip: r.ip,
                container_id: r.container_id,
                ifname: r.ifname,
            })
            .collect())
    }

    /// Plugin teardown, then the IPAM directory; both attempted.
    pub async fn teardown(&self) -> Result<(), PluginError> {
        let _guard = self.changes.lock().await;
        let mut errors = Vec::new();
        self.dns.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Err(e) = self.plugin.teardown(self.env()).await {
            errors.push(e);
        }
        match self.paths.ipam_network(&self.config.id) {
            Ok(dir) => match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    errors.push(PluginError::Io {
                        path: dir,
                        step: "remove IPAM directory",
                        source: e,
                    })
                }
                _ => {}
            },
            Err(e) => errors.push(e.into()),
        }
        PluginError::collect(errors)
    }
}

impl Service for NetworkHelper {
    type Req = NetworkRequest;
    type Resp = NetworkResponse;
    const NAME: &'static str = container_protocol::network::SERVICE;
    // Every call changes or reads the network and finishes whatever the caller does.

    async fn handle(
        self: Arc<Self>,
        req: NetworkRequest,
        _fds: Vec<OwnedFd>,
    ) -> Result<(NetworkResponse, Vec<OwnedFd>), RemoteError> {
        self.dispatch(req).await.map(|r| (r, vec![]))
    }
}
