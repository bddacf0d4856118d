//! `cni`: standard CNI plugin binaries driven from a conflist (CNI spec 1.0). The
//! plugins build the interface in the container's netns and do their own IPAM (the
//! conflist's `ipam` section); we only run the chain and remember its result.

mod cache;
mod conflist;
mod exec;
mod result;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use container_ipam::Allocated;
use container_netlink::Netlink;
use container_protocol::network::{
    Allocation, Attachment, PluginData, PluginKind, PortProtocol, ReservationInfo,
};
use container_store::NetworkConfig;
use ipnet::IpNet;
use serde_json::{Map, Value};

pub use cache::Record;
pub use conflist::Conflist;
pub use exec::Command;

use super::options::Opts;
use super::{HostDevice, HostEnv, LinkState, NetworkPlugin};
use crate::error::PluginError;
use cache::Cache;
use exec::Invocation;

const NAME: PluginKind = PluginKind::Cni;
const KNOWN: &[&str] = &["conflist", "cni_path"];
pub const DEFAULT_CNI_PATH: &str = "/usr/lib/cni:/opt/cni/bin";
/// The CNI conventions' capability names.
const CAP_IPS: &str = "ips";
const CAP_PORT_MAPPINGS: &str = "portMappings";

#[derive(Debug, Clone)]
pub struct Options {
    pub conflist: Conflist,
    pub cni_path: String,
}

impl Options {
    /// Reads and checks the conflist: a network whose list cannot run is refused at
    /// create, not at the first container.
    pub fn parse(config: &NetworkConfig) -> Result<Options, PluginError> {
        let opts = Opts::new(NAME, &config.options, KNOWN)?;
        let path = opts.required("conflist")?;
        if !path.starts_with('/') {
            return Err(opts.invalid("conflist", path, "must be an absolute path"));
        }
        let path = PathBuf::from(path);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(opts.invalid(
                    "conflist",
                    &path.display().to_string(),
                    "not a regular file",
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(opts.invalid("conflist", &path.display().to_string(), "no such file"))
            }
            Err(e) => {
                return Err(opts.invalid("conflist", &path.display().to_string(), e.to_string()))
            }
        }
        let conflist = Conflist::load(&path)?;
        let cni_path = opts.get("cni_path").unwrap_or(DEFAULT_CNI_PATH);
        if cni_path.split(':').all(str::is_empty) {
            return Err(opts.invalid("cni_path", cni_path, "names no directory"));
        }
        if let Some(dir) = cni_path
            .split(':')
            .find(|d| !d.is_empty() && !d.starts_with('/'))
        {
            return Err(opts.invalid(
                "cni_path",
                cni_path,
                format!("directory {dir:?} is not absolute"),
            ));
        }
        Ok(Options {
            conflist,
            cni_path: cni_path.to_string(),
        })
    }
}

pub struct Cni {
    network: String,
    opts: Options,
}

impl NetworkPlugin for Cni {
    const KIND: PluginKind = NAME;
    /// A conflist carries its own IPAM.
    const USES_IPAM: bool = false;
    const NEEDS_NETNS: bool = true;

    fn validate(config: &NetworkConfig) -> Result<(), PluginError> {
        Options::parse(config).map(drop)
    }

    async fn check_host(_config: &NetworkConfig, _netlink: &Netlink) -> Result<(), PluginError> {
        Ok(())
    }

    fn new(config: &NetworkConfig) -> Result<Cni, PluginError> {
        Ok(Cni {
            network: config.id.clone(),
            opts: Options::parse(config)?,
        })
    }

    /// With a plugin that takes `portMappings` (portmap).
    fn publishes_ports(&self) -> bool {
        self.opts.conflist.has_capability(CAP_PORT_MAPPINGS)
    }

    /// With a plugin that takes `ips` (host-local through its main plugin).
    fn takes_static_addresses(&self) -> bool {
        self.opts.conflist.has_capability(CAP_IPS)
    }

