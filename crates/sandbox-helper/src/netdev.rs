//! OCI `linux.netDevices` (seed 003): host network devices moved into the container's
//! namespace, optionally renamed, keeping MTU, MAC and their IP addresses.
//!
//! The kernel keeps MTU and MAC across a namespace move but drops addresses, so the
//! addresses are read before the move and put back after it, in both directions. Each
//! move is all-or-nothing per container: a failure returns every device already moved
//! to the host as it was.

use std::collections::HashSet;

use container_netlink::{AddrScope, LinkInfo, NetNs, Netlink};
use container_protocol::sandbox::{NetDeviceRecord, NetDeviceSpec};
use container_protocol::Failures;
use ipnet::IpNet;

use crate::interfaces::brief;

/// Capability number of CAP_NET_ADMIN (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum NetDevError {
    /// Refused before anything changed.
    #[error("net device {device}: {reason}")]
    Refused { device: String, reason: String },
    /// A kernel request failed.
    #[error("net device {device}: {step}: {}", brief(.source))]
    Step {
        device: String,
        step: String,
        #[source]
        source: container_netlink::Error,
    },
    /// Several devices failed in an operation that keeps going (give back, restore),
    /// or a step failed and putting earlier devices back failed too.
    #[error("{0}")]
    Several(Box<Failures<NetDevError>>),
}

fn refused(device: &str, reason: impl Into<String>) -> NetDevError {
    NetDevError::Refused {
        device: device.into(),
        reason: reason.into(),
    }
}

/// For `map_err`: wraps a netlink error with the device and step.
fn step(
    device: &str,
    step: impl Into<String>,
) -> impl FnOnce(container_netlink::Error) -> NetDevError {
    let device = device.to_string();
    let step = step.into();
    move |source| NetDevError::Step {
        device,
        step,
        source,
    }
}

/// One error for many: none, the one, or all of them.
fn collect(mut errors: Vec<NetDevError>) -> Result<(), NetDevError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(NetDevError::Several(Box::new(Failures {
            errors,
            undo: Vec::new(),
        }))),
    }
}

fn with_undo(error: NetDevError, undo: Vec<NetDevError>) -> NetDevError {
    if undo.is_empty() {
        return error;
    }
    let failed = Failures::with_undo(error, undo);
    tracing::warn!(%failed, "net device rollback failed");
    NetDevError::Several(Box::new(failed))
}

/// The name a device takes inside the container.
pub fn container_name(spec: &NetDeviceSpec) -> &str {
    spec.name.as_deref().unwrap_or(&spec.host_name)
}

/// Checks a container-side name as the kernel will: a valid interface name, or a
/// pattern ending in `%d` whose number the kernel picks (`dev_alloc_name`).
fn check_target(name: &str) -> Result<(), String> {
    if let Some(at) = name.find('%') {
        if &name[at..] != "%d" {
            return Err(format!(
                "invalid container-side name {name:?}: '%' is only allowed in a trailing %d"
            ));
        }
    }
    container_netlink::valid_ifname(name).map_err(|e| match e {
        container_netlink::Error::Invalid { reason, .. } => {
            format!("invalid container-side name {name:?}: {reason}")
        }
        other => other.to_string(),
    })
}

/// Whether a `/proc/<pid>/status` text grants `cap` in the effective set; `None` when
/// the text carries no readable `CapEff` line.
pub fn cap_effective(status: &str, cap: u32) -> Option<bool> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?
        .trim();
    let bits = u64::from_str_radix(hex, 16).ok()?;
    Some(cap < 64 && bits & (1u64 << cap) != 0)
}

/// Capabilities are per thread; the thread's own view is the one the kernel checks.
fn has_cap_net_admin() -> Result<bool, String> {
    let status = std::fs::read_to_string("/proc/thread-self/status")
        .map_err(|e| format!("read /proc/thread-self/status: {e}"))?;
    cap_effective(&status, CAP_NET_ADMIN)
        .ok_or_else(|| "no CapEff in /proc/thread-self/status".to_string())
}

