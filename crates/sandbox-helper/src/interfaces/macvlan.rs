//! Macvlan plugin: a macvlan on a host parent link, created directly inside the
//! container so it never exists in the host namespace.

use container_netlink::{NetNs, Netlink};
use container_protocol::network::{Allocation, MacvlanMode};
use container_protocol::sandbox::InterfaceReport;

use super::{configure_and_report, undone, Ctx, InterfaceError};

/// The kernel's value of a mode.
fn kernel_mode(mode: MacvlanMode) -> container_netlink::MacvlanMode {
    match mode {
        MacvlanMode::Bridge => container_netlink::MacvlanMode::Bridge,
        MacvlanMode::Private => container_netlink::MacvlanMode::Private,
        MacvlanMode::Vepa => container_netlink::MacvlanMode::Vepa,
        MacvlanMode::Passthru => container_netlink::MacvlanMode::Passthru,
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn realize(
    cx: Ctx<'_>,
    host: &Netlink,
    ns: &NetNs,
    inside: &Netlink,
    alloc: &Allocation,
    parent: &str,
    mode: MacvlanMode,
    default_route: bool,
) -> Result<InterfaceReport, InterfaceError> {
    let parent_link = host
        .link_by_name(parent)
        .await
        .map_err(cx.step(format!("look up parent {parent}")))?
        .ok_or_else(|| {
            cx.invalid(format!(
                "parent link {parent} not found in the host namespace"
            ))
        })?;
    host.create_macvlan(
        &alloc.ifname,
        parent_link.index,
        kernel_mode(mode),
        Some(ns),
        alloc.mac,
        alloc.mtu,
    )
    .await
    .map_err(cx.step(format!("create macvlan on {parent}")))?;

    match configure(cx, inside, alloc, default_route).await {
        Ok(report) => Ok(report),
        Err(error) => {
            // Only reached once the create succeeded, so the link deleted is ours.
            let undo = inside
                .delete_link_by_name(&alloc.ifname)
                .await
                .map(|_| ())
                .map_err(cx.step("undo: delete macvlan"));
            Err(undone(error, undo))
        }
    }
}

async fn configure(
    cx: Ctx<'_>,
    inside: &Netlink,
    alloc: &Allocation,
    default_route: bool,
) -> Result<InterfaceReport, InterfaceError> {
    configure_and_report(cx, inside, alloc, default_route).await
}
