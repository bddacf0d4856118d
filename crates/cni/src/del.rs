//! DEL: idempotent. A netns or a link that is gone, or a reservation already released,
//! is success; every step is tried whatever the others did, and the first failure is
//! reported with the rest in its details.

use container_ipam::Ipam;
use container_netlink::Netlink;

use crate::add::open_netns;
use crate::conf::NetConf;
use crate::env::Env;
use crate::error::{CniError, UNKNOWN_CONTAINER};
use crate::links::host_veth_name;

pub async fn del(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let mut errors: Vec<CniError> = Vec::new();
    if let Some(path) = &env.netns {
        match open_netns(path) {
            Ok(ns) => {
                let r = async {
                    let inside = Netlink::connect_in(&ns)?;
                    inside.delete_link_by_name(&env.ifname).await?;
                    Ok::<(), CniError>(())
                };
                if let Err(e) = r.await {
                    errors.push(e);
                }
            }
            Err(e) if e.code == UNKNOWN_CONTAINER => {}
            Err(e) => errors.push(e),
        }
    }
    let host_name = host_veth_name(&env.container_id, &env.ifname);
    let r = async {
        Netlink::connect()?.delete_link_by_name(&host_name).await?;
        Ok::<(), CniError>(())
    };
    if let Err(e) = r.await {
        errors.push(e);
    }
    // A directory that was never made holds nothing to release; opening would make it.
    if conf.dir().is_dir() {
        let r = Ipam::open_short_lived(&conf.dir(), conf.ranges.clone())
            .and_then(|ipam| ipam.release(&env.container_id, &env.ifname));
        if let Err(e) = r {
            errors.push(e.into());
        }
    }
    first_of(errors)
}

/// The first error, the others' messages in its details.
pub fn first_of(errors: Vec<CniError>) -> Result<(), CniError> {
    let mut it = errors.into_iter();
    let Some(mut first) = it.next() else {
        return Ok(());
    };
    for e in it {
        first.details = format!("{}; also: {}: {}", first.details, e.msg, e.details);
    }
    Err(first)
}
