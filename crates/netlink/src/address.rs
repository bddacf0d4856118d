use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use rtnetlink::AddressMessageBuilder;

use crate::error::{Error, Result};
use crate::Netlink;

/// Address scope, as `ip addr` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrScope {
    Universe,
    Site,
    Link,
    Host,
    Nowhere,
    Other(u8),
}

impl From<AddressScope> for AddrScope {
    fn from(scope: AddressScope) -> Self {
        match scope {
            AddressScope::Universe => AddrScope::Universe,
            AddressScope::Site => AddrScope::Site,
            AddressScope::Link => AddrScope::Link,
            AddressScope::Host => AddrScope::Host,
            AddressScope::Nowhere => AddrScope::Nowhere,
            AddressScope::Other(v) => AddrScope::Other(v),
            _ => AddrScope::Other(u8::from(scope)),
        }
    }
}

/// One address on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressInfo {
    /// The link's own address with the prefix length of its subnet.
    pub address: IpNet,
    pub scope: AddrScope,
    /// Configured to stay (`IFA_F_PERMANENT`): not a SLAAC/DHCP-style address that
    /// expires. Kernel-made IPv6 link-local addresses are permanent too; tell them apart
    /// by `scope`.
    pub permanent: bool,
    /// Seconds the address stays valid; `None` for forever.
    pub valid_lifetime: Option<u32>,
    /// Raw `IFA_F_*` flags.
    pub flags: u32,
}

const INFINITY_LIFE_TIME: u32 = u32::MAX;

fn parse_address(msg: &AddressMessage) -> Option<AddressInfo> {
    let mut local = None;
    let mut peer = None;
    let mut flags = u32::from(msg.header.flags.bits());
    let mut valid_lifetime = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => peer = Some(*ip),
            // The 8-bit header field cannot carry newer flags; the attribute wins.
            AddressAttribute::Flags(f) => flags = f.bits(),
            AddressAttribute::CacheInfo(ci) if ci.ifa_valid != INFINITY_LIFE_TIME => {
                valid_lifetime = Some(ci.ifa_valid)
            }
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    // point-to-point links and equal to it otherwise. IPv6 often sends only IFA_ADDRESS.
    let ip = local.or(peer)?;
    let address = IpNet::new(ip, msg.header.prefix_len).ok()?;
    Some(AddressInfo {
        address,
        scope: msg.header.scope.into(),
        permanent: AddressFlags::from_bits_retain(flags).contains(AddressFlags::Permanent),
        valid_lifetime,
        flags,
    })
}

fn address_message(index: u32, net: IpNet) -> AddressMessage {
    match net.addr() {
        // The builder also sets the broadcast address for IPv4 prefixes shorter than
        // /31, as `ip addr add ... brd +` would.
        IpAddr::V4(ip) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(ip, net.prefix_len())
            .build(),
        IpAddr::V6(ip) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(ip, net.prefix_len())
            .build(),
    }
}

impl Netlink {
    /// Addresses on one link, IPv4 and IPv6.
    pub async fn addresses(&self, index: u32) -> Result<Vec<AddressInfo>> {
        let msgs: Vec<AddressMessage> = match self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
        {
            Ok(msgs) => msgs,
            Err(e) => {
                return Err(Error::netlink(
                    self.link_label(index).await,
                    "list addresses",
                    e,
                ))
            }
        };
        Ok(msgs.iter().filter_map(parse_address).collect())
    }

    /// Every address of every link in the namespace: what "a local address" means.
    pub async fn all_addresses(&self) -> Result<Vec<AddressInfo>> {
        let msgs: Vec<AddressMessage> =
            self.handle
                .address()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| Error::netlink(self.label.clone(), "list addresses", e))?;
        Ok(msgs.iter().filter_map(parse_address).collect())
    }

    /// Adds `net` (address and prefix length, e.g. `10.88.0.2/16`) to a link.
    pub async fn add_address(&self, index: u32, net: IpNet) -> Result<()> {
        self.add_address_flags(index, net, AddressFlags::empty())
            .await
    }

    /// Adds an address the runtime's IPAM handed out. IPv6 ones skip duplicate address
    /// detection (`IFA_F_NODAD`), as netavark's do: IPAM already made the address unique
    /// on the network, and with DAD it would be tentative, unusable, for about a second
    /// after the interface comes up. IPv4 has no DAD in the kernel.
    pub async fn add_address_nodad(&self, index: u32, net: IpNet) -> Result<()> {
        let flags = match net {
            IpNet::V4(_) => AddressFlags::empty(),
            IpNet::V6(_) => AddressFlags::Nodad,
        };
        self.add_address_flags(index, net, flags).await
    }

    async fn add_address_flags(&self, index: u32, net: IpNet, flags: AddressFlags) -> Result<()> {
        let mut req = self
            .handle
            .address()
            .add(index, net.addr(), net.prefix_len());
        if !flags.is_empty() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(flags));
        }
        if let Err(e) = req.execute().await {
            let object = format!("address {net} on {}", self.link_label(index).await);
            return Err(Error::netlink(object, "add", e));
        }
        Ok(())
    }

    pub async fn del_address(&self, index: u32, net: IpNet) -> Result<()> {
        let req = self.handle.address().del(address_message(index, net));
        if let Err(e) = req.execute().await {
            let object = format!("address {net} on {}", self.link_label(index).await);
            return Err(Error::netlink(object, "delete", e));
        }
        Ok(())
    }
}
