//! GC and STATUS (1.1.0).
//!
//! GC releases every reservation in the network's directory, and deletes every host end
//! of this network (known by its alias), whose attachment is not in
//! `cni.dev/valid-attachments` (or the older `cni.dev/attachments`). It goes on past a
//! failure and reports them all at the end. Without either key it releases nothing: a
//! GC that cannot tell the live from the dead must not guess, and libcni always sends
//! the list (an empty one means "none is live").

use std::collections::HashSet;

use container_ipam::Ipam;
use container_netlink::Netlink;

use crate::conf::NetConf;
use crate::del::first_of;
use crate::error::{CniError, INCOMPATIBLE_VERSION, NOT_AVAILABLE};
use crate::links::{host_veth_name, is_host_veth_name, parse_alias};
use crate::version::Version;

fn needs_110(conf: &NetConf, verb: &str) -> Result<(), CniError> {
    if conf.version < Version::V110 {
        return Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!("{verb} is not part of CNI {}", conf.version.as_str()),
        ));
    }
    Ok(())
}

pub async fn gc(conf: &NetConf) -> Result<(), CniError> {
    needs_110(conf, "GC")?;
    let Some(valid) = &conf.valid_attachments else {
        eprintln!("container-cni: GC without cni.dev/valid-attachments: nothing released");
        return Ok(());
    };
    let live: HashSet<(String, String)> = valid
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let mut errors = Vec::new();
    if conf.dir().is_dir() {
        match Ipam::open_short_lived(&conf.dir(), conf.ranges.clone()).and_then(|i| i.gc(&live)) {
            Ok(released) => {
                for r in released {
                    eprintln!(
                        "container-cni: GC released {} of {}/{}",
                        r.ip, r.container_id, r.ifname
                    );
                }
            }
            Err(e) => errors.push(e.into()),
        }
    }
    if let Err(e) = gc_links(conf, &live).await {
        errors.push(e);
    }
    first_of(errors)
}

async fn gc_links(conf: &NetConf, live: &HashSet<(String, String)>) -> Result<(), CniError> {
    let host = Netlink::connect()?;
    let valid_names: HashSet<String> = live
        .iter()
        .map(|(id, ifname)| host_veth_name(id, ifname))
        .collect();
    let bridge = host.link_by_name(&conf.bridge).await?.map(|l| l.index);
    let mut errors = Vec::new();
    for link in host.links().await? {
        let stale = match link.alias.as_deref() {
            Some(alias) => match parse_alias(&conf.name, alias) {
                Some((id, ifname)) => !live.contains(&(id.to_string(), ifname.to_string())),
                // Another network's, or not ours at all.
                None => false,
            },
            // An ADD killed between the create and the alias (one netlink round trip):
            // our name's shape, on this network's bridge or on none yet.
            None => {
                is_host_veth_name(&link.name)
                    && (link.master.is_none() || link.master == bridge)
                    && !valid_names.contains(&link.name)
            }
        };
        if !stale {
            continue;
        }
        match host.delete_link(link.index).await {
            Ok(()) => eprintln!("container-cni: GC deleted {}", link.name),
            // Its peer's netns went meanwhile, and took it.
            Err(e) if e.is_not_found() => {}
            Err(e) => errors.push(e.into()),
        }
    }
    first_of(errors)
}

/// Ready when the network's IPAM directory can be opened (made, on a first call).
pub fn status(conf: &NetConf) -> Result<(), CniError> {
    needs_110(conf, "STATUS")?;
    Ipam::open_short_lived(&conf.dir(), conf.ranges.clone())
        .and_then(|i| i.reservations().map(drop))
        .map_err(|e| {
            CniError::new(
                NOT_AVAILABLE,
                format!("IPAM directory {} is not usable", conf.dir().display()),
            )
            .details(e.to_string())
        })
}
