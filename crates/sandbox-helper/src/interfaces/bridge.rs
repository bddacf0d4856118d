//! Bridge plugin: a veth pair whose peer is born inside the container and whose host end
//! joins the network's bridge.

use container_netlink::{NetNs, Netlink};
use container_protocol::network::Allocation;
use container_protocol::sandbox::InterfaceReport;

use super::{configure_and_report, undone, Ctx, InterfaceError};

/// 20 ms apart: two seconds for a dying namespace to let its veth name go.
const VETH_NAME_RETRIES: u32 = 100;

/// Name of the host end of a container's veth: `veth` and 11 hex digits of an FNV-1a
/// hash of `(container_id, ifname)`, 15 bytes, the most an interface name holds.
///
/// Deterministic so that anything holding the container id and interface name (the
/// apiserver after a sandbox crash, a rerun of cleanup) can find the link without a
/// record. 44 bits make a collision between two live containers negligible.
pub fn veth_host_name(container_id: &str, ifname: &str) -> String {
    // The NUL keeps ("ab", "c") and ("a", "bc") apart.
    let hash = container_netlink::name_hash(container_id.bytes().chain([0]).chain(ifname.bytes()));
    format!("veth{:011x}", hash >> 20)
}

/// Whether `name` has the shape [`veth_host_name`] gives, for finding leaked host ends.
pub fn is_veth_host_name(name: &str) -> bool {
    name.len() == 15
        && name.starts_with("veth")
        && name[4..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

pub(super) async fn realize(
    cx: Ctx<'_>,
    host: &Netlink,
    ns: &NetNs,
    inside: &Netlink,
    alloc: &Allocation,
    bridge: &str,
    default_route: bool,
) -> Result<InterfaceReport, InterfaceError> {
    let br = host
        .link_by_name(bridge)
        .await
        .map_err(cx.step(format!("look up bridge {bridge}")))?
        .ok_or_else(|| cx.invalid(format!("bridge {bridge} not found in the host namespace")))?;
    if br.kind.as_deref() != Some("bridge") {
        return Err(cx.invalid(format!("link {bridge} is not a bridge")));
    }
    let host_name = veth_host_name(&alloc.container_id, &alloc.ifname);
    // Without an MTU from the network, match the bridge: a smaller port would lower it.
    let mtu = alloc.mtu.unwrap_or(br.mtu);
    // The previous run of this container may still own the name for a moment: its
    // namespace (and the veth pair with it) is destroyed by the kernel in the
    // background. A host end can only exist while its peer's namespace does, so the
    // name frees itself; wait for that, boundedly.
    // Marked with its owner, so a leak check knows it for ours by the link itself.
    let owner = container_netlink::Owner::Container {
        id: alloc.container_id.clone(),
        ifname: alloc.ifname.clone(),
    }
    .alias();
    let mut attempts = 0;
    let host_index = loop {
        match host
            .create_owned_veth(
                &host_name,
                &alloc.ifname,
                ns,
                Some(mtu),
                alloc.mac,
                Some(&owner),
            )
            .await
        {
            Err(e) if e.is_exists() && attempts < VETH_NAME_RETRIES => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => break other.map_err(cx.step(format!("create veth {host_name}")))?,
        }
    };

    match wire(cx, host, inside, alloc, host_index, br.index, default_route).await {
        Ok(mut report) => {
            report.host_ifname = Some(host_name);
            Ok(report)
        }
        Err(error) => {
            // Deleting the host end takes its peer and all set on it: one undo for all.
            let undo = host
                .delete_link_by_name(&host_name)
                .await
                .map(|_| ())
                .map_err(cx.step(format!("undo: delete veth {host_name}")));
            Err(undone(error, undo))
        }
    }
}

async fn wire(
    cx: Ctx<'_>,
    host: &Netlink,
    inside: &Netlink,
    alloc: &Allocation,
    host_index: u32,
    bridge_index: u32,
    default_route: bool,
) -> Result<InterfaceReport, InterfaceError> {
    host.set_master(host_index, bridge_index)
        .await
        .map_err(cx.step("attach host end to bridge"))?;
    // A port forwards frames; an address of its own would only add to every flood.
    let host_name = veth_host_name(&alloc.container_id, &alloc.ifname);
    container_netlink::disable_ipv6(host.netns(), &host_name)
        .map_err(cx.step("turn IPv6 off on the host end"))?;
    host.set_up(host_index)
        .await
        .map_err(cx.step("set host end up"))?;
    configure_and_report(cx, inside, alloc, default_route).await
}

#[cfg(test)]
mod tests {
    use super::{is_veth_host_name, veth_host_name};

    #[test]
    fn leaked_host_ends_are_recognised_by_their_shape() {
        assert!(is_veth_host_name("veth0123456789a"));
        assert!(is_veth_host_name(&veth_host_name("c1", "eth0")));
        assert!(!is_veth_host_name("veth0"));
        assert!(!is_veth_host_name("vethABCDEF01234"));
        assert!(!is_veth_host_name("eth0123456789ab"));
    }

    #[test]
    fn host_names_are_short_stable_and_distinct() {
        let a = veth_host_name("c1", "eth0");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("veth"));
        assert!(container_netlink::valid_ifname(&a).is_ok());
        assert_eq!(a, veth_host_name("c1", "eth0"));
        assert_ne!(a, veth_host_name("c1", "eth1"));
        assert_ne!(a, veth_host_name("c2", "eth0"));
        assert_ne!(veth_host_name("ab", "c"), veth_host_name("a", "bc"));
        // A long container id still yields a valid name.
        assert_eq!(veth_host_name(&"f".repeat(64), "eth0").len(), 15);
    }
}
