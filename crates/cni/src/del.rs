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
                    unlink(&inside, path, &env.ifname).await?;
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

/// The argument that makes `container-cni` the unlinking child of a DEL (a CNI plugin
/// is called with no arguments, so it cannot be mistaken for a call).
pub const UNLINK_ARG: &str = "--unlink-in-netns";

/// Deletes the pod's interface (and with it the host end of its pair), returning as
/// soon as the kernel has taken both out of their namespaces.
///
/// The delete itself is done by a child of ours: the kernel answers an RTM_DELLINK only
/// after `netdev_run_todo`'s RCU barrier (13–20 ms here, the whole of a DEL's time),
/// long after the links are unlisted, which happens first, under the rtnl lock. The
/// child waits for that barrier after we have gone; its standard streams are
/// /dev/null, so the runtime reading our stdout does not wait for it. If the child
/// cannot be started, or ends before the link has gone, the delete is done here.
async fn unlink(inside: &Netlink, netns: &std::path::Path, ifname: &str) -> Result<(), CniError> {
    use std::process::{Command, Stdio};
    if inside.link_by_name(ifname).await?.is_none() {
        return Ok(());
    }
    let child = Command::new("/proc/self/exe")
        .arg(UNLINK_ARG)
        .arg(netns)
        .arg(ifname)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        inside.delete_link_by_name(ifname).await?;
        return Ok(());
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if inside.link_by_name(ifname).await?.is_none() {
            // Left to finish on its own: reaped by our reaper when we exit.
            return Ok(());
        }
        let ended = matches!(child.try_wait(), Ok(Some(_)));
        if ended || std::time::Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            inside.delete_link_by_name(ifname).await?;
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_micros(300)).await;
    }
}

/// The unlinking child (`UNLINK_ARG NETNS IFNAME`): deletes the link and waits for
/// the kernel's answer, which is all it is for.
pub fn unlink_child(args: &[String]) -> std::process::ExitCode {
    let [netns, ifname] = args else {
        return std::process::ExitCode::FAILURE;
    };
    let done = (|| {
        let ns = container_netlink::NetNs::open(std::path::Path::new(netns)).ok()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let nl = Netlink::connect_in(&ns).ok()?;
            nl.delete_link_by_name(ifname).await.ok()
        })
    })();
    if done.is_some() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
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
