//! The host side: the bridge, and the host ends of the veth pairs, which carry their
//! attachment in `IFLA_IFALIAS` so that GC can tell a leaked one (a SIGKILL mid-ADD)
//! from a live one without any record of its own.

use container_netlink::{LinkInfo, Netlink};

use crate::conf::NetConf;
use crate::error::{CniError, INVALID_CONFIG};

const ALIAS_PREFIX: &str = "container-cni/";

/// `cni` + 12 hex digits of a hash of (container id, ifname): 15 bytes, fixed for the
/// attachment so DEL finds it with no state, and apart from the network helper's
/// `veth…` ends.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    let hash = container_netlink::name_hash(container_id.bytes().chain([0]).chain(ifname.bytes()));
    format!("cni{:012x}", hash >> 16)
}

/// Whether `name` has the shape [`host_veth_name`] gives.
pub fn is_host_veth_name(name: &str) -> bool {
    name.len() == 15
        && name.starts_with("cni")
        && name[3..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `container-cni/<network>/<container id>/<ifname>`.
pub fn owner_alias(network: &str, container_id: &str, ifname: &str) -> String {
    format!("{ALIAS_PREFIX}{network}/{container_id}/{ifname}")
}

/// The (container id, ifname) a host end of `network` was made for.
pub fn parse_alias<'a>(network: &str, alias: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = alias.strip_prefix(ALIAS_PREFIX)?.strip_prefix(network)?;
    let rest = rest.strip_prefix('/')?;
    rest.rsplit_once('/')
}

/// The bridge, created (up, with the config's MTU) when missing. A link of that name
/// that is no bridge is refused. It outlives its pods, as the reference plugin's does.
pub async fn ensure_bridge(host: &Netlink, conf: &NetConf) -> Result<LinkInfo, CniError> {
    let link = match host.link_by_name(&conf.bridge).await? {
        Some(link) => link,
        None => match host.create_bridge(&conf.bridge, conf.mtu).await {
            Ok(_) => host.link_by_name(&conf.bridge).await?.ok_or_else(|| {
                CniError::new(
                    crate::error::KERNEL,
                    format!("bridge {} vanished", conf.bridge),
                )
            })?,
            // Another ADD made it first.
            Err(e) if e.is_exists() => host.link_by_name(&conf.bridge).await?.ok_or(e)?,
            Err(e) => return Err(e.into()),
        },
    };
    if link.kind.as_deref() != Some("bridge") {
        return Err(CniError::new(
            INVALID_CONFIG,
            format!(
                "link {} exists and is a {}, not a bridge",
                link.name,
                link.kind.as_deref().unwrap_or("device")
            ),
        ));
    }
    if !link.up {
        host.set_up(link.index).await?;
    }
    if conf.promisc {
        host.set_promisc(link.index, true).await?;
    }
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_fixed_short_and_apart() {
        let a = host_veth_name("c1", "eth0");
        assert_eq!(a.len(), 15);
        assert!(is_host_veth_name(&a));
        assert!(container_netlink::valid_ifname(&a).is_ok());
        assert_eq!(a, host_veth_name("c1", "eth0"));
        assert_ne!(a, host_veth_name("c1", "eth1"));
        assert_ne!(host_veth_name("ab", "c"), host_veth_name("a", "bc"));
        assert!(!is_host_veth_name("veth0123456789a"));
        assert!(!is_host_veth_name("cniABCDEF012345"));
    }

    #[test]
    fn aliases_name_their_network_and_attachment() {
        let alias = owner_alias("pods", "abc", "eth0");
        assert_eq!(parse_alias("pods", &alias), Some(("abc", "eth0")));
        assert_eq!(parse_alias("pod", &alias), None);
        assert_eq!(parse_alias("pods2", &alias), None);
        assert_eq!(parse_alias("pods", "container:abc:eth0"), None);
    }
}
