use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
    RouteVia,
};
use rtnetlink::RouteMessageBuilder;

use crate::error::{Error, Result};
use crate::Netlink;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

/// A route of the main table (the one `ip route` shows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    pub dest: IpNet,
    /// `None` for on-link routes, and for multipath routes whose next hops this type
    /// does not carry.
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
}

fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

fn parse_route(msg: &RouteMessage) -> Option<RouteInfo> {
    let mut table = u32::from(msg.header.table);
    let mut dest = None;
    let mut gateway = None;
    let mut oif = None;
    for attr in &msg.attributes {
        match attr {
            // Tables above 255 only fit in the attribute.
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(addr) => dest = route_ip(addr),
            RouteAttribute::Gateway(addr) => gateway = route_ip(addr),
            RouteAttribute::Via(RouteVia::Inet(ip)) => gateway = Some(IpAddr::V4(*ip)),
            RouteAttribute::Via(RouteVia::Inet6(ip)) => gateway = Some(IpAddr::V6(*ip)),
            RouteAttribute::Oif(index) => oif = Some(*index),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    // No destination attribute means the default route.
    let dest = match (dest, msg.header.address_family) {
        (Some(ip), _) => ip,
        (None, netlink_packet_route::AddressFamily::Inet) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (None, netlink_packet_route::AddressFamily::Inet6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    Some(RouteInfo {
        dest: IpNet::new(dest, msg.header.destination_prefix_length).ok()?,
        gateway,
        oif,
    })
}

fn describe(dest: IpNet, gateway: Option<IpAddr>, oif_label: Option<&str>) -> String {
    let mut s = format!("route {dest}");
    if let Some(gw) = gateway {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(dev) = oif_label {
        s.push_str(&format!(" dev {dev}"));
    }
    s
}

fn quick_label(dest: IpNet, gateway: Option<IpAddr>, oif: Option<u32>) -> String {
    describe(dest, gateway, oif.map(|i| format!("index {i}")).as_deref())
}

fn route_message(
    object: &str,
    dest: IpNet,
    gateway: Option<IpAddr>,
    oif: Option<u32>,
) -> Result<RouteMessage> {
    if dest != dest.trunc() {
        return Err(Error::invalid(
            object,
            format!(
                "destination has host bits set (network is {})",
                dest.trunc()
            ),
        ));
    }
    if gateway.is_none() && oif.is_none() {
        return Err(Error::invalid(
            object,
            "needs a gateway or an output interface",
        ));
    }
    let mut msg = match (dest, gateway) {
        (IpNet::V4(d), gw) => {
            let mut b =
                RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(d.addr(), d.prefix_len());
            b = match gw {
                Some(IpAddr::V4(gw)) => b.gateway(gw),
                Some(IpAddr::V6(_)) => {
                    return Err(Error::invalid(object, "IPv6 gateway for an IPv4 route"))
                }
                // Directly connected, as `ip route add NET dev DEV` makes it.
                None => b.scope(RouteScope::Link),
            };
            b.build()
        }
        (IpNet::V6(d), gw) => {
            let mut b =
                RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(d.addr(), d.prefix_len());
            b = match gw {
                Some(IpAddr::V6(gw)) => b.gateway(gw),
                Some(IpAddr::V4(_)) => {
                    return Err(Error::invalid(object, "IPv4 gateway for an IPv6 route"))
                }
                None => b,
            };
            b.build()
        }
    };
    if let Some(index) = oif {
        msg.attributes.push(RouteAttribute::Oif(index));
    }
    Ok(msg)
}

impl Netlink {
    /// Adds a route to the main table. Needs a gateway, an output interface, or both.
    pub async fn add_route(
        &self,
        dest: IpNet,
        gateway: Option<IpAddr>,
        oif: Option<u32>,
    ) -> Result<()> {
        let msg = route_message(&quick_label(dest, gateway, oif), dest, gateway, oif)?;
        if let Err(e) = self.handle.route().add(msg).execute().await {
            let object = self.route_label(dest, gateway, oif).await;
            return Err(Error::netlink(object, "add", e));
        }
        Ok(())
    }

    /// Adds the default route of the gateway's family.
    pub async fn add_default_route(&self, gateway: IpAddr, oif: Option<u32>) -> Result<()> {
        let dest = match gateway {
            IpAddr::V4(_) => IpNet::V4(Default::default()),
            IpAddr::V6(_) => IpNet::V6(Default::default()),
        };
        self.add_route(dest, Some(gateway), oif).await
    }

    /// Deletes a main-table route matching destination, gateway and interface,
    /// whoever added it.
    pub async fn del_route(
        &self,
        dest: IpNet,
        gateway: Option<IpAddr>,
        oif: Option<u32>,
    ) -> Result<()> {
        let mut msg = route_message(&quick_label(dest, gateway, oif), dest, gateway, oif)?;
        // The kernel treats these values as wildcards when deleting; what the add
        // builder put there would only match routes this library made.
        msg.header.scope = RouteScope::NoWhere;
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.kind = RouteType::Unspec;
        if let Err(e) = self.handle.route().del(msg).execute().await {
            let object = self.route_label(dest, gateway, oif).await;
            return Err(Error::netlink(object, "delete", e));
        }
        Ok(())
    }

    /// Routes of the main table, e.g. to pick a subnet that no host route covers.
    pub async fn routes(&self, family: IpFamily) -> Result<Vec<RouteInfo>> {
        let req = match family {
            IpFamily::V4 => RouteMessageBuilder::<Ipv4Addr>::new().build(),
            IpFamily::V6 => RouteMessageBuilder::<Ipv6Addr>::new().build(),
        };
        let msgs: Vec<RouteMessage> = self
            .handle
            .route()
            .get(req)
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink(format!("routes in {}", self.label), "list", e))?;
        Ok(msgs.iter().filter_map(parse_route).collect())
    }

    async fn route_label(&self, dest: IpNet, gateway: Option<IpAddr>, oif: Option<u32>) -> String {
        let dev = match oif {
            Some(index) => Some(match self.link_by_index(index).await {
                Ok(Some(link)) => format!("{} (index {index})", link.name),
                _ => format!("index {index}"),
            }),
            None => None,
        };
        describe(dest, gateway, dev.as_deref())
    }
}
