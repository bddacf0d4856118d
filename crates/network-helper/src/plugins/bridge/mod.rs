//! `bridge`: a Linux bridge per network holding the gateway address(es), a veth per
//! attachment (built by the sandbox), forwarding and masquerade in nftables.

use container_firewall::{Firewall, NetworkRules, PortForward, Protocol};
use container_ipam::Allocated;
use container_netlink::Netlink;
use container_protocol::network::{
    Allocation, Attachment, PluginData, PluginKind, PortMap, PortProtocol, ReservationInfo,
};
use container_store::NetworkConfig;
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;

mod made;

use made::Made;

use super::options::Opts;
use super::{gateway_addresses, ipam_allocation, HostDevice, HostEnv, LinkState, NetworkPlugin};
use crate::error::PluginError;
use crate::{mac, sysctl};

const NAME: PluginKind = PluginKind::Bridge;
const KNOWN: &[&str] = &["bridge", "mtu"];
const PREFIX: &str = "cbr-";
/// Ids up to this long are used as they are: `cbr-` + 10 = 14 bytes, one short of the
/// limit, so a verbatim name can never equal a hashed one (always exactly 15).
const VERBATIM_MAX: usize = 10;
const HASHED_KEEP: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub bridge: String,
    /// The name came from `--opt bridge=`: the link may be the user's.
    pub named: bool,
    pub mtu: Option<u32>,
}

impl Options {
    pub fn parse(config: &NetworkConfig) -> Result<Options, PluginError> {
        let opts = Opts::new(NAME, &config.options, KNOWN)?;
        let bridge = match opts.get("bridge") {
            Some(name) => {
                opts.ifname("bridge", name)?;
                name.to_string()
            }
            None => derive_name(&config.id),
        };
        Ok(Options {
            bridge,
            named: opts.get("bridge").is_some(),
            mtu: opts.mtu(config.subnet_v6.is_some())?,
        })
    }
}

