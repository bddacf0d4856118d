//! `ipMasq`: the project's nftables layout (crates/firewall) for the bridge, in the
//! shared `inet container` table under the chains of `cni-<network>`: masquerade of
//! the subnets' traffic leaving by another interface, forwarding to and from the
//! bridge. Per network, as the bridge is; it stays when pods go, like the bridge.

use container_firewall::{Firewall, NetworkRules};
use container_ipam::Allocated;

use crate::conf::NetConf;
use crate::error::{CniError, INVALID_CONFIG, KERNEL};

pub fn rules_id(conf: &NetConf) -> Result<String, CniError> {
    let id = format!("cni-{}", conf.name);
    let ok = id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !ok {
        return Err(CniError::new(
            INVALID_CONFIG,
            format!(
                "ipMasq needs a network name of [a-z0-9._-], at most 59 bytes; {:?} is not",
                conf.name
            ),
        ));
    }
    Ok(id)
}

pub fn setup(conf: &NetConf, allocated: &[Allocated]) -> Result<(), CniError> {
    let rules = NetworkRules {
        id: rules_id(conf)?,
        bridge: conf.bridge.clone(),
        subnets: allocated.iter().map(|a| a.address.trunc()).collect(),
        internal: false,
    };
    Firewall::new()
        .setup_network(&rules)
        .map_err(|e| CniError::new(KERNEL, "ipMasq: nftables rules failed").details(e.to_string()))
}
