//! ADD: a veth pair whose peer is born in the container's netns, its host end on the
//! bridge, addresses from the shared IPAM, routes. Each step made is undone when a later
//! one fails (the host end, which takes its peer; then the reservation), so a failed ADD
//! leaves nothing; a SIGKILLed one leaves what GC finds (links by their alias,
//! reservations by their files).

use std::net::IpAddr;
use std::path::Path;

use container_ipam::{Allocated, Ipam};
use container_netlink::{NetNs, Netlink};
use ipnet::IpNet;
use serde_json::Value;

use crate::conf::{NetConf, Route};
use crate::env::Env;
use crate::error::{CniError, INTERFACE_EXISTS, KERNEL, UNKNOWN_CONTAINER};
use crate::links::{ensure_bridge, host_veth_name, owner_alias};
use crate::result::{check_prev, render, Interface, IpConfig, Outcome};

pub fn open_netns(path: &Path) -> Result<NetNs, CniError> {
    NetNs::open(path).map_err(|e| {
        let code = if e.is_not_found() {
            UNKNOWN_CONTAINER
        } else {
            KERNEL
        };
        CniError::new(code, format!("cannot open netns {}", path.display())).details(e.to_string())
    })
}

pub async fn add(env: &Env, conf: &NetConf) -> Result<Value, CniError> {
    if let Some(prev) = &conf.prev_result {
        check_prev(prev, conf.version)?;
    }
    let netns = env.netns.as_deref().unwrap_or(Path::new(""));
    let ns = open_netns(netns)?;
    let host = Netlink::connect()?;
    let inside = Netlink::connect_in(&ns)?;
    if inside.link_by_name(&env.ifname).await?.is_some() {
        return Err(CniError::new(
            INTERFACE_EXISTS,
            format!(
                "interface {} already exists in {}",
                env.ifname,
                netns.display()
            ),
        ));
    }
    let bridge = ensure_bridge(&host, conf).await?;
    let ipam = Ipam::open_short_lived(&conf.dir(), conf.ranges.clone())?;
    let mut requested: Vec<IpAddr> = env.args.ips.clone();
    requested.extend(&conf.static_ips);
    let allocated = ipam.allocate(&env.container_id, &env.ifname, &requested)?;

    let host_name = host_veth_name(&env.container_id, &env.ifname);
    match plumb(
        env, conf, &host, &inside, &ns, &bridge, &host_name, &allocated,
    )
    .await
    {
        Ok(out) => Ok(render(
            &out,
            conf.version,
            conf.prev_result.as_ref(),
            conf.dns.as_ref(),
        )),
        Err(mut e) => {
            let mut undo = Vec::new();
            if let Err(u) = host.delete_link_by_name(&host_name).await {
                undo.push(format!("delete {host_name}: {u}"));
            }
            if let Err(u) = ipam.release(&env.container_id, &env.ifname) {
                undo.push(format!("release addresses: {u}"));
            }
            if !undo.is_empty() {
                e.details = format!("{}; undo failed too: {}", e.details, undo.join("; "));
            }
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn plumb(
    env: &Env,
    conf: &NetConf,
    host: &Netlink,
    inside: &Netlink,
    ns: &NetNs,
    bridge: &container_netlink::LinkInfo,
    host_name: &str,
    allocated: &[Allocated],
) -> Result<Outcome, CniError> {
    let mtu = conf.mtu.unwrap_or(bridge.mtu);
    let mac = env.args.mac.or(conf.mac);
    let alias = owner_alias(&conf.name, &env.container_id, &env.ifname);
    let create =
        || host.create_owned_veth(host_name, &env.ifname, ns, Some(mtu), mac, Some(&alias));
    let host_index = match create().await {
        // A host end of this attachment whose peer is not in this netns (checked before):
        // left by a killed ADD whose netns lives on elsewhere. It is ours by its name.
        Err(e) if e.is_exists() => {
            host.delete_link_by_name(host_name).await?;
            create().await?
        }
        other => other?,
    };
    host.set_master(host_index, bridge.index).await?;
    if conf.hairpin {
        host.set_hairpin(host_index, true).await?;
    }
    host.set_up(host_index).await?;
    let host_link = host.link_by_index(host_index).await?;

    let link = inside
        .link_by_name(&env.ifname)
        .await?
        .ok_or_else(|| CniError::new(KERNEL, format!("{} vanished from the netns", env.ifname)))?;
    for a in allocated {
        inside.add_address_nodad(link.index, a.address).await?;
    }
    inside.set_up(link.index).await?;

    let gateway_of = |v4: bool| {
        allocated
            .iter()
            .filter_map(|a| a.gateway)
            .find(|g| g.is_ipv4() == v4)
    };
    let mut routes = Vec::new();
    for r in &conf.routes {
        let gw = r.gw.or_else(|| gateway_of(r.dst.addr().is_ipv4()));
        add_route(inside, r.dst, gw, link.index).await?;
        routes.push(r.clone());
    }
    if conf.is_default_gateway {
        for a in allocated {
            let Some(gw) = a.gateway else { continue };
            let dst = default_of(gw);
            if routes.iter().any(|r| r.dst == dst) {
                continue;
            }
            add_route(inside, dst, Some(gw), link.index).await?;
            routes.push(Route { dst, gw: Some(gw) });
        }
    }
    if conf.is_gateway {
        let have = host.addresses(bridge.index).await?;
        for a in allocated {
            let Some(gw) = a.gateway else { continue };
            let net = IpNet::new(gw, a.address.prefix_len())
                .map_err(|e| CniError::new(KERNEL, e.to_string()))?;
            if have.iter().any(|h| h.address.addr() == gw) {
                continue;
            }
            match host.add_address_nodad(bridge.index, net).await {
                Err(e) if !e.is_exists() => return Err(e.into()),
                _ => {}
            }
        }
        if allocated.iter().any(|a| a.address.addr().is_ipv4()) {
            crate::sysctl::enable("net/ipv4/ip_forward")?;
        }
        if allocated.iter().any(|a| a.address.addr().is_ipv6()) {
            crate::sysctl::enable("net/ipv6/conf/all/forwarding")?;
        }
    }
    if conf.ip_masq {
        crate::masq::setup(conf, allocated)?;
    }

    let mut out = Outcome::default();
    out.interfaces.push(Interface {
        name: bridge.name.clone(),
        mac: bridge.mac.unwrap_or_default(),
        mtu: None,
        sandbox: None,
    });
    out.interfaces.push(Interface {
        name: host_name.to_string(),
        mac: host_link.and_then(|l| l.mac).unwrap_or_default(),
        mtu: Some(mtu),
        sandbox: None,
    });
    out.interfaces.push(Interface {
        name: env.ifname.clone(),
        mac: link.mac.unwrap_or_default(),
        mtu: Some(mtu),
        sandbox: env.netns.as_ref().map(|p| p.display().to_string()),
    });
    out.ips = allocated
        .iter()
        .map(|a| IpConfig {
            address: a.address,
            gateway: a.gateway,
            interface: 2,
        })
        .collect();
    out.routes = routes;
    Ok(out)
}

fn default_of(gw: IpAddr) -> IpNet {
    match gw {
        IpAddr::V4(_) => IpNet::V4(Default::default()),
        IpAddr::V6(_) => IpNet::V6(Default::default()),
    }
}

async fn add_route(nl: &Netlink, dst: IpNet, gw: Option<IpAddr>, oif: u32) -> Result<(), CniError> {
    match nl.add_route(dst, gw, Some(oif)).await {
        Err(e) if !e.is_exists() => Err(e.into()),
        _ => Ok(()),
    }
}