    fn serves_dns(&self) -> bool {
        false
    }

    /// The CNI plugins own whatever they build on the host.
    fn host_device(&self) -> Option<HostDevice<'_>> {
        None
    }

    fn declared_subnets(&self) -> Vec<IpNet> {
        self.opts.conflist.declared_subnets()
    }

    /// The conflist may have changed since create: read it again and check that every
    /// plugin binary is there, so a missing one is a setup error naming it.
    async fn setup(&self, _env: HostEnv<'_>) -> Result<(), PluginError> {
        let list = Conflist::load(&self.opts.conflist.path)?;
        for entry in &list.plugins {
            let t = conflist::plugin_type(entry);
            if exec::find_binary(t, &self.opts.cni_path).is_none() {
                return Err(PluginError::Cni {
                    plugin: t.to_string(),
                    command: "setup",
                    message: format!("binary not found in CNI_PATH {}", self.opts.cni_path),
                });
            }
        }
        Ok(())
    }

    /// ADD through the whole chain. On failure, DELs the plugins already run (and the
    /// failing one, which may have left half its work) in reverse order.
    async fn allocate(
        &self,
        env: HostEnv<'_>,
        att: &Attachment,
        _addrs: &[Allocated],
    ) -> Result<Allocation, PluginError> {
        let netns = att.netns.as_deref().ok_or(PluginError::Unsupported {
            plugin: NAME,
            reason: "the attachment has no network namespace; CNI plugins need one".into(),
        })?;
        let args = cni_args(att);
        let runtime = self.runtime_config(att)?;
        let list = &self.opts.conflist;
        let inv = Invocation {
            command: Command::Add,
            container_id: &att.container_id,
            netns: Some(netns),
            ifname: &att.ifname,
            cni_path: &self.opts.cni_path,
            args: args.as_deref(),
            runtime: &runtime,
        };
        let mut prev: Option<Value> = None;
        for (i, entry) in list.plugins.iter().enumerate() {
            let t = conflist::plugin_type(entry);
            let stdin = exec::stdin_config(
                entry,
                &list.name,
                &list.cni_version,
                prev.as_ref(),
                &runtime,
            );
            let step = match exec::run(t, stdin, &inv).await {
                Ok(Some(result)) => Ok(result),
                Ok(None) => Err(PluginError::Cni {
                    plugin: t.to_string(),
                    command: "ADD",
                    message: "printed no result".into(),
                }),
                Err(e) => Err(e),
            };
            match step {
                Ok(result) => prev = Some(result),
                Err(e) => {
                    let undo = self.del_chain(&inv, prev.as_ref(), i + 1).await;
                    return Err(PluginError::with_undo(e, undo));
                }
            }
        }
        let result = prev.unwrap_or(Value::Null);
        let parsed = match result::parse(&result, &att.ifname) {
            Ok(p) => p,
            Err(message) => {
                let undo = self
                    .del_chain(&inv, Some(&result), list.plugins.len())
                    .await;
                let e = PluginError::Cni {
                    plugin: list.name.clone(),
                    command: "ADD",
                    message: format!("unreadable result: {message}"),
                };
                return Err(PluginError::with_undo(e, undo));
            }
        };
        let record = Record {
            container_id: att.container_id.clone(),
            ifname: att.ifname.clone(),
            netns: Some(netns.to_string()),
            result: result.clone(),
            runtime_config: runtime.clone(),
        };
        // Without the record a later DEL would run blind: better to undo now.
        if let Err(e) = self.cache(env).save(&record) {
            let undo = self
                .del_chain(&inv, Some(&result), list.plugins.len())
                .await;
            return Err(PluginError::with_undo(e, undo));
        }
        Ok(Allocation {
            network: att.network.clone(),
            container_id: att.container_id.clone(),
            ifname: att.ifname.clone(),
            addresses: parsed.addresses,
            gateways: parsed.gateways,
            routes: parsed.routes,
            mac: parsed.mac,
            mtu: None,
            dns: parsed.dns,
            data: PluginData::Cni {
                result: result.to_string(),
            },
        })
    }

    /// DEL of one attachment, with the cached result as `prevResult`. Runs even with no
    /// cache (plugins treat DEL of what is gone as success), so an ADD whose result was
    /// lost in a crash is still undone. Returns the addresses the cached result held.
    async fn release(
        &self,
        env: HostEnv<'_>,
        container_id: &str,
        ifname: &str,
        netns: Option<&str>,
    ) -> Result<Vec<IpAddr>, PluginError> {
        let cache = self.cache(env);
        let record = cache.load(container_id, ifname)?;
        let netns = netns
            .map(str::to_string)
            .or_else(|| record.as_ref().and_then(|r| r.netns.clone()))
            // A netns that is gone is passed as none: plugins then clean up host side only.
            .filter(|p| std::path::Path::new(p).exists());
        let no_runtime = Map::new();
        let inv = Invocation {
            command: Command::Del,
            container_id,
            netns: netns.as_deref(),
            ifname,
            cni_path: &self.opts.cni_path,
            args: None,
            runtime: record.as_ref().map_or(&no_runtime, |r| &r.runtime_config),
        };
        let prev = record.as_ref().map(|r| &r.result);
        self.del_chain(&inv, prev, self.opts.conflist.plugins.len())
            .await?;
        cache.remove(container_id, ifname)?;
        Ok(prev.map(result::addresses).unwrap_or_default())
    }

    /// Seed 004 for CNI: DEL every recorded attachment not in `live`.
    async fn gc(
        &self,
        env: HostEnv<'_>,
        live: &HashSet<(String, String)>,
    ) -> Result<Vec<ReservationInfo>, PluginError> {
        let mut released = Vec::new();
        let mut errors = Vec::new();
        for record in self.cache(env).list()? {
            if live.contains(&(record.container_id.clone(), record.ifname.clone())) {
                continue;
            }
            match self
                .release(env, &record.container_id, &record.ifname, None)
                .await
            {
                Ok(ips) => {
                    for ip in ips {
                        tracing::info!(network = %self.network, %ip, container_id = %record.container_id,
                            ifname = %record.ifname, "released CNI attachment of a container that is not live");
                        released.push(ReservationInfo {
                            ip,
                            container_id: record.container_id.clone(),
                            ifname: record.ifname.clone(),
                        });
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        PluginError::collect(errors).map(|()| released)
    }

    fn reservations(&self, env: HostEnv<'_>) -> Result<Vec<ReservationInfo>, PluginError> {
        let mut out = Vec::new();
        for record in self.cache(env).list()? {
            for ip in result::addresses(&record.result) {
                out.push(ReservationInfo {
                    ip,
                    container_id: record.container_id.clone(),
                    ifname: record.ifname.clone(),
                });
            }
        }
        Ok(out)
    }

    /// DELs whatever is still recorded, then drops the cache directory.
    async fn teardown(&self, env: HostEnv<'_>) -> Result<(), PluginError> {
        let mut errors = Vec::new();
        if let Err(e) = self.gc(env, &HashSet::new()).await {
            errors.push(e);
        }
        if errors.is_empty() {
            if let Err(e) = self.cache(env).remove_all() {
                errors.push(e);
            }
        }
        PluginError::collect(errors)
    }

    async fn state(&self, _env: HostEnv<'_>) -> Result<LinkState, PluginError> {
        Ok(LinkState::default())
    }
}

impl Cni {
    fn cache(&self, env: HostEnv<'_>) -> Cache {
        Cache::new(env.paths, &self.network)
    }

    /// The `runtimeConfig` of an attachment, as libcni builds it: static addresses as
    /// `ips`, published ports as `portMappings`. A static address is refused when no
    /// plugin of the conflist declares `ips`, since nothing would honour it; ports were
    /// refused before this unless one declares `portMappings` ([`Cni::publishes_ports`]).
    fn runtime_config(&self, att: &Attachment) -> Result<Map<String, Value>, PluginError> {
        let mut runtime = Map::new();
        let ips: Vec<Value> = att
            .ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(att.ipv6.map(IpAddr::V6))
            .map(|ip| Value::String(ip.to_string()))
            .collect();
        if !ips.is_empty() {
            if !self.takes_static_addresses() {
                return Err(no_capability("ips", "a static address"));
            }
            runtime.insert(CAP_IPS.into(), Value::Array(ips));
        }
        if !att.ports.is_empty() {
            let mappings = att
                .ports
                .iter()
                .map(|p| {
                    let mut m = serde_json::json!({
                        "hostPort": p.host_port,
                        "containerPort": p.container_port,
                        "protocol": match p.protocol {
                            PortProtocol::Tcp => "tcp",
                            PortProtocol::Udp => "udp",
                        },
                    });
                    if let Some(ip) = p.host_ip {
                        m["hostIP"] = Value::String(ip.to_string());
                    }
                    m
                })
                .collect();
            runtime.insert(CAP_PORT_MAPPINGS.into(), Value::Array(mappings));
        }
        Ok(runtime)
    }

    /// DEL through the first `count` plugins in reverse, going on past failures.
    async fn del_chain(
        &self,
        inv: &Invocation<'_>,
        prev: Option<&Value>,
        count: usize,
    ) -> Result<(), PluginError> {
        let list = &self.opts.conflist;
        let del = Invocation {
            command: Command::Del,
            ..*inv
        };
        let mut errors = Vec::new();
        for entry in list.plugins.iter().take(count).rev() {
            let t = conflist::plugin_type(entry);
            let stdin = exec::stdin_config(entry, &list.name, &list.cni_version, prev, inv.runtime);
            if let Err(e) = exec::run(t, stdin, &del).await {
                errors.push(e);
            }
        }
        PluginError::collect(errors)
    }

    /// CHECK of one attachment against its cached result (CNI 0.4.0 and later, unless
    /// the conflist disables it).
    pub async fn check(
        &self,
        env: HostEnv<'_>,
        container_id: &str,
        ifname: &str,
        netns: &str,
    ) -> Result<(), PluginError> {
        let list = &self.opts.conflist;
        if !list.supports_check() || list.disable_check {
            return Ok(());
        }
        let record =
            self.cache(env)
                .load(container_id, ifname)?
                .ok_or_else(|| PluginError::Cni {
                    plugin: list.name.clone(),
                    command: "CHECK",
                    message: format!("no ADD result recorded for {container_id} {ifname}"),
                })?;
        let inv = Invocation {
            command: Command::Check,
            container_id,
            netns: Some(netns),
            ifname,
            cni_path: &self.opts.cni_path,
            args: None,
            runtime: &record.runtime_config,
        };
        for entry in &list.plugins {
            let t = conflist::plugin_type(entry);
            let stdin = exec::stdin_config(
                entry,
                &list.name,
                &list.cni_version,
                Some(&record.result),
                &record.runtime_config,
            );
            exec::run(t, stdin, &inv).await?;
        }
        Ok(())
    }
}

/// `CNI_ARGS` for a MAC, which bridge and tuning read. `IgnoreUnknown` keeps plugins
/// that do not know the key from failing. Static addresses go as the `ips` capability.
fn cni_args(att: &Attachment) -> Option<String> {
    let mac = att.mac?;
    let text: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("IgnoreUnknown=1;MAC={}", text.join(":")))
}

fn no_capability(capability: &str, what: &str) -> PluginError {
    PluginError::Unsupported {
        plugin: NAME,
        reason: format!(
            "{what} needs a conflist plugin with the {capability:?} capability, and this \
             conflist has none"
        ),
    }
}