/// Refuses, before anything moves, what the move would fail on or what would surprise:
/// a missing device, loopback, a device listed twice, a bad or taken container-side
/// name (`other_names` are the container's own interfaces, eth0… from networks), and a
/// caller without CAP_NET_ADMIN. Errors name the device.
pub async fn check(
    host: &Netlink,
    specs: &[NetDeviceSpec],
    other_names: &[String],
) -> Result<(), NetDevError> {
    let Some(first) = specs.first() else {
        return Ok(());
    };
    match has_cap_net_admin() {
        Ok(true) => {}
        Ok(false) => {
            return Err(refused(
                &first.host_name,
                "moving a device needs CAP_NET_ADMIN, which the caller lacks",
            ))
        }
        Err(reason) => return Err(refused(&first.host_name, reason)),
    }
    let mut devices = HashSet::new();
    let mut targets = HashSet::new();
    for spec in specs {
        let device = spec.host_name.as_str();
        if !devices.insert(device) {
            return Err(refused(device, "listed more than once"));
        }
        if let Err(e) = container_netlink::valid_ifname(device) {
            return Err(refused(device, format!("not a valid interface name: {e}")));
        }
        let target = container_name(spec);
        check_target(target).map_err(|reason| refused(device, reason))?;
        // A `%d` pattern cannot collide: the kernel picks a free number.
        if !target.contains('%') {
            if other_names.iter().any(|n| n == target) {
                return Err(refused(
                    device,
                    format!("container-side name {target} is taken by one of the container's network interfaces"),
                ));
            }
            if !targets.insert(target) {
                return Err(refused(
                    device,
                    format!("container-side name {target} is asked for by another device too"),
                ));
            }
        }
        let link = host
            .link_by_name(device)
            .await
            .map_err(step(device, "look up"))?
            .ok_or_else(|| refused(device, "no such device in the host namespace"))?;
        // Loopback is index 1 in every namespace, whatever it is called.
        if link.index == 1 || device == "lo" {
            return Err(refused(device, "loopback cannot be moved"));
        }
    }
    Ok(())
}

/// A device moved in, with what is needed to put it back as it was.
struct Moved {
    record: NetDeviceRecord,
    was_up: bool,
}

/// Moves each device into `ns` (renamed, addresses kept, up) and returns what was
/// recorded about them. All or nothing: if one fails, the ones before it go back to the
/// host as they were. Call [`check`] first.
pub async fn move_in(
    host: &Netlink,
    ns: &NetNs,
    inside: &Netlink,
    specs: &[NetDeviceSpec],
) -> Result<Vec<NetDeviceRecord>, NetDevError> {
    let Some(first) = specs.first() else {
        return Ok(Vec::new());
    };
    let same = host
        .netns()
        .id()
        .and_then(|h| ns.id().map(|c| h == c))
        .map_err(step(&first.host_name, "compare namespaces"))?;
    if same {
        return Err(refused(
            &first.host_name,
            "the container has no network namespace of its own",
        ));
    }
    let mut moved: Vec<Moved> = Vec::new();
    for spec in specs {
        match move_one(host, ns, inside, spec).await {
            Ok(m) => moved.push(m),
            Err(error) => {
                let mut undo = Vec::new();
                for m in moved.iter().rev() {
                    if let Err(e) = return_one(host, inside, &m.record, m.was_up).await {
                        undo.push(e);
                    }
                }
                return Err(with_undo(error, undo));
            }
        }
    }
    Ok(moved.into_iter().map(|m| m.record).collect())
}

/// The addresses a device keeps across the move: those configured to stay and reachable
/// beyond the link. Link-local ones the kernel makes again; expiring ones belong to
/// whatever daemon granted them.
fn kept_addresses(addrs: Vec<container_netlink::AddressInfo>) -> Vec<IpNet> {
    addrs
        .into_iter()
        .filter(|a| a.permanent && a.scope == AddrScope::Universe)
        .map(|a| a.address)
        .collect()
}

async fn move_one(
    host: &Netlink,
    ns: &NetNs,
    inside: &Netlink,
    spec: &NetDeviceSpec,
) -> Result<Moved, NetDevError> {
    let device = spec.host_name.as_str();
    let target = container_name(spec);
    let link = host
        .link_by_name(device)
        .await
        .map_err(step(device, "look up"))?
        .ok_or_else(|| refused(device, "no such device in the host namespace"))?;
    let addresses = kept_addresses(
        host.addresses(link.index)
            .await
            .map_err(step(device, "list addresses"))?,
    );
    let mut moved = Moved {
        record: NetDeviceRecord {
            host_name: device.to_string(),
            container_name: target.to_string(),
            mac: link.mac,
            mtu: link.mtu,
            addresses,
        },
        was_up: link.up,
    };
    // Down first, so nothing flows while the device is between namespaces.
    if link.up {
        host.set_down(link.index)
            .await
            .map_err(step(device, "set down"))?;
    }
    // One request moves and renames: the host name never needs to be free inside, the
    // container name never here.
    if let Err(e) = host.move_to_netns(link.index, ns, Some(target)).await {
        let error = step(device, format!("move into {} as {target}", ns.label()))(e);
        // The netlink layer brings a half-moved link back, but a move drops addresses.
        let undo = restore_in_host(host, &moved.record, moved.was_up).await;
        return Err(with_undo(error, undo.err().into_iter().collect()));
    }
    match settle_inside(inside, &link, &mut moved.record).await {
        Ok(()) => Ok(moved),
        Err(error) => {
            let undo = return_one(host, inside, &moved.record, moved.was_up).await;
            Err(with_undo(error, undo.err().into_iter().collect()))
        }
    }
}

