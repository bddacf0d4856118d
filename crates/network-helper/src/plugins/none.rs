//! `none`: loopback only. No network-wide resources, no addresses.

use std::collections::HashSet;
use std::net::IpAddr;

use container_ipam::Allocated;
use container_netlink::Netlink;
use container_protocol::network::{
    Allocation, Attachment, PluginData, PluginKind, ReservationInfo,
};
use container_store::NetworkConfig;
use ipnet::IpNet;

use super::options::Opts;
use super::{no_static_addresses, HostDevice, HostEnv, LinkState, NetworkPlugin};
use crate::error::PluginError;

const NAME: PluginKind = PluginKind::None;

pub struct NoneNet;

impl NetworkPlugin for NoneNet {
    const KIND: PluginKind = NAME;
    const USES_IPAM: bool = false;
    const NEEDS_NETNS: bool = false;

    fn validate(config: &NetworkConfig) -> Result<(), PluginError> {
        Opts::new(NAME, &config.options, &[]).map(drop)
    }

    async fn check_host(_config: &NetworkConfig, _netlink: &Netlink) -> Result<(), PluginError> {
        Ok(())
    }

    fn new(_config: &NetworkConfig) -> Result<NoneNet, PluginError> {
        Ok(NoneNet)
    }

    fn publishes_ports(&self) -> bool {
        false
    }

    fn takes_static_addresses(&self) -> bool {
        false
    }

    fn serves_dns(&self) -> bool {
        false
    }

    fn host_device(&self) -> Option<HostDevice<'_>> {
        None
    }

    fn declared_subnets(&self) -> Vec<IpNet> {
        Vec::new()
    }

    async fn setup(&self, _env: HostEnv<'_>) -> Result<(), PluginError> {
        Ok(())
    }

    async fn teardown(&self, _env: HostEnv<'_>) -> Result<(), PluginError> {
        Ok(())
    }

    async fn allocate(
        &self,
        _env: HostEnv<'_>,
        att: &Attachment,
        _addrs: &[Allocated],
    ) -> Result<Allocation, PluginError> {
        no_static_addresses(NAME, att)?;
        Ok(Allocation {
            network: att.network.clone(),
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

    async fn state(&self, _env: HostEnv<'_>) -> Result<LinkState, PluginError> {
        Ok(LinkState::default())
    }
}
