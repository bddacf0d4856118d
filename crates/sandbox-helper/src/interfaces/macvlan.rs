//! Macvlan plugin: a macvlan on a host parent link, created directly inside the
//! container so it never exists in the host namespace.

use container_netlink::{MacvlanMode, NetNs, Netlink};
use container_protocol::network::Allocation;
use container_protocol::sandbox::InterfaceReport;

use super::{configure_and_report, undone, Ctx, InterfaceError};

/// Mode names as `ip link ... type macvlan mode MODE` takes them; empty means bridge,
/// the kernel's and Docker's default.
fn parse_mode(mode: &str) -> Option<MacvlanMode> {
    match mode {
        "" | "bridge" => Some(MacvlanMode::Bridge),
        "private" => Some(MacvlanMode::Private),
        "vepa" => Some(MacvlanMode::Vepa),
        "passthru" | "passthrough" => Some(MacvlanMode::Passthru),
        _ => None,
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
    mode: &str,
    default_route: bool,
) -> Result<InterfaceReport, InterfaceError> {
    let mode = parse_mode(mode).ok_or_else(|| {
        cx.invalid(format!(
            "unknown macvlan mode {mode:?} (bridge, private, vepa, passthru)"
        ))
    })?;
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
        mode,
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