/// Finds the moved device inside, records its final name (a `%d` pattern is resolved by
/// the kernel), puts its addresses back and sets it up.
async fn settle_inside(
    inside: &Netlink,
    before: &LinkInfo,
    record: &mut NetDeviceRecord,
) -> Result<(), NetDevError> {
    let device = record.host_name.clone();
    let link = if record.container_name.contains('%') {
        find_moved(inside, before)
            .await
            .map_err(step(&device, "find in the container"))?
    } else {
        inside
            .link_by_name(&record.container_name)
            .await
            .map_err(step(&device, "find in the container"))?
    };
    let link = link.ok_or_else(|| {
        refused(
            &device,
            format!(
                "moved, but not found in the container as {}",
                record.container_name
            ),
        )
    })?;
    record.container_name = link.name.clone();
    add_missing(inside, &link, &record.addresses, &device).await?;
    inside.set_up(link.index).await.map_err(step(
        &device,
        format!("set up in the container as {}", link.name),
    ))
}

/// A moved device keeps its index unless the namespace already uses it; its MAC always
/// stays, so that is what identifies it.
async fn find_moved(
    inside: &Netlink,
    before: &LinkInfo,
) -> container_netlink::Result<Option<LinkInfo>> {
    if let Some(link) = inside.link_by_index(before.index).await? {
        if link.mac == before.mac {
            return Ok(Some(link));
        }
    }
    let mut matches: Vec<LinkInfo> = inside
        .links()
        .await?
        .into_iter()
        .filter(|l| before.mac.is_some() && l.mac == before.mac)
        .collect();
    Ok(if matches.len() == 1 {
        matches.pop()
    } else {
        None
    })
}

/// Adds those of `wanted` the link lacks. An address already there is fine, so this is
/// safe to repeat.
async fn add_missing(
    nl: &Netlink,
    link: &LinkInfo,
    wanted: &[IpNet],
    device: &str,
) -> Result<bool, NetDevError> {
    let present: Vec<IpNet> = nl
        .addresses(link.index)
        .await
        .map_err(step(device, format!("list addresses of {}", link.name)))?
        .into_iter()
        .map(|a| a.address)
        .collect();
    let mut added = false;
    for net in wanted.iter().filter(|n| !present.contains(n)) {
        match nl.add_address(link.index, *net).await {
            Ok(()) => added = true,
            Err(e) if e.is_exists() => {}
            Err(e) => {
                return Err(step(device, format!("add address {net} to {}", link.name))(
                    e,
                ))
            }
        }
    }
    Ok(added)
}

/// In the host namespace under its original name: addresses back, up if `up`.
async fn restore_in_host(
    host: &Netlink,
    record: &NetDeviceRecord,
    up: bool,
) -> Result<(), NetDevError> {
    let device = record.host_name.as_str();
    let link = host
        .link_by_name(device)
        .await
        .map_err(step(device, "look up in the host"))?
        .ok_or_else(|| refused(device, "not found in the host namespace"))?;
    add_missing(host, &link, &record.addresses, device).await?;
    if up && !link.up {
        host.set_up(link.index)
            .await
            .map_err(step(device, "set up in the host"))?;
    }
    Ok(())
}

/// The device inside: by its recorded name, or by its MAC when the workload renamed it
/// (it may, holding CAP_NET_ADMIN in its namespace) and the name is gone or another's.
async fn find_inside(
    inside: &Netlink,
    record: &NetDeviceRecord,
) -> container_netlink::Result<Option<LinkInfo>> {
    if let Some(link) = inside.link_by_name(&record.container_name).await? {
        if record.mac.is_none() || link.mac == record.mac {
            return Ok(Some(link));
        }
    }
    let Some(mac) = record.mac else {
        return Ok(None);
    };
    let mut same_mac: Vec<LinkInfo> = inside
        .links()
        .await?
        .into_iter()
        .filter(|l| l.mac == Some(mac))
        .collect();
    Ok(if same_mac.len() == 1 {
        same_mac.pop()
    } else {
        None
    })
}

/// Moves one device from the container back to the host under its original name, with
/// its addresses.
async fn return_one(
    host: &Netlink,
    inside: &Netlink,
    record: &NetDeviceRecord,
    up: bool,
) -> Result<(), NetDevError> {
    let device = record.host_name.as_str();
    let link = find_inside(inside, record)
        .await
        .map_err(step(
            device,
            format!("look up {} in the container", record.container_name),
        ))?
        .ok_or_else(|| {
            refused(
                device,
                format!("{} not found in the container", record.container_name),
            )
        })?;
    if link.up {
        inside
            .set_down(link.index)
            .await
            .map_err(step(device, format!("set {} down", link.name)))?;
    }
    inside
        .move_to_netns(link.index, host.netns(), Some(device))
        .await
        .map_err(step(device, format!("move {} back to the host", link.name)))?;
    restore_in_host(host, record, up).await
}

