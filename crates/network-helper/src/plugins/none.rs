//! `none`: loopback only. No network-wide resources, no addresses.

use container_protocol::network::{Allocation, Attachment, PluginData};
use container_store::NetworkConfig;

use super::no_static_addresses;
use super::options::Opts;
use crate::error::PluginError;

pub const NAME: &str = "none";

pub struct Options;

impl Options {
    pub fn parse(config: &NetworkConfig) -> Result<Options, PluginError> {
        Opts::new(NAME, &config.options, &[])?;
        Ok(Options)
    }
}

pub struct NoneNet;

impl NoneNet {
    pub fn new(_config: &NetworkConfig) -> NoneNet {
        NoneNet
    }

    pub fn allocate(&self, att: &Attachment) -> Result<Allocation, PluginError> {
        no_static_addresses(NAME, att)?;
        Ok(Allocation {
            network: att.network.clone(),
            plugin: NAME.to_string(),
            container_id: att.container_id.clone(),
            ifname: att.ifname.clone(),
            addresses: Vec::new(),
            gateways: Vec::new(),
            routes: Vec::new(),
            mac: None,
            mtu: None,
            dns: Vec::new(),
            data: PluginData::None,
        })
    }
}
