//! `macvlan`: containers get a macvlan on a host parent link; the network-wide resource
//! is only the parent, which must exist.

use container_ipam::Allocated;
use container_netlink::Netlink;
use container_protocol::network::{Allocation, Attachment, PluginData};
use container_store::NetworkConfig;

use super::options::Opts;
use super::{ipam_allocation, HostEnv, LinkState};
use crate::error::PluginError;

pub const NAME: &str = "macvlan";
const KNOWN: &[&str] = &["parent", "mode", "mtu"];
pub const MODES: &[&str] = &["bridge", "private", "vepa", "passthru"];
const DEFAULT_MODE: &str = "bridge";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub parent: String,
    pub mode: String,
    pub mtu: Option<u32>,
}

impl Options {
    pub fn parse(config: &NetworkConfig) -> Result<Options, PluginError> {
        let opts = Opts::new(NAME, &config.options, KNOWN)?;
        let parent = opts.required("parent")?;
        opts.ifname("parent", parent)?;
        let mode = opts.get("mode").unwrap_or(DEFAULT_MODE);
        if !MODES.contains(&mode) {
            return Err(opts.invalid("mode", mode, format!("must be one of {}", MODES.join(", "))));
        }
        Ok(Options {
            parent: parent.to_string(),
            mode: mode.to_string(),
            mtu: opts.mtu(config.subnet_v6.is_some())?,
        })
    }
}

pub async fn check_host(opts: &Options, netlink: &Netlink) -> Result<(), PluginError> {
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

impl Macvlan {
    pub fn new(config: &NetworkConfig) -> Result<Macvlan, PluginError> {
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

    pub async fn setup(&self, env: HostEnv<'_>) -> Result<(), PluginError> {
        check_host(&self.opts, env.netlink).await
    }

    pub async fn allocate(
        &self,
        env: HostEnv<'_>,
        att: &Attachment,
        addrs: &[Allocated],
    ) -> Result<Allocation, PluginError> {
        // The parent may have gone since setup (a NIC unplugged); say so now rather than
        // as an ENODEV from the sandbox.
        check_host(&self.opts, env.netlink).await?;
        let mut alloc = ipam_allocation(
            NAME,
            att,
            addrs,
            self.internal,
            PluginData::Macvlan {
                parent: self.opts.parent.clone(),
                mode: self.opts.mode.clone(),
            },
        );
        alloc.mtu = self.opts.mtu;
        Ok(alloc)
    }

    pub async fn state(&self, env: HostEnv<'_>) -> Result<LinkState, PluginError> {
        let link = env.netlink.link_by_name(&self.opts.parent).await?;
        Ok(LinkState {
            link: Some(self.opts.parent.clone()),
            up: link.map(|l| l.up),
        })
    }
}
