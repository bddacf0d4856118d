//! `cni` plugin: the network helper ran the CNI plugins against the container's
//! namespace, so the interface exists already. The sandbox only reads back what the
//! kernel has, which is what the workload will see, rather than trusting the result JSON.
//! The host side (if any) belongs to the CNI plugins and their DEL.

use container_netlink::{AddrScope, Netlink};
use container_protocol::network::Allocation;
use container_protocol::sandbox::InterfaceReport;

use super::{inside_link, report, Ctx, InterfaceError};

pub(super) async fn realize(
    cx: Ctx<'_>,
    inside: &Netlink,
    alloc: &Allocation,
) -> Result<InterfaceReport, InterfaceError> {
    let link = inside_link(cx, inside, &alloc.ifname)
        .await
        .map_err(|e| match e {
            InterfaceError::Invalid { .. } => {
                cx.invalid("the CNI plugins did not create it in the container namespace")
            }
            other => other,
        })?;
    let addresses = inside
        .addresses(link.index)
        .await
        .map_err(cx.step("list addresses"))?
        .into_iter()
        // Kernel-made IPv6 link-local addresses are not what the network assigned.
        .filter(|a| a.scope == AddrScope::Universe)
        .map(|a| a.address)
        .collect();
    Ok(report(alloc, link.mac, addresses))
}
