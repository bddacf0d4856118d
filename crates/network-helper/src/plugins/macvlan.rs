//! `macvlan`: containers get a macvlan on a host parent link; the network-wide resource
//! is only the parent, which must exist.

use container_ipam::Allocated;
use container_netlink::Netlink;
use std::collections::HashSet;
use std::net::IpAddr;

use container_protocol::network::{
    Allocation, Attachment, MacvlanMode, PluginData, PluginKind, ReservationInfo,
};
use container_store::NetworkConfig;
use ipnet::IpNet;

use super::options::Opts;
use super::{ipam_allocation, HostDevice, HostEnv, LinkState, NetworkPlugin};
use crate::error::PluginError;

const NAME: PluginKind = PluginKind::Macvlan;
const KNOWN: &[&str] = &["parent", "mode", "mtu"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub parent: String,
    pub mode: MacvlanMode,
    pub mtu: Option<u32>,
}

impl Options {
    pub fn parse(config: &NetworkConfig) -> Result<Options, PluginError> {
        let opts = Opts::new(NAME, &config.options, KNOWN)?;
        let parent = opts.required("parent")?;
        opts.ifname("parent", parent)?;
        let mode = match opts.get("mode") {
            None => MacvlanMode::default(),
            Some(name) => MacvlanMode::parse(name).ok_or_else(|| {
                let names: Vec<&str> = MacvlanMode::ALL.iter().map(|m| m.as_str()).collect();
                opts.invalid("mode", name, format!("must be one of {}", names.join(", ")))
            })?,
        };
        Ok(Options {
            parent: parent.to_string(),
            mode,
            mtu: opts.mtu(config.subnet_v6.is_some())?,
        })
    }
}

async fn check_host(opts: &Options, netlink: &Netlink) -> Result<(), PluginError> {
    match netlink.link_by_name(&opts.parent).await? {
        Some(_) => Ok(()),
        None => Err(PluginError::ParentMissing {
            parent: opts.parent.clone(),
        }),
    }
}

pub struct Macvlan {
    opts: Options,
    internal: bool,
}

impl NetworkPlugin for Macvlan {
    const KIND: PluginKind = NAME;
    const USES_IPAM: bool = true;
    const NEEDS_NETNS: bool = false;

    fn validate(config: &NetworkConfig) -> Result<(), PluginError> {
        Options::parse(config).map(drop)
    }

    async fn check_host(config: &NetworkConfig, netlink: &Netlink) -> Result<(), PluginError> {
        check_host(&Options::parse(config)?, netlink).await
    }

    fn new(config: &NetworkConfig) -> Result<Macvlan, PluginError> {
        if config.subnet.is_none() && config.subnet_v6.is_none() {
            return Err(PluginError::InvalidConfig {
                plugin: NAME,
                reason: "a macvlan network needs a subnet".into(),
            });
        }
        Ok(Macvlan {
            opts: Options::parse(config)?,
            internal: config.internal,
        })
    }

    /// No firewall of ours sees macvlan traffic.
    fn publishes_ports(&self) -> bool {
        false
    }

    fn takes_static_addresses(&self) -> bool {
        true
    }

    fn serves_dns(&self) -> bool {
        false
    }

    fn host_device(&self) -> Option<HostDevice<'_>> {
        Some(HostDevice::Parent(&self.opts.parent))
    }

    fn declared_subnets(&self) -> Vec<IpNet> {
        Vec::new()
    }

    async fn setup(&self, env: HostEnv<'_>) -> Result<(), PluginError> {
        check_host(&self.opts, env.netlink).await
    }

    /// The parent is the host's: nothing of ours to remove.
    async fn teardown(&self, _env: HostEnv<'_>) -> Result<(), PluginError> {
        Ok(())
    }

    async fn allocate(
        &self,
        env: HostEnv<'_>,
        att: &Attachment,
        addrs: &[Allocated],
    ) -> Result<Allocation, PluginError> {
        // The parent may have gone since setup (a NIC unplugged); say so now rather than
        // as an ENODEV from the sandbox.
        check_host(&self.opts, env.netlink).await?;
        let mut alloc = ipam_allocation(
            att,
            addrs,
            self.internal,
            PluginData::Macvlan {
                parent: self.opts.parent.clone(),
                mode: self.opts.mode,
            },
        );
        alloc.mtu = self.opts.mtu;
        Ok(alloc)
    }

    /// The macvlan lives in the container and dies with its namespace.
    async fn release(
        &self,
        _env: HostEnv<'_>,
        _container_id: &str,
        _ifname: &str,
        _netns: Option<&str>,
    ) -> Result<Vec<IpAddr>, PluginError> {
        Ok(Vec::new())
    }

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
        let link = env.netlink.link_by_name(&self.opts.parent).await?;
        Ok(LinkState {
            link: Some(self.opts.parent.clone()),
            up: link.map(|l| l.up),
        })
    }
}
