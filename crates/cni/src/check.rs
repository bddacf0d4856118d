//! CHECK (0.4.0 on): the container's interface, its addresses, the reservations behind
//! them and the host end on the bridge are as `prevResult` says.

use container_ipam::Ipam;
use container_netlink::Netlink;

use crate::add::open_netns;
use crate::conf::NetConf;
use crate::env::Env;
use crate::error::{CniError, CHECK_FAILED, INCOMPATIBLE_VERSION, INVALID_CONFIG};
use crate::links::host_veth_name;
use crate::result::check_prev;
use crate::version::Version;

fn failed(msg: String) -> CniError {
    CniError::new(CHECK_FAILED, msg)
}

pub async fn check(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    if conf.version < Version::V040 {
        return Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!("CHECK is not part of CNI {}", conf.version.as_str()),
        ));
    }
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::new(INVALID_CONFIG, "CHECK needs a prevResult"))?;
    let prev = check_prev(prev, conf.version)?;
    let ns = open_netns(env.netns.as_deref().unwrap_or("".as_ref()))?;
    let inside = Netlink::connect_in(&ns)?;
    let link = inside.link_by_name(&env.ifname).await?.ok_or_else(|| {
        failed(format!(
            "interface {} is missing from the netns",
            env.ifname
        ))
    })?;
    let have = inside.addresses(link.index).await?;
    let ipam = Ipam::open_short_lived(&conf.dir(), conf.ranges.clone())?;
    let reserved = ipam.reservations()?;
    for (address, iface) in &prev.ips {
        if iface.as_deref().is_some_and(|i| i != env.ifname) {
            continue;
        }
        if !have.iter().any(|h| h.address == *address) {
            return Err(failed(format!("{address} is not on {}", env.ifname)));
        }
        let held = reserved.iter().any(|r| {
            r.ip == address.addr() && r.container_id == env.container_id && r.ifname == env.ifname
        });
        if !held {
            return Err(failed(format!(
                "{} is not reserved for {}/{} in {}",
                address.addr(),
                env.container_id,
                env.ifname,
                conf.dir().display()
            )));
        }
    }
    let host = Netlink::connect()?;
    let host_name = host_veth_name(&env.container_id, &env.ifname);
    let host_end = host
        .link_by_name(&host_name)
        .await?
        .ok_or_else(|| failed(format!("host end {host_name} is missing")))?;
    let bridge = host
        .link_by_name(&conf.bridge)
        .await?
        .ok_or_else(|| failed(format!("bridge {} is missing", conf.bridge)))?;
    if host_end.master != Some(bridge.index) {
        return Err(failed(format!(
            "{host_name} is not on bridge {}",
            conf.bridge
        )));
    }
    Ok(())
}