/// Hands every device back to the host namespace under its original name, with its
/// addresses, up: the stop/shutdown path, so the same container can be created and
/// removed again with the same result. Keeps going past failures and reports them all.
pub async fn give_back(
    host: &Netlink,
    inside: &Netlink,
    records: &[NetDeviceRecord],
) -> Result<(), NetDevError> {
    let mut errors = Vec::new();
    for record in records {
        if let Err(e) = return_one(host, inside, record, true).await {
            tracing::warn!(error = %e, "net device not given back");
            errors.push(e);
        }
    }
    collect(errors)
}

/// The crash path, run in the host namespace after a sandbox died: the kernel returns a
/// physical device by itself, but under its container-side name (or `dev<N>` if that
/// was taken) and without addresses. Finds each recorded device by its MAC, renames it
/// back, re-adds missing addresses and sets it up. Returns the host names of the devices
/// it changed; a device already as recorded is left alone. A device not found is only
/// logged: the kernel destroys virtual devices with their namespace.
pub async fn restore_returned(
    host: &Netlink,
    records: &[NetDeviceRecord],
) -> Result<Vec<String>, NetDevError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let links = host
        .links()
        .await
        .map_err(step(&records[0].host_name, "list host links"))?;
    let mut restored = Vec::new();
    let mut errors = Vec::new();
    for record in records {
        let Some(link) = find_returned(&links, record) else {
            tracing::info!(device = %record.host_name, "net device not in the host namespace; not restored");
            continue;
        };
        match restore_link(host, link, record).await {
            Ok(true) => restored.push(record.host_name.clone()),
            Ok(false) => {}
            Err(e) => errors.push(e),
        }
    }
    collect(errors)?;
    Ok(restored)
}

/// The link that is `record`'s device: by MAC, preferring one under a name the record
/// knows when several share it (a MAC can repeat, e.g. on VLANs of one NIC).
fn find_returned<'a>(links: &'a [LinkInfo], record: &NetDeviceRecord) -> Option<&'a LinkInfo> {
    let Some(mac) = record.mac else {
        return links.iter().find(|l| l.name == record.host_name);
    };
    let same_mac: Vec<&LinkInfo> = links.iter().filter(|l| l.mac == Some(mac)).collect();
    let named = same_mac
        .iter()
        .find(|l| l.name == record.host_name || l.name == record.container_name);
    match (named, same_mac.as_slice()) {
        (Some(link), _) => Some(link),
        (None, [only]) => Some(only),
        _ => None,
    }
}

/// Returns whether anything had to change.
async fn restore_link(
    host: &Netlink,
    link: &LinkInfo,
    record: &NetDeviceRecord,
) -> Result<bool, NetDevError> {
    let device = record.host_name.as_str();
    let mut changed = false;
    let mut up = link.up;
    if link.name != record.host_name {
        // Renaming an up link is refused by older kernels.
        if up {
            host.set_down(link.index)
                .await
                .map_err(step(device, format!("set {} down", link.name)))?;
            up = false;
        }
        host.rename(link.index, device)
            .await
            .map_err(step(device, format!("rename {} back", link.name)))?;
        changed = true;
    }
    changed |= add_missing(host, link, &record.addresses, device).await?;
    if !up {
        host.set_up(link.index)
            .await
            .map_err(step(device, "set up"))?;
        changed = true;
    }
    if changed {
        tracing::info!(device, from = %link.name, "returned net device restored");
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::{cap_effective, check_target, CAP_NET_ADMIN};

    #[test]
    fn cap_eff_is_read_from_status() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(cap_effective(root, CAP_NET_ADMIN), Some(true));
        let user = "CapEff:\t0000000000000000\n";
        assert_eq!(cap_effective(user, CAP_NET_ADMIN), Some(false));
        let only_net_admin = "CapEff:\t0000000000001000\n";
        assert_eq!(cap_effective(only_net_admin, CAP_NET_ADMIN), Some(true));
        assert_eq!(cap_effective("Name:\tx\n", CAP_NET_ADMIN), None);
        assert_eq!(cap_effective("CapEff:\tzz\n", CAP_NET_ADMIN), None);
    }

    #[test]
    fn container_side_names() {
        for ok in ["data0", "net%d", "%d", "123456789012345"] {
            assert!(check_target(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a/b",
            "a:b",
            "a b",
            ".",
            "..",
            "1234567890123456",
            "a%s",
            "%dx",
            "a%d%d",
        ] {
            assert!(check_target(bad).is_err(), "{bad:?}");
        }
    }
}