/// Whether `name` has the shape of a derived bridge name (`cbr-…`), for finding bridges
/// left by removed networks.
pub fn is_derived_name(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// The bridge name of a network without `--opt bridge=`: `cbr-<id>` for ids of at most
/// 10 bytes, else `cbr-` + the id's first 5 bytes + 6 hex digits of FNV-1a(id), exactly
/// 15 bytes. Deterministic, so a restarted helper finds its bridge again.
pub fn derive_name(id: &str) -> String {
    if id.len() <= VERBATIM_MAX {
        return format!("{PREFIX}{id}");
    }
    // Ids are ASCII ([a-z0-9._-]); taking chars keeps this total for any input.
    let head: String = id.chars().take(HASHED_KEEP).collect();
    let hash = container_netlink::name_hash(id.bytes()) & 0xff_ffff;
    let mut name = format!("{PREFIX}{head}{hash:06x}");
    while name.len() > 15 {
        name.remove(PREFIX.len());
    }
    name
}

async fn check_host(opts: &Options, netlink: &Netlink) -> Result<(), PluginError> {
    match netlink.link_by_name(&opts.bridge).await? {
        Some(link) if link.kind.as_deref() != Some("bridge") => Err(PluginError::NotABridge {
            name: link.name,
            kind: link.kind.unwrap_or_else(|| "device".into()),
        }),
        _ => Ok(()),
    }
}

pub struct Bridge {
    id: String,
    opts: Options,
    /// Gateway addresses with their subnet prefix: what the bridge carries.
    gateways: Vec<IpNet>,
    internal: bool,
    /// A name server on the gateways (not `--disable-dns`).
    dns: bool,
    firewall: Firewall,
}

impl NetworkPlugin for Bridge {
    const KIND: PluginKind = NAME;
    const USES_IPAM: bool = true;
    const NEEDS_NETNS: bool = false;

    fn validate(config: &NetworkConfig) -> Result<(), PluginError> {
        Options::parse(config).map(drop)
    }

    async fn check_host(config: &NetworkConfig, netlink: &Netlink) -> Result<(), PluginError> {
        check_host(&Options::parse(config)?, netlink).await
    }

    fn new(config: &NetworkConfig) -> Result<Bridge, PluginError> {
        let gateways = gateway_addresses(config);
        if gateways.is_empty() {
            return Err(PluginError::InvalidConfig {
                plugin: NAME,
                reason: "a bridge network needs a subnet".into(),
            });
        }
        Ok(Bridge {
            id: config.id.clone(),
            opts: Options::parse(config)?,
            gateways,
            internal: config.internal,
            dns: !config.disable_dns,
            firewall: Firewall::new(),
        })
    }

    fn publishes_ports(&self) -> bool {
        true
    }

    fn takes_static_addresses(&self) -> bool {
        true
    }

    fn serves_dns(&self) -> bool {
        self.dns
    }

    fn host_device(&self) -> Option<HostDevice<'_>> {
        Some(HostDevice::Bridge(&self.opts.bridge))
    }

    fn declared_subnets(&self) -> Vec<IpNet> {
        Vec::new()
    }

    async fn setup(&self, env: HostEnv<'_>) -> Result<(), PluginError> {
        let nl = env.netlink;
        let name = &self.opts.bridge;
        check_host(&self.opts, nl).await?;
        let mut made = if self.opts.named {
            Made::load(env.paths, &self.id)?
        } else {
            Made::default()
        };
        let index = match nl.link_by_name(name).await? {
            Some(link) => {
                if let Some(mtu) = self.opts.mtu.filter(|m| *m != link.mtu) {
                    nl.set_mtu(link.index, mtu).await?;
                }
                link.index
            }
            None => {
                // Recorded before the create, so a crash between the two still leaves the
                // bridge known as ours; undone if the create fails.
                if self.opts.named {
                    made.bridge = true;
                    made.save(env.paths, &self.id)?;
                }
                let owner = container_netlink::Owner::Network {
                    id: self.id.clone(),
                }
                .alias();
                match nl
                    .create_owned_bridge(name, self.opts.mtu, Some(&owner))
                    .await
                {
                    Ok(index) => {
                        // A bridge whose MAC was never set takes its smallest port's,
                        // so the gateway's MAC would change as containers come and go
                        // and every neighbour's cache entry for it go wrong until it
                        // is probed again (seconds without the gateway: its name
                        // server, its routes). Set once, it stays.
                        let gw = self.gateways.first().map(|g| g.addr());
                        nl.set_mac(index, mac::generate(gw)).await?;
                        index
                    }
                    // Another setup raced us; what matters is that it is there now.
                    Err(e) if e.is_exists() => match nl.link_by_name(name).await? {
                        Some(link) => link.index,
                        None => return Err(e.into()),
                    },
                    Err(e) => {
                        if self.opts.named {
                            made.bridge = false;
                            if let Err(undo) = made.save(env.paths, &self.id) {
                                tracing::warn!(bridge = %name, "undo: {undo}");
                            }
                        }
                        return Err(e.into());
                    }
                }
            }
        };
        let have: Vec<IpNet> = nl
            .addresses(index)
            .await?
            .into_iter()
            .map(|a| a.address)
            .collect();
        for gw in &self.gateways {
            if have.contains(gw) {
                continue;
            }
            // On a user's bridge, each address is recorded before it is added, so that
            // teardown takes off what we put on and nothing else.
            if self.opts.named && !made.bridge && !made.addresses.contains(gw) {
                made.addresses.push(*gw);
                made.save(env.paths, &self.id)?;
            }
            match nl.add_address_nodad(index, *gw).await {
                Err(e) if !e.is_exists() => return Err(e.into()),
                _ => {}
            }
        }
        nl.set_up(index).await?;
        self.sysctls()?;
        let rules = NetworkRules {
            id: self.id.clone(),
            bridge: name.clone(),
            subnets: self.gateways.iter().map(IpNet::trunc).collect(),
            internal: self.internal,
        };
        let fw = self.firewall.clone();
        blocking("nftables setup", move || fw.setup_network(&rules)).await?;
        Ok(())
    }

    async fn teardown(&self, env: HostEnv<'_>) -> Result<(), PluginError> {
        let mut errors = Vec::new();
        let fw = self.firewall.clone();
        let id = self.id.clone();
        if let Err(e) = blocking("nftables teardown", move || fw.teardown_network(&id)).await {
            errors.push(e);
        }
        // Only what we made: a user's bridge (`--opt bridge=` naming a link that was
        // there before) stays, less the gateway addresses setup put on it; a link of
        // another kind under this name stays whole.
        match self.take_down(env).await {
            Ok(()) => {
                // Only once that is done: a teardown that failed is retried with the
                // record still saying what is ours.
                if errors.is_empty() {
                    if let Err(e) = Made::remove(env.paths, &self.id) {
                        errors.push(e);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
        PluginError::collect(errors)
    }

    async fn allocate(
        &self,
        _env: HostEnv<'_>,
        att: &Attachment,
        addrs: &[Allocated],
    ) -> Result<Allocation, PluginError> {
        let mut alloc = ipam_allocation(
            att,
            addrs,
            self.internal,
            PluginData::Bridge {
                bridge: self.opts.bridge.clone(),
            },
        );
        // A fixed MAC keeps the bridge's forwarding table and the neighbours' caches
        // stable if the sandbox recreates the veth.
        alloc.mac = Some(
            att.mac
                .unwrap_or_else(|| mac::generate(addrs.first().map(|a| a.address.addr()))),
        );
        alloc.mtu = self.opts.mtu;
        if self.dns {
            // The network's name server, on the gateways of the families it has.
            alloc.dns = self
                .gateways
                .iter()
                .map(|g| g.addr())
                .filter(|gw| {
                    alloc
                        .addresses
                        .iter()
                        .any(|a| a.addr().is_ipv4() == gw.is_ipv4())
                })
                .collect();
        }
        if !att.ports.is_empty() {
            self.publish(&att.container_id, &att.ports, &alloc).await?;
        }
        Ok(alloc)
    }

    async fn release(
        &self,
        _env: HostEnv<'_>,
        container_id: &str,
        _ifname: &str,
        _netns: Option<&str>,
    ) -> Result<Vec<IpAddr>, PluginError> {
        self.unpublish(container_id).await.map(|()| Vec::new())
    }

    /// Nothing beyond IPAM to collect: forwards go with the reservations the service's
    /// IPAM GC releases.
    async fn gc(
        &self,
        _env: HostEnv<'_>,
        _live: &HashSet<(String, String)>,
    ) -> Result<Vec<ReservationInfo>, PluginError> {
        Ok(Vec::new())
    }

    fn reservations(&self, _env: HostEnv<'_>) -> Result<Vec<ReservationInfo>, PluginError> {
        Ok(Vec::new())
    }

    async fn state(&self, env: HostEnv<'_>) -> Result<LinkState, PluginError> {
        let link = env.netlink.link_by_name(&self.opts.bridge).await?;
        Ok(LinkState {
            link: Some(self.opts.bridge.clone()),
            up: link.map(|l| l.up),
        })
    }
}

impl Bridge {
    /// Tests point the firewall at their own table.
    pub fn with_firewall(mut self, firewall: Firewall) -> Self {
        self.firewall = firewall;
        self
    }

    pub fn bridge(&self) -> &str {
        &self.opts.bridge
    }

    /// Whether the bridge is the runtime's to remove. A derived name (`cbr-…`) always
    /// is: nobody else picks it. A name given by `--opt bridge=` is only when setup
    /// created the link, as its record ([`Made`]) says.
    pub fn created_by_us(&self, env: HostEnv<'_>) -> Result<bool, PluginError> {
        Ok(!self.opts.named || Made::load(env.paths, &self.id)?.bridge)
    }

    /// Deletes the bridge if it is ours, else takes off the addresses setup added.
    async fn take_down(&self, env: HostEnv<'_>) -> Result<(), PluginError> {
        let nl = env.netlink;
        let Some(link) = nl.link_by_name(&self.opts.bridge).await? else {
            return Ok(());
        };
        if link.kind.as_deref() != Some("bridge") {
            return Ok(());
        }
        if self.created_by_us(env)? {
            nl.delete_link_by_name(&self.opts.bridge).await?;
            return Ok(());
        }
        tracing::info!(bridge = %self.opts.bridge, "bridge was there before the network: left in place");
        let mut errors = Vec::new();
        for net in Made::load(env.paths, &self.id)?.addresses {
            match nl.del_address(link.index, net).await {
                // Gone already (a user, or an earlier teardown that stopped later).
                Err(e) if e.errno() == Some(libc_eaddrnotavail()) => {}
                Err(e) => errors.push(e.into()),
                Ok(()) => {}
            }
        }
        PluginError::collect(errors)
    }

    fn sysctls(&self) -> Result<(), PluginError> {
        // Published ports reached via 127.0.0.1 are DNATed to the bridge: the kernel
        // drops such martians unless route_localnet allows them.
        if self.gateways.iter().any(|g| g.addr().is_ipv4()) {
            sysctl::set(
                &format!("net/ipv4/conf/{}/route_localnet", self.opts.bridge),
                "1",
            )?;
            sysctl::set("net/ipv4/ip_forward", "1")?;
        }
        if self.gateways.iter().any(|g| g.addr().is_ipv6()) {
            sysctl::set("net/ipv6/conf/all/forwarding", "1")?;
        }
        Ok(())
    }

    /// Forwards the attachment's published ports to its addresses. One nftables
    /// transaction replaces the container's forwards on this network.
    async fn publish(
        &self,
        container_id: &str,
        ports: &[PortMap],
        alloc: &Allocation,
    ) -> Result<(), PluginError> {
        let addresses: Vec<IpAddr> = alloc.addresses.iter().map(|a| a.addr()).collect();
        let forwards = port_forwards(ports, &addresses)?;
        let (fw, id, container) = (
            self.firewall.clone(),
            self.id.clone(),
            container_id.to_string(),
        );
        blocking("nftables port forwards", move || {
            fw.add_port_forwards(&id, &container, &forwards)
        })
        .await
    }

    /// Removes a container's forwards on this network; a container with none is fine.
    async fn unpublish(&self, container_id: &str) -> Result<(), PluginError> {
        let (fw, id, container) = (
            self.firewall.clone(),
            self.id.clone(),
            container_id.to_string(),
        );
        blocking("nftables port forwards", move || {
            fw.remove_port_forwards(&id, &container)
        })
        .await
    }
}

fn libc_eaddrnotavail() -> i32 {
    nix::errno::Errno::EADDRNOTAVAIL as i32
}

/// The forwards of `ports` to a container with `addresses`. A port without a host
/// address is published on every family the container has (IPv4 and IPv6 on a
/// dual-stack network); one with a host address (or `0.0.0.0`, `::`) on its family.
fn port_forwards(ports: &[PortMap], addresses: &[IpAddr]) -> Result<Vec<PortForward>, PluginError> {
    let mut forwards = Vec::new();
    for p in ports {
        let targets: Vec<IpAddr> = match p.host_ip {
            None => {
                let v4 = addresses.iter().find(|a| a.is_ipv4());
                let v6 = addresses.iter().find(|a| a.is_ipv6());
                v4.into_iter().chain(v6).copied().collect()
            }
            Some(host) => addresses
                .iter()
                .find(|a| a.is_ipv4() == host.is_ipv4())
                .copied()
                .into_iter()
                .collect(),
        };
        if targets.is_empty() {
            let family = match p.host_ip {
                Some(IpAddr::V6(_)) => "an IPv6 address",
                Some(IpAddr::V4(_)) => "an IPv4 address",
                None => "an address",
            };
            return Err(PluginError::Unsupported {
                plugin: NAME,
                reason: format!(
                    "host port {} is published to {family}, and the container has none here",
                    p.host_port
                ),
            });
        }
        for container_ip in targets {
            forwards.push(PortForward {
                host_ip: p.host_ip,
                host_port: p.host_port,
                container_ip,
                container_port: p.container_port,
                protocol: match p.protocol {
                    PortProtocol::Tcp => Protocol::Tcp,
                    PortProtocol::Udp => Protocol::Udp,
                },
            });
        }
    }
    Ok(forwards)
}

/// Runs a blocking call (an `nft` process) off the runtime thread, so one slow
/// transaction does not hold up `info` or `state` on the helper's single thread.
pub(crate) async fn blocking<T, E>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, PluginError>
where
    T: Send + 'static,
    E: Into<PluginError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(Into::into),
        Err(e) => Err(PluginError::Task {
            what,
            message: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config(id: &str, options: &[(&str, &str)]) -> NetworkConfig {
        let options: BTreeMap<String, String> = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        NetworkConfig {
            version: 1,
            id: id.into(),
            plugin: NAME,
            subnet: Some("10.1.0.0/24".parse().unwrap()),
            gateway: None,
            subnet_v6: None,
            gateway_v6: None,
            internal: false,
            labels: BTreeMap::new(),
            options,
            created: 0,
            builtin: false,
            disable_dns: false,
            removing: false,
        }
    }

    #[test]
    fn ports_without_a_host_address_go_to_every_family() {
        let port = |host_ip: Option<&str>| PortMap {
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port: 8080,
            container_port: 80,
            protocol: PortProtocol::Tcp,
        };
        let dual: Vec<IpAddr> = vec!["10.1.0.2".parse().unwrap(), "fd01::2".parse().unwrap()];
        let to = |ports: &[PortMap], addrs: &[IpAddr]| -> Vec<String> {
            port_forwards(ports, addrs)
                .unwrap()
                .iter()
                .map(|f| f.to_string())
                .collect()
        };
        assert_eq!(
            to(&[port(None)], &dual),
            ["tcp *:8080 -> 10.1.0.2:80", "tcp *:8080 -> [fd01::2]:80"]
        );
        assert_eq!(
            to(&[port(Some("fd99::1"))], &dual),
            ["tcp [fd99::1]:8080 -> [fd01::2]:80"]
        );
        assert_eq!(
            to(&[port(Some("0.0.0.0"))], &dual),
            ["tcp 0.0.0.0:8080 -> 10.1.0.2:80"]
        );
        assert_eq!(to(&[port(None)], &dual[..1]), ["tcp *:8080 -> 10.1.0.2:80"]);
        let err = port_forwards(&[port(Some("fd99::1"))], &dual[..1]).unwrap_err();
        assert!(err.to_string().contains("an IPv6 address"), "{err}");
    }

    #[test]
    fn derived_names() {
        assert_eq!(derive_name("n1"), "cbr-n1");
        assert_eq!(derive_name("abcdefghij"), "cbr-abcdefghij");
        let long = derive_name("abcdefghijk");
        assert_eq!(long.len(), 15);
        assert!(long.starts_with("cbr-abcde"));
        assert_eq!(long, derive_name("abcdefghijk"));
        assert_ne!(long, derive_name("abcdefghijl"));
        let very_long = "a".repeat(63);
        assert_eq!(derive_name(&very_long).len(), 15);
        for id in ["n1", "abcdefghijk", &very_long] {
            container_netlink::valid_ifname(&derive_name(id)).unwrap();
        }
    }

    #[test]
    fn options() {
        let o = Options::parse(&config("n1", &[("mtu", "1400")])).unwrap();
        assert_eq!(
            o,
            Options {
                bridge: "cbr-n1".into(),
                named: false,
                mtu: Some(1400)
            }
        );
        let e = Options::parse(&config("n1", &[("mtu", "67")])).unwrap_err();
        assert!(e.to_string().contains("\"67\""), "{e}");
        let e = Options::parse(&config("n1", &[("bridge", "a/b")])).unwrap_err();
        assert!(e.to_string().contains("\"a/b\""), "{e}");
        let e = Options::parse(&config("n1", &[("bridge", "sixteen-bytes-xx")])).unwrap_err();
        assert!(e.to_string().contains("15 bytes"), "{e}");
        let e = Options::parse(&config("n1", &[("color", "red")])).unwrap_err();
        assert!(
            e.to_string().contains("\"color\"") && e.to_string().contains("bridge"),
            "{e}"
        );
    }
}
